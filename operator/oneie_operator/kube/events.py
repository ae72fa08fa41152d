"""Kubernetes Events: the same core/v1 Event Kopf would post, written with the operator's own API client.

:class:`EventRecorder` posts one Event and awaits it: the probe engine's health reports
(``BackendOnline``, ``BackendOffline``, ``CredentialsRejected``, ...), which run outside any Kopf
handler (``kopf.event`` only works in a handler's task). :class:`EventQueue` is what handlers use
(the switch's ``Switched``/``SwitchRolledBack``, a connection's ``CredentialsVerified``, ...): it
takes the Event and returns at once, and posts it in the background, in order per object, as
Kopf's own poster does, for less CPU (Kopf's poster spawns a task per object and sends through
its credentials vault: ~9 % of the operator's CPU per switch in ``benchmarks/switch.py``). The
reporting component, instance and name prefix are Kopf's settings, passed in. As with Kopf, an
Event is auxiliary: one the API server refuses is logged (its reason and object, never its
message) and dropped; one it could not take now (unreachable, 429, 5xx) is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from oneie_operator.kube.rest import KubeAPIError, KubeREST

logger = logging.getLogger(__name__)

#: Longer messages are cut in the middle (as Kopf does), so that the API server accepts them.
MAX_MESSAGE_LENGTH = 1024


@dataclass(frozen=True)
class EventSource:
    """Who posts: ``reportingComponent`` (also ``source.component``, kubectl's "From"), ``reportingInstance``."""

    component: str
    instance: str
    name_prefix: str


def shortened(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    infix = "..."
    head = MAX_MESSAGE_LENGTH // 2 - len(infix) // 2
    tail = MAX_MESSAGE_LENGTH - head - len(infix)
    return f"{message[:head]}{infix}{message[-tail:]}"


class EventRecorder:
    def __init__(self, rest: KubeREST, source: EventSource) -> None:
        self._rest = rest
        self._source = source

    async def post(
        self, involved: Mapping[str, str], type: str, reason: str, message: str, *, backoffs: Sequence[float] = ()
    ) -> None:
        """Post one Event about ``involved`` (apiVersion, kind, namespace, name, uid); when the API
        server could not take it now, try again after each of ``backoffs`` seconds."""
        namespace = involved.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).isoformat()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": namespace, "generateName": self._source.name_prefix},
            "action": "Action?",
            "type": type,
            "reason": reason,
            "message": shortened(message),
            "reportingComponent": self._source.component,
            "reportingInstance": self._source.instance,
            "source": {"component": self._source.component},
            "involvedObject": {**involved, "namespace": namespace},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now,
        }
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/events"
        waits = list(backoffs)
        while True:
            try:
                await self._rest.request("POST", path, body=body)
                return
            except KubeAPIError as exc:
                if not waits or not _transient(exc):
                    logger.warning(
                        "Event %s about %s/%s not posted (%s %s); continuing",
                        reason, namespace, involved.get("name"), exc.status or "", exc.reason,
                    )
                    return
            await asyncio.sleep(waits.pop(0))


def _transient(exc: KubeAPIError) -> bool:
    """The API server could not take it now (unreachable: status 0; 429; 5xx), rather than refused it."""
    return exc.status == 0 or exc.status == 429 or exc.status >= 500


#: One Event waiting in an :class:`EventQueue`: involved object, type, reason, message.
_Pending = tuple[Mapping[str, str], str, str, str]


class EventQueue:
    """Events handed over by handlers, posted in the background by ``workers`` tasks.

    The Events of one object are posted in the order given (one object, one worker); objects are
    spread over the workers. :meth:`post` never waits: beyond ``max_pending`` Events waiting, a new
    one is dropped with a warning (an API server that takes none must not grow the operator's
    memory). The workers start with the first Event of an event loop (the demo runs the operator
    again in a new loop) and stop in :meth:`aclose`, after posting what waits (bounded); from then
    on Events are dropped until :meth:`open` (Kopf's exit waits for every task left running)."""

    def __init__(
        self,
        recorder: EventRecorder,
        *,
        workers: int = 4,
        backoffs: Sequence[float] = (1.0, 2.0, 4.0),
        max_pending: int = 10_000,
    ) -> None:
        self._recorder = recorder
        self._workers = max(1, workers)
        self._backoffs = tuple(backoffs)
        self._max_pending = max_pending
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queues: list[asyncio.Queue[_Pending]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._pending = 0
        self._closing = False
        self._open = True
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Events handed over and not yet posted (or given up)."""
        return self._pending

    def post(self, involved: Mapping[str, str], type: str, reason: str, message: str) -> None:
        """Hand over one Event about ``involved`` (apiVersion, kind, namespace, name, uid)."""
        if not self._open:  # the operator is stopping (after Kopf's clean-up, no task may be left)
            self.dropped += 1
            logger.debug("Event %s about %s/%s dropped: the operator is stopping",
                         reason, involved.get("namespace"), involved.get("name"))
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._start(loop)
        if self._pending >= self._max_pending:
            self.dropped += 1
            logger.warning(
                "Event %s about %s/%s dropped: %d Events are waiting for the API server",
                reason, involved.get("namespace"), involved.get("name"), self._pending,
            )
            return
        shard = hash((involved.get("namespace"), involved.get("name"))) % self._workers
        self._pending += 1
        self._queues[shard].put_nowait((involved, type, reason, message))

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending = 0
        self._closing = False
        self._queues = [asyncio.Queue() for _ in range(self._workers)]
        self._tasks = [
            loop.create_task(self._work(queue), name=f"event poster {number}")
            for number, queue in enumerate(self._queues)
        ]

    async def _work(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            involved, kind, reason, message = await queue.get()
            try:
                backoffs = () if self._closing else self._backoffs
                await self._recorder.post(involved, kind, reason, message, backoffs=backoffs)
            except Exception as exc:  # never the worker's end; never the Event's text in the log
                logger.warning(
                    "Event %s about %s/%s not posted: %s",
                    reason, involved.get("namespace"), involved.get("name"), type(exc).__name__,
                )
            finally:
                self._pending -= 1
                queue.task_done()

    def open(self) -> None:
        """Take Events again after :meth:`aclose` (the operator started again)."""
        self._open = True

    async def aclose(self, timeout: float = 2.0) -> None:
        """Post what waits, each Event once more at most (no back-off), for at most ``timeout``
        seconds; then stop the workers (Kopf's clean-up: its exit waits for tasks left running)."""
        self._open = False
        tasks, queues, loop = self._tasks, self._queues, self._loop
        if loop is not asyncio.get_running_loop():
            self._tasks, self._queues, self._loop = [], [], None
            return  # started in another event loop, gone with it
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(queue.join() for queue in queues)), timeout)
        self._tasks, self._queues, self._loop = [], [], None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
