"""Key rotation: a new primary key re-encrypts stored credentials on restart, without a live re-test."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from e2e_support import Tenant

from oneie_operator.demo.environment import LocalEnvironment, local_environment, restart_operator
from oneie_operator.vault import EncryptionKey, generate_key, token_key_id, unseal

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rotation_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    key = generate_key()
    async with local_environment(Path(tmp_path_factory.mktemp("rot")), config_env={"ENCRYPTION_KEY": key}) as env:
        yield env


async def test_new_primary_key_reencrypts_everything(rotation_env: LocalEnvironment) -> None:
    env = rotation_env
    tenant = Tenant(env, "t-rotation", set())
    old_key = env.services.config.encryption_key
    assert old_key is not None
    old_id = EncryptionKey.from_hex(old_key).id
    for provider in ("convex", "wordpress"):
        await tenant.good(f"c-{provider}", provider)
    def credential_tests() -> int:  # health probes (GET /version) may run meanwhile; they don't count
        return sum(1 for r in env.providers["convex"].requests if r.path == "/api/v1/deployment_info")
    calls_before = credential_tests()

    new_key = generate_key()
    new_id = EncryptionKey.from_hex(new_key).id
    keyring = json.dumps({"primary": new_id, "keys": {old_id: old_key, new_id: new_key}})
    await restart_operator(env, {"ENCRYPTION_KEY": "", "ENCRYPTION_KEYRING": keyring})
    assert env.services.keyring.primary_id == new_id

    for provider in ("convex", "wordpress"):
        name = f"c-{provider}"
        event = await tenant.wait_event(name, "CredentialsReencrypted")
        assert new_id in event["message"]

        async def moved(name: str = name) -> bool:
            obj = await tenant.get(name)
            return (obj or {}).get("status", {}).get("credentials", {}).get("keyId") == new_id
        from oneie_operator.testing.kubeapi import wait_for
        await wait_for(moved, timeout=20, what=f"{name} under the new key")
        owned = await tenant.owned(name)
        sealed = {k: base64.b64decode(v).decode() for k, v in owned["data"].items()}
        assert {token_key_id(t) for t in sealed.values()} == {new_id}
        assert unseal(env.services.keyring, sealed, namespace=tenant.ns, connection=name) == \
            env.providers.credentials[provider]
    # Re-encryption needs no live call: the credentials were verified before.
    assert credential_tests() == calls_before


async def test_unknown_key_id_is_a_clear_error(rotation_env: LocalEnvironment) -> None:
    """A keyring that lost the key of stored values: reported, then repaired from the source."""
    env = rotation_env
    tenant = Tenant(env, "t-lost-key", set())
    await tenant.good("conn", "notion")
    fresh = generate_key()
    await restart_operator(env, {"ENCRYPTION_KEY": fresh, "ENCRYPTION_KEYRING": ""})
    event = await tenant.wait_event("conn", "EncryptionKeyNotFound")
    assert fresh not in event["message"]
    obj = await tenant.wait_ready("conn", "True")
    assert obj["status"]["credentials"]["keyId"] == EncryptionKey.from_hex(fresh).id


def _digest_before_key_ids(hex_key: str, data: dict[str, str]) -> str:
    """The binding digest as versions before key ids were recorded wrote it (no ``<key id>:``)."""
    import hashlib
    import hmac
    key = hashlib.sha256(b"one.ie/binding-digest/v1\x00" + bytes.fromhex(hex_key)).digest()
    payload = json.dumps(dict(sorted(data.items())), separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()[:32]


async def _binding_writes(env: LocalEnvironment, namespace: str, name: str, since: str) -> int:
    """How often the Secret was written after resourceVersion ``since`` (the emulator's watch
    replays its recent events from there; ``timeoutSeconds`` ends the stream)."""
    response = await env.api._client.get(  # KubeAPI has no watch helper
        f"/api/v1/namespaces/{namespace}/secrets",
        params={"watch": "1", "resourceVersion": since, "fieldSelector": f"metadata.name={name}",
                "timeoutSeconds": "1"},
    )
    events = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    return sum(1 for e in events if e["type"] in ("MODIFIED", "ADDED", "DELETED"))


async def test_key_rotation_restamps_binding_digests_quietly(rotation_env: LocalEnvironment) -> None:
    """Issue 12 item 7: after a rotation, a binding stamped by the old key is genuine (verified with
    the key its digest names, or with every key for a digest without a key id), re-stamped with the
    new primary in at most one write and without a Warning; a real edit is still caught."""
    from org_support import apply_org, binding, wait_org

    from oneie_operator.demo.environment import env_stop_operator
    from oneie_operator.testing.kubeapi import wait_for

    env = rotation_env
    old_key = generate_key()
    old_id = EncryptionKey.from_hex(old_key).id
    await restart_operator(env, {"ENCRYPTION_KEY": old_key, "ENCRYPTION_KEYRING": ""})
    tenant = Tenant(env, "t-binding-digest", set())
    await tenant.good("a", "convex")
    await tenant.good("b", "notion")
    await apply_org(tenant, "org-a", "a")
    await apply_org(tenant, "org-b", "b")
    await wait_org(tenant, "org-a", active="a")
    await wait_org(tenant, "org-b", active="b")
    # Stopped while the bindings are prepared and their versions noted: no reconcile in between.
    await env_stop_operator(env)
    secret_a = await env.api.get("v1", "Secret", tenant.ns, "org-a-backend")
    assert secret_a["metadata"]["annotations"]["one.ie/binding-digest"].startswith(f"{old_id}:")
    # org-b's binding as an older operator version stamped it: no key id in the digest.
    secret_b = await env.api.patch("v1", "Secret", tenant.ns, "org-b-backend", {"metadata": {"annotations": {
        "one.ie/binding-digest": _digest_before_key_ids(old_key, await binding(tenant, "org-b"))}}})
    since = {"org-a-backend": secret_a["metadata"]["resourceVersion"],
             "org-b-backend": secret_b["metadata"]["resourceVersion"]}

    new_key = generate_key()
    new_id = EncryptionKey.from_hex(new_key).id
    keyring = json.dumps({"primary": new_id, "keys": {old_id: old_key, new_id: new_key}})
    await restart_operator(env, {"ENCRYPTION_KEY": "", "ENCRYPTION_KEYRING": keyring})

    for name in since:
        async def restamped(name: str = name) -> bool:
            secret = await env.api.get("v1", "Secret", tenant.ns, name) or {}
            return secret["metadata"]["annotations"]["one.ie/binding-digest"].startswith(f"{new_id}:")
        await wait_for(restamped, timeout=20, what=f"{name} re-stamped with the new primary")
    for org in ("org-a", "org-b"):
        await wait_org(tenant, org, active=org[-1])
        assert await tenant.events(org), "the organizations' Events must be readable"
        alarms = [e for e in await tenant.events(org) if e["type"] == "Warning"]
        assert alarms == [], f"a key rotation is not tampering: {alarms}"
    for name, version in since.items():
        writes = await _binding_writes(env, tenant.ns, name, version)
        assert writes == 1, f"{name}: {writes} writes after the rotation (one quiet re-stamp expected)"

    # A real edit is still detected and repaired, with a Warning.
    await env.api.patch("v1", "Secret", tenant.ns, "org-a-backend",
                        {"data": {"url": base64.b64encode(b"https://evil.example.com").decode()}})
    event = await tenant.wait_event("org-a", "BindingRestored")
    assert event["type"] == "Warning"

    async def repaired() -> bool:
        return (await binding(tenant, "org-a"))["url"] == env.providers.settings("convex")["url"]
    await wait_for(repaired, timeout=20, what="binding repaired")
