"""BackendConnection end to end: happy path, every bad input, rotation, tampering, deletion, leaks."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from e2e_support import Tenant

from oneie_operator.demo.environment import LocalEnvironment
from oneie_operator.demo.scenario import leak_scan
from oneie_operator.testing.kubeapi import KubeAPIError, condition, wait_for
from oneie_operator.vault import unseal

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROVIDERS = ("convex", "wordpress", "notion", "supabase")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_ready_with_verified_encrypted_credentials(tenant: Tenant, provider: str) -> None:
    env = tenant.env
    obj = await tenant.good("conn", provider)
    status, meta = obj["status"], obj["metadata"]

    assert status["observedGeneration"] == meta["generation"]
    assert status["provider"] == provider
    kinds = {c["type"]: c for c in status["conditions"]}
    assert kinds["Ready"]["status"] == "True" and kinds["Ready"]["reason"] == "CredentialsVerified"
    assert kinds["Reconciling"]["status"] == "False" and kinds["Stalled"]["status"] == "False"
    assert all(c["lastTransitionTime"].endswith("Z") and c["observedGeneration"] == meta["generation"]
               for c in status["conditions"])
    provider_obj = env.services.registry.get(provider)
    assert status["capabilities"] == sorted(provider_obj.capabilities)
    assert {k for k in meta["labels"] if k.startswith("capability.one.ie/")} == {
        f"capability.one.ie/{c}" for c in provider_obj.capabilities}

    creds = status["credentials"]
    assert creds["keyId"] == env.services.keyring.primary_id
    assert creds["secretName"] == "oneie-conn-credentials"
    owned = await tenant.owned("conn")
    assert owned is not None
    assert owned["metadata"]["ownerReferences"][0]["uid"] == meta["uid"]
    sealed = {k: base64.b64decode(v).decode() for k, v in owned["data"].items()}
    assert all(v.startswith("v1.") for v in sealed.values())
    expected = env.providers.credentials[provider]
    assert not any(secret in str(owned) for secret in expected.values())
    assert unseal(env.services.keyring, sealed, namespace=tenant.ns, connection="conn") == expected

    reasons = [e["reason"] for e in await tenant.events("conn")]
    assert "CredentialsVerified" in reasons and "CredentialsStored" in reasons


async def test_read_only_convex_key_narrows_status_capabilities_and_labels(tenant: Tenant) -> None:
    """A provider's credential test may narrow its capabilities: the status and labels follow."""
    server = tenant.env.providers["convex"]
    server.read_only = True  # type: ignore[attr-defined]
    try:
        obj = await tenant.good("ro", "convex")
    finally:
        server.read_only = False  # type: ignore[attr-defined]
    full = tenant.env.services.registry.get("convex").capabilities
    assert "database-write" in full
    assert obj["status"]["capabilities"] == sorted(full - {"database-write"})
    labels = {k for k in obj["metadata"]["labels"] if k.startswith("capability.one.ie/")}
    assert labels == {f"capability.one.ie/{c}" for c in full - {"database-write"}}
    verified = await tenant.wait_event("ro", "CredentialsVerified")
    assert "read-only" in verified["message"]


async def test_notion_database_not_shared_is_not_ready_with_the_remedy(tenant: Tenant) -> None:
    await tenant.secret("nb-creds", dict(tenant.env.providers.credentials["notion"]))
    block = {**tenant.env.providers.settings("notion"), "databaseId": "0" * 32}
    await tenant.connection("nb", "notion", block)
    obj = await tenant.wait_ready("nb", "False", "CredentialsRejected")
    assert "share the database with the integration" in condition(obj, "Ready")["message"]


async def _rejected_change(tenant: Tenant, name: str, reason: str, field: str | None = None) -> dict[str, Any]:
    """Wait for the rejection; check the Event, the field named, and that nothing good was lost."""
    obj = await tenant.wait_ready(name, "False", reason)
    event = await tenant.wait_event(name, reason)
    assert event["type"] == "Warning"
    if field is not None:
        assert field in condition(obj, "Ready")["message"]
        assert field in event["message"]
    return obj


def _spec_changes() -> list[tuple[str, str, dict[str, Any], str, str]]:
    # (id, provider of the good connection, new spec fields, expected reason, field named)
    return [
        ("unknown-provider", "convex",
         {"provider": "oracle", "convex": None, "oracle": {"url": "https://x.example.com"}},
         "UnknownProvider", "spec.provider"),
        ("no-provider-block", "convex", {"convex": None}, "InvalidSpec", "spec.convex"),
        ("wrong-block", "convex", {"convex": None, "notion": {"apiUrl": "https://api.notion.com"}},
         "InvalidSpec", "spec.notion"),
        ("malformed-url", "convex", {"convex": {"url": "not a url"}}, "InvalidSpec", "spec.convex.url"),
        ("bad-scheme", "supabase", {"supabase": {"url": "ftp://abcdefghijklmnopqrst.supabase.co"}},
         "InvalidSpec", "spec.supabase.url"),
        ("unknown-setting", "notion", {"notion": {"apiUrl": "https://api.notion.com", "colour": "red"}},
         "InvalidSpec", "spec.notion.colour"),
        ("cross-namespace-secret", "wordpress", {"credentialsSecretRef": {"name": "creds", "namespace": "other"}},
         "InvalidSpec", "spec.credentialsSecretRef.namespace"),
        ("link-local", "convex", {"convex": {"url": "http://169.254.10.10:8080"}},
         "DestinationForbidden", "spec.convex.url"),
        ("metadata-address", "notion", {"notion": {"apiUrl": "http://169.254.169.254"}},
         "DestinationForbidden", "spec.notion.apiUrl"),
        ("missing-secret", "convex", {"credentialsSecretRef": {"name": "nope"}},
         "SecretNotFound", "spec.credentialsSecretRef.name"),
        ("unreachable", "convex", {"convex": {"url": "http://127.0.0.1:9"}}, "ProviderUnreachable", None),
    ]


#: Changes that the CRD's schema and CEL rules already refuse: the API server answers 422 (400 for
#: unknown fields with fieldValidation=Strict, as kubectl sends), the operator never sees them.
#: (spec.provider is immutable: an unknown provider reaches the operator only on create, below.)
SERVER_REFUSED = {"unknown-provider": 422, "no-provider-block": 422, "wrong-block": 422, "malformed-url": 422,
                  "bad-scheme": 422, "unknown-setting": 400, "cross-namespace-secret": 400}


@pytest.mark.parametrize("case", [c[0] for c in _spec_changes()])
async def test_bad_spec_change_keeps_last_good_state(tenant: Tenant, case: str) -> None:
    _, provider, change, reason, field = next(c for c in _spec_changes() if c[0] == case)
    good = await tenant.good("conn", provider)
    owned_before = await tenant.owned("conn")

    spec = {**good["spec"]}
    for key, value in change.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    patch = {"spec": {k: change.get(k) for k in change} | {k: spec[k] for k in spec}}
    if case in SERVER_REFUSED:
        with pytest.raises(KubeAPIError) as refused:
            await tenant.env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "conn", patch,
                                       field_validation="Strict")
        assert refused.value.status == SERVER_REFUSED[case] and field is not None and field in str(refused.value)
        obj = await tenant.env.api.get("one.ie/v1alpha1", "BackendConnection", tenant.ns, "conn")
        assert obj is not None and obj["spec"] == good["spec"], "a refused change is not stored"
        assert condition(obj, "Ready")["status"] == "True"
        assert (await tenant.owned("conn"))["data"] == owned_before["data"]
        return
    await tenant.env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "conn", patch)
    obj = await _rejected_change(tenant, "conn", reason, field)

    assert obj["status"]["credentials"] == good["status"]["credentials"], "status.credentials must stay"
    assert (await tenant.owned("conn"))["data"] == owned_before["data"], "the encrypted Secret must stay"
    if reason in ("InvalidSpec", "UnknownProvider", "DestinationForbidden"):
        assert condition(obj, "Stalled")["status"] == "True"
    assert "stay in force" in condition(obj, "Ready")["message"]


async def test_unknown_provider_on_create_is_stalled(tenant: Tenant) -> None:
    """A provider no plug-in registers passes the CRD (plug-ins bring their own blocks) and is
    refused by the operator, naming spec.provider."""
    await tenant.secret("odd-creds", {"token": "x"})
    await tenant.connection("odd", "oracle", {"url": "https://x.example.com"})
    obj = await _rejected_change(tenant, "odd", "UnknownProvider", "spec.provider")
    assert condition(obj, "Stalled")["status"] == "True"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("hang", "ProviderTimeout"), ("429:7", "ProviderRateLimited"), ("500", "ProviderServerError"),
     ("reset", "ProviderUnreachable"), ("notjson", "ProviderProtocolError"), ("huge", "ProviderProtocolError")],
)
async def test_provider_fault_on_rotation_keeps_last_good_state(tenant: Tenant, fault: str, reason: str) -> None:
    env = tenant.env
    good = await tenant.good("conn", "notion")
    owned_before = await tenant.owned("conn")
    env.providers["notion"].fault = fault
    try:
        await tenant.secret("conn-creds", {"token": "ntn_" + "R" * 46})
        obj = await _rejected_change(tenant, "conn", reason)
        assert condition(obj, "Reconciling")["status"] == "True", "transient: the operator retries by itself"
        assert obj["status"]["credentials"] == good["status"]["credentials"]
        assert (await tenant.owned("conn"))["data"] == owned_before["data"]
    finally:
        env.providers["notion"].fault = "ok"


async def test_rejected_credentials_then_rotation_back(tenant: Tenant) -> None:
    env = tenant.env
    good = await tenant.good("conn", "wordpress")
    wrong = {**env.providers.credentials["wordpress"], "applicationPassword": "Zzzz Yyyy Xxxx Wwww Vvvv Uuuu"}
    await tenant.secret("conn-creds", wrong)
    obj = await _rejected_change(tenant, "conn", "CredentialsRejected")
    assert "incorrect_password" in condition(obj, "Ready")["message"]
    assert condition(obj, "Stalled")["status"] == "True", "a rejected credential waits for a change"

    await tenant.secret("conn-creds", dict(env.providers.credentials["wordpress"]))
    back = await tenant.wait_ready("conn", "True")
    before = good["status"]["credentials"]["sourceResourceVersion"]
    assert back["status"]["credentials"]["sourceResourceVersion"] != before


async def test_missing_secret_key_then_fixed(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.secret("conn-creds", {"username": "admin"})
    await tenant.connection("conn", "wordpress")
    await _rejected_change(tenant, "conn", "SecretKeyMissing")
    event = await tenant.wait_event("conn", "SecretKeyMissing")
    assert "applicationPassword" in event["message"]
    await tenant.secret("conn-creds", dict(env.providers.credentials["wordpress"]))
    await tenant.wait_ready("conn", "True")


async def test_secret_created_after_connection(tenant: Tenant) -> None:
    await tenant.connection("conn", "convex")
    await _rejected_change(tenant, "conn", "SecretNotFound", "spec.credentialsSecretRef.name")
    await tenant.secret("conn-creds", dict(tenant.env.providers.credentials["convex"]))
    await tenant.wait_ready("conn", "True", timeout=10)


async def test_tampered_encrypted_secret_is_detected_and_repaired(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.good("conn", "convex")
    owned = await tenant.owned("conn")
    token = base64.b64decode(owned["data"]["deployKey"]).decode()
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    await env.api.patch("v1", "Secret", tenant.ns, "oneie-conn-credentials",
                        {"data": {"deployKey": base64.b64encode(forged.encode()).decode()}})
    event = await tenant.wait_event("conn", "DecryptionFailed")
    assert event["type"] == "Warning" and "deployKey" in event["message"]
    assert token not in event["message"] and forged not in event["message"]

    async def repaired() -> bool:
        now = await tenant.owned("conn")
        value = base64.b64decode(now["data"]["deployKey"]).decode()
        return value not in (forged, token) and value.startswith("v1.")
    await wait_for(repaired, timeout=20, what="re-encryption")
    await tenant.wait_ready("conn", "True")


async def test_deleting_the_encrypted_secret_recreates_it(tenant: Tenant) -> None:
    await tenant.good("conn", "supabase")
    await tenant.env.api.delete("v1", "Secret", tenant.ns, "oneie-conn-credentials")
    await wait_for(lambda: tenant.owned("conn"), timeout=20, what="the encrypted Secret re-created")


async def test_connection_in_use_is_not_deleted(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.good("conn", "convex")
    org = {"apiVersion": "one.ie/v1alpha1", "kind": "Organization",
           "metadata": {"name": "acme", "namespace": tenant.ns},
           "spec": {"backend": {"connectionRef": {"name": "conn"}}}}
    await env.api.create(org)

    async def active() -> bool:
        obj = await env.api.get("one.ie/v1alpha1", "Organization", tenant.ns, "acme")
        return (obj or {}).get("status", {}).get("activeConnection") == "conn"
    await wait_for(active, timeout=20, what="the organization using conn")
    await env.api.delete("one.ie/v1alpha1", "BackendConnection", tenant.ns, "conn")
    event = await tenant.wait_event("conn", "DeletionBlocked")
    assert "acme" in event["message"]
    assert (await tenant.get("conn")) is not None

    await env.api.delete("one.ie/v1alpha1", "Organization", tenant.ns, "acme")

    async def gone() -> bool:
        return await tenant.get("conn") is None and await tenant.owned("conn") is None
    await wait_for(gone, timeout=30, what="connection deleted and its encrypted Secret collected")


async def test_unused_connection_deletes_at_once(tenant: Tenant) -> None:
    await tenant.good("conn", "notion")
    await tenant.env.api.delete("one.ie/v1alpha1", "BackendConnection", tenant.ns, "conn")

    async def gone() -> bool:
        return await tenant.get("conn") is None and await tenant.owned("conn") is None
    await wait_for(gone, timeout=10, what="connection and encrypted Secret gone")


async def test_zz_no_credential_leaked(env: LocalEnvironment, plaintexts: set[str]) -> None:
    """Scan every log line, Event, object (status, annotations), encrypted Secret and metric."""
    assert len(plaintexts) >= 6
    summary = await leak_scan(env, plaintexts)
    assert "0 found" in summary

    # The scan can fail: a credential written to a log line is found.
    canary = "canary-credential-0123456789"
    logging.getLogger("kopf.objects").warning("oops %s", canary)
    with pytest.raises(AssertionError, match="log"):
        await leak_scan(env, {canary})
