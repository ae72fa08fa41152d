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
