"""The operator never replaces a Secret it does not own (issue 12, item 3).

An Organization's binding Secret (``<org>-backend``) and a connection's encrypted copy
(``oneie-<conn>-credentials``) have fixed names. When a Secret of that name already exists and
has no owner reference to the object the operator would write it for, it belongs to someone else:
the operator reports ``SecretNameTaken`` (Stalled, a Warning Event naming the Secret) and leaves
that Secret exactly as it was: data, labels, owner references, resourceVersion, and it survives
the deletion of the Organization or connection (no owner reference, no garbage collection).

The real operator on the emulator (whose garbage collector deletes dependents by owner uid).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from e2e_support import Tenant
from org_support import ORG, apply_org, get_org, wait_org

from oneie_operator.testing.kubeapi import condition, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

FOREIGN = {"password": "the-app-team-keeps-this-secret"}


async def _foreign(tenant: Tenant, name: str) -> dict[str, Any]:
    """Someone else's Secret (an app's own, no opt-in label, owned by nothing of ours)."""
    tenant.plaintexts.update(FOREIGN.values())
    return await tenant.env.api.create({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": tenant.ns, "labels": {"app": "theirs"}},
        "stringData": dict(FOREIGN),
    })


async def _assert_untouched(tenant: Tenant, before: dict[str, Any]) -> None:
    now = await tenant.env.api.get("v1", "Secret", tenant.ns, before["metadata"]["name"])
    assert now is not None, "someone else's Secret was deleted"
    assert now["data"] == before["data"]
    assert now["metadata"].get("labels") == before["metadata"].get("labels")
    assert now["metadata"].get("annotations") == before["metadata"].get("annotations")
    assert not now["metadata"].get("ownerReferences"), now["metadata"].get("ownerReferences")
    assert now["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


async def _settled(read: Any, what: str, seconds: float = 3.0) -> dict[str, Any]:
    """The object's resourceVersion stays the same for ``seconds`` (no write loop)."""
    last = await read()
    stable_since = asyncio.get_running_loop().time()

    async def quiet() -> bool:
        nonlocal last, stable_since
        now = await read()
        if now["metadata"]["resourceVersion"] != last["metadata"]["resourceVersion"]:
            last, stable_since = now, asyncio.get_running_loop().time()
        return asyncio.get_running_loop().time() - stable_since >= seconds

    await wait_for(quiet, timeout=seconds * 5, what=f"{what} stops changing")
    return dict(last)


async def test_a_taken_binding_name_stalls_the_organization_and_the_secret_stays_theirs(tenant: Tenant) -> None:
    env = tenant.env
    theirs = await _foreign(tenant, "org-backend")
    await tenant.good("conn", "convex")
    await apply_org(tenant, "org", "conn")

    obj = await wait_org(tenant, "org", result="Failed")
    ready, stalled = condition(obj, "Ready"), condition(obj, "Stalled")
    assert ready["status"] == "False" and ready["reason"] == "SecretNameTaken", ready
    assert stalled["status"] == "True" and stalled["reason"] == "SecretNameTaken", stalled
    assert "Secret 'org-backend'" in ready["message"] and "rename or remove" in ready["message"], ready
    assert not obj["status"].get("activeConnection"), "status must not claim a backend it could not bind"
    # The switch's own Warning (its reason is the switch's outcome; the condition has the cause).
    event = await tenant.wait_event("org", "SwitchFailed")
    assert event["type"] == "Warning" and "Secret 'org-backend'" in event["message"], event

    # A clear end, not a loop: the organization stops changing and its Secret stays as it was.
    await _settled(lambda: get_org(tenant, "org"), "the organization")
    await _assert_untouched(tenant, theirs)
    assert sum(e.get("reason") == "SwitchFailed" for e in await tenant.events("org")) == 1

    # Deleting the organization does not take their Secret with it.
    await env.api.delete(*ORG, tenant.ns, "org")

    async def org_gone() -> bool:
        return await get_org(tenant, "org") is None
    await wait_for(org_gone, timeout=20, what="organization deleted")
    await _assert_untouched(tenant, theirs)


async def test_the_organization_binds_once_the_name_is_free(tenant: Tenant) -> None:
    env = tenant.env
    await _foreign(tenant, "org-backend")
    await tenant.good("conn", "convex")
    await apply_org(tenant, "org", "conn")
    await wait_org(tenant, "org", result="Failed")
    await env.api.delete("v1", "Secret", tenant.ns, "org-backend")
    await env.api.patch(*ORG, tenant.ns, "org", {"metadata": {"annotations": {"one.ie/retry": "1"}}})
    obj = await wait_org(tenant, "org", active="conn", result="Succeeded")
    secret = await env.api.get("v1", "Secret", tenant.ns, "org-backend")
    assert secret is not None
    assert [ref["uid"] for ref in secret["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]


async def test_a_taken_encrypted_copy_name_stalls_the_connection_and_the_secret_stays_theirs(
    tenant: Tenant,
) -> None:
    env = tenant.env
    theirs = await _foreign(tenant, "oneie-conn-credentials")
    await tenant.secret("conn-creds", dict(env.providers.credentials["convex"]))
    await tenant.connection("conn", "convex")

    obj = await tenant.wait_ready("conn", "False", "SecretNameTaken")
    assert condition(obj, "Stalled")["status"] == "True"
    message = condition(obj, "Ready")["message"]
    assert "Secret 'oneie-conn-credentials'" in message and "rename or remove" in message, message
    assert "credentials" not in obj.get("status", {}), "status must not name a copy that was not written"
    event = await tenant.wait_event("conn", "SecretNameTaken")
    assert event["type"] == "Warning" and "oneie-conn-credentials" in event["message"]
    await _settled(lambda: tenant.get("conn"), "the connection")
    await _assert_untouched(tenant, theirs)

    await env.api.delete(*("one.ie/v1alpha1", "BackendConnection"), tenant.ns, "conn")

    async def conn_gone() -> bool:
        return await tenant.get("conn") is None
    await wait_for(conn_gone, timeout=20, what="connection deleted")
    await _assert_untouched(tenant, theirs)


async def test_the_connection_stores_its_copy_once_the_name_is_free(tenant: Tenant) -> None:
    env = tenant.env
    await _foreign(tenant, "oneie-conn-credentials")
    await tenant.secret("conn-creds", dict(env.providers.credentials["convex"]))
    await tenant.connection("conn", "convex")
    await tenant.wait_ready("conn", "False", "SecretNameTaken")
    await env.api.delete("v1", "Secret", tenant.ns, "oneie-conn-credentials")
    # Their Secret is not watched (it has no opt-in label): a change to the connection resumes it.
    await env.api.patch(*("one.ie/v1alpha1", "BackendConnection"), tenant.ns, "conn",
                        {"metadata": {"annotations": {"one.ie/reconcile-trigger": "name-freed"}}})
    obj = await tenant.wait_ready("conn", "True")
    owned = await tenant.owned("conn")
    assert owned is not None
    assert [ref["uid"] for ref in owned["metadata"]["ownerReferences"]] == [obj["metadata"]["uid"]]


async def test_a_binding_name_taken_while_active_is_reported_not_replaced(tenant: Tenant) -> None:
    """The binding of an active organization deleted and its name taken while the operator was
    away: on the next reconcile the organization is Stalled (SecretNameTaken, one Warning) and
    their Secret stays as it is."""
    from oneie_operator.demo.environment import env_start_operator, env_stop_operator

    env = tenant.env
    await tenant.good("conn", "convex")
    await apply_org(tenant, "org", "conn")
    await wait_org(tenant, "org", active="conn", result="Succeeded")
    await env_stop_operator(env)
    try:
        await env.api.delete("v1", "Secret", tenant.ns, "org-backend")
        theirs = await _foreign(tenant, "org-backend")
    finally:
        await env_start_operator(env)

    async def stalled() -> dict[str, Any] | None:
        obj = await get_org(tenant, "org")
        return obj if condition(obj, "Stalled").get("reason") == "SecretNameTaken" else None
    obj = await wait_for(stalled, timeout=20, what="org Stalled with SecretNameTaken")
    assert condition(obj, "Ready")["status"] == "False"
    assert "Secret 'org-backend'" in condition(obj, "Ready")["message"]
    event = await tenant.wait_event("org", "SecretNameTaken")
    assert event["type"] == "Warning" and "rename or remove" in event["message"]
    await _settled(lambda: get_org(tenant, "org"), "the organization")
    await _assert_untouched(tenant, theirs)
    assert sum(e.get("reason") == "SecretNameTaken" for e in await tenant.events("org")) == 1
