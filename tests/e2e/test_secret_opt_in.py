"""Credential Secrets must opt in (issue 12, item 2: the confused deputy).

Someone who may write BackendConnections but not read Secrets must not get a Secret's values by
naming it in a connection whose URL points at their own server. The operator reads only Secrets
labelled ``one.ie/credentials: "true"`` and of type Opaque; anything else is refused with
``SecretNotOptedIn`` and a Warning Event, and the URL in the spec receives nothing.

The "attacker" here is a real HTTP server on 127.0.0.1 recording every request (headers and
body), named as the connection's Convex URL. What the emulator cannot show: a real API server's
metadata-only answers (``PartialObjectMetadata``); the emulator sends the whole Secret, which the
operator drops undecoded.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web
from e2e_support import Tenant

from oneie_operator.names import WATCH_SELECTOR
from oneie_operator.testing.kubeapi import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")

STOLEN = {"adminKey": "prod|0123456789abcdef-stolen-token-value"}


class Recorder:
    """A server that records everything it is sent."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(f"{request.method} {request.path_qs} {dict(request.headers)} {body!r}")
        return web.json_response({})


@pytest_asyncio.fixture(loop_scope="module")
async def attacker() -> AsyncIterator[Recorder]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder.url = f"http://127.0.0.1:{port}"
    yield recorder
    await runner.cleanup()


def _leaked(recorder: Recorder) -> list[str]:
    values = [*STOLEN.values(), *(base64.b64encode(v.encode()).decode() for v in STOLEN.values())]
    return [line for line in recorder.seen if any(v in line for v in values)]


@pytest.mark.parametrize(
    ("case", "labels", "secret_type", "wanted"),
    [
        ("unlabelled", {}, "Opaque", "kubectl label secret target -n {ns} one.ie/credentials=true"),
        ("label-false", {"one.ie/credentials": "false"}, "Opaque", "has one.ie/credentials='false'"),
        ("sa-token", {}, "kubernetes.io/service-account-token", "lacks the label one.ie/credentials=true"),
        ("labelled-sa-token", {"one.ie/credentials": "true"}, "kubernetes.io/service-account-token",
         "is of type 'kubernetes.io/service-account-token'"),
        ("labelled-tls", {"one.ie/credentials": "true"}, "kubernetes.io/tls", "only credential Secrets of type Opaque"),
    ],
)
async def test_a_secret_that_did_not_opt_in_is_refused_and_never_sent(
    tenant: Tenant, attacker: Recorder, case: str, labels: dict[str, str], secret_type: str, wanted: str
) -> None:
    await tenant.secret("target", dict(STOLEN), labels=labels, secret_type=secret_type)
    await tenant.connection("grab", "convex", {"url": attacker.url}, secret="target")
    obj = await tenant.wait_ready("grab", "False", "SecretNotOptedIn")
    message = condition(obj, "Ready")["message"]
    assert "Secret 'target'" in message and wanted.format(ns=tenant.ns) in message, message
    assert condition(obj, "Stalled")["status"] == "True"
    event = await tenant.wait_event("grab", "SecretNotOptedIn")
    assert event["type"] == "Warning" and "target" in event["message"]
    assert await tenant.owned("grab") is None, "nothing may be encrypted from a Secret that did not opt in"
    assert attacker.seen == [], "the operator must not call the spec's URL at all"
    assert not _leaked(attacker)
    assert "credentials" not in obj.get("status", {})


async def test_opting_in_later_and_out_again(tenant: Tenant) -> None:
    """Labelling the Secret is picked up by the watch (no restart); removing the label stops its use."""
    env = tenant.env
    await tenant.secret("creds", dict(env.providers.credentials["notion"]), labels={})
    await tenant.connection("conn", "notion", secret="creds")
    await tenant.wait_ready("conn", "False", "SecretNotOptedIn")

    await env.api.patch("v1", "Secret", tenant.ns, "creds", {"metadata": {"labels": {"one.ie/credentials": "true"}}})
    ready = await tenant.wait_ready("conn", "True")
    owned = await tenant.owned("conn")
    assert owned is not None and owned["metadata"]["labels"]["one.ie/credentials"] == "encrypted"

    await env.api.patch("v1", "Secret", tenant.ns, "creds", {"metadata": {"labels": {"one.ie/credentials": None}}})
    obj = await tenant.wait_ready("conn", "False", "SecretNotOptedIn")
    assert "kubectl label secret creds" in condition(obj, "Ready")["message"]
    # The last good encrypted copy stays (an organization using it keeps working); it is not
    # re-verified or re-encrypted from the unlabelled Secret, and the connection is not Ready,
    # so no organization can switch to it.
    assert obj["status"]["credentials"] == ready["status"]["credentials"]
    assert (await tenant.owned("conn"))["data"] == owned["data"]


async def test_the_watch_selector_takes_only_labelled_secrets(tenant: Tenant) -> None:
    """The selector the operator's Secret watch sends (tests/unit/test_kopf_settings.py checks Kopf
    gets it), as the API server applies it: tenants' opted-in Secrets and the operator's own only."""
    env = tenant.env
    await tenant.good("conn", "supabase")
    await tenant.secret("other", {"password": "not-for-the-operator"}, labels={})
    await tenant.secret("declined", {"password": "not-for-the-operator"}, labels={"one.ie/credentials": "false"})
    response = await env.api._client.get(  # a list with a selector: KubeAPI has no helper for it
        f"/api/v1/namespaces/{tenant.ns}/secrets", params={"labelSelector": WATCH_SELECTOR}
    )
    names = {item["metadata"]["name"]: item["metadata"]["labels"]["one.ie/credentials"]
             for item in response.json()["items"]}
    assert names == {"conn-creds": "true", "oneie-conn-credentials": "encrypted"}
