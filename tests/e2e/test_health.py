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
    try:
        await wait_for(probe, timeout=20, what=f"org Healthy={status}")
    except TimeoutError:
        org, conn = await get_org(tenant, "org"), await tenant.get("rv")
        raise AssertionError(f"org Healthy!={status}: org conditions {org.get('status', {}).get('conditions')}; "
                             f"rv status {conn.get('status')}") from None


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
    reporter = env.services.health
    real_objects = reporter.objects
    dead_rest = KubeREST(load_api_client(str(dead)).configuration, timeout=5)
    reporter.objects = CustomObjects(dead_rest, "one.ie", "v1alpha1")
    server = env.providers["supabase"]
    try:
        server.fault = "500"
        count = server.request_count
        await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "db",
                            {"metadata": {"annotations": {"one.ie/probe": "down"}}})
        await server.wait_for_requests(count + 1, deadline=10)
        await wait_for(lambda: _true("t" and (tenant.ns, "db") in reporter._dirty), timeout=10,
                       what="the refused write to be remembered")
        assert (await tenant.get("db"))["status"]["health"]["status"] == "online", "nothing could be written"
    finally:
        reporter.objects = real_objects
        await dead_rest.aclose()
    # The next probe (still failing) writes the state the API refused before.
    await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "db",
                        {"metadata": {"annotations": {"one.ie/probe": "again"}}})
    health = await _health(tenant, "db", "offline")
    assert health["consecutiveFailures"] >= 2
    server.fault = "ok"


async def _true(value: object) -> bool:
    return bool(value)


async def test_revoked_credentials_turn_not_ready_and_a_fixed_secret_recovers(tenant: Tenant) -> None:
    """The periodic health check proves the credentials: revocation → Ready=False CredentialsRejected,
    an Event, the organization Healthy=False, the alert's gauge; a fixed Secret → Ready again."""
    env = tenant.env
    server = env.providers["convex"]
    good = dict(server.credentials)
    await tenant.good("rv", "convex")
    await apply_org(tenant, "org", "rv")
    await wait_org(tenant, "org", active="rv")
    await _health(tenant, "rv", "online")
    await _org_healthy(tenant, "True")
    rotated = good["deployKey"][:-6] + "Rotate"
    server.credentials["deployKey"] = rotated  # revoked at the provider: liveness still answers
    try:
        await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "rv",
                            {"metadata": {"annotations": {"one.ie/probe": "revoked"}}})
        obj = await tenant.wait_ready("rv", "False", "CredentialsRejected")
        assert "BadAdminKey" in condition(obj, "Ready")["message"]
        assert good["deployKey"] not in str(obj)
        event = await tenant.wait_event("rv", "CredentialsRejected")
        assert event["type"] == "Warning" and good["deployKey"] not in event["message"]
        await _health(tenant, "rv", "offline")
        await _org_healthy(tenant, "False")
        metrics = generate_latest(env.services.metrics.registry).decode()
        labels = f'connection="rv",namespace="{tenant.ns}",provider="convex"'
        assert f"oneie_connection_credentials_rejected{{{labels}}} 1.0" in metrics
        assert f"oneie_connection_ready{{{labels}}} 0.0" in metrics

        await tenant.secret("rv-creds", {"deployKey": rotated})  # the tenant puts the new key in
        await tenant.wait_ready("rv", "True")
        await env.api.patch("one.ie/v1alpha1", "BackendConnection", tenant.ns, "rv",
                            {"metadata": {"annotations": {"one.ie/probe": "fixed"}}})
        # Back up: the probe succeeds again. Still "degraded" while the rejected probe stays in the
        # error-rate window (1 failure in 3 is over the 0.2 threshold): Healthy=False reason Degraded,
        # no longer Offline. Healthy is True only while online (issue 13 item 8).
        async def back_up() -> bool:
            reason = condition(await get_org(tenant, "org"), "Healthy").get("reason")
            return reason in ("Online", "Degraded")
        await wait_for(back_up, timeout=20, what="org Healthy no longer Offline")

        async def cleared() -> bool:
            text = generate_latest(env.services.metrics.registry).decode()
            return f"oneie_connection_credentials_rejected{{{labels}}} 0.0" in text
        await wait_for(cleared, timeout=20, what="rejected gauge back to 0")
    finally:
        server.credentials.update(good)


async def test_provider_calls_are_counted_per_tenant_until_its_last_connection_goes(tenant: Tenant) -> None:
    """oneie_provider_calls_total carries the tenant's namespace; its series go with the last connection."""
    env = tenant.env
    await tenant.good("u1", "notion")
    await tenant.good("u2", "supabase")
    series = (f'oneie_provider_calls_total{{call="test_credentials",namespace="{tenant.ns}",'
              'outcome="Success",provider="notion"}')

    def exposed() -> str:
        return generate_latest(env.services.metrics.registry).decode()
    assert series in exposed()
    assert f'namespace="{tenant.ns}",outcome="Success",provider="supabase"' in exposed()
    await env.api.delete("one.ie/v1alpha1", "BackendConnection", tenant.ns, "u1")
    u1_ready = f'oneie_connection_ready{{connection="u1",namespace="{tenant.ns}"'
    await wait_for(lambda: _async(u1_ready not in exposed()), timeout=20, what="u1's series removed")
    assert series in exposed(), "another connection of the tenant remains: its usage stays"
    await env.api.delete("one.ie/v1alpha1", "BackendConnection", tenant.ns, "u2")

    async def gone() -> bool:
        return f'namespace="{tenant.ns}"' not in "\n".join(
            line for line in exposed().splitlines() if line.startswith("oneie_provider_calls_total"))
    await wait_for(gone, timeout=20, what="the tenant's provider-call series removed")


async def _async(value: object) -> object:
    return value
