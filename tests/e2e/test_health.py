"""Health end to end: probes write status.health, Events on transitions, metrics, org Healthy."""

from __future__ import annotations

import pytest
from e2e_support import Tenant
from org_support import apply_org, get_org, wait_org
from prometheus_client import generate_latest

from oneie_operator.testing.kubeapi import condition, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def _health(tenant: Tenant, name: str, state: str) -> dict:
    async def probe() -> dict | None:
        obj = await tenant.get(name)
        health = (obj or {}).get("status", {}).get("health") or {}
        return health if health.get("status") == state else None
    return await wait_for(probe, timeout=20, what=f"{name} health {state}")


async def _org_healthy(tenant: Tenant, status: str) -> None:
    async def probe() -> bool:
        return condition(await get_org(tenant, "org"), "Healthy").get("status") == status
    await wait_for(probe, timeout=20, what=f"org Healthy={status}")


async def test_probe_results_reach_status_events_metrics_and_the_organization(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.good("db", "convex")
    await apply_org(tenant, "org", "db")
    await wait_org(tenant, "org", active="db")
    health = await _health(tenant, "db", "online")
    assert health["consecutiveFailures"] == 0 and health["lastProbeTime"].endswith("Z")
    assert health["responseTimeMilliseconds"] >= 0 and health["errorRate"] == 0
    await tenant.wait_event("db", "BackendOnline")
    await _org_healthy(tenant, "True")

    server = env.providers["convex"]
    server.fault = "500"
    try:
        await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "db",
                            {"metadata": {"annotations": {"one.ie/probe": "1"}}})
        health = await _health(tenant, "db", "offline")
        assert health["consecutiveFailures"] >= 1 and health["lastError"].startswith("ProviderServerError")
        event = await tenant.wait_event("db", "BackendOffline")
        assert event["type"] == "Warning" and "was online" in event["message"]
        await _org_healthy(tenant, "False")
        metrics = generate_latest(env.services.metrics.registry).decode()
        labels = f'connection="db",namespace="{tenant.ns}",provider="convex",state="offline"'
        line = f"oneie_connection_health{{{labels}}} 1.0"
        assert line in metrics
        assert 'oneie_probe_failures_total{provider="convex",reason="ProviderServerError"}' in metrics
    finally:
        server.fault = "ok"
    await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "db",
                        {"metadata": {"annotations": {"one.ie/probe": "2"}}})
    await _health(tenant, "db", "degraded")  # online again, but 1 failure of 3 in the window > 0.2
    await _org_healthy(tenant, "True")


async def test_deleted_connection_loses_its_series(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.good("tmp", "notion")
    await _health(tenant, "tmp", "online")
    series = f'oneie_connection_health{{connection="tmp",namespace="{tenant.ns}"'
    assert series in generate_latest(env.services.metrics.registry).decode()
    await env.api.delete("one.ie/v1alpha1", "BackendConnection", tenant.ns, "tmp")

    async def gone() -> bool:
        return series not in generate_latest(env.services.metrics.registry).decode()
    await wait_for(gone, timeout=20, what="series removed")
