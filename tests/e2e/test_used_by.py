"""UsedByWriter against the emulator: coalesced background writes of ``status.usedBy``.

The writer under test talks to the emulator through the operator's real REST client. One test
puts a refusing wrapper in front of it for the first write (the API being away), which is the
only way to make the real API refuse on cue here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, cast

import pytest
from e2e_support import Tenant

from oneie_operator.kube.rest import KubeAPIError, KubeREST
from oneie_operator.kube.secrets import CustomObjects, SetUpdateConflict
from oneie_operator.names import GROUP, VERSION
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


async def test_writes_wait_for_a_pause_but_not_longer_than_max_delay(tenant: Tenant) -> None:
    await tenant.good("db", "convex")
    counting = Counting(tenant.env.services.objects)
    writer = UsedByWriter(counting, delay=0.3, max_delay=0.8)
    started = time.monotonic()
    first_write: float | None = None
    for i in range(25):  # a report every 0.1 s for 2.5 s: never a 0.3 s pause
        writer.report(tenant.ns, "db", f"org-{i}", True)
        await asyncio.sleep(0.1)
        if counting.calls and first_write is None:
            first_write = time.monotonic() - started
    assert first_write is not None, "max_delay bounds the wait under a steady stream of changes"
    assert 0.7 <= first_write <= 1.6, first_write
    assert await writer.wait_idle(timeout=10)
    assert await _used_by(tenant, "db") == sorted(f"org-{i}" for i in range(25))
    await writer.aclose()


async def test_a_refused_write_is_kept_and_written_later(tenant: Tenant) -> None:
    await tenant.good("db", "notion")
    counting = Counting(tenant.env.services.objects, refuse=1)
    writer = UsedByWriter(counting, delay=0.2)
    writer.report(tenant.ns, "db", "acme", True)

    async def kept() -> bool:
        return len(counting.calls) == 1 and writer.pending == 1
    await wait_for(kept, timeout=10, what="the first write refused and its change kept")
    assert await _used_by(tenant, "db") == []
    writer.report(tenant.ns, "db", "beta", True)  # a newer report joins the retry
    assert await writer.wait_idle(timeout=10)
    assert await _used_by(tenant, "db") == ["acme", "beta"]
    assert counting.calls[-1] == {"acme": True, "beta": True}
    await writer.aclose()


class Conflicting:
    """The operator's real REST client, answering its first ``conflicts`` status writes with the
    API server's 409 Conflict (another writer got there first), as a busy API server would."""

    def __init__(self, real: KubeREST, conflicts: int) -> None:
        self.real, self.conflicts, self.refused = real, conflicts, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def patch_namespaced_custom_object_status(self, *args: Any) -> dict[str, Any]:
        if self.refused < self.conflicts:
            self.refused += 1
            raise KubeAPIError(409, "Conflict", "the object has been modified; please apply your changes"
                               " to the latest version and try again")
        return await self.real.patch_namespaced_custom_object_status(*args)


async def test_conflicts_a_dozen_times_then_the_exact_used_by_is_written(tenant: Tenant) -> None:
    """update_set used to give up silently after 5 conflicts (the change lost); now it raises
    SetUpdateConflict, the writer keeps the change and retries with back-off until it lands."""
    await tenant.good("busy", "convex")
    api = Conflicting(tenant.env.services.rest, conflicts=12)
    objects = CustomObjects(cast(KubeREST, api), GROUP, VERSION)
    with pytest.raises(SetUpdateConflict, match=r"status\.usedBy of backendconnections .*/busy not written"):
        await objects.update_set("backendconnections", tenant.ns, "busy", "usedBy", {"x": True}, attempts=2)
    writer = UsedByWriter(objects, delay=0.05, max_backoff=0.4)
    for org in ("acme", "beta", "gamma"):
        writer.report(tenant.ns, "busy", org, True)

    async def refused_twice() -> bool:
        return writer.refused_rounds >= 2
    await wait_for(refused_twice, timeout=10, what="two refused rounds")
    writer.report(tenant.ns, "busy", "beta", False)  # a newer report while the write is refused: it wins
    assert await writer.wait_idle(timeout=20), "the change was never written"
    assert api.refused == 12
    assert await _used_by(tenant, "busy") == ["acme", "gamma"]
    assert writer.refused_rounds == 0 and writer.pending == 0
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


async def test_after_a_restart_what_the_watch_shows_right_is_not_even_read(tenant: Tenant) -> None:
    """Issue 14 item 6: every organization reports what it uses when the operator resumes; a
    connection whose ``usedBy`` (as the watch delivered it) already says so costs no request.
    Once this process wrote a connection's ``usedBy``, the watch may lag behind: read again."""
    await tenant.good("dbw", "supabase")
    await tenant.env.services.objects.update_set("backendconnections", tenant.ns, "dbw", "usedBy", {"a": True})
    counting = Counting(tenant.env.services.objects)

    def watched(namespace: str, name: str) -> list[str] | None:
        return ["a"] if (namespace, name) == (tenant.ns, "dbw") else None
    writer = UsedByWriter(counting, delay=0.05, watched=watched)
    writer.report(tenant.ns, "dbw", "a", True)  # as an earlier process wrote it
    writer.report(tenant.ns, "dbw", "z", False)  # not there anyway
    assert await writer.wait_idle(timeout=10)
    assert counting.calls == [], "a usedBy the watch shows right was read or written again"

    writer.report(tenant.ns, "dbw", "b", True)  # a change: read-modify-write
    assert await writer.wait_idle(timeout=10)
    assert await _used_by(tenant, "dbw") == ["a", "b"]
    writer.report(tenant.ns, "dbw", "a", True)  # the (stale) watch agrees, but this process wrote it
    assert await writer.wait_idle(timeout=10)
    assert counting.calls == [{"b": True}, {"a": True}]
    await writer.aclose()
