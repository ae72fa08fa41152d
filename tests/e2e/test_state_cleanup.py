"""A deleted connection leaves nothing behind in the operator's memory (issue 14 item 3).

The real operator against the emulator: many connections are created, probed on request, used by
an organization's switch (which caches their validated specs), then everything is deleted. Every
per-connection cache (``Services.per_connection_caches``: the probe engine's registrations, the
health reporter's, the probe requests, the watch's view of each connection and its last state,
the switches' validated specs, the watched encrypted copies) must then be empty. Before, the last
states (a Kopf-memo dict) and the probe requests kept one entry per connection ever seen.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from e2e_support import BC, Tenant
from org_support import ORG, apply_org, switch, wait_org

from oneie_operator.demo.environment import LocalEnvironment
from oneie_operator.testing.kubeapi import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROVIDERS = ("convex", "supabase", "notion")
COUNT = 12


async def _gone(env: LocalEnvironment, api_version: str, kind: str, namespace: str, names: list[str]) -> None:
    async def probe() -> bool:
        return all([await env.api.get(api_version, kind, namespace, name) is None for name in names])

    await wait_for(probe, timeout=60, what=f"{kind}s {names} gone")


async def test_the_probe_engine_runs_from_start_up(env: LocalEnvironment) -> None:
    """Started by the operator's start-up (handlers/lifecycle.py), before any connection exists
    (it used to start inside the first reconcile of a connection)."""
    assert len(env.services.probe_engine) == 0
    engines = [t for t in asyncio.all_tasks() if t.get_name() == "probe engine" and not t.done()]
    assert len(engines) == 1, engines


async def test_deleted_connections_leave_no_cache_entries(env: LocalEnvironment, tenant: Tenant) -> None:
    services = env.services
    assert all(size == 0 for size in services.per_connection_caches().values()), services.per_connection_caches()
    await env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.ns}})
    names = [f"c{i}" for i in range(COUNT)]
    await asyncio.gather(*(tenant.good(name, PROVIDERS[i % len(PROVIDERS)]) for i, name in enumerate(names)))

    # Probe requests (one.ie/probe), answered in status: the requests and the health reports are remembered.
    for name in names[:4]:
        await env.api.patch(*BC, tenant.ns, name, {"metadata": {"annotations": {"one.ie/probe": f"req-{name}"}}})

    async def answered() -> bool:
        for name in names[:4]:
            health = ((await tenant.get(name) or {}).get("status") or {}).get("health") or {}
            if health.get("lastRequest") != f"req-{name}":
                return False
        return True

    await wait_for(answered, timeout=30, what="the probe requests answered")

    # A switch between two of them: the switches' cache (validated specs).
    await apply_org(tenant, "org", names[0])
    await wait_org(tenant, "org", active=names[0])
    await switch(tenant, "org", names[1])
    await wait_org(tenant, "org", active=names[1], result="Succeeded")

    before = services.per_connection_caches()
    assert all(size > 0 for size in before.values()), f"every cache is exercised before the deletion: {before}"

    await env.api.delete(*ORG, tenant.ns, "org")
    await _gone(env, *ORG, tenant.ns, ["org"])
    for name in names:
        await env.api.delete(*BC, tenant.ns, name)
    await _gone(env, *BC, tenant.ns, names)

    async def emptied() -> dict[str, Any] | None:
        sizes = services.per_connection_caches()
        return None if any(sizes.values()) else sizes

    try:
        await wait_for(emptied, timeout=15, what="every per-connection cache empty")
    except TimeoutError:
        raise AssertionError(f"entries of deleted connections remain: {services.per_connection_caches()}") from None
