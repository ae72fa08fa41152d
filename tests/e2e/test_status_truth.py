"""Status that never lies (issue 13, items 5, 6, 8, 9, 10, 12), end to end with the real operator.

* the first probe result is never overwritten by the reconcile (item 5);
* a Stalled organization's ``Healthy`` follows its active connection (item 6);
* ``Switching`` is True while a slow switch runs; ``status.health.errorRate`` follows the probes
  as the metric does (item 8; the ``Healthy`` conditions themselves: test_health.py);
* a switch that failed for a transient reason completes by itself once the target is back; one
  refused for a permanent reason waits for a change (item 9);
* a connection being deleted cannot become a switch target (item 10);
* ``BindingRestored`` after the operator's own interrupted switch says so (item 12).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from e2e_support import Tenant
from org_support import ORG, apply_org, binding, get_org, switch, wait_org

from oneie_operator.reconcile.connections import ConnectionObject, reconcile_connection
from oneie_operator.reconcile.organizations import OrgObject, resolve, write_binding
from oneie_operator.testing.kubeapi import condition, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")
BC = ("one.ie/v1alpha1", "BackendConnection")


async def _on_good(tenant: Tenant, **policy: Any) -> None:
    await tenant.good("good", "convex")
    await apply_org(tenant, "org", "good", **policy)
    await wait_org(tenant, "org", active="good", result="Succeeded")


async def _probe_now(tenant: Tenant, name: str, request: str) -> None:
    await tenant.env.api.patch(*BC, tenant.ns, name, {"metadata": {"annotations": {"one.ie/probe": request}}})


async def test_first_probe_result_is_not_overwritten_by_the_reconcile(tenant: Tenant) -> None:
    """Connections created with an immediate-probe request: the probe may finish before the
    reconcile's status is written; the health it found must stay (never back to unknown)."""
    env = tenant.env
    names = [f"now-{i}" for i in range(6)]
    for name in names:
        await tenant.secret(f"{name}-creds", dict(env.providers.credentials["convex"]))
        await env.api.apply({"apiVersion": BC[0], "kind": BC[1],
                             "metadata": {"name": name, "namespace": tenant.ns,
                                          "annotations": {"one.ie/probe": "at-creation"}},
                             "spec": {"provider": "convex", "convex": env.providers.settings("convex"),
                                      "credentialsSecretRef": {"name": f"{name}-creds"}}})
    for name in names:
        await tenant.wait_ready(name, "True")

    async def all_online() -> bool:
        states = [((await tenant.get(n)) or {}).get("status", {}).get("health", {}).get("status") for n in names]
        return all(state == "online" for state in states)

    try:
        await wait_for(all_online, timeout=15, what="every connection's first probe result in status")
    except TimeoutError:
        states = {n: ((await tenant.get(n)) or {}).get("status", {}).get("health") for n in names}
        raise AssertionError(f"health in status: {states}") from None

    # The race made certain: the reconcile ran on the body as it was before the probe wrote (no
    # status.health yet). What it returns is the patch Kopf applies after the probe's write; it
    # must not carry a health of its own.
    stored = await tenant.get(names[0])
    assert stored is not None
    before_probe = {k: v for k, v in stored["status"].items() if k not in ("health", "observedGeneration")}
    obj = ConnectionObject(namespace=tenant.ns, name=names[0], uid=stored["metadata"]["uid"],
                           generation=stored["metadata"]["generation"], spec=stored["spec"],
                           status=before_probe, labels=stored["metadata"].get("labels") or {})
    result = await reconcile_connection(obj, env.services.connection_deps())
    assert result.error is None and result.status, result
    assert "health" not in result.status, f"the reconcile would overwrite the probe: {result.status['health']}"


async def test_stalled_organization_follows_its_active_connections_health(tenant: Tenant) -> None:
    env = tenant.env
    await _on_good(tenant)
    await _probe_now(tenant, "good", "1")

    async def healthy(status: str, reason: str) -> bool:
        cond = condition(await get_org(tenant, "org"), "Healthy")
        return cond.get("status") == status and cond.get("reason") == reason

    await wait_for(lambda: healthy("True", "Online"), timeout=20, what="org Healthy=True")
    await switch(tenant, "org", "nowhere")
    obj = await wait_org(tenant, "org", result="RolledBack", to="nowhere")
    assert condition(obj, "Stalled")["status"] == "True"
    server = env.providers["convex"]
    server.fault = "500"
    try:
        await _probe_now(tenant, "good", "2")
        await wait_for(lambda: healthy("False", "Offline"), timeout=20, what="Stalled org Healthy=False Offline")
    finally:
        server.fault = "ok"
    await _probe_now(tenant, "good", "3")
    # Answering again, with one failure of the last three or four probes: degraded (not online).
    await wait_for(lambda: healthy("False", "Degraded"), timeout=20, what="Stalled org Healthy=False Degraded")
    obj = await get_org(tenant, "org")
    assert condition(obj, "Stalled")["status"] == "True", "still waiting for a change of its switch"


async def test_switching_is_true_while_a_slow_switch_runs(tenant: Tenant) -> None:
    env = tenant.env
    await _on_good(tenant)
    await tenant.good("slow", "notion")
    server = env.providers["notion"]
    server.fault = "slow:0.6"
    seen: list[dict[str, Any]] = []
    try:
        await switch(tenant, "org", "slow")

        async def switching() -> dict[str, Any] | None:
            cond = condition(await get_org(tenant, "org"), "Switching")
            if cond.get("status") == "True":
                seen.append(cond)
                return cond
            return None

        cond = await wait_for(switching, timeout=10, interval=0.02, what="Switching=True during the switch")
        assert "slow" in cond["message"]
        obj = await wait_org(tenant, "org", active="slow", result="Succeeded")
    finally:
        server.fault = "ok"
    assert condition(obj, "Switching")["status"] == "False"
    assert condition(obj, "Ready")["status"] == "True"


async def test_error_rate_in_status_follows_the_scheduled_probes(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.secret("db-creds", dict(env.providers.credentials["convex"]))
    await tenant.connection("db", "convex", healthCheck={
        "intervalSeconds": 10, "timeoutSeconds": 5, "window": 4, "errorRateThreshold": 0.5})
    await tenant.wait_ready("db", "True")

    async def health(state: str) -> dict[str, Any] | None:
        found = ((await tenant.get("db")) or {}).get("status", {}).get("health") or {}
        return found if found.get("status") == state else None

    await wait_for(lambda: health("online"), timeout=20, what="db online")
    server = env.providers["convex"]
    server.fault = "500"
    try:
        await _probe_now(tenant, "db", "fail")
        await wait_for(lambda: health("offline"), timeout=20, what="db offline")
    finally:
        server.fault = "ok"
    await _probe_now(tenant, "db", "recover")
    await wait_for(lambda: health("online"), timeout=20, what="db online again")
    metrics = env.services.metrics

    def metric() -> float | None:
        return metrics.registry.get_sample_value(
            "oneie_connection_error_rate", {"namespace": tenant.ns, "connection": "db", "provider": "convex"})

    recovered = metric()
    assert recovered is not None and recovered > 0
    # The next scheduled probes (every 10 s) lower the error rate without a change of state.
    async def lowered() -> bool:
        now = metric()
        return now is not None and now < recovered

    await wait_for(lowered, timeout=25, what="error rate lowered by a scheduled probe")

    async def agree() -> bool:
        found = ((await tenant.get("db")) or {}).get("status", {}).get("health") or {}
        return found.get("errorRate") == round(metric() or 0.0, 3)

    await wait_for(agree, timeout=10, what="status.health.errorRate == oneie_connection_error_rate")


async def test_switch_that_failed_for_a_transient_reason_completes_by_itself(tenant: Tenant) -> None:
    env = tenant.env
    await _on_good(tenant)
    await tenant.secret("next-creds", dict(env.providers.credentials["supabase"]))
    await tenant.connection("next", "supabase", healthCheck={
        "intervalSeconds": 10, "timeoutSeconds": 5, "errorRateThreshold": 0.9})
    await tenant.wait_ready("next", "True")
    server = env.providers["supabase"]
    server.fault = "500"  # the provider's outage, during the switch
    try:
        await switch(tenant, "org", "next")
        obj = await wait_org(tenant, "org", result="RolledBack", to="next")
        assert obj["status"]["activeConnection"] == "good"
        assert "retried by itself once next's health is online" in obj["status"]["lastSwitch"]["message"]
    finally:
        server.fault = "ok"  # the provider recovers; nobody touches the organization
    obj = await wait_org(tenant, "org", active="next", result="Succeeded", to="next", timeout=60)
    assert obj["status"]["lastSwitch"]["retries"] >= 1
    assert (await binding(tenant, "org"))["connection"] == "next"


async def test_switch_refused_for_a_permanent_reason_waits_for_a_change(tenant: Tenant) -> None:
    env = tenant.env
    await _on_good(tenant)
    # Its probes do not test the key (credentialCheckEvery 1000): a probe that found the key
    # revoked and then accepted again would change the target's Ready, a change that rightly
    # retries the switch; this test is about the switch's own verdict alone.
    await tenant.secret("revoked-creds", dict(env.providers.credentials["supabase"]))
    await tenant.connection("revoked", "supabase", healthCheck={"credentialCheckEvery": 1000})
    await tenant.wait_ready("revoked", "True")
    server = env.providers["supabase"]
    accepted = dict(server.credentials)
    server.credentials["serviceRoleKey"] = "sb_secret_" + "Q" * 32  # the provider revoked our key
    try:
        await switch(tenant, "org", "revoked")
        obj = await wait_org(tenant, "org", result="RolledBack", to="revoked")
        assert obj["status"]["lastSwitch"]["reason"] == "CredentialsRejected"
        assert "waits for a change" in obj["status"]["lastSwitch"]["message"]
    finally:
        server.credentials.update(accepted)
    finished = obj["status"]["lastSwitch"]["finishedAt"]
    # Longer than the first automatic back-off (5 s) plus a probe: a transient failure would
    # have been retried by now; a permanent one is not.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        last = ((await get_org(tenant, "org")) or {}).get("status", {}).get("lastSwitch") or {}
        assert last.get("finishedAt") == finished, f"retried without a change: {last}"


async def test_a_connection_being_deleted_cannot_become_a_switch_target(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.good("held", "notion")
    await apply_org(tenant, "user", "held")
    await wait_org(tenant, "user", active="held", result="Succeeded")
    await env.api.delete(*BC, tenant.ns, "held")
    await tenant.wait_event("held", "DeletionBlocked")
    held = await tenant.get("held")
    assert held is not None and held["metadata"].get("deletionTimestamp")

    await _on_good(tenant)
    await switch(tenant, "org", "held")
    obj = await wait_org(tenant, "org", result="RolledBack", to="held")
    assert obj["status"]["activeConnection"] == "good"
    assert obj["status"]["lastSwitch"]["reason"] == "ConnectionDeleting"
    assert condition(obj, "Stalled")["status"] == "True"
    # The organization that already uses it keeps it until it moves away.
    user = await get_org(tenant, "user")
    assert user is not None and user["status"]["activeConnection"] == "held"


async def test_binding_restored_after_the_operators_interrupted_switch_says_so(tenant: Tenant) -> None:
    env = tenant.env
    await _on_good(tenant)
    await tenant.good("other", "supabase")
    await switch(tenant, "org", "nowhere")
    await wait_org(tenant, "org", result="RolledBack", to="nowhere")
    # What an operator killed right after activating a switch to "other" leaves behind: the
    # binding, written exactly as the operator writes it, serving "other" while status says "good".
    org = await get_org(tenant, "org")
    assert org is not None
    obj = OrgObject(namespace=tenant.ns, name="org", uid=org["metadata"]["uid"],
                    generation=org["metadata"]["generation"], spec=org["spec"], status=org["status"])
    deps = env.services.org_deps()
    target, _ = await resolve(obj, "other", deps, require_ready=True)
    await write_binding(obj, target, deps)
    await env.api.patch(*ORG, tenant.ns, "org", {"metadata": {"annotations": {"one.ie/reconcile-trigger": "t"}}})
    event = await tenant.wait_event("org", "BindingRestored")
    assert "interrupted" in event["message"] and "deleted or edited" not in event["message"], event["message"]
    assert (await binding(tenant, "org"))["connection"] == "good"
