"""UsedByWriter against the emulator: coalesced background writes of ``status.usedBy``.

The writer under test talks to the emulator through the operator's real REST client. One test
puts a refusing wrapper in front of it for the first write (the API being away), which is the
only way to make the real API refuse on cue here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
from e2e_support import Tenant

from oneie_operator.kube.secrets import CustomObjects
from oneie_operator.reconcile.usage import UsedByWriter
from oneie_operator.testing.kubeapi import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")


class Counting:
    """The real CustomObjects, counting the read-modify-writes (and refusing the first N)."""

    def __init__(self, real: CustomObjects, refuse: int = 0) -> None:
        self.real = real
        self.refuse = refuse
        self.calls: list[dict[str, bool]] = []

    async def update_set(
        self, plural: str, namespace: str, name: str, field: str, changes: Mapping[str, bool], *, attempts: int = 5
    ) -> None:
        self.calls.append(dict(changes))
        if self.refuse:
            self.refuse -= 1
            raise ConnectionError("API away")
        await self.real.update_set(plural, namespace, name, field, changes, attempts=attempts)


async def _used_by(tenant: Tenant, name: str) -> list[str]:
    return list(((await tenant.get(name)) or {}).get("status", {}).get("usedBy") or [])


async def test_a_burst_becomes_one_write_per_connection(tenant: Tenant) -> None:
    await tenant.good("db", "supabase")
    counting = Counting(tenant.env.services.objects)
    writer = UsedByWriter(counting, delay=0.3)
    started = time.monotonic()
    for org in ("a", "b", "c", "d"):
        writer.report(tenant.ns, "db", org, True)
    writer.report(tenant.ns, "db", "b", False)  # b switched away again within the burst: the last report wins
    assert await writer.wait_idle(timeout=10)
    assert time.monotonic() - started >= 0.3, "written after the coalescing delay, not at once"
    assert await _used_by(tenant, "db") == ["a", "c", "d"]
    assert counting.calls == [{"a": True, "b": False, "c": True, "d": True}]

    writer.report(tenant.ns, "db", "a", False)
    writer.report(tenant.ns, "db", "c", True)  # already in: only a goes
    assert await writer.wait_idle(timeout=10)
    assert await _used_by(tenant, "db") == ["c", "d"]
    writer.report(tenant.ns, "gone", "a", True)  # a connection that does not exist: nothing to write
    assert await writer.wait_idle(timeout=10)
    await writer.aclose()


async def test_a_refused_write_is_kept_and_written_later(tenant: Tenant) -> None:
    await tenant.good("db", "notion")
    counting = Counting(tenant.env.services.objects, refuse=1)
    writer = UsedByWriter(counting, delay=0.2)
    writer.report(tenant.ns, "db", "acme", True)

    async def refused_once() -> bool:
        return len(counting.calls) >= 1
    await wait_for(refused_once, timeout=10, what="the first (refused) write")
    assert writer.pending == 1 or await _used_by(tenant, "db") == ["acme"]
    writer.report(tenant.ns, "db", "beta", True)  # a newer report joins the retry
    assert await writer.wait_idle(timeout=10)
    assert await _used_by(tenant, "db") == ["acme", "beta"]
    assert counting.calls[-1] == {"acme": True, "beta": True}
    await writer.aclose()


async def test_the_operator_keeps_used_by_after_switches(tenant: Tenant) -> None:
    """Through the operator: the connection an organization leaves loses it, the new one gains it."""
    from org_support import apply_org, switch, wait_org, wait_used_by

    await tenant.good("one", "convex")
    await tenant.good("two", "supabase")
    await apply_org(tenant, "org", "one")
    await wait_org(tenant, "org", active="one")
    await wait_used_by(tenant, "one", "org", True)
    await switch(tenant, "org", "two")
    await wait_org(tenant, "org", active="two", to="two")
    await wait_used_by(tenant, "two", "org", True)
    await wait_used_by(tenant, "one", "org", False)
    await tenant.env.api.delete("one.ie/v1alpha1", "Organization", tenant.ns, "org")
    await wait_used_by(tenant, "two", "org", False)
