"""The probe engine: every registered connection probed on its interval, cheaply and fairly.

* One scheduler task keeps a heap of due times; each due probe runs as its own task.
* Bounded concurrency overall and per namespace: one tenant's hanging backends hold only that
  tenant's slots, so other tenants' probes are not delayed. A due probe waits for its slots in
  the scheduler's queues (first come, first served, as a semaphore would), not as a task of its
  own: a start-up burst of 10,000 due probes is 10,000 queue items, and a probe task exists only
  while its probe runs.
* Jitter: a newly registered connection is first probed at a random point of its first
  interval (capped), so a burst of new connections does not stampede the backends.
* Resume: a connection registered with what its last probe found (:class:`LastProbe`, from
  ``status.health`` after a restart) keeps its schedule (next probe one interval after the last)
  and its health state (no false transition); one whose probe is overdue (the operator was down
  longer than its interval) is probed at a random point of one interval, so a restart does not
  stampede every backend at once.
* Rate limits: ``requestsPerMinute`` / ``requestsPerDay`` of the connection are never exceeded
  by probes (the probe is postponed), and a provider's ``Retry-After`` is honoured. A probe that
  also checks the credentials (every ``credentialCheckEvery``-th) counts as two calls.
* ``request(key)``: an immediate probe (the ``one.ie/probe`` annotation, ``kubectl oneie probe``).
* Results go to ``on_result`` (status, Events, metrics are the caller's business).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import heapq
import itertools
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from oneie_operator.health.assessment import HealthTracker, LastProbe, ProbeOutcome, State
from oneie_operator.health.probing import ProbeTarget

Key = tuple[str, str]
#: Probes one connection; the flag says whether this probe also checks the credentials.
Prober = Callable[[ProbeTarget, bool], Awaitable[ProbeOutcome]]
ResultHook = Callable[[ProbeTarget, HealthTracker, State, State], Awaitable[None]]


@dataclass
class EngineSettings:
    max_concurrency: int = 200
    """Probes in flight at once, overall."""

    max_per_namespace: int = 10
    """Probes in flight at once within one namespace (one tenant)."""

    initial_jitter_seconds: float = 60.0
    """A new connection's first probe comes at a random delay up to min(interval, this)."""


@dataclass(slots=True)
class _Entry:
    target: ProbeTarget
    tracker: HealthTracker
    due: float
    generation: int = 0  # bumps on re-registration/removal: stale heap items are skipped
    in_flight: bool = False
    requested: bool = False  # request() while in flight: probe again as soon as this one is reported
    not_before: float = 0.0  # Retry-After / rate limits
    #: Start times of the latest calls, only while the matching rate limit is set, and only as many
    #: as the limit (only those decide): no deque at all for the usual connection without limits
    #: (an empty deque is 0.6 KiB, and the unbounded day window held every call of the last day: 576
    #: at the defaults, some 12 KiB per connection).
    #: A limit set later counts the calls from then on.
    minute: collections.deque[float] | None = None
    day: collections.deque[float] | None = None
    #: Started probes. The N-th, 2N-th, ... (N = credential_check_every) also checks the credentials:
    #: counted from registration, as the reconcile that registers a connection has just run the
    #: credential test (Ready needs it), and an operator restart does not re-test every connection
    #: at its first probe. N = 1 (the default): every probe checks.
    probes: int = 0


_Due = tuple[Key, _Entry, float]  # a due probe: the connection, its entry, its due time


@dataclasses.dataclass(slots=True)
class _NamespaceSlots:
    #: Probes of the namespace holding one of its slots (running, or queued for an overall slot).
    holding: int = 0
    #: Probes of the namespace waiting for one of its slots, first come first served.
    waiting: collections.deque[_Due] = dataclasses.field(default_factory=collections.deque)


class ProbeEngine:
    def __init__(
        self,
        prober: Prober,
        on_result: ResultHook,
        settings: EngineSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        on_discarded: Callable[[str, str], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._prober = prober
        self._on_result = on_result
        #: Called with (namespace, name) when a probe finishes for a connection deleted meanwhile:
        #: its calls were counted after the connection's series were removed (metrics clean-up).
        self._on_discarded = on_discarded
        self.settings = settings or EngineSettings()
        self._clock = clock
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self._entries: dict[Key, _Entry] = {}
        self._heap: list[tuple[float, int, Key, int]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        #: Probes running (holding an overall slot).
        self._running = 0
        #: Due probes holding their namespace's slot, waiting for an overall slot (first come first served).
        self._ready: collections.deque[_Due] = collections.deque()
        #: Per-namespace concurrency slots, kept only while a probe of that namespace is waiting
        #: or running (a namespace that ever had a connection costs nothing afterwards).
        self._per_ns: dict[str, _NamespaceSlots] = {}
        self._stopping = False
        #: The running probes' tasks, with what they probe.
        self._tasks: dict[asyncio.Task[None], _Due] = {}
        #: (namespace, start − due time) of recent probes: schedule drift, bounded.
        self.lateness: collections.deque[tuple[str, float]] = collections.deque(maxlen=100_000)
        self.probes_done = 0

    # ------------------------------------------------------------------ registration
    def upsert(self, target: ProbeTarget, last: LastProbe | None = None) -> None:
        """Register or update a connection; keeps its history when only settings change.

        ``last``: what the connection's last probe found (by an earlier process), for a
        connection this engine has not probed yet: its schedule and state continue from there."""
        key = (target.namespace, target.name)
        entry = self._entries.get(key)
        now = self._clock()
        if entry is None:
            interval = target.thresholds.interval_seconds
            tracker = HealthTracker(target.thresholds)
            if last is None:
                due = now + self._rng.uniform(0, min(interval, self.settings.initial_jitter_seconds))
            else:
                tracker.state, tracker.consecutive_failures = last.state, max(0, last.consecutive_failures)
                # Next one interval after the last (never later, whatever the clocks say); overdue:
                # somewhere in one interval, spread.
                remaining = min(interval, last.at + interval - self._wall_clock())
                due = now + (remaining if remaining > 0 else self._rng.uniform(0, interval))
            entry = _Entry(target=target, tracker=tracker, due=due)
            self._entries[key] = entry
        else:
            changed = entry.target.thresholds.interval_seconds != target.thresholds.interval_seconds
            entry.target = target
            entry.tracker.thresholds = target.thresholds
            if not changed:
                return
            entry.due = min(entry.due, now + target.thresholds.interval_seconds)
        entry.generation += 1
        self._push(key, entry)

    def remove(self, namespace: str, name: str) -> bool:
        entry = self._entries.pop((namespace, name), None)
        if entry is not None:
            entry.generation += 1
        return entry is not None

    def request(self, namespace: str, name: str) -> bool:
        """Probe this connection now (rate limits and Retry-After still apply)."""
        entry = self._entries.get((namespace, name))
        if entry is None:
            return False
        if entry.in_flight:
            # The probe under way may have read its request before this one came (its result is
            # being reported): another follows it at once, not an interval later.
            entry.requested = True
            return True
        entry.due = self._clock()
        entry.generation += 1
        self._push((namespace, name), entry)
        return True

    def knows(self, namespace: str, name: str) -> bool:
        """Whether the connection is registered."""
        return (namespace, name) in self._entries

    def tracker(self, namespace: str, name: str) -> HealthTracker | None:
        entry = self._entries.get((namespace, name))
        return entry.tracker if entry else None

    @property
    def namespaces_probing(self) -> int:
        """Namespaces with a probe waiting for or holding one of their slots right now."""
        return len(self._per_ns)

    def __len__(self) -> int:
        return len(self._entries)

    def _push(self, key: Key, entry: _Entry) -> None:
        heapq.heappush(self._heap, (entry.due, next(self._seq), key, entry.generation))
        self._wake.set()

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        """The scheduler loop; cancel it to stop (in-flight probes are cancelled too)."""
        try:
            while True:
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    due, _, key, generation = heapq.heappop(self._heap)
                    entry = self._entries.get(key)
                    if entry is None or entry.generation != generation:
                        continue  # removed or rescheduled meanwhile
                    self._start(key, entry, due, now)
                self._wake.clear()
                timeout = (self._heap[0][0] - now) if self._heap else None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        finally:
            self._stopping = True  # no probe starts any more
            # Cancelled or never started: due again at the same time when the engine runs again.
            unfinished = [*self._tasks.values(), *self._ready]
            unfinished += [due for slots in self._per_ns.values() for due in slots.waiting]
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._ready.clear()
            self._per_ns.clear()
            self._running = 0  # a task cancelled before its first step never ran its clean-up
            self._stopping = False
            for key, entry, due in unfinished:
                entry.in_flight = entry.requested = False
                if self._entries.get(key) is entry:
                    entry.due = due
                    entry.generation += 1
                    self._push(key, entry)

    def _start(self, key: Key, entry: _Entry, due: float, now: float) -> None:
        interval = entry.target.thresholds.interval_seconds
        if entry.in_flight:
            entry.due = now + interval
            self._push(key, entry)
            return
        allowed = max(entry.not_before, self._rate_limit_until(entry, now))
        if allowed > now:
            entry.due = allowed
            self._push(key, entry)
            return
        entry.in_flight = True  # from now until its probe is reported (or dropped)
        slots = self._per_ns.get(key[0])
        if slots is None:
            slots = self._per_ns[key[0]] = _NamespaceSlots()
        if slots.holding < self.settings.max_per_namespace:
            slots.holding += 1
            self._ready.append((key, entry, due))
            self._admit()
        else:
            slots.waiting.append((key, entry, due))

    def _admit(self) -> None:
        """Start queued probes while overall slots are free."""
        ready = self._ready
        while ready and self._running < self.settings.max_concurrency and not self._stopping:
            key, entry, due = ready.popleft()
            if self._entries.get(key) is not entry:  # deleted (or replaced) while queued: not probed
                entry.in_flight = False
                self._release_namespace_slot(key[0])
                continue
            self._running += 1
            task = asyncio.create_task(self._probe(key, entry, due))
            self._tasks[task] = (key, entry, due)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        del self._tasks[task]

    def _release_namespace_slot(self, namespace: str) -> None:
        """A probe of ``namespace`` gave its slot back: the next one waiting for it gets it."""
        slots = self._per_ns[namespace]
        if slots.waiting:
            self._ready.append(slots.waiting.popleft())  # the slot passes on: holding stays
        else:
            slots.holding -= 1
            if not slots.holding:
                del self._per_ns[namespace]

    def _rate_limit_until(self, entry: _Entry, now: float) -> float:
        target = entry.target
        # A probe that also checks the credentials makes two calls.
        need = 2 if _checks_credentials(entry.probes, target.thresholds.credential_check_every) else 1
        for window, limit, span in (
            (entry.minute, target.requests_per_minute, 60.0),
            (entry.day, target.requests_per_day, 86400.0),
        ):
            if limit is None or window is None:
                continue
            while window and window[0] <= now - span:
                window.popleft()
            if len(window) + min(need, limit) > limit:
                return window[len(window) - limit + min(need, limit) - 1] + span
        return now

    @staticmethod
    def _record_calls(entry: _Entry, started: float, calls: int) -> None:
        """Note ``calls`` calls at ``started`` in the windows of the connection's rate limits."""
        target = entry.target
        entry.minute = _noted(entry.minute, target.requests_per_minute, started, calls)
        entry.day = _noted(entry.day, target.requests_per_day, started, calls)

    async def _probe(self, key: Key, entry: _Entry, due: float) -> None:
        namespace = key[0]
        try:
            try:
                started = self._clock()
                self.lateness.append((namespace, started - due))
                target = entry.target
                check = _checks_credentials(entry.probes, target.thresholds.credential_check_every)
                entry.probes += 1
                self._record_calls(entry, started, 2 if check else 1)  # the credential test is a call of its own
                outcome = await self._prober(target, check)
            finally:
                # The slots are given back before the result is reported (which may write to the API).
                self._running -= 1
                if not self._stopping:
                    self._release_namespace_slot(namespace)
                    self._admit()
            self.probes_done += 1
            if self._entries.get(key) is not entry:
                if self._on_discarded is not None and key not in self._entries:
                    self._on_discarded(*key)
                return  # deleted mid-probe: the result belongs to nobody
            old, new = entry.tracker.record(outcome)
            finished = self._clock()
            entry.not_before = finished + outcome.retry_after if outcome.retry_after else 0.0
            entry.due = max(finished + entry.target.thresholds.interval_seconds, entry.not_before)
            entry.generation += 1
            self._push(key, entry)
            await self._on_result(entry.target, entry.tracker, old, new)
        finally:
            entry.in_flight = False
            if entry.requested:
                entry.requested = False
                if self._entries.get(key) is entry:
                    entry.due = self._clock()
                    entry.generation += 1
                    self._push(key, entry)


def _noted(
    window: collections.deque[float] | None, limit: int | None, started: float, calls: int
) -> collections.deque[float] | None:
    """``window`` with ``calls`` more call times, holding the latest ``limit`` (None: no limit, no window)."""
    if limit is None:
        return None
    if window is None or window.maxlen != limit:
        window = collections.deque(window or (), maxlen=limit)
    window.extend(itertools.repeat(started, calls))
    return window


def _checks_credentials(started: int, every: int) -> bool:
    """Whether the probe after ``started`` probes also checks the credentials (the N-th, 2N-th, ...)."""
    return (started + 1) % every == 0
