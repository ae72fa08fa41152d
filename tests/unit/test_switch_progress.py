"""DelayedProgress: live switch steps only for slow switches, and never after the final status.

Real asyncio timers with short delays; every positive expectation is waited for with a deadline.
The "nothing is written" checks necessarily watch for a bounded time (several times the delay).
"""

from __future__ import annotations

import asyncio

from oneie_operator.reconcile.progress import DelayedProgress

DELAY = 0.05
QUIET = 0.25  # how long "no write" is watched for: 5x the delay


class Recorder:
    def __init__(self, *, slow: float = 0.0) -> None:
        self.steps: list[str] = []
        self.slow = slow
        self.wrote = asyncio.Event()
        self.writing = asyncio.Event()

    async def write(self, step: str) -> None:
        self.writing.set()
        if self.slow:
            await asyncio.sleep(self.slow)
        self.steps.append(step)
        self.wrote.set()


async def test_a_fast_switch_writes_nothing() -> None:
    recorder = Recorder()
    progress = DelayedProgress(recorder.write, delay=DELAY)
    for step in ("resolve", "test", "healthGate"):
        await progress.on_step(step)
    await progress.close()
    await asyncio.sleep(QUIET)
    assert recorder.steps == []
    assert progress.written is None


async def test_a_slow_switch_shows_the_step_it_is_in_then_every_step() -> None:
    recorder = Recorder()
    progress = DelayedProgress(recorder.write, delay=DELAY)
    await progress.on_step("resolve")
    await progress.on_step("test")  # the provider hangs here
    await asyncio.wait_for(recorder.wrote.wait(), timeout=5)
    assert recorder.steps == ["test"], "the step the switch is in when the delay passes"
    await progress.on_step("healthGate")  # later steps: at once
    assert recorder.steps == ["test", "healthGate"]
    await progress.on_step("healthGate")  # the same step again: no second write
    await progress.close()
    assert recorder.steps == ["test", "healthGate"]
    assert progress.written == "healthGate"


async def test_zero_delay_writes_every_step() -> None:
    recorder = Recorder()
    progress = DelayedProgress(recorder.write, delay=0)
    for step in ("resolve", "test", "healthGate"):
        await progress.on_step(step)
    await progress.close()
    assert recorder.steps == ["resolve", "test", "healthGate"]


async def test_close_waits_for_a_write_under_way_and_nothing_lands_after_it() -> None:
    recorder = Recorder(slow=0.2)
    progress = DelayedProgress(recorder.write, delay=DELAY)
    await progress.on_step("test")
    await asyncio.wait_for(recorder.writing.wait(), timeout=5)
    await progress.close()  # the write is in flight: close returns only after it finished
    assert recorder.steps == ["test"]
    await progress.on_step("healthGate")  # after close: ignored (the final status is being written)
    await asyncio.sleep(QUIET)
    assert recorder.steps == ["test"]


async def test_close_before_the_delay_cancels_the_timer() -> None:
    recorder = Recorder()
    progress = DelayedProgress(recorder.write, delay=DELAY)
    await progress.on_step("resolve")
    await progress.close()
    await asyncio.sleep(QUIET)
    assert recorder.steps == []


async def test_a_failing_write_does_not_break_the_switch() -> None:
    calls: list[str] = []

    async def refused(step: str) -> None:
        calls.append(step)
        raise ConnectionError("the API refused")

    progress = DelayedProgress(refused, delay=DELAY)
    await progress.on_step("test")
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.02)
    assert calls == ["test"]
    await progress.close()  # no exception: progress is best effort
