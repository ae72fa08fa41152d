"""API server faults for tests: a fault-injecting front for the emulator's request handler.

:class:`FaultInjector` wraps any aiohttp low-level handler (the emulator is one) and, by the
:class:`Rule` objects it holds, answers instead of it:

* ``429`` (with ``Retry-After``), ``500`` or ``503`` as a Kubernetes ``Status`` object, on a
  fraction of the requests (optionally only watches, only writes, or only some paths) and for a
  window of time;
* ``410 Gone`` to watch requests, the way an API server expires a watch: ``200`` and one
  ``ERROR`` event with a ``Status`` of code 410 (the watcher must list again);

and :class:`FaultyFront` serves it on its own port, where it can also close every watch stream
or refuse connections for some seconds (it stops listening and drops every open connection, then
listens again on the same port, as an API server restart looks to a client).

:func:`serve_faulty_emulator_in_thread` runs an emulator in a thread with two entrances: its
plain URL (for the test's own reads and writes) and the faulty front (for the operator).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp.web

from oneie_operator.testing.cluster import serve_emulator
from oneie_operator.testing.emulator import FixedKubernetesEmulator

Handler = Callable[[aiohttp.web.BaseRequest], Awaitable[aiohttp.web.StreamResponse]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REASONS = {
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass
class Rule:
    """Answer ``status`` instead of the handler, for the requests this rule matches."""

    status: int
    #: Share of the matching requests that get the fault (0..1).
    fraction: float = 1.0
    #: None: any request; True: watch requests only; False: everything but watches.
    watches: bool | None = None
    #: Only writes (POST/PUT/PATCH/DELETE).
    writes_only: bool = False
    #: Only requests whose path matches this regular expression.
    path: str | None = None
    #: ``Retry-After`` seconds (429 and 503).
    retry_after: int | None = None
    #: The window, in ``time.monotonic()`` seconds (None: open-ended).
    start: float | None = None
    end: float | None = None

    def matches(self, request: aiohttp.web.BaseRequest, now: float, dice: random.Random) -> bool:
        if (self.start is not None and now < self.start) or (self.end is not None and now >= self.end):
            return False
        watch = is_watch(request)
        if self.watches is not None and watch != self.watches:
            return False
        if self.writes_only and request.method not in WRITES:
            return False
        if self.path is not None and not re.search(self.path, request.path):
            return False
        return dice.random() < self.fraction


def is_watch(request: aiohttp.web.BaseRequest) -> bool:
    return request.query.get("watch", "").lower() in ("1", "true")


def _status(code: int, message: str) -> dict[str, object]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "InternalError"),
        "code": code,
    }


@dataclass
class FaultInjector:
    """The handler, with :class:`Rule` faults answered in its place. Thread-safe to configure."""

    handler: Handler
    seed: int = 0
    rules: list[Rule] = field(default_factory=list)
    #: How many faults were answered, by status.
    injected: Counter[int] = field(default_factory=Counter)
    #: Requests that reached the handler.
    passed: int = 0

    def __post_init__(self) -> None:
        self._dice = random.Random(self.seed)  # noqa: S311  (fault sampling, not security)

    def add(self, rule: Rule, *, seconds: float | None = None) -> Rule:
        """Add a rule, from now on for ``seconds`` (None: until :meth:`clear`)."""
        now = time.monotonic()
        rule.start = rule.start if rule.start is not None else now
        if seconds is not None:
            rule.end = rule.start + seconds
        self.rules = [*self.rules, rule]
        return rule

    def clear(self) -> None:
        self.rules = []

    async def __call__(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        now = time.monotonic()
        for rule in self.rules:
            if rule.matches(request, now, self._dice):
                self.injected[rule.status] += 1
                if rule.status == 410 and is_watch(request):
                    return await self._expire_watch(request)
                headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else {}
                await request.read()
                return aiohttp.web.json_response(
                    _status(rule.status, f"injected fault {rule.status}"), status=rule.status, headers=headers
                )
        self.passed += 1
        return await self.handler(request)

    @staticmethod
    async def _expire_watch(request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        event = {"type": "ERROR", "object": _status(410, "too old resource version (injected)")}
        await response.write(json.dumps(event).encode() + b"\n")
        await response.write_eof()
        return response


class FaultyFront:
    """Serve a :class:`FaultInjector` on a port that can go down and come back (same port)."""

    def __init__(self, injector: FaultInjector, emulator: FixedKubernetesEmulator, host: str = "127.0.0.1") -> None:
        self.injector, self.emulator, self.host = injector, emulator, host
        self.port = 0
        self._runner: aiohttp.web.ServerRunner | None = None
        self.outages = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(self.injector), shutdown_timeout=0.5)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server  # the port the OS chose
            assert isinstance(server, asyncio.base_events.Server)
            self.port = int(server.sockets[0].getsockname()[1])
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            self.emulator.close_watches()  # the streams end at once (else the shutdown waits for them)
            await runner.cleanup()

    async def outage(self, seconds: float) -> None:
        """Refuse connections for ``seconds``: stop listening, drop every connection, come back."""
        self.outages += 1
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start()

    def close_watches(self) -> None:
        """End every watch stream now (clients see a normal end of stream and watch again)."""
        self.emulator.close_watches()


class FaultControl:
    """The faulty front, controlled from another thread than the emulator's."""

    def __init__(self, front: FaultyFront, loop: asyncio.AbstractEventLoop) -> None:
        self.front, self._loop = front, loop

    @property
    def url(self) -> str:
        return self.front.url

    @property
    def injector(self) -> FaultInjector:
        return self.front.injector

    def add(self, rule: Rule, *, seconds: float | None = None) -> Rule:
        return self.front.injector.add(rule, seconds=seconds)

    def clear(self) -> None:
        self.front.injector.clear()

    def close_watches(self) -> None:
        self._loop.call_soon_threadsafe(self.front.close_watches)

    def outage(self, seconds: float) -> concurrent.futures.Future[None]:
        """Start an outage of ``seconds``; the returned future is done when the port listens again."""
        return asyncio.run_coroutine_threadsafe(self.front.outage(seconds), self._loop)


@contextlib.contextmanager
def serve_faulty_emulator_in_thread(
    crd_paths: Iterable[Path] = (), *, seed: int = 0
) -> Iterator[tuple[FixedKubernetesEmulator, str, FaultControl]]:
    """An emulator in its own thread and loop: (emulator, its plain URL, the faulty front's control)."""
    ready: concurrent.futures.Future[tuple[FixedKubernetesEmulator, str, FaultControl]] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with serve_emulator(crd_paths) as (emulator, url):
                front = FaultyFront(FaultInjector(emulator, seed=seed), emulator)
                await front.start()
                try:
                    ready.set_result((emulator, url, FaultControl(front, loop)))
                    await stop.wait()
                finally:
                    await front.stop()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="faulty-emulator", daemon=True)
    thread.start()
    try:
        yield ready.result(timeout=30)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
