"""Organizations without a connectionRef use the operator's platform default backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from e2e_support import Tenant
from org_support import apply_org, binding, switch, wait_org

from oneie_operator.demo.environment import LocalEnvironment, local_environment
from oneie_operator.platform_default import PLATFORM_DEFAULT

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def default_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    async with local_environment(Path(tmp_path_factory.mktemp("pd")), platform_default="notion") as env:
        yield env


async def test_org_without_connection_uses_the_platform_default(default_env: LocalEnvironment) -> None:
    tenant = Tenant(default_env, "t-default", set())
    await tenant.env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.ns}})
    await apply_org(tenant, "org", None)
    obj = await wait_org(tenant, "org", active=PLATFORM_DEFAULT, result="Succeeded")
    status = obj["status"]
    assert status["usingPlatformDefault"] is True and status["provider"] == "notion"
    data = await binding(tenant, "org")
    assert data["type"] == "notion" and data["connection"] == PLATFORM_DEFAULT
    assert "token" not in data, "platform credentials are not copied into tenants unless configured"

    # Naming a connection later switches away from the default, and back when the ref is removed.
    await tenant.good("own", "convex")
    await switch(tenant, "org", "own")
    moved = await wait_org(tenant, "org", active="own", result="Succeeded", to="own")
    assert moved["status"]["usingPlatformDefault"] is False
    assert moved["status"]["previousConnection"] == PLATFORM_DEFAULT

    await tenant.env.api.patch("one.ie/v1alpha1", "Organization", tenant.ns, "org", {"spec": {"backend": None}})
    back = await wait_org(tenant, "org", active=PLATFORM_DEFAULT, result="Succeeded", to=PLATFORM_DEFAULT)
    assert back["status"]["usingPlatformDefault"] is True


async def test_no_default_and_no_connection_is_a_clear_error(tmp_path: Path) -> None:
    async with local_environment(tmp_path) as env:
        tenant = Tenant(env, "t-none", set())
        await env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.ns}})
        await apply_org(tenant, "org", None)
        obj = await wait_org(tenant, "org", result="Failed")
        message = obj["status"]["lastSwitch"]["message"]
        assert "BACKEND_PROVIDER" in message and "spec.backend.connectionRef.name" in message
        assert obj["status"]["lastSwitch"]["reason"] == "NoBackend"
