"""The switch as a small state machine: resolve → test → activate → healthGate → done, or roll back.

::

    resolve ──► test ──► activate ──► healthGate ──► Succeeded
       │          │          │             │
       └──────────┴────┬─────┴─────────────┘   any failure, or the deadline
                       ▼
                   roll back: put the source back in the binding (or clear it when there was none)
                       │
                       ├─► RolledBack   (the source serves again)
                       ├─► Failed       (no source, or autoRollback off after activation)
                       └─► BindingIndeterminateError raised: the binding may have changed and could
                           not be put back; the caller's retry (a later reconcile) converges

Every step does real work and is timed by the :class:`Clock` around that work only:

* ``resolve``: read the target connection, check it is Ready, decrypt its credentials (the
  encryption itself happened when the connection was reconciled, before any switch);
* ``test``: the provider's credential test (skipped on an explicit rollback to credentials that
  served the tenant just before);
* ``activate``: the one atomic write of the binding Secret — the commit point;
* ``healthGate``: the provider's health probe of the target (skipped when the policy turns it off);
* ``rollback`` (after a failure): read the source back and rewrite the binding for it (or delete
  the binding when nothing was active before).

The machine knows its dependencies only as the Protocols below; whatever one of them raises
(a typed error, ``ValueError`` from an HTTP library, an API server refusal, a timeout) ends in a
typed :class:`~oneie_operator.errors.OneieError` and never leaves the binding serving something
other than :attr:`SwitchOutcome.serving`. Only cancellation propagates as is (the operator is
stopping: a restarted operator finds binding and status apart and switches again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

from oneie_operator.errors import BindingIndeterminateError, OneieError, SecretNameTakenError, SwitchDeadlineError
from oneie_operator.platform_default import PLATFORM_DEFAULT
from oneie_operator.reconcile.failures import as_typed_error

logger = logging.getLogger(__name__)

STEPS = ("resolve", "test", "activate", "healthGate")
#: Reported after the failed step's successors (Skipped) when the previous backend is put back.
ROLLBACK_STEP = "rollback"
Result = Literal["Succeeded", "RolledBack", "Failed"]


class SwitchTarget(Protocol):
    """What the machine needs to know of a resolved backend."""

    @property
    def name(self) -> str: ...

    @property
    def credentials_version(self) -> str: ...


T = TypeVar("T", bound=SwitchTarget)
T_contra = TypeVar("T_contra", bound=SwitchTarget, contravariant=True)
T_co = TypeVar("T_co", bound=SwitchTarget, covariant=True)


class Clock(Protocol):
    def monotonic(self) -> float: ...


class TargetResolver(Protocol[T_co]):
    async def resolve(self, name: str | None, *, require_ready: bool) -> T_co:
        """The backend ``name`` (None: the platform default) with its credentials decrypted."""
        ...


class CredentialTester(Protocol[T_contra]):
    async def test(self, target: T_contra) -> None:
        """The provider's credential test; raise when the credentials do not work."""
        ...


class HealthReader(Protocol[T_contra]):
    async def check(self, target: T_contra) -> None:
        """The provider's health probe; raise when the backend does not serve."""
        ...


class BindingWriter(Protocol[T_contra]):
    async def write(self, target: T_contra) -> None:
        """Replace the binding Secret (one atomic write) so that it serves ``target``."""
        ...

    async def clear(self) -> None:
        """Delete the binding Secret (no backend is active)."""
        ...


class StatusWriter(Protocol):
    async def step(self, name: str) -> None:
        """Best-effort live progress (``status.switching``); a failure here never fails a switch."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()


@dataclass(frozen=True)
class SwitchDeps(Generic[T]):
    resolver: TargetResolver[T]
    tester: CredentialTester[T]
    health: HealthReader[T]
    binding: BindingWriter[T]
    status: StatusWriter
    clock: Clock = field(default_factory=SystemClock)


@dataclass(frozen=True)
class SwitchPlan:
    #: What the binding serves now (status.activeConnection), None when nothing is active.
    source: str | None
    #: The connection to switch to (None: the platform default).
    target: str | None
    deadline_seconds: float = 30.0
    health_gate: bool = True
    auto_rollback: bool = True
    #: (connection, credentials version) already verified while it served the tenant: an explicit
    #: rollback to exactly these skips the credential test.
    verified: tuple[str, str] | None = None


@dataclass(frozen=True)
class StepTiming:
    name: str
    seconds: float
    result: str  # Succeeded / Failed / Skipped

    def as_status(self) -> dict[str, object]:
        return {"name": self.name, "milliseconds": round(self.seconds * 1000, 1), "result": self.result}


@dataclass(frozen=True)
class StepFailure:
    step: str
    error: OneieError

    @property
    def reason(self) -> str:
        return self.error.reason

    @property
    def message(self) -> str:
        return f"step {self.step} failed: {self.error}"


@dataclass
class SwitchOutcome(Generic[T]):
    result: Result
    #: The backend the binding Secret serves now; status must name exactly this one.
    serving: str | None
    #: Its resolved target, when known (None when nothing serves, or the source could not be read).
    serving_target: T | None
    #: The switch's target, when it was resolved.
    target: T | None
    steps: list[StepTiming]
    seconds: float
    failure: StepFailure | None = None
    #: Why putting the source back failed (the source stays named as active: nothing was written).
    restore_error: OneieError | None = None


class _StepFailed(Exception):
    def __init__(self, failure: StepFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class _Run(Generic[T]):
    plan: SwitchPlan
    deps: SwitchDeps[T]
    started: float
    steps: list[StepTiming] = field(default_factory=list)
    target: T | None = None
    #: The activation write was started (it may have landed even if it raised).
    touched: bool = False
    #: The activation write succeeded: the binding serves the target.
    activated: bool = False

    def elapsed(self) -> float:
        return self.deps.clock.monotonic() - self.started

    async def step(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        await _best_effort_progress(self.deps.status, name)
        remaining = self.plan.deadline_seconds - self.elapsed()
        began = self.deps.clock.monotonic()
        try:
            if remaining <= 0:
                raise SwitchDeadlineError(self._deadline_message(name))
            try:
                async with asyncio.timeout(remaining):
                    await work()
            except TimeoutError:
                if self.plan.deadline_seconds - self.elapsed() <= 0:
                    raise SwitchDeadlineError(self._deadline_message(name)) from None
                raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure of a dependency ends here, typed
            self.steps.append(StepTiming(name, self.deps.clock.monotonic() - began, "Failed"))
            raise _StepFailed(StepFailure(name, as_typed_error(exc))) from None
        self.steps.append(StepTiming(name, self.deps.clock.monotonic() - began, "Succeeded"))

    def skip(self, name: str) -> None:
        self.steps.append(StepTiming(name, 0.0, "Skipped"))

    def _deadline_message(self, name: str) -> str:
        return f"the switch did not finish within its {self.plan.deadline_seconds:g}s deadline (at step {name})"


async def _best_effort_progress(status: StatusWriter, name: str) -> None:
    try:
        await status.step(name)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # progress is informative only: the switch goes on
        logger.warning("could not write switch progress (%s): %s", name, type(exc).__name__)


async def run_switch(plan: SwitchPlan, deps: SwitchDeps[T]) -> SwitchOutcome[T]:
    """Run one switch to its end state; see the module docstring for the states."""
    run = _Run(plan, deps, started=deps.clock.monotonic())
    try:
        await _forward(run)
    except _StepFailed as failed:
        return await _roll_back(run, failed.failure)
    assert run.target is not None
    return SwitchOutcome(
        "Succeeded", run.target.name, run.target, run.target, run.steps, run.elapsed()
    )


async def _forward(run: _Run[T]) -> None:
    plan, deps = run.plan, run.deps

    async def resolve() -> None:
        run.target = await deps.resolver.resolve(plan.target, require_ready=True)

    await run.step("resolve", resolve)
    target = run.target
    assert target is not None
    if target.credentials_version and plan.verified == (target.name, target.credentials_version):
        run.skip("test")
    else:
        await run.step("test", lambda: deps.tester.test(target))

    async def activate() -> None:
        run.touched = True
        try:
            await deps.binding.write(target)
        except SecretNameTakenError:
            run.touched = False  # refused before any write: the binding is as it was
            raise
        run.activated = True

    await run.step("activate", activate)
    if plan.health_gate:
        await run.step("healthGate", lambda: deps.health.check(target))
    else:
        run.skip("healthGate")


async def _roll_back(run: _Run[T], failure: StepFailure) -> SwitchOutcome[T]:
    plan, deps = run.plan, run.deps
    for name in STEPS[len(run.steps) :]:
        run.skip(name)
    if run.activated and not plan.auto_rollback:
        # The tenant asked to stay on the new backend: it serves, and status will say so.
        return SwitchOutcome("Failed", run.target.name if run.target else None, run.target, run.target,
                             run.steps, run.elapsed(), failure)
    # Put the source back even when activation never started: a binding left by an operator that
    # crashed mid-switch must not outlive this attempt (binding and status agree afterwards).
    source: T | None = None
    began = deps.clock.monotonic()
    try:
        if plan.source is None:
            await deps.binding.clear()
        else:
            source = await deps.resolver.resolve(_connection_name(plan.source), require_ready=False)
            await deps.binding.write(source)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        run.steps.append(StepTiming(ROLLBACK_STEP, deps.clock.monotonic() - began, "Failed"))
        error = as_typed_error(exc)
        if run.touched:
            # The binding may serve the target now and the source could not be put back: report
            # nothing (status keeps naming the source) and let the retry converge.
            raise BindingIndeterminateError(
                f"{failure.message}; putting {plan.source or 'nothing'} back in the binding failed too: {error}"
            ) from None
        # Nothing of this switch reached the binding: it serves what it served before.
        return SwitchOutcome("Failed", plan.source, None, run.target, run.steps, run.elapsed(), failure, error)
    run.steps.append(StepTiming(ROLLBACK_STEP, deps.clock.monotonic() - began, "Succeeded"))
    if plan.source is None:
        return SwitchOutcome("Failed", None, None, run.target, run.steps, run.elapsed(), failure)
    return SwitchOutcome("RolledBack", plan.source, source, run.target, run.steps, run.elapsed(), failure)


def _connection_name(active: str) -> str | None:
    """A name from status as the resolver takes it (None: the platform default)."""
    return None if active == PLATFORM_DEFAULT else active
