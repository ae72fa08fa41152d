"""Support for ``benchmarks/switch.py``: a counting emulator process, child processes, a watch reader.

Run as a script, this module is the Kubernetes emulator of the benchmark in a process of its own::

    python benchmarks/_switch_support.py [--port 0]

It serves :class:`~oneie_operator.testing.emulator.FixedKubernetesEmulator` with the CRDs of
``crds/`` and prints ``READY http://127.0.0.1:PORT`` once it listens. It stops on SIGTERM/SIGINT
or when its standard input reaches end-of-file (the benchmark holds the pipe: if the benchmark
dies, the emulator goes too). One side endpoint, outside ``/api`` and ``/apis``:

* ``GET /__switchbench__/stats`` -- requests served so far, counted by (client, verb, resource),
  the watch events delivered (one per event and open watch of its resource: the emulator
  serialises each event once per watcher), the open watches, this process's CPU seconds and
  ``time.monotonic()`` (one clock for all processes of the machine).

The counting costs one dictionary increment per request.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import attrs
from _common import (
    BenchmarkError,
    Child,
    JsonDict,
    die_with_parent,
    emulator_child,
    serve_until_stopped,
)

from oneie_operator.testing.emulator import FixedKubernetesEmulator
from oneie_operator.vault import generate_key

SCRIPT = Path(__file__).resolve()
HERE = SCRIPT.parent
ROOT = HERE.parent
STATS_PATH = "/__switchbench__/stats"
DRIVER_UA = "oneie-switch-bench"


# --- The emulator process ---------------------------------------------------------------------------


def client_of(user_agent: str) -> str:
    if user_agent.startswith("kopf/"):
        return "kopf"
    if user_agent.startswith("OpenAPI-Generator"):
        return "kubernetes-client"
    if user_agent == DRIVER_UA:
        return "benchmark"
    return user_agent.split("/", 1)[0] or "?"


def request_kind(method: str, path: str, query: Mapping[str, str]) -> tuple[str, str]:
    """(verb, resource[/subresource]) of a request, as kubectl's audit log would name them."""
    parts = [part for part in path.split("/") if part]
    if parts[:1] == ["api"] and len(parts) >= 2:
        rest = parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        rest = parts[3:]
    else:
        return method.lower(), "(discovery)"
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return method.lower(), "(discovery)"
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    if method == "GET" and query.get("watch") in {"true", "1"}:
        verb = "watch"
    else:
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete"}.get(method, method.lower())
    return verb, resource + (f"/{sub}" if sub else "")


@attrs.define(kw_only=True)
class CountingEmulator(FixedKubernetesEmulator):
    """The emulator plus request and watch-delivery counters (see the module docstring)."""

    counts: collections.Counter[tuple[str, str, str]] = attrs.field(factory=collections.Counter, init=False)
    requests: int = attrs.field(default=0, init=False)
    deliveries: int = attrs.field(default=0, init=False)
    open_watches: dict[int, tuple[str, str]] = attrs.field(factory=dict, init=False)
    _next_watch: int = attrs.field(default=0, init=False)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path == STATS_PATH:
            return self._stats()
        verb, resource = request_kind(raw_request.method, raw_request.path, raw_request.query)
        self.requests += 1
        self.counts[client_of(raw_request.headers.get("User-Agent", "")), verb, resource] += 1
        if verb != "watch":
            return await super().__call__(raw_request)
        token = self._next_watch = self._next_watch + 1
        self.open_watches[token] = (raw_request.path, client_of(raw_request.headers.get("User-Agent", "")))
        try:
            return await super().__call__(raw_request)
        finally:
            del self.open_watches[token]

    def _emit(self, store_key: Any, type_: str, old: JsonDict | None, new: JsonDict) -> None:
        self.deliveries += len(self._stores[store_key].watchers)
        super()._emit(store_key, type_, old, new)

    def _stats(self) -> aiohttp.web.Response:
        return aiohttp.web.json_response({
            "now": time.monotonic(),
            "cpu": time.process_time(),
            "gc_seconds": GC_PAUSES["total"],
            "gc_full": list(GC_PAUSES["full"]),
            "requests": self.requests,
            "deliveries": self.deliveries,
            "counts": [[*key, value] for key, value in self.counts.items()],
            "watches": sorted(self.open_watches.values()),
        })


#: This process's garbage-collection pauses: total seconds, and each full (generation 2) one.
GC_PAUSES: JsonDict = {"total": 0.0, "full": collections.deque(maxlen=1000)}
_gc_started = [0.0]


def _gc_callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    pause = time.perf_counter() - _gc_started[0]
    GC_PAUSES["total"] += pause
    if info["generation"] == 2:
        GC_PAUSES["full"].append((time.monotonic(), pause))


async def serve(port: int) -> None:
    # Schema validation off: the benchmarks measure the operator, and their baseline predates it.
    await serve_until_stopped(CountingEmulator(schema_validation=False), port,
                              on_start=lambda: gc.callbacks.append(_gc_callback))


# --- Child processes ---------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def emulator_process(workdir: Path) -> AsyncIterator[tuple[Child, str]]:
    """This module as a script: the counting emulator in its own process; yields it and its URL."""
    async with emulator_child(SCRIPT, "emulator", workdir / "emulator.log") as started:
        yield started


@contextlib.asynccontextmanager
async def operator_process(workdir: Path, kubeconfig: Path, extra_env: Mapping[str, str]) -> AsyncIterator[Child]:
    """``python -m oneie_operator run --kubeconfig K``, as deployed, with a fresh key."""
    env = {
        **os.environ,
        "ENCRYPTION_KEY": generate_key(),
        "ALLOW_LOOPBACK": "true",
        "ALLOW_PLAIN_HTTP": "true",
        "METRICS_PORT": "0",
        "HEALTH_PORT": "0",
        "BIND_ADDRESS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "ENCRYPTION_KEYRING", "BACKEND_PROVIDER"):
        env.pop(name, None)
    log_path = workdir / "operator.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(kubeconfig),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            preexec_fn=die_with_parent, cwd=ROOT,
        )  # fmt: skip
    child = Child("operator", process, log_path)
    try:
        yield child
    finally:
        await child.stop(timeout=20)


# --- py-spy (optional) -------------------------------------------------------------------------------


async def start_py_spy(out: Path, pid: int, workdir: Path) -> asyncio.subprocess.Process | None:
    binary = Path(sys.executable).with_name("py-spy")
    if not binary.exists():
        print("  (py-spy not found beside this interpreter: no profile; pip install py-spy)")
        return None
    with (workdir / "py-spy.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(binary), "record", "--pid", str(pid), "--rate", os.environ.get("PY_SPY_RATE", "250"),
            "--format", "raw", "--threads", "--gil", "--nonblocking", "-o", str(out),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=die_with_parent,
        )  # fmt: skip
    await asyncio.sleep(0.5)  # attached
    return process


async def stop_py_spy(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


def short_frame(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':', 1)[0].rstrip(')')})" if where else name


IDLE_LEAVES = ("_worker (thread.py)", "select (selectors.py)", "wait (threading.py)")


def collapsed_summary(path: Path, top: int = 15) -> list[str]:
    """Busy samples by leaf function ("self") and by operator/Kopf/client frame ("total")."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return [f"  (no py-spy output at {path})"]
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = short_frame(frames[-1])
        if leaf in IDLE_LEAVES or leaf.startswith(("acquire ", "_wait_for_tstate_lock")):
            idle += count
            continue
        total += count
        own[leaf] += count
        interesting = ("oneie_operator", "kopf/", "kubernetes/", "urllib3/", "httpx", "aiohttp/", "json/")
        for name in {short_frame(f) for f in frames[1:] if any(mark in f for mark in interesting)}:
            inclusive[name] += count
    if not total:
        return ["  (py-spy collected no busy samples)"]
    out = [f"  py-spy: {total} samples of the operator's thread holding the GIL ({idle} idle left out; "
           f"raw stacks in {path})",
           "  self (leaf function):"]
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    out.append("  total (frames of the operator, Kopf, the clients):")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return out


# --- Talking to the emulator ------------------------------------------------------------------------


def new_session(limit: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
        headers={"User-Agent": DRIVER_UA, "Authorization": "Bearer benchmark"},
        timeout=aiohttp.ClientTimeout(total=60),
    )


@dataclass(frozen=True)
class EmulatorStats:
    now: float
    cpu: float
    requests: int
    deliveries: int
    counts: Mapping[tuple[str, str, str], int]
    watches: tuple[tuple[str, str], ...]
    gc_seconds: float = 0.0  # all garbage-collection pauses so far
    gc_full: tuple[tuple[float, float], ...] = ()  # (when, seconds) of the recent full collections

    @classmethod
    async def fetch(cls, session: aiohttp.ClientSession, url: str) -> EmulatorStats:
        async with session.get(url + STATS_PATH) as response:
            response.raise_for_status()
            doc = await response.json()
        return cls(doc["now"], doc["cpu"], doc["requests"], doc["deliveries"],
                   {(c, v, r): n for c, v, r, n in doc["counts"]}, tuple(tuple(w) for w in doc["watches"]),
                   doc.get("gc_seconds", 0.0), tuple((at, pause) for at, pause in doc.get("gc_full", ())))

    def full_collections_since(self, earlier: EmulatorStats) -> list[float]:
        """The pauses of the full collections between ``earlier`` and this snapshot, in seconds."""
        return [pause for at, pause in self.gc_full if earlier.now < at <= self.now]

    def minus(self, earlier: EmulatorStats) -> collections.Counter[tuple[str, str, str]]:
        return collections.Counter({k: n - earlier.counts.get(k, 0) for k, n in self.counts.items()
                                    if n - earlier.counts.get(k, 0) > 0})


async def wait_quiet(session: aiohttp.ClientSession, url: str, operator: Child, *, quiet: float = 1.0,
                     timeout: float = 30.0) -> EmulatorStats:
    """Wait until the emulator served no request (ours excluded) for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last = await EmulatorStats.fetch(session, url)
    since = time.monotonic()
    history = collections.deque([last], maxlen=10)
    while True:
        await asyncio.sleep(0.2)
        operator.check_alive("a wait for quiet")
        now = await EmulatorStats.fetch(session, url)
        history.append(now)
        # Our own stats calls are not counted (they bypass the counter).
        if now.requests != last.requests:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
        if time.monotonic() > deadline:
            recent = ", ".join(f"{c} {v} {r} {n}" for (c, v, r), n in now.minus(history[0]).most_common(6))
            print(f"  (warning: the emulator did not go quiet within {timeout:.0f}s; going on; "
                  f"requests in the last {now.now - history[0].now:.1f} s: {recent})", flush=True)
            return now


# --- The organizations watch ------------------------------------------------------------------------

Key = tuple[str, str]
Predicate = Callable[[JsonDict], bool]


@dataclass
class Hit:
    at: float
    obj: JsonDict


@dataclass
class OrgWatch:
    """One watch on all Organizations: the latest state of each, and when awaited states were first seen.

    The time of an event is taken when its bytes arrive, before parsing. The stream is resumed from
    the last resourceVersion if the emulator ends it.
    """

    url: str
    resource: str = "/apis/one.ie/v1alpha1/organizations"
    latest: dict[Key, JsonDict] = field(default_factory=dict)
    events: int = 0
    event_bytes: int = 0
    _rv: str = ""
    _waiting: dict[Key, Predicate] = field(default_factory=dict)
    _hits: dict[Key, Hit] = field(default_factory=dict)
    _first_seen: dict[Key, tuple[Predicate, float | None]] = field(default_factory=dict)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=10)
        headers = {"User-Agent": DRIVER_UA, "Authorization": "Bearer benchmark"}
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            while True:
                params = {"watch": "true"}
                if self._rv:
                    params["resourceVersion"] = self._rv
                async with session.get(self.url + self.resource, params=params) as response:
                    response.raise_for_status()
                    self._connected.set()
                    buffer = b""
                    async for chunk in response.content.iter_any():
                        now = time.monotonic()
                        buffer += chunk
                        if b"\n" not in chunk:
                            continue
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if line.strip():
                                self.event_bytes += len(line)
                                self._event(json.loads(line), now)

    async def connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name="organizations watch")
        return self._task

    def check(self) -> None:
        """Raise if the watch reader has died (its waits would otherwise end in a misleading timeout)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = self._task.exception()
            raise BenchmarkError(f"the benchmark's watch on Organizations ended: {error!r}")

    def _event(self, event: JsonDict, now: float) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            self._rv = ""  # expired: start over from a full listing
            return
        meta = obj.get("metadata") or {}
        self._rv = str(meta.get("resourceVersion") or self._rv)
        if kind == "BOOKMARK":
            return
        self.events += 1
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if kind == "DELETED":
            self.latest.pop(key, None)
            return
        self.latest[key] = obj
        first = self._first_seen.get(key)
        if first is not None and first[1] is None and first[0](obj):
            self._first_seen[key] = (first[0], now)
        predicate = self._waiting.get(key)
        if predicate is not None and predicate(obj):
            self._hits[key] = Hit(now, obj)
            del self._waiting[key]
            if not self._waiting:
                self._done.set()

    def expect(self, predicates: Mapping[Key, Predicate], first: Mapping[Key, Predicate] | None = None) -> None:
        """Await these states (checked against the latest state at once, then on every event)."""
        self._hits = {}
        self._waiting = dict(predicates)
        self._first_seen = {key: (predicate, None) for key, predicate in (first or {}).items()}
        self._done = asyncio.Event()
        now = time.monotonic()
        for key, predicate in list(self._waiting.items()):
            obj = self.latest.get(key)
            if obj is not None and predicate(obj):
                self._hits[key] = Hit(now, obj)
                del self._waiting[key]
        if not self._waiting:
            self._done.set()

    async def wait(self, timeout: float, alive: Callable[[], None]) -> dict[Key, Hit]:
        """The hits, once every awaited state was seen; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self._done.is_set():
            alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), min(remaining, 0.5))
        return dict(self._hits)

    @property
    def hits(self) -> dict[Key, Hit]:
        return dict(self._hits)

    def progress(self) -> tuple[int, int]:
        """(awaited states seen, "first" states seen) so far."""
        return len(self._hits), sum(1 for _, at in self._first_seen.values() if at is not None)

    @property
    def missing(self) -> list[Key]:
        return sorted(self._waiting)

    def first_seen(self) -> dict[Key, float]:
        return {key: at for key, (_, at) in self._first_seen.items() if at is not None}


def describe_orgs(watch: OrgWatch, keys: Iterable[Key], limit: int = 5) -> str:
    """A sample of organizations' current status, for a failure message."""
    lines = []
    for key in list(keys)[:limit]:
        obj = watch.latest.get(key) or {}
        status = obj.get("status") or {}
        last = status.get("lastSwitch") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        lines.append(
            f"    {key[0]}/{key[1]}: generation {obj.get('metadata', {}).get('generation')} observed "
            f"{status.get('observedGeneration')}, active {status.get('activeConnection')}, switching "
            f"{status.get('switching')}, lastSwitch {last.get('from')}→{last.get('to')} {last.get('result')} "
            f"({last.get('reason')}), Ready {ready.get('status')} {ready.get('reason')}: "
            f"{str(ready.get('message'))[:160]}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="the counting emulator of benchmarks/switch.py")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
