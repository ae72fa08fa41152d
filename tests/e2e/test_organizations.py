"""Organizations end to end: timed switch, explicit and automatic rollback, binding, isolation."""

from __future__ import annotations

import asyncio
import time

import pytest
from e2e_support import Tenant
from org_support import apply_org, assert_consistent, binding, get_org, switch, wait_org, wait_used_by
from prometheus_client import generate_latest

from oneie_operator.testing.kubeapi import condition, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

STEPS = ["resolve", "test", "activate", "healthGate"]


async def test_switch_reports_every_step(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.good("main", "convex")
    await tenant.good("next", "supabase")
    await apply_org(tenant, "acme", "main")
    first = await wait_org(tenant, "acme", active="main", result="Succeeded")
    assert first["status"]["provider"] == "convex"
    data = await binding(tenant, "acme")
    assert data["type"] == "convex" and data["deployKey"] == env.providers.credentials["convex"]["deployKey"]

    await switch(tenant, "acme", "next")
    obj = await wait_org(tenant, "acme", active="next", result="Succeeded", to="next")
    status = obj["status"]
    assert status["provider"] == "supabase"
    assert status["previousConnection"] == "main"
    assert status["switchedAt"].endswith("Z")
    last = status["lastSwitch"]
    assert last["from"] == "main" and last["to"] == "next" and last["result"] == "Succeeded"
    assert [s["name"] for s in last["steps"]] == STEPS
    assert all(s["result"] == "Succeeded" for s in last["steps"])
    assert last["totalMilliseconds"] >= sum(s["milliseconds"] for s in last["steps"]) * 0.9
    assert status["history"][0]["to"] == "next" and status["history"][1]["to"] == "main"
    assert status["binding"]["name"] == "acme-backend"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Ready"]["status"] == "True" and conds["Stalled"]["status"] == "False"
    assert conds["Switching"]["status"] == "False" and conds["Reconciling"]["status"] == "False"
    assert status["observedGeneration"] == obj["metadata"]["generation"]

    data = await binding(tenant, "acme")
    assert data["type"] == "supabase" and data["url"] == env.providers.settings("supabase")["url"]
    assert data["serviceRoleKey"] == env.providers.credentials["supabase"]["serviceRoleKey"]
    assert "deployKey" not in data
    await assert_consistent(tenant, "acme")
    await wait_used_by(tenant, "main", "acme", False)

    event = await tenant.env.api.events(tenant.ns, "acme")
    switched = [e for e in event if e["reason"] == "ProviderSwitched" and "to next" in e["message"]]
    assert switched and "from main" in switched[0]["message"] and "healthGate" in switched[0]["message"]
    metrics = generate_latest(env.services.metrics.registry).decode()
    assert 'oneie_switches_total{result="Succeeded"}' in metrics
    assert 'oneie_switch_step_duration_seconds_count{step="healthGate"}' in metrics


async def test_explicit_rollback_uses_previous_connection(tenant: Tenant) -> None:
    env = tenant.env
    await tenant.good("a", "notion")
    await tenant.good("b", "wordpress")
    await apply_org(tenant, "org", "a")
    await wait_org(tenant, "org", active="a")
    await switch(tenant, "org", "b")
    obj = await wait_org(tenant, "org", active="b", result="Succeeded", to="b")

    await switch(tenant, "org", obj["status"]["previousConnection"], {"one.ie/rollback": str(time.time())})
    back = await wait_org(tenant, "org", active="a", result="Succeeded", to="a")
    assert back["status"]["previousConnection"] == "b"
    assert back["status"]["lastSwitch"]["totalMilliseconds"] < 10_000
    # a's encrypted credentials are the ones that served the tenant before: no test.
    steps = {s["name"]: s["result"] for s in back["status"]["lastSwitch"]["steps"]}
    assert steps == {"resolve": "Succeeded", "test": "Skipped", "activate": "Succeeded", "healthGate": "Succeeded"}
    assert back["status"]["activeCredentialsVersion"] == (await tenant.get("a"))["status"]["credentials"][
        "resourceVersion"]
    rolled = await tenant.wait_event("org", "ProviderRolledBack")
    assert "test skipped, activate" in rolled["message"], rolled["message"]
    assert 'oneie_rollbacks_total{kind="explicit"}' in generate_latest(env.services.metrics.registry).decode()
    await assert_consistent(tenant, "org")

    # Once b's credentials have changed since it served the tenant, a rollback to b tests them again.
    await switch(tenant, "org", "b")
    await wait_org(tenant, "org", active="b", result="Succeeded", to="b")
    await switch(tenant, "org", "a")
    await wait_org(tenant, "org", active="a", result="Succeeded", to="a")
    server = env.providers["wordpress"]
    old = dict(server.credentials)
    rotated = {**old, "applicationPassword": "abcd efgh ijkl mnop qrst uvwx"}
    server.credentials.update(rotated)
    try:
        before = (await tenant.get("b"))["status"]["credentials"]["resourceVersion"]
        await tenant.secret("b-creds", rotated)

        async def reverified() -> bool:
            status = ((await tenant.get("b")) or {}).get("status") or {}
            return (status.get("credentials") or {}).get("resourceVersion") not in (None, before) and \
                condition(await tenant.get("b"), "Ready").get("status") == "True"
        await wait_for(reverified, timeout=20, what="b's rotated credentials verified and stored")
        await switch(tenant, "org", "b", {"one.ie/rollback": str(time.time())})
        again = await wait_org(tenant, "org", active="b", result="Succeeded", to="b")
        assert all(s["result"] == "Succeeded" for s in again["status"]["lastSwitch"]["steps"])
        assert again["status"]["lastRollback"] == again["metadata"]["annotations"]["one.ie/rollback"]
    finally:
        server.credentials.clear()
        server.credentials.update(old)


async def _auto_rollback(tenant: Tenant, org: str, target: str, reason: str, step: str) -> dict:
    obj = await wait_org(tenant, org, result="RolledBack", to=target)
    status = obj["status"]
    assert status["activeConnection"] == "good"
    assert status["lastSwitch"]["reason"] == reason, status["lastSwitch"]
    failed = [s for s in status["lastSwitch"]["steps"] if s["result"] == "Failed"]
    assert [s["name"] for s in failed] == [step]
    assert condition(obj, "Stalled")["status"] == "True" and condition(obj, "Ready")["status"] == "False"
    assert "good stays active" in condition(obj, "Ready")["message"]
    event = await tenant.wait_event(org, "SwitchRolledBack")
    assert event["type"] == "Warning" and target in event["message"]
    await assert_consistent(tenant, org)
    assert (await binding(tenant, org))["connection"] == "good"
    return obj


async def _org_on_good(tenant: Tenant, **policy: object) -> None:
    await tenant.good("good", "convex")
    await apply_org(tenant, "org", "good", **policy)
    await wait_org(tenant, "org", active="good", result="Succeeded")


async def test_missing_target_rolls_back(tenant: Tenant) -> None:
    await _org_on_good(tenant)
    await switch(tenant, "org", "nowhere")
    obj = await _auto_rollback(tenant, "org", "nowhere", "ConnectionNotFound", "resolve")
    assert "spec.backend.connectionRef.name" in obj["status"]["lastSwitch"]["message"]


async def test_target_in_another_namespace_is_not_found(tenant: Tenant) -> None:
    other = Tenant(tenant.env, tenant.ns + "-x", tenant.plaintexts)
    await other.good("elsewhere", "notion")
    await _org_on_good(tenant)
    await switch(tenant, "org", "elsewhere")
    await _auto_rollback(tenant, "org", "elsewhere", "ConnectionNotFound", "resolve")


async def test_target_not_ready_rolls_back_then_retries_when_it_becomes_ready(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant)
    await tenant.secret("later-creds", {"token": "ntn_" + "W" * 46})
    await tenant.connection("later", "notion")
    await tenant.wait_ready("later", "False", "CredentialsRejected")
    await switch(tenant, "org", "later")
    obj = await _auto_rollback(tenant, "org", "later", "ConnectionNotReady", "resolve")
    generation = obj["metadata"]["generation"]
    # No retry loop: the failed attempt stays the last one while nothing changes.
    await asyncio.sleep(0)  # nothing to wait for; the next check is immediate
    assert (await get_org(tenant, "org"))["status"]["lastSwitch"]["finishedAt"] == \
        obj["status"]["lastSwitch"]["finishedAt"]
    # Fixing the target's credentials is a change: the switch is retried by itself.
    await tenant.secret("later-creds", dict(env.providers.credentials["notion"]))
    done = await wait_org(tenant, "org", active="later", result="Succeeded", to="later")
    assert done["metadata"]["generation"] == generation
    await assert_consistent(tenant, "org")


async def test_unreachable_provider_rolls_back(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant)
    await tenant.good("flaky", "wordpress")
    env.providers["wordpress"].fault = "reset"
    try:
        await switch(tenant, "org", "flaky")
        await _auto_rollback(tenant, "org", "flaky", "ProviderUnreachable", "test")
    finally:
        env.providers["wordpress"].fault = "ok"


async def test_revoked_credentials_roll_back(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant)
    await tenant.good("revoked", "supabase")
    server = env.providers["supabase"]
    accepted = dict(server.credentials)
    server.credentials["serviceRoleKey"] = "sb_secret_" + "Q" * 32  # the provider revoked our key
    try:
        await switch(tenant, "org", "revoked")
        await _auto_rollback(tenant, "org", "revoked", "CredentialsRejected", "test")
    finally:
        server.credentials.update(accepted)


async def test_slow_provider_past_the_deadline_rolls_back(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant, timeoutSeconds=1)
    await tenant.good("slow", "notion")
    env.providers["notion"].fault = "slow:0.7"
    try:
        await switch(tenant, "org", "slow")
        await _auto_rollback(tenant, "org", "slow", "SwitchDeadlineExceeded", "healthGate")
    finally:
        env.providers["notion"].fault = "ok"


async def test_a_switch_echoes_are_indexed_not_processed_again(tenant: Tenant) -> None:
    """The watch events that only bring back the operator's own writes of a switch (Kopf's status
    patch of the Organization, the binding Secret) skip Kopf's processing (kopfpatches/echoes.py),
    the switch itself ran on the lean path (kopfpatches/changing.py: nothing in progress), and the
    organization still ends consistent, its index following the new active connection. Kopf's
    status patch was sent by the operator's REST client (kopfpatches/mergepatch.py)."""
    from oneie_operator.handlers.kopfpatches import changing, echoes, mergepatch

    await tenant.good("e1", "convex")
    await tenant.good("e2", "wordpress")
    await apply_org(tenant, "echo", "e1")
    await wait_org(tenant, "echo", active="e1", result="Succeeded")
    await wait_used_by(tenant, "e1", "echo", True)
    orgs, secrets = echoes.skipped_echoes("organizations"), echoes.skipped_echoes("secrets")
    lean, by_rest = changing.lean_runs(), mergepatch.sent["rest"]
    await switch(tenant, "echo", "e2")
    await wait_org(tenant, "echo", active="e2", result="Succeeded", to="e2")
    assert changing.lean_runs() > lean, "the switch ran on the lean path"
    assert mergepatch.sent["rest"] > by_rest, "Kopf's status patch went through the operator's REST client"

    async def skipped() -> bool:
        return echoes.skipped_echoes("organizations") > orgs and echoes.skipped_echoes("secrets") > secrets

    await wait_for(skipped, timeout=10, what="the switch's echoes skipped")
    await wait_used_by(tenant, "e2", "echo", True)  # the index of what organizations use followed the echo
    await wait_used_by(tenant, "e1", "echo", False)
    await assert_consistent(tenant, "echo")


async def test_health_gate_failure_after_activation_restores_binding(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant)
    await tenant.good("sick", "supabase")
    server = env.providers["supabase"]
    server.fault, server.fault_path = "500", "/auth/v1/health"
    try:
        await switch(tenant, "org", "sick")
        obj = await _auto_rollback(tenant, "org", "sick", "ProviderServerError", "healthGate")
        steps = {s["name"]: s["result"] for s in obj["status"]["lastSwitch"]["steps"]}
        assert steps["activate"] == "Succeeded"
    finally:
        server.fault, server.fault_path = "ok", None


async def test_retry_annotation_retries_a_failed_switch(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant)
    await tenant.good("later", "wordpress")
    env.providers["wordpress"].fault = "500"
    try:
        await switch(tenant, "org", "later")
        await _auto_rollback(tenant, "org", "later", "ProviderServerError", "test")
    finally:
        env.providers["wordpress"].fault = "ok"
    await env.api.patch("one.ie/v1alpha1", "Organization", tenant.ns, "org",
                        {"metadata": {"annotations": {"one.ie/retry": "1"}}})
    await wait_org(tenant, "org", active="later", result="Succeeded", to="later")


async def test_two_rapid_changes_last_one_wins(tenant: Tenant) -> None:
    await _org_on_good(tenant)
    await tenant.good("b", "notion")
    await tenant.good("c", "supabase")
    await switch(tenant, "org", "b")
    await switch(tenant, "org", "c")
    obj = await wait_org(tenant, "org", active="c", to="c", result="Succeeded")
    assert obj["status"]["provider"] == "supabase"
    await assert_consistent(tenant, "org")


async def test_binding_deleted_or_edited_is_restored(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant)
    await env.api.delete("v1", "Secret", tenant.ns, "org-backend")
    await tenant.wait_event("org", "BindingRestored")
    await wait_for(lambda: env.api.get("v1", "Secret", tenant.ns, "org-backend"), timeout=20, what="binding back")

    import base64
    await env.api.patch("v1", "Secret", tenant.ns, "org-backend",
                        {"data": {"url": base64.b64encode(b"https://evil.example.com").decode()}})

    async def repaired() -> bool:
        return (await binding(tenant, "org"))["url"] == env.providers.settings("convex")["url"]
    await wait_for(repaired, timeout=20, what="binding repaired")
    await assert_consistent(tenant, "org")


async def test_rotated_credentials_reach_the_binding(tenant: Tenant) -> None:
    env = tenant.env
    await _org_on_good(tenant)
    server = env.providers["convex"]
    old = dict(server.credentials)
    new_key = "dev:happy-otter-123|" + "N" * 40
    server.credentials["deployKey"] = new_key
    try:
        await tenant.secret("good-creds", {"deployKey": new_key})

        async def rotated() -> bool:
            return (await binding(tenant, "org")).get("deployKey") == new_key
        await wait_for(rotated, timeout=20, what="new key in the binding")
        await tenant.wait_event("org", "BindingUpdated")
    finally:
        server.credentials.update(old)


async def test_tenants_switch_independently_when_one_provider_hangs(tenant: Tenant) -> None:
    env = tenant.env
    other = Tenant(env, tenant.ns + "-b", tenant.plaintexts)
    await tenant.good("home", "supabase")
    await tenant.good("stuck", "wordpress")
    await other.good("home", "supabase")
    await other.good("fast", "notion")
    await apply_org(tenant, "org", "home", timeoutSeconds=8)
    await apply_org(other, "org", "home")
    await wait_org(tenant, "org", active="home")
    await wait_org(other, "org", active="home")

    env.providers["wordpress"].fault = "hang"
    try:
        await switch(tenant, "org", "stuck")
        await wait_for(lambda: _switching(tenant), timeout=10, what="tenant A's switch under way")
        started = time.monotonic()
        await switch(other, "org", "fast")
        done = await wait_org(other, "org", active="fast", result="Succeeded", to="fast", timeout=10)
        took = time.monotonic() - started
        assert took < 5, f"tenant B's switch took {took:.1f}s while tenant A's provider hangs"
        assert done["status"]["lastSwitch"]["totalMilliseconds"] < 2000
        obj = await wait_org(tenant, "org", result="RolledBack", to="stuck", timeout=30)
        assert obj["status"]["activeConnection"] == "home"
    finally:
        env.providers["wordpress"].fault = "ok"


async def _switching(tenant: Tenant) -> bool:
    obj = await get_org(tenant, "org")
    return bool((obj or {}).get("status", {}).get("switching"))
