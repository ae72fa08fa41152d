"""Live progress of a switch in ``status.switching``, written only for switches that take a while.

A switch of a local or nearby provider takes tens of milliseconds; writing each step to status
would cost an API call and a watch event per step (for every watcher: Kopf, ``kubectl get -w``,
GitOps controllers) and show nothing anybody could read: the finished switch's steps and timings
are in ``status.lastSwitch`` anyway. So :class:`DelayedProgress` writes nothing during the first
``delay`` seconds of a switch; once a switch has run that long, it writes the step it is in, and
every later step as it starts. ``kubectl oneie switch --wait``, ``kubectl get -w`` and the
``Switching`` condition's watchers see every switch that is slow enough to watch.

:meth:`DelayedProgress.close` must be awaited before the switch's final status is written: a
write still in flight is waited for (never cancelled half-sent), so it cannot land after the
final status and leave a stale ``status.switching`` behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class DelayedProgress:
    """Forward step names to ``write``, but only once ``delay`` seconds have passed since start."""

    def __init__(self, write: Callable[[str], Awaitable[None]], *, delay: float) -> None:
        self._write = write
        self._delay = delay
        self._started = time.perf_counter()
        self._step: str | None = None
        self._written: str | None = None
        #: The timer of the first write (a loop timer: a fast switch, nearly every one, cancels it
        #: without creating a task; a cancelled task would be a cycle of exception, traceback and
        #: frames for the garbage collector, per switch) and the write it started, if it fired.
        self._handle: asyncio.TimerHandle | None = None
        self._timer: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def written(self) -> str | None:
        """The last step written to status (None: nothing was written)."""
        return self._written

    async def on_step(self, step: str) -> None:
        """A step starts: write it now if the switch is already slow, else arm the timer once."""
        self._step = step
        remaining = self._delay - (time.perf_counter() - self._started)
        if remaining <= 0:
            await self._flush()
        elif self._handle is None and self._timer is None:
            self._handle = asyncio.get_running_loop().call_later(remaining, self._fire)

    def _fire(self) -> None:
        if not self._closed:
            self._timer = asyncio.create_task(self._late_write(), name="switch progress")

    async def _late_write(self) -> None:
        try:
            await self._flush()
        except Exception as exc:  # progress is best effort: the switch goes on, its result is written
            logger.warning("could not write switch progress: %s", type(exc).__name__)

    async def _flush(self) -> None:
        async with self._lock:
            if self._closed or self._step is None or self._step == self._written:
                return
            step = self._step
            await self._write(step)
            self._written = step

    async def close(self) -> None:
        """Stop: a timer still waiting is cancelled; a write already under way is waited for."""
        async with self._lock:  # a write under way holds the lock: wait for it to finish
            self._closed = True
        if self._handle is not None:
            self._handle.cancel()
        if self._timer is not None and not self._timer.done():
            self._timer.cancel()
            await asyncio.wait([self._timer])  # (our own cancellation still propagates)
