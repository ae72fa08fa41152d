"""Kopf's merge patches sent by the operator's REST client (``kopfpatches/mergepatch.py``), against
a real HTTP server on 127.0.0.1 standing for the API server: what reaches it, what Kopf gets back,
and that any failure hands the same request to Kopf's own client (stood in for here by a recorder:
the canary in test_kopf_canaries.py pins the real one's signature)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import kubernetes
import pytest
from aiohttp import web

from oneie_operator.handlers.kopfpatches import mergepatch
from oneie_operator.kube.rest import KubeREST

STATUS_URL = "/apis/one.ie/v1alpha1/namespaces/t/organizations/acme/status"
MERGE = {"Content-Type": "application/merge-patch+json"}


class ApiServer:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, Any]] = []
        self.fail_with: int | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read() or b"null")
        self.requests.append((request.method, request.path, request.content_type, body))
        if self.fail_with is not None:
            return web.json_response({"kind": "Status", "reason": "ServiceUnavailable"}, status=self.fail_with)
        return web.json_response({"metadata": {"name": "acme", "resourceVersion": "42"}, **body})


@pytest.fixture
async def server() -> AsyncIterator[tuple[ApiServer, KubeREST]]:
    api = ApiServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", api.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    rest = KubeREST(cfg)
    mergepatch.install()
    bound = mergepatch.bind(rest)
    try:
        yield api, rest
    finally:
        mergepatch.unbind(bound)
        mergepatch.uninstall()
        await rest.aclose()
        await runner.cleanup()


class KopfOwn:
    """Stands for Kopf's own ``api.patch`` (which needs Kopf's credentials vault)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, url: str, **kwargs: Any) -> Any:
        self.calls.append({"url": url, **kwargs})
        return {"from": "kopf"}


@pytest.fixture
def kopf_own(monkeypatch: pytest.MonkeyPatch) -> KopfOwn:
    """Kopf's own ``api.patch``, as the module's fallback, replaced by a :class:`KopfOwn`."""
    own = KopfOwn()
    monkeypatch.setattr(mergepatch, "KOPF_PATCH", own)
    return own


async def test_a_status_merge_patch_is_sent_once_by_the_rest_client(
    server: tuple[ApiServer, KubeREST], kopf_own: KopfOwn
) -> None:
    api, _ = server
    before = mergepatch.sent["rest"]
    payload = {"status": {"activeConnection": "b"}}
    answer = await mergepatch.patch(STATUS_URL, settings=None, payload=payload, headers=dict(MERGE),
                                    logger=logging.getLogger("t"))
    assert answer == {"metadata": {"name": "acme", "resourceVersion": "42"}, **payload}
    assert api.requests == [("PATCH", STATUS_URL, "application/merge-patch+json", payload)]
    assert kopf_own.calls == [] and mergepatch.sent["rest"] == before + 1


@pytest.mark.parametrize("status", [500, 503, 404, 409, 429])
async def test_a_failure_is_sent_again_by_kopfs_own_client(
    server: tuple[ApiServer, KubeREST], kopf_own: KopfOwn, status: int
) -> None:
    api, _ = server
    api.fail_with = status
    payload = {"status": {"activeConnection": "b"}}
    logger = logging.getLogger("t")
    answer = await mergepatch.patch(STATUS_URL, settings="S", payload=payload, headers=dict(MERGE), logger=logger)
    assert answer == {"from": "kopf"}
    assert len(api.requests) == 1
    assert kopf_own.calls == [
        {"url": STATUS_URL, "settings": "S", "payload": payload, "headers": MERGE, "timeout": None, "logger": logger}
    ]


async def test_an_unreachable_api_server_is_left_to_kopfs_client(kopf_own: KopfOwn) -> None:
    cfg = kubernetes.client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard: nobody answers
    rest = KubeREST(cfg, timeout=2)
    mergepatch.install()
    bound = mergepatch.bind(rest)
    try:
        answer = await mergepatch.patch(STATUS_URL, settings=None, payload={"status": {}}, headers=dict(MERGE),
                                        logger=logging.getLogger("t"))
    finally:
        mergepatch.unbind(bound)
        mergepatch.uninstall()
        await rest.aclose()
    assert answer == {"from": "kopf"} and len(kopf_own.calls) == 1


async def test_json_patches_and_absolute_urls_stay_kopfs(
    server: tuple[ApiServer, KubeREST], kopf_own: KopfOwn
) -> None:
    api, _ = server
    logger = logging.getLogger("t")
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}]
    json_patch = {"Content-Type": "application/json-patch+json"}
    await mergepatch.patch(STATUS_URL, settings=None, payload=ops, headers=json_patch, logger=logger)
    await mergepatch.patch("https://elsewhere.example/apis/x", settings=None, payload={}, headers=dict(MERGE),
                           logger=logger)
    assert api.requests == [] and len(kopf_own.calls) == 2


async def test_without_a_bound_client_kopfs_own_sends(kopf_own: KopfOwn) -> None:
    """Another operator in the process (a shard) that bound none, or a task outside any operator."""
    await mergepatch.patch(STATUS_URL, settings=None, payload={"status": {}}, headers=dict(MERGE),
                           logger=logging.getLogger("t"))
    assert len(kopf_own.calls) == 1


async def test_a_patch_after_the_operator_closed_its_client_opens_no_new_session(
    server: tuple[ApiServer, KubeREST], kopf_own: KopfOwn
) -> None:
    """Kopf's last status patch while the operator stops: Kopf's own client sends it, and the closed
    REST client does not open a session that nobody would close ("Unclosed client session")."""
    api, rest = server
    await rest.aclose()
    answer = await mergepatch.patch(STATUS_URL, settings=None, payload={"status": {}}, headers=dict(MERGE),
                                    logger=logging.getLogger("t"))
    assert answer == {"from": "kopf"} and api.requests == [] and rest._session is None
