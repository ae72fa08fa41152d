"""Helpers for Organization end-to-end tests."""

from __future__ import annotations

import base64
from typing import Any

from e2e_support import Tenant

from oneie_operator.testing.kubeapi import condition, wait_for

ORG = ("one.ie/v1alpha1", "Organization")


async def apply_org(tenant: Tenant, name: str, connection: str | None, **policy: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if connection is not None:
        spec["backend"] = {"connectionRef": {"name": connection}}
    if policy:
        spec["switchPolicy"] = policy
    return await tenant.env.api.apply({"apiVersion": ORG[0], "kind": ORG[1],
                                       "metadata": {"name": name, "namespace": tenant.ns}, "spec": spec})


async def switch(tenant: Tenant, name: str, connection: str, annotations: dict[str, str] | None = None) -> None:
    patch: dict[str, Any] = {"spec": {"backend": {"connectionRef": {"name": connection}}}}
    if annotations:
        patch["metadata"] = {"annotations": annotations}
    await tenant.env.api.patch(*ORG, tenant.ns, name, patch)


async def get_org(tenant: Tenant, name: str) -> dict[str, Any] | None:
    return await tenant.env.api.get(*ORG, tenant.ns, name)


async def wait_org(tenant: Tenant, name: str, *, active: str | None = None, result: str | None = None,
                   to: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the organization is reconciled at its generation with the given outcome."""
    async def probe() -> dict[str, Any] | None:
        obj = await get_org(tenant, name)
        if obj is None:
            return None
        status = obj.get("status") or {}
        if status.get("observedGeneration") != obj["metadata"]["generation"] or status.get("switching"):
            return None
        last = status.get("lastSwitch") or {}
        if active is not None and status.get("activeConnection") != active:
            return None
        if result is not None and (last.get("result") != result or (to is not None and last.get("to") != to)):
            return None
        return obj
    try:
        return await wait_for(probe, timeout=timeout, what=f"org {name} active={active} result={result}")
    except TimeoutError as exc:
        obj = await get_org(tenant, name)
        raise AssertionError(f"{exc}; status: {(obj or {}).get('status')}") from None


async def binding(tenant: Tenant, org: str) -> dict[str, str]:
    secret = await tenant.env.api.get("v1", "Secret", tenant.ns, f"{org}-backend")
    assert secret is not None, "binding Secret missing"
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


async def assert_consistent(tenant: Tenant, org: str) -> dict[str, Any]:
    """Binding, status and the connections' usedBy agree."""
    obj = await get_org(tenant, org)
    assert obj is not None
    status = obj["status"]
    active = status["activeConnection"]
    data = await binding(tenant, org)
    assert data["connection"] == active, (data["connection"], active)
    assert data["provider"] == "one.ie" and data["type"] == status["provider"]
    assert condition(obj, "Switching").get("status") != "True"
    if await tenant.get(active) is not None:
        await wait_used_by(tenant, active, org, True)
    return obj


async def wait_used_by(tenant: Tenant, connection: str, org: str, using: bool, timeout: float = 10) -> None:
    """``usedBy`` is written in the background (coalesced, once switching pauses for 0.5 s)."""
    async def settled() -> bool:
        conn = await tenant.get(connection) or {}
        return (org in ((conn.get("status") or {}).get("usedBy") or [])) == using
    await wait_for(settled, timeout=timeout, what=f"{org} {'in' if using else 'out of'} {connection}'s usedBy")
