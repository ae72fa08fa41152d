"""The switch's invariant under injected failures (issue 12 item 4, DESIGN §5).

Whatever a dependency of a switch raises, at whichever call — the connection read, the
encrypted-credentials read, the credential test, the binding write, the health probe, the
rollback's reads and writes, a best-effort progress write — and whether a write was refused or
landed with its answer lost:

* the reconcile returns, or raises only a typed error (``OneieError``) or a cancellation;
* when it returns, the binding Secret serves exactly the connection status names as active,
  with that connection's credentials; a failed switch is reported as RolledBack/Failed and Stalled;
* when it raised, the next reconcile (faults gone) converges to the same invariant;
* no plaintext credential reaches status or Events.

Written against the switch's dependency interfaces (``tests/unit/switch_fakes.py``), not its
internals. Single faults are enumerated exhaustively; hypothesis draws combinations.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oneie_operator.errors import OneieError
from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.organizations import reconcile_organization

from .switch_fakes import CREDENTIALS, EXCEPTIONS, Fault, World, make_world

SCENARIOS: dict[str, dict[str, Any]] = {
    "switch": {"active": "old-db", "desired": "new-db"},
    "first switch": {"active": None, "desired": "new-db"},
    "autoRollback off": {"active": "old-db", "desired": "new-db", "policy": {"autoRollback": False}},
    "no health gate": {"active": "old-db", "desired": "new-db", "policy": {"healthGate": False}},
}


def check_invariant(world: World) -> None:
    served = world.served()
    assert served == (world.status.get("activeConnection") or None), (
        f"the binding serves {served} but status names {world.status.get('activeConnection')}"
        f" (calls: {world.faults.calls})"
    )


async def reconcile_once(world: World) -> BaseException | None:
    """One reconcile, its status applied when it returns; the (typed) exception when it raised."""
    try:
        result = await reconcile_organization(world.org(), world.deps)
    except (OneieError, asyncio.CancelledError) as exc:
        return exc
    except Exception as exc:
        pytest.fail(f"an untyped {type(exc).__name__} escaped the reconcile (calls: {world.faults.calls})")
    world.apply(result.status)
    shown = repr(result.status) + repr(result.events)
    assert not any(secret in shown for secret in CREDENTIALS.values()), "a credential reached status or an Event"
    check_invariant(world)
    last = world.status.get("lastSwitch") or {}
    if result.switch is not None and result.switch.result != "Succeeded":
        ready = conditions.get_condition(world.status.get("conditions"), "Ready") or {}
        assert ready.get("status") == "False" and ready.get("reason") == last.get("reason"), "Stalled, with the reason"
    if result.switch is not None and result.switch.result == "Succeeded":
        assert world.status.get("activeConnection") == "new-db"
    return None


async def run_with_faults(scenario: dict[str, Any], faults: list[Fault]) -> None:
    world = await make_world(**scenario)
    world.faults.plan = faults
    raised = await reconcile_once(world)
    world.faults.plan = []
    for _ in range(3):  # the faults are gone: converge (a raise leaves status as it was)
        if raised is None:
            break
        raised = await reconcile_once(world)
    assert raised is None, f"no convergence without faults: {raised!r}"
    # And the next reconcile, nothing having changed, keeps it so (no retry loop, no drift).
    assert await reconcile_once(world) is None
    last = world.status.get("lastSwitch") or {}
    assert last.get("result") in ("Succeeded", "RolledBack", "Failed"), "the switch ended"


async def count_calls(scenario: dict[str, Any]) -> int:
    world = await make_world(**scenario)
    assert await reconcile_once(world) is None
    assert world.status["activeConnection"] == "new-db"
    return len(world.faults.calls)


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(SCENARIOS))
@pytest.mark.parametrize("exception", list(EXCEPTIONS))
async def test_one_failure_at_every_call_keeps_binding_and_status_together(scenario: str, exception: str) -> None:
    calls = await count_calls(SCENARIOS[scenario])
    assert calls >= 6, "resolve reads, test, activation write, health probe and progress writes are all fault points"
    for index in range(calls):
        for after in (False, True):
            await run_with_faults(SCENARIOS[scenario], [Fault(index, exception, after)])


async def test_a_control_character_in_a_credential_after_activation_rolls_back() -> None:
    """The reported case: the health gate's HTTP layer raises a bare ValueError after activation."""
    labels = await make_world_calls()
    probe = next(i for i, label in enumerate(labels) if label.startswith("provider.probe"))
    world = await make_world(active="old-db", desired="new-db")
    world.faults.plan = [Fault(probe, "ValueError")]
    assert await reconcile_once(world) is None
    assert world.status["activeConnection"] == "old-db" and world.served() == "old-db"
    last = world.status["lastSwitch"]
    assert (last["result"], last["reason"]) == ("RolledBack", "UnexpectedError")
    assert "s3cret" not in last["message"]


async def test_a_failing_progress_write_does_not_fail_the_switch() -> None:
    labels = await make_world_calls()
    world = await make_world(active="old-db", desired="new-db")  # (after: the provider's faults are per world)
    for index, label in enumerate(labels):
        if label == "objects.patch_status":
            world.faults.plan.append(Fault(index, "write refused"))
    assert world.faults.plan, "progress is written"
    assert await reconcile_once(world) is None
    assert world.status["lastSwitch"]["result"] == "Succeeded"
    assert world.served() == "new-db"


async def make_world_calls() -> list[str]:
    world = await make_world(active="old-db", desired="new-db")
    assert await reconcile_once(world) is None
    return world.faults.calls


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    scenario=st.sampled_from(list(SCENARIOS)),
    faults=st.lists(
        st.builds(Fault, st.integers(0, 24), st.sampled_from(list(EXCEPTIONS)), st.booleans()),
        max_size=4,
        unique_by=lambda f: f.index,
    ),
)
def test_any_combination_of_failures_keeps_binding_and_status_together(scenario: str, faults: list[Fault]) -> None:
    asyncio.run(run_with_faults(SCENARIOS[scenario], faults))
