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


async def _connection_healthy(tenant: Tenant, name: str, status: str, reason: str) -> dict:
    """The BackendConnection's own Healthy condition, as the CRD documents it."""
    async def probe() -> dict | None:
        cond = condition(await tenant.get(name), "Healthy")
        return cond if cond.get("status") == status and cond.get("reason") == reason else None
    return await wait_for(probe, timeout=20, what=f"{name} Healthy={status} {reason}")


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
    await _connection_healthy(tenant, "db", "True", "Online")

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
        assert condition(await get_org(tenant, "org"), "Healthy")["reason"] == "Offline"
        offline = await _connection_healthy(tenant, "db", "False", "Offline")
        assert "ProviderServerError" in offline["message"]
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
    # Healthy is True only while online: degraded is False, reason Degraded (issue 13, item 8).
    await _org_healthy(tenant, "False")
    assert condition(await get_org(tenant, "org"), "Healthy")["reason"] == "Degraded"
    await _connection_healthy(tenant, "db", "False", "Degraded")


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


async def test_a_refused_status_write_is_retried_by_the_next_probe(tenant: Tenant) -> None:
    """The API server refuses the health write (here: unreachable); the result is written later."""
    import socket

    from oneie_operator.kube.client import load_api_client
    from oneie_operator.kube.rest import KubeREST
    from oneie_operator.kube.secrets import CustomObjects
    from oneie_operator.testing.cluster import write_kubeconfig

    env = tenant.env
    await tenant.good("db", "supabase")
    await _health(tenant, "db", "online")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = write_kubeconfig(env.workdir / "dead-kubeconfig", f"http://127.0.0.1:{dead_port}")
    real_objects = env.services.objects
    dead_rest = KubeREST(load_api_client(str(dead)).configuration, timeout=5)
    env.services.objects = CustomObjects(dead_rest, "one.ie", "v1alpha1")
    server = env.providers["supabase"]
    try:
        server.fault = "500"
        count = server.request_count
        await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "db",
                            {"metadata": {"annotations": {"one.ie/probe": "down"}}})
        await server.wait_for_requests(count + 1, deadline=10)
        reporter = env.services.health_reporter
        await wait_for(lambda: _true("t" and (tenant.ns, "db") in reporter._dirty), timeout=10,
                       what="the refused write to be remembered")
        assert (await tenant.get("db"))["status"]["health"]["status"] == "online", "nothing could be written"
    finally:
        env.services.objects = real_objects
        await dead_rest.aclose()
    # The next probe (still failing) writes the state the API refused before.
    await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "db",
                        {"metadata": {"annotations": {"one.ie/probe": "again"}}})
    health = await _health(tenant, "db", "offline")
    assert health["consecutiveFailures"] >= 2
    server.fault = "ok"


async def _true(value: object) -> bool:
    return bool(value)
