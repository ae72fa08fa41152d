"""The validating webhook over real HTTPS on 127.0.0.1, with AdmissionReview requests."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oneie_operator.demo.environment import LocalEnvironment, local_environment
from oneie_operator.testing.kubeapi import condition, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oneie test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oneie-operator-webhook")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: As the API server names the example tenant's identities (examples/tenant/rbac.yaml binds their groups).
ORG_OWNER = {"username": "acme-owner", "groups": ["acme-owners", "system:authenticated"]}
ORG_USER = {"username": "acme-user", "groups": ["acme-users", "system:authenticated"]}
PLATFORM_OWNER = {"username": "platform-owner", "groups": ["platform-owners", "system:authenticated"]}


class Webhook:
    def __init__(self, env: LocalEnvironment, client: httpx.AsyncClient, url: str) -> None:
        self.env, self.client, self.url = env, client, url

    async def review(self, plural: str, obj: dict[str, Any], operation: str = "CREATE",
                     user: dict[str, Any] | None = None, old: dict[str, Any] | None = None) -> dict[str, Any]:
        kind = "BackendConnection" if plural == "backendconnections" else "Organization"
        request = {
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()), "kind": {"group": "one.ie", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "one.ie", "version": "v1alpha1", "resource": plural},
                "requestKind": {"group": "one.ie", "version": "v1alpha1", "kind": kind},
                "namespace": obj["metadata"]["namespace"], "name": obj["metadata"]["name"],
                "operation": operation, "userInfo": user or ORG_OWNER,
                "object": obj, "oldObject": old, "dryRun": False,
            },
        }
        response = await self.client.post(f"{self.url}/validate-{plural}", json=request)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["response"]["uid"] == request["request"]["uid"]
        return dict(body["response"])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def webhook(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Webhook]:
    directory = Path(tmp_path_factory.mktemp("webhook"))
    ca, cert, key = _certificates(directory)
    port = _free_port()
    env_vars = {"WEBHOOK_PORT": str(port), "WEBHOOK_CERT_FILE": str(cert), "WEBHOOK_KEY_FILE": str(key)}
    # RBAC on (the chart's roles, the example tenant's bindings): the webhook asks the API server
    # whether the requesting user may read the connection's Secret.
    async with local_environment(directory, config_env=env_vars, rbac=True) as env:
        async with httpx.AsyncClient(verify=str(ca), timeout=10) as client:
            url = f"https://127.0.0.1:{port}"

            async def up() -> bool:
                try:
                    await client.post(f"{url}/validate-backendconnections", content=b"{}")
                except httpx.TransportError:
                    return False
                return True
            await wait_for(up, timeout=20, what="the webhook listening")
            yield Webhook(env, client, url)


def connection(spec: dict[str, Any], name: str = "conn") -> dict[str, Any]:
    return {"apiVersion": "one.ie/v1alpha1", "kind": "BackendConnection",
            "metadata": {"name": name, "namespace": "tenant-acme"}, "spec": spec}


GOOD = {"provider": "convex", "convex": {"url": "https://happy-otter-123.convex.cloud"},
        "credentialsSecretRef": {"name": "creds"}}

BAD = [
    ("unknown provider", {**GOOD, "provider": "oracle"}, "spec.provider: unknown provider 'oracle'"),
    ("no provider block", {"provider": "convex", "credentialsSecretRef": {"name": "c"}}, "spec.convex: is required"),
    ("wrong block", {**GOOD, "notion": {}}, "spec.notion: is not allowed"),
    ("malformed URL", {**GOOD, "convex": {"url": "not a url"}}, "spec.convex.url"),
    ("bad scheme", {**GOOD, "convex": {"url": "ftp://happy-otter-123.convex.cloud"}}, "spec.convex.url"),
    ("unknown setting", {**GOOD, "convex": {"url": GOOD["convex"]["url"], "region": "eu"}}, "spec.convex.region"),
    ("cross-namespace Secret", {**GOOD, "credentialsSecretRef": {"name": "c", "namespace": "other"}},
     "spec.credentialsSecretRef.namespace"),
    ("no Secret name", {**GOOD, "credentialsSecretRef": {}}, "spec.credentialsSecretRef.name"),
    ("link-local address", {**GOOD, "convex": {"url": "https://169.254.3.4"}}, "spec.convex.url"),
    ("metadata address", {"provider": "notion", "notion": {"apiUrl": "http://169.254.169.254"},
                          "credentialsSecretRef": {"name": "c"}}, "spec.notion.apiUrl"),
]


async def test_good_connection_is_allowed(webhook: Webhook) -> None:
    assert (await webhook.review("backendconnections", connection(GOOD)))["allowed"] is True


@pytest.mark.parametrize(("case", "spec", "expected"), BAD, ids=[c[0] for c in BAD])
async def test_bad_connection_is_rejected_with_the_field(webhook: Webhook, case: str, spec: dict[str, Any],
                                                         expected: str) -> None:
    response = await webhook.review("backendconnections", connection(spec))
    assert response["allowed"] is False
    assert response["status"]["code"] == 422
    assert expected in response["status"]["message"], response["status"]["message"]


async def test_the_message_is_the_one_the_operator_writes_to_status(webhook: Webhook) -> None:
    env = webhook.env
    # Valid for the CRD (an http(s) URL), refused by the provider's model (an HTTP actions URL, not
    # the deployment URL): the API server stores it, the operator judges it.
    spec = {**GOOD, "convex": {"url": "https://happy-otter-123.convex.site"}}
    rejected = (await webhook.review("backendconnections", connection(spec, "same")))["status"]["message"]
    await env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tenant-acme"}})
    await env.api.apply(connection(spec, "same"))  # the emulator runs no webhooks: the operator judges it

    async def status_message() -> str | None:
        obj = await env.api.get("one.ie/v1alpha1", "BackendConnection", "tenant-acme", "same")
        ready = condition(obj, "Ready")
        return str(ready.get("message")) if ready.get("reason") == "InvalidSpec" else None
    assert (await wait_for(status_message, timeout=20, what="status")).startswith(rejected)


@pytest.mark.parametrize(("spec", "allowed", "expected"), [
    ({}, True, ""),
    ({"backend": {"connectionRef": {"name": "acme-convex"}}}, True, ""),
    ({"backend": {}}, False, "spec.backend.connectionRef.name: is required"),
    ({"backend": {"connectionRef": {"name": "x", "namespace": "other"}}}, False, "connectionRef.namespace"),
    ({"backend": {"connectionRef": {"name": "Not_A_Label"}}}, False, "must be a DNS label"),
])
async def test_organizations(webhook: Webhook, spec: dict[str, Any], allowed: bool, expected: str) -> None:
    obj = {"apiVersion": "one.ie/v1alpha1", "kind": "Organization",
           "metadata": {"name": "acme", "namespace": "tenant-acme"}, "spec": spec}
    response = await webhook.review("organizations", obj)
    assert response["allowed"] is allowed
    if expected:
        assert expected in response["status"]["message"]


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"request": {}}', b'{"request": {"uid": "x"}}'])
async def test_malformed_reviews_get_an_error_not_a_crash(webhook: Webhook, body: bytes) -> None:
    response = await webhook.client.post(f"{webhook.url}/validate-backendconnections", content=body)
    assert response.status_code in (400, 404, 409, 422, 500)
    # ...and the webhook still serves the next request.
    assert (await webhook.review("backendconnections", connection(GOOD)))["allowed"] is True


async def test_plain_http_is_not_served(webhook: Webhook) -> None:
    async with httpx.AsyncClient(timeout=5) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.post(webhook.url.replace("https://", "http://") + "/validate-backendconnections", json={})


# --- fail closed: only the two endpoints, each for its own resource (issue 12, item 6) ----------


def _review(plural: str, obj: dict[str, Any], uid: str) -> dict[str, Any]:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "kind": {"group": "one.ie", "version": "v1alpha1", "kind": "X"},
                        "resource": {"group": "one.ie", "version": "v1alpha1", "resource": plural},
                        "namespace": "tenant-acme", "name": obj["metadata"]["name"], "operation": "CREATE",
                        "userInfo": {"username": "alice", "groups": []}, "object": obj, "oldObject": None}}


@pytest.mark.parametrize("path", ["/", "/validate", "/mutate-backendconnections", "/validate-secrets",
                                  "/prefix/validate-backendconnections", "/validate-backendconnections/x"])
async def test_an_unknown_path_is_refused(webhook: Webhook, path: str) -> None:
    # a spec Kopf's own routing would have allowed (no handler there: allowed: true)
    uid = str(uuid.uuid4())
    response = await webhook.client.post(f"{webhook.url}{path}",
                                         json=_review("backendconnections", connection(GOOD), uid))
    assert response.status_code == 200, response.text
    answer = response.json()["response"]
    assert answer["uid"] == uid
    assert answer["allowed"] is False
    assert answer["status"]["message"].startswith(f"admission webhook: unknown path {path}")
    assert "/validate-backendconnections" in answer["status"]["message"]


@pytest.mark.parametrize(("path", "resource"), [
    ("/validate-organizations", "backendconnections"),   # a bad connection sent to the organizations' path
    ("/validate-backendconnections", "organizations"),
    ("/validate-backendconnections", "secrets"),
])
async def test_a_review_of_another_resource_than_the_path_is_refused(webhook: Webhook, path: str,
                                                                      resource: str) -> None:
    uid = str(uuid.uuid4())
    bad = connection({**GOOD, "provider": "oracle"})
    response = await webhook.client.post(f"{webhook.url}{path}", json=_review(resource, bad, uid))
    answer = response.json()["response"]
    assert answer["allowed"] is False, answer
    assert answer["uid"] == uid
    assert f"not request.resource one.ie/v1alpha1/{resource}" in answer["status"]["message"]


# --- the requesting user must be able to read the Secret (issue 12, item 2) ---------------------


@pytest.mark.parametrize(("who", "user", "allowed"), [
    ("org owner (reads tenant-acme's Secrets)", ORG_OWNER, True),
    ("org user (no Secret read)", ORG_USER, False),
    ("platform owner (writes connections anywhere, never reads Secrets)", PLATFORM_OWNER, False),
])
async def test_the_author_must_be_able_to_read_the_secret(webhook: Webhook, who: str, user: dict[str, Any],
                                                          allowed: bool) -> None:
    response = await webhook.review("backendconnections", connection(GOOD, "deputy"), user=user)
    assert response["allowed"] is allowed, (who, response)
    if not allowed:
        message = response["status"]["message"]
        assert response["status"]["code"] == 403
        assert message.startswith(f"spec.credentialsSecretRef.name: user {user['username']!r} may not get Secret"
                                  " tenant-acme/creds"), message


async def test_a_changed_destination_is_checked_and_an_unchanged_spec_is_not(webhook: Webhook) -> None:
    stored = connection(GOOD, "deputy")
    # the platform owner points an existing connection (and so its Secret) at another URL: refused
    moved = connection({**GOOD, "convex": {"url": "https://evil-otter-666.convex.cloud"}}, "deputy")
    response = await webhook.review("backendconnections", moved, "UPDATE", user=PLATFORM_OWNER, old=stored)
    assert response["allowed"] is False and "may not get Secret" in response["status"]["message"]
    # an update that leaves the spec as it was (a label, the operator's finalizer) asks nothing
    labelled = {**stored, "metadata": {**stored["metadata"], "labels": {"team": "a"}}}
    response = await webhook.review("backendconnections", labelled, "UPDATE", user=PLATFORM_OWNER, old=stored)
    assert response["allowed"] is True


async def test_the_operator_asked_the_api_server_as_itself(webhook: Webhook) -> None:
    from oneie_operator.testing.identities import OPERATOR
    assert webhook.env.secure is not None
    assert ("authorization.k8s.io", "subjectaccessreviews", "create") in \
        webhook.env.secure.access.allowed[OPERATOR.name]
