"""``status.usedBy`` of connections, kept in the background, off the switch's critical path.

A switch moves an organization from one connection to another: the new one gains it in
``usedBy``, the old one loses it. ``usedBy`` is information for people and tools (``kubectl get``,
``kubectl oneie status``); the deletion guard does not read it (it asks an in-memory index of
organizations). So a switch does not wait for these writes: :class:`UsedByWriter` collects the
changes, waits ``delay`` seconds so that a burst of switches becomes one read-modify-write per
connection, and applies them with optimistic concurrency (a conflict re-reads and retries).
The writes wait for a quiet moment: until no new change has come for ``delay`` seconds (a burst
of switches is served first, its ``usedBy`` writes follow it), but never longer than
``max_delay`` after the oldest pending change. A write the API refuses (an error, or a conflict on
every attempt: ``SetUpdateConflict``) is never dropped: it stays pending, under any newer report,
and is tried again after a back-off that doubles with each refused round (from ``delay`` up to
``max_backoff``) and starts over after a round that wrote everything.

Every organization reconcile reports the connection it has active (and the one it left), not only
switches: after an operator restart between a switch and its ``usedBy`` write, the next reconcile
(Kopf resumes every object at start-up) puts it right.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from oneie_operator.names import CONNECTIONS

logger = logging.getLogger(__name__)

class SetInStatus(Protocol):
    async def update_set(
        self, plural: str, namespace: str, name: str, field: str, changes: Mapping[str, bool], *,
        attempts: int = 5,
    ) -> None: ...


class UsedByWriter:
    """Coalesce ``usedBy`` changes per connection and write them after ``delay`` seconds."""

    def __init__(
        self, objects: SetInStatus, *, delay: float = 0.5, max_delay: float = 5.0, max_backoff: float = 10.0,
        watched: Callable[[str, str], Sequence[str] | None] | None = None,
    ) -> None:
        self._objects = objects
        #: ``usedBy`` of a connection as the operator's watch delivered it (None: not seen).
        self._watched = watched
        #: Connections whose ``usedBy`` this process wrote (the watch may lag behind those).
        self._written: set[tuple[str, str]] = set()
        self._delay = delay
        self._max_delay = max_delay
        self._max_backoff = max_backoff
        #: Refused rounds in a row (the back-off doubles with each).
        self.refused_rounds = 0
        self._last_report = 0.0
        #: (namespace, connection) → {organization: using?}; the latest report wins.
        self._pending: dict[tuple[str, str], dict[str, bool]] = {}
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def report(self, namespace: str, connection: str, organization: str, using: bool) -> None:
        """The organization now uses (or no longer uses) the connection."""
        self._pending.setdefault((namespace, connection), {})[organization] = using
        self._last_report = time.monotonic()
        self._idle.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="usedBy writer")

    @property
    def pending(self) -> int:
        """Connections with changes not written yet."""
        return len(self._pending)

    async def _run(self) -> None:
        try:
            while self._pending:
                await self._quiet_moment()
                batch, self._pending = self._pending, {}
                refused = False
                for key, changes in batch.items():
                    if not await self._write(key, changes):
                        # Keep it for the next round, under any newer report of the same organization.
                        self._pending[key] = {**changes, **self._pending.get(key, {})}
                        refused = True
                if refused:  # the API refused: not again at once, and less often while it goes on
                    self.refused_rounds += 1
                    await asyncio.sleep(min(self._delay * 2 ** (self.refused_rounds - 1), self._max_backoff))
                else:
                    self.refused_rounds = 0
        finally:
            if not self._pending:
                self._idle.set()

    async def _quiet_moment(self) -> None:
        """Sleep until ``delay`` seconds without a new report, or ``max_delay`` in all."""
        latest = time.monotonic() + self._max_delay
        while True:
            now = time.monotonic()
            wake = min(self._last_report + self._delay, latest)
            if now >= wake:
                return
            await asyncio.sleep(wake - now)

    async def _write(self, key: tuple[str, str], changes: dict[str, bool]) -> bool:
        namespace, connection = key
        if key not in self._written and self._watched is not None:
            # Not written by this process yet (a resume after a restart: every organization
            # reports what it uses): the watch shows what an earlier process wrote; when that is
            # already right, not even a read.
            seen = self._watched(namespace, connection)
            if seen is not None:
                wanted = {*seen, *(org for org, using in changes.items() if using)} - {
                    org for org, using in changes.items() if not using
                }
                if wanted == set(seen):
                    return True
        self._written.add(key)
        try:
            await self._objects.update_set(CONNECTIONS, namespace, connection, "usedBy", changes)
        except Exception as exc:  # the API refused (also SetUpdateConflict) or is away: kept, tried again
            logger.warning("usedBy of %s/%s not written yet: %s", namespace, connection, type(exc).__name__)
            return False
        return True

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until every reported change is written (or ``timeout``); whether it was."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float = 5.0) -> None:
        """Write what is pending (within ``timeout``), then stop."""
        if self._pending:
            await self.wait_idle(timeout)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])
