"""The switch state machine on in-memory fakes of its dependencies: every branch, every failure.

The fakes are the machine's dependencies (binding, resolver, provider test, health, status,
clock), never the machine; the assertions are on the outcome: what the fake binding serves
against what the outcome says serves, the result, and the steps with the time of their work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from oneie_operator.errors import (
    APIServerUnavailableError,
    APIWriteRefusedError,
    BindingIndeterminateError,
    CredentialsRejectedError,
    DependencyTimeoutError,
    OneieError,
    ProviderUnreachableError,
    UnexpectedError,
)
from oneie_operator.kube.rest import KubeAPIError
from oneie_operator.platform_default import PLATFORM_DEFAULT
from oneie_operator.reconcile.switch_machine import STEPS, SwitchDeps, SwitchOutcome, SwitchPlan, run_switch


@dataclass(frozen=True)
class Backend:
    name: str
    credentials_version: str = "1"


@dataclass
class FakeClock:
    now: float = 100.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class World:
    """The fakes: each call takes ``cost[call]`` seconds of the fake clock, or raises ``fail[call]``."""

    clock: FakeClock = field(default_factory=FakeClock)
    serving: str | None = "old"
    backends: dict[str, Backend] = field(default_factory=lambda: {"old": Backend("old"), "new": Backend("new", "9")})
    cost: dict[str, float] = field(default_factory=dict)
    fail: dict[str, Callable[[], BaseException]] = field(default_factory=dict)
    #: For writes: the write lands, then this is raised (the answer was lost).
    fail_after: dict[str, Callable[[], BaseException]] = field(default_factory=dict)
    progress: list[str] = field(default_factory=list)
    hang: set[str] = field(default_factory=set)

    async def _call(self, call: str) -> None:
        await asyncio.sleep(0)
        if call in self.hang:
            await asyncio.Event().wait()
        self.clock.now += self.cost.get(call, 0.0)
        if call in self.fail:
            raise self.fail.pop(call)()

    def _after(self, call: str) -> None:
        if call in self.fail_after:
            raise self.fail_after.pop(call)()

    # TargetResolver
    async def resolve(self, name: str | None, *, require_ready: bool) -> Backend:
        await self._call(f"resolve {name}" if require_ready else f"resolve source {name}")
        return self.backends[name or PLATFORM_DEFAULT]

    # CredentialTester
    async def test(self, target: Backend) -> None:
        await self._call("test")

    # HealthReader
    async def check(self, target: Backend) -> None:
        await self._call("healthGate")

    # BindingWriter
    async def write(self, target: Backend) -> None:
        call = "activate" if target.name != "old" else "restore"
        await self._call(call)
        self.serving = target.name
        self._after(call)

    async def clear(self) -> None:
        await self._call("clear")
        self.serving = None
        self._after("clear")

    # StatusWriter
    async def step(self, name: str) -> None:
        await self._call("progress")
        self.progress.append(name)

    def deps(self) -> SwitchDeps[Backend]:
        return SwitchDeps(self, self, self, self, self, self.clock)


PLAN = SwitchPlan(source="old", target="new", deadline_seconds=30)


def summary(outcome: SwitchOutcome[Backend]) -> list[tuple[str, str]]:
    return [(s.name, s.result) for s in outcome.steps]


def assert_agrees(world: World, outcome: SwitchOutcome[Backend]) -> None:
    assert world.serving == outcome.serving, "the binding serves what the outcome (hence status) names"
    if outcome.serving_target is not None:
        assert outcome.serving_target.name == outcome.serving


async def test_a_switch_runs_every_step_and_times_only_its_work() -> None:
    world = World(cost={"resolve new": 0.25, "test": 0.5, "activate": 0.125, "healthGate": 1.0, "progress": 2.0})
    outcome = await run_switch(PLAN, world.deps())
    assert outcome.result == "Succeeded" and outcome.failure is None
    assert_agrees(world, outcome)
    assert world.serving == "new"
    assert [(s.name, s.seconds, s.result) for s in outcome.steps] == [
        ("resolve", 0.25, "Succeeded"),
        ("test", 0.5, "Succeeded"),
        ("activate", 0.125, "Succeeded"),
        ("healthGate", 1.0, "Succeeded"),
    ], "each step's time is the time of its own work (not of the progress write before it)"
    assert outcome.seconds == pytest.approx(0.25 + 0.5 + 0.125 + 1.0 + 4 * 2.0)
    assert world.progress == list(STEPS)


async def test_without_health_gate_the_gate_is_skipped() -> None:
    world = World()
    outcome = await run_switch(SwitchPlan("old", "new", health_gate=False), world.deps())
    assert outcome.result == "Succeeded" and world.serving == "new"
    assert summary(outcome)[-1] == ("healthGate", "Skipped")


async def test_an_explicit_rollback_to_verified_credentials_skips_the_test() -> None:
    world = World(serving="new")
    outcome = await run_switch(SwitchPlan("new", "old", verified=("old", "1")), world.deps())
    assert outcome.result == "Succeeded" and world.serving == "old"
    assert ("test", "Skipped") in summary(outcome)


async def test_a_rollback_to_credentials_changed_since_is_tested() -> None:
    world = World(serving="new")
    outcome = await run_switch(SwitchPlan("new", "old", verified=("old", "0")), world.deps())
    assert ("test", "Succeeded") in summary(outcome)


@pytest.mark.parametrize("step", ["resolve new", "test", "activate", "healthGate"])
async def test_a_failure_at_any_step_rolls_back_to_the_source(step: str) -> None:
    world = World(fail={step: lambda: ProviderUnreachableError("refused")})
    outcome = await run_switch(PLAN, world.deps())
    assert outcome.result == "RolledBack"
    assert_agrees(world, outcome)
    assert world.serving == "old" and outcome.serving_target == Backend("old")
    assert outcome.failure is not None and outcome.failure.reason == "ProviderUnreachable"
    failed_at = STEPS.index(step.split()[0])
    assert summary(outcome) == [
        *((name, "Succeeded") for name in STEPS[:failed_at]),
        (STEPS[failed_at], "Failed"),
        *((name, "Skipped") for name in STEPS[failed_at + 1 :]),
        ("rollback", "Succeeded"),
    ]


async def test_an_activation_that_landed_but_raised_is_rolled_back() -> None:
    world = World(fail_after={"activate": lambda: TimeoutError()})
    outcome = await run_switch(PLAN, world.deps())
    assert outcome.result == "RolledBack" and world.serving == "old"
    assert_agrees(world, outcome)


async def test_without_a_source_a_failure_clears_the_binding() -> None:
    world = World(serving="new")  # left by an operator that crashed mid-switch, status names nothing
    world.fail["test"] = lambda: CredentialsRejectedError("401")
    outcome = await run_switch(SwitchPlan(None, "new"), world.deps())
    assert outcome.result == "Failed" and outcome.serving is None and world.serving is None
    assert outcome.failure is not None and outcome.failure.reason == "CredentialsRejected"


async def test_auto_rollback_off_keeps_the_new_backend_after_activation() -> None:
    world = World(fail={"healthGate": lambda: ProviderUnreachableError("down")})
    outcome = await run_switch(SwitchPlan("old", "new", auto_rollback=False), world.deps())
    assert outcome.result == "Failed" and outcome.serving == "new" and world.serving == "new"
    assert_agrees(world, outcome)


async def test_auto_rollback_off_before_activation_keeps_the_source() -> None:
    world = World(fail={"test": lambda: CredentialsRejectedError("401")})
    outcome = await run_switch(SwitchPlan("old", "new", auto_rollback=False), world.deps())
    assert outcome.serving == "old" and world.serving == "old"
    assert_agrees(world, outcome)


async def test_a_failed_restore_after_activation_raises_a_typed_retryable_error() -> None:
    world = World(
        fail={"healthGate": lambda: ProviderUnreachableError("down"), "restore": lambda: KubeAPIError(503, "x", "")}
    )
    with pytest.raises(BindingIndeterminateError) as raised:
        await run_switch(PLAN, world.deps())
    assert raised.value.transient, "the caller retries; it must not report the source as serving"
    assert world.serving == "new"


async def test_a_failed_restore_before_activation_reports_the_source_unchanged() -> None:
    world = World(fail={"test": lambda: ProviderUnreachableError("down"), "resolve source old": lambda: ValueError()})
    outcome = await run_switch(PLAN, world.deps())
    assert outcome.result == "Failed" and outcome.serving == "old" and world.serving == "old"
    assert outcome.serving_target is None and isinstance(outcome.restore_error, UnexpectedError)


async def test_the_deadline_stops_a_hanging_step_and_rolls_back() -> None:
    world = World(hang={"healthGate"})
    world.clock = FakeClock()
    plan = SwitchPlan("old", "new", deadline_seconds=0.05)
    deps = SwitchDeps(world, world, world, world, world)  # the loop's clock: asyncio's timeout is real
    outcome = await asyncio.wait_for(run_switch(plan, deps), timeout=10)
    assert outcome.result == "RolledBack" and world.serving == "old"
    assert outcome.failure is not None
    assert (outcome.failure.step, outcome.failure.reason) == ("healthGate", "SwitchDeadlineExceeded")


async def test_a_deadline_spent_before_a_step_fails_that_step() -> None:
    world = World(cost={"test": 31.0})
    outcome = await run_switch(PLAN, world.deps())
    assert outcome.failure is not None and outcome.failure.reason == "SwitchDeadlineExceeded"
    assert outcome.failure.step == "activate" and world.serving == "old"


async def test_the_rollback_is_a_timed_step() -> None:
    world = World(cost={"resolve source old": 0.25, "restore": 0.5}, fail={"healthGate": lambda: ValueError()})
    outcome = await run_switch(PLAN, world.deps())
    assert (outcome.steps[-1].name, outcome.steps[-1].seconds, outcome.steps[-1].result) == (
        "rollback", 0.75, "Succeeded"
    )


async def test_a_failing_progress_write_never_fails_a_switch() -> None:
    class Refusing(World):
        async def step(self, name: str) -> None:
            raise KubeAPIError(503, "Unavailable", "")

    refusing = Refusing()
    outcome = await run_switch(PLAN, refusing.deps())
    assert outcome.result == "Succeeded" and refusing.serving == "new"


ERRORS: dict[str, tuple[Callable[[], BaseException], type[OneieError]]] = {
    "ValueError": (lambda: ValueError("Invalid header value b'Convex s3cret\\x0c'"), UnexpectedError),
    "UnicodeEncodeError": (lambda: UnicodeEncodeError("ascii", "s3cret-é", 7, 8, "no"), UnexpectedError),
    "RuntimeError": (lambda: RuntimeError("s3cret"), UnexpectedError),
    "TimeoutError": (lambda: TimeoutError(), DependencyTimeoutError),
    "write refused": (lambda: KubeAPIError(403, "Forbidden", "s3cret"), APIWriteRefusedError),
    "API unavailable": (lambda: KubeAPIError(503, "ServiceUnavailable", ""), APIServerUnavailableError),
}


@pytest.mark.parametrize("error", list(ERRORS))
@pytest.mark.parametrize("step", ["resolve new", "test", "activate", "healthGate"])
async def test_any_exception_is_typed_and_rolled_back(step: str, error: str) -> None:
    make, typed = ERRORS[error]
    world = World(fail={step: make})
    outcome = await run_switch(PLAN, world.deps())
    assert outcome.result == "RolledBack" and world.serving == "old"
    assert outcome.failure is not None and type(outcome.failure.error) is typed
    assert "s3cret" not in outcome.failure.message, "library text (it may quote a credential) is withheld"


async def test_cancellation_propagates_and_leaves_the_binding_to_the_next_attempt() -> None:
    world = World(fail={"healthGate": lambda: asyncio.CancelledError()})
    with pytest.raises(asyncio.CancelledError):
        await run_switch(PLAN, world.deps())
    again = await run_switch(PLAN, world.deps())  # a restarted operator switches again
    assert again.result == "Succeeded" and world.serving == "new"
