"""Run an object's reconcile again later, by an annotation change that outlives API server faults.

A switch that failed because the API server did not answer is tried again after a delay. Kopf's
own delayed retry keeps its schedule in the object's status and wakes itself with a status patch;
when that patch lands late (the API server away) and the spec has meanwhile come back to what
Kopf last handled, the retry was dropped and status stayed stale (tests/e2e/test_api_faults.py).
:class:`Retrigger` instead changes an annotation Kopf watches (``one.ie/reconcile-trigger``), and
keeps trying that write, with back-off, until it lands or the object is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Protocol

from oneie_operator.names import TRIGGER_ANNOTATION

logger = logging.getLogger(__name__)

class Annotator(Protocol):
    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...


class Retrigger:
    """At most one pending re-trigger per object; each keeps trying until its write lands."""

    def __init__(self, objects: Annotator, *, max_backoff: float = 30.0, give_up_after: float = 3600.0) -> None:
        self._objects = objects
        self._max_backoff = max_backoff
        self._give_up_after = give_up_after
        self._tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}

    def schedule(self, plural: str, namespace: str, name: str, delay: float) -> None:
        key = (plural, namespace, name)
        task = self._tasks.get(key)
        if task is not None and not task.done():
            return  # one is pending already: its write triggers a reconcile that sees the latest state
        self._tasks[key] = asyncio.create_task(self._run(key, delay), name=f"retrigger {namespace}/{name}")

    @property
    def pending(self) -> int:
        return sum(1 for task in self._tasks.values() if not task.done())

    async def _run(self, key: tuple[str, str, str], delay: float) -> None:
        plural, namespace, name = key
        deadline = time.monotonic() + self._give_up_after
        wait = delay
        try:
            while True:
                await asyncio.sleep(wait)
                try:
                    stamp = {TRIGGER_ANNOTATION: f"retry@{time.time():.3f}"}
                    await self._objects.annotate(plural, namespace, name, stamp)
                    return
                except Exception as exc:  # the API server still away or refusing: later
                    if time.monotonic() >= deadline:
                        logger.error("gave up re-triggering %s/%s: %s", namespace, name, type(exc).__name__)
                        return
                    logger.warning("re-trigger of %s/%s not written yet: %s", namespace, name, type(exc).__name__)
                    wait = min(max(wait * 2, 1.0), self._max_backoff)
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]

    async def aclose(self) -> None:
        tasks = [task for task in self._tasks.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()
