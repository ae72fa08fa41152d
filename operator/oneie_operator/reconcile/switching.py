"""The timed switch, step by step: validate → test → encrypt → activate → healthGate.

Each step is timed; a failure or the deadline raises :class:`SwitchFailed` carrying the step
and the timings so far. The caller (``reconcile.organizations``) decides about rollback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from oneie_operator.errors import OneieError

STEPS = ("validate", "test", "encrypt", "activate", "healthGate")


@dataclass
class StepTiming:
    name: str
    seconds: float
    result: str  # Succeeded / Failed / Skipped

    def as_status(self) -> dict[str, object]:
        return {"name": self.name, "milliseconds": round(self.seconds * 1000, 1), "result": self.result}


class SwitchFailed(Exception):
    """A switch step failed (or the deadline passed); carries a safe message and a stable reason."""

    def __init__(self, step: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.reason = reason


@dataclass
class SwitchClock:
    """Times the steps of one switch against one deadline."""

    deadline_seconds: float
    on_step: Callable[[str], Awaitable[None]] | None = None
    started: float = field(default_factory=time.perf_counter)
    steps: list[StepTiming] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        if self.on_step is not None:
            await self.on_step(name)
        began = time.perf_counter()
        remaining = self.deadline_seconds - self.elapsed
        try:
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                yield
        except TimeoutError:
            self.steps.append(StepTiming(name, time.perf_counter() - began, "Failed"))
            raise SwitchFailed(
                name,
                "SwitchDeadlineExceeded",
                f"the switch did not finish within its {self.deadline_seconds:g}s deadline (at step {name})",
            ) from None
        except OneieError as exc:
            self.steps.append(StepTiming(name, time.perf_counter() - began, "Failed"))
            raise SwitchFailed(name, exc.reason, f"step {name} failed: {exc}") from None
        except SwitchFailed:
            self.steps.append(StepTiming(name, time.perf_counter() - began, "Failed"))
            raise
        self.steps.append(StepTiming(name, time.perf_counter() - began, "Succeeded"))

    def skip(self, name: str) -> None:
        self.steps.append(StepTiming(name, 0.0, "Skipped"))
