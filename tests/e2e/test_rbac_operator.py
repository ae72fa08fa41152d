"""The real operator under the chart's RBAC, with its service account's token (the emulator enforces both).

The emulator authenticates every request and authorizes it with Kubernetes RBAC semantics
(tests/emulator/test_access.py), loaded with the chart's rendered roles
(``oneie_operator/testing/chart-rbac.yaml``, checked against ``helm template`` by
tests/chart/test_permission_matrix.py). The operator logs in as
``system:serviceaccount:oneie-system:oneie-operator`` through an exec credential plug-in, so:

* a verb the operator needs and the chart lacks is a 403 that fails these tests;
* a verb the chart grants and no flow here used is reported (and fails the last test unless
  listed in ``UNUSED_ON_PURPOSE`` with the reason);
* a rotated token (the old one refused with 401) does not stop the operator: its Kopf login
  reads the token through the client's refreshing accessor (issue 12, item 8).

Not proven here (the emulator cannot): admission plug-ins that check permissions on writes
(``OwnerReferencesPermissionEnforcement``), RBAC escalation checks, and the in-cluster token
file re-read (the ``kubernetes`` client's own code; the exec plug-in path is the one exercised).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from e2e_support import Tenant
from rbac_support import UNUSED_ON_PURPOSE, grants_of, switch_main_to_next

from oneie_operator.demo.environment import LocalEnvironment, local_environment
from oneie_operator.demo.scenario import leak_scan
from oneie_operator.testing.identities import CHART_RBAC, OPERATOR
from oneie_operator.testing.kubeapi import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, plaintexts: set[str]) -> AsyncIterator[LocalEnvironment]:
    workdir = Path(tmp_path_factory.mktemp("e2e-rbac"))
    async with local_environment(workdir, config_env={"PROVIDER_TIMEOUT_SECONDS": "1"}, rbac=True) as environment:
        yield environment
        plaintexts.update(v for creds in environment.providers.credentials.values() for v in creds.values())
        await leak_scan(environment, plaintexts)


def operator_grants() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of the chart's operator ClusterRole, as rendered."""
    return grants_of(CHART_RBAC)


def refused(env: LocalEnvironment, code: int) -> list[str]:
    assert env.secure is not None
    return [message for who, status, message in env.secure.access.refusals
            if status == code and who in (OPERATOR.name, "")]


async def test_operator_runs_as_its_service_account(env: LocalEnvironment) -> None:
    assert env.secure is not None
    allowed = env.secure.access.allowed
    # Kopf lists before it watches: wait for the watch itself (under load the list came first alone).
    await wait_for(lambda: _true(("one.ie", "backendconnections", "watch") in allowed.get(OPERATOR.name, ())),
                   timeout=10, what="the operator's watch of backendconnections")
    # the test client is the cluster admin; nobody else has made a request
    assert set(allowed) <= {OPERATOR.name, "cluster-admin"}


async def _true(value: bool) -> bool:
    return value


async def test_connection_ready_and_switch_under_the_chart_role(tenant: Tenant) -> None:
    """A connection becomes Ready and an organization switches between two connections, with
    nothing but the chart's ClusterRole: no request of the operator is refused."""
    await switch_main_to_next(tenant)
    # the binding Secret deleted by someone: the operator triggers its organization and restores it
    await tenant.env.api.delete("v1", "Secret", tenant.ns, "acme-backend")

    async def restored() -> bool:
        return await tenant.env.api.get("v1", "Secret", tenant.ns, "acme-backend") is not None
    await wait_for(restored, timeout=20, what="the binding Secret restored")
    await tenant.env.api.delete("one.ie/v1alpha1", "Organization", tenant.ns, "acme")
    await tenant.env.api.delete("one.ie/v1alpha1", "BackendConnection", tenant.ns, "main")

    async def gone() -> bool:
        return await tenant.get("main") is None
    await wait_for(gone, timeout=20, what="the connection deleted (finalizer removed)")
    assert refused(tenant.env, 403) == []


async def test_rotated_token_the_operator_logs_in_again_with_the_new_one(tenant: Tenant) -> None:
    """Service-account tokens expire and are rotated: after the old token is refused (401) the
    operator's Kopf login must return the new token (read through the client's refreshing
    accessor), and the operator keeps reconciling."""
    env = tenant.env
    assert env.secure is not None
    before = len(refused(env, 401))
    env.secure.rotate_operator_token()
    await tenant.good("after-rotation", "convex")
    assert len(refused(env, 401)) > before, "the old token was never refused: the test proved nothing"
    await tenant.good("after-rotation-2", "supabase")
    assert refused(env, 403) == []


async def test_no_grant_of_the_chart_goes_unused(env: LocalEnvironment) -> None:
    """Every verb the chart gives the operator was used by the flows above, or is listed with a reason."""
    assert env.secure is not None
    used = env.secure.access.allowed[OPERATOR.name]
    unused = operator_grants() - used - set(UNUSED_ON_PURPOSE)
    assert not unused, f"the chart grants the operator verbs it never used: {sorted(unused)}"
    stale = set(UNUSED_ON_PURPOSE) & used
    assert not stale, f"listed as unused but used: {sorted(stale)}"
    outside = {u for u in used if u not in operator_grants() and u[1] not in ("selfsubjectaccessreviews",)}
    assert not outside, f"allowed outside the operator's role (another binding?): {sorted(outside)}"
