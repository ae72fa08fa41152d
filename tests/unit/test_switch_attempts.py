"""One change of the spec, one switch: a failed switch is not run again (nor a second failure
recorded, Evented and counted) when the only change since is its target turning not Ready, as a
connection's own probe reports soon after a rejected credential test; the target's return to
Ready is a change, and the switch runs again then.

On the in-memory fakes of ``switch_fakes`` driven by the real reconcile (a CI run once saw the
second, less informative failure overwrite the first: tests/e2e/test_organizations.py
``test_revoked_credentials_roll_back``)."""

from __future__ import annotations

from typing import Any

import pytest

from oneie_operator.errors import CredentialsRejectedError
from oneie_operator.reconcile.organizations import only_lost_readiness, reconcile_organization

from .switch_fakes import EXCEPTIONS, Fault, World, make_world

NEW = ("backendconnections", "new-db")


def _ready(world: World, status: str, reason: str) -> None:
    conn = world.objects.objects[NEW]
    conn["status"] = {**conn["status"], "conditions": [
        {"type": "Ready", "status": status, "reason": reason, "message": reason}]}


async def _index_of_test_call() -> int:
    dry = await make_world(active="old-db", desired="new-db")
    await reconcile_organization(dry.org(), dry.deps)
    return next(i for i, c in enumerate(dry.faults.calls) if c.startswith("provider.test"))


async def test_a_target_turning_not_ready_after_a_failed_switch_is_no_second_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(EXCEPTIONS, "rejected", lambda: CredentialsRejectedError("Fake rejected the credentials"))
    index = await _index_of_test_call()
    world = await make_world(active="old-db", desired="new-db")
    world.faults.plan = [Fault(index, "rejected")]
    failed = await reconcile_organization(world.org(), world.deps)
    assert failed.switch is not None and (failed.switch.result, failed.switch.reason) == (
        "RolledBack", "CredentialsRejected")
    world.apply(failed.status)
    world.faults.plan = []

    # The connection's probe says the same: Ready=False CredentialsRejected.
    _ready(world, "False", "CredentialsRejected")
    world.faults.calls.clear()
    after = await reconcile_organization(world.org(), world.deps)
    assert after.switch is None, "a second switch (and a second failure Event and metric) for one change"
    assert not [c for c in world.faults.calls if c.startswith("provider.")], world.faults.calls
    world.apply(after.status)
    last = world.status["lastSwitch"]
    assert (last["reason"], last["result"]) == ("CredentialsRejected", "RolledBack")
    assert world.status["activeConnection"] == "old-db" and world.served() == "old-db"

    steady = await reconcile_organization(world.org(), world.deps)  # nothing changed since
    assert steady.switch is None and steady.status == {} and steady.unchanged

    # The provider accepts the credentials again, the probe says so: the switch runs again.
    _ready(world, "True", "Verified")
    again = await reconcile_organization(world.org(), world.deps)
    assert again.switch is not None and again.switch.result == "Succeeded", again.switch
    world.apply(again.status)
    assert world.status["activeConnection"] == "new-db" and world.served() == "new-db"


def _key(*ready: str, generation: str = "1", source: str = "7") -> str:
    return "|".join(["3", "new-db", "", "uid-new", generation, source, *ready])


def _conn(status: str) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": "Ready", "status": status, "reason": "X"}]}}


def test_only_a_loss_of_readiness_is_no_reason_to_retry() -> None:
    was = _key("True", "Verified")
    assert only_lost_readiness(was, _key("False", "CredentialsRejected"), _conn("False"))
    assert only_lost_readiness(_key("False", "Pending"), _key("False", "CredentialsRejected"), _conn("False"))
    assert not only_lost_readiness(_key("False", "Pending"), was, _conn("True")), "Ready again: retry"
    assert not only_lost_readiness(was, _key("False", "Rejected", generation="2"), _conn("False")), "a new spec"
    assert not only_lost_readiness(was, _key("False", "Rejected", source="8"), _conn("False")), "a new Secret"
    assert not only_lost_readiness(was, was, _conn("True")), "the same key: the older rule decides"
    assert not only_lost_readiness("3|(platform default)|", "4|(platform default)|", None)
