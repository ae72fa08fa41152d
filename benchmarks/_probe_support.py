"""Support for ``benchmarks/probes.py``: the probe target and the operator-side workers.

Run as a script, this module is one of two child processes of the benchmark::

    python benchmarks/_probe_support.py target
    python benchmarks/_probe_support.py ours '<JSON job>'

``target`` -- the probed "provider": a minimal HTTP/1.1 server on 127.0.0.1 (kernel-chosen port,
printed as ``READY <port>``) written directly on ``asyncio.Protocol`` so that it costs little and
is never the ceiling. It answers like a Convex deployment's liveness route, ``GET /instance_name`` →
``200 text/plain`` with the deployment's name (what :class:`ConvexProvider.probe` expects), and
its key check ``GET /api/check_admin_key`` (any key; JSON), keeps connections alive, and answers
``404`` to any other path. Under the prefix ``/close`` it answers
the same but with ``Connection: close`` and closes the connection after the answer: a new TCP
connection for every probe. ``GET /__stats__`` answers JSON: requests and connections seen,
this process's CPU seconds. It stops on SIGTERM or when its standard input reaches end-of-file.

``ours`` -- the operator's side in a process of its own (so that its CPU and RSS are the
operator code's alone: no aiohttp, no exporter driver in it). The JSON job names the experiment:

Both experiments take a client layout: ``clients`` :class:`ProviderHTTP` instances, each with a
pool of ``pool`` connections (``None``: what ``Services.build`` makes, ``concurrency + 100``;
one such shared client is what the operator deploys: ``handlers/health.py`` probes through
``services.http``), used ``shared`` (one client), by ``namespace`` hash, or per ``slot`` (a LIFO
free list, one client checked out per probe in flight); ``on_call`` is wired to the operator's
:class:`Metrics` in every layout.

* ``engine`` -- the real :class:`ProbeEngine` with ``connections`` registered Convex connections
  (``namespaces`` tenants), interval and initial jitter as given, probing through
  :func:`run_probe`; the result hook does what :class:`HealthReporter` does on every probe in
  the steady state (``Metrics.observe_probe`` and ``tracker.status()``; no Kubernetes write,
  which happens only on a change or the 10-minute heartbeat). Stops at the last of ``marks``
  (probe counts; ``time.process_time`` and the clock are read there, in the result hook) or
  after ``duration`` seconds. Reports schedule drift (``engine.lateness``) by cycle (1st, 2nd,
  3rd+ probe of a connection), latencies, achieved rates and RSS.
* ``layout`` -- :func:`run_probe` in a closed loop with ``concurrency`` tasks (the client-layout
  question of DESIGN §7): CPU and wall time per run, failures, and the target's new connections
  during the measured runs.

The result is one line ``RESULT <json>`` on standard output.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import json
import os
import random
import resource
import signal
import ssl
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

JsonDict = dict[str, Any]

VERSION_BODY = b"happy-otter-123"  # /instance_name: the deployment the fleet's keys name
_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n" % len(VERSION_BODY)
OK_KEEP = _OK_HEAD + b"\r\n" + VERSION_BODY
OK_CLOSE = _OK_HEAD + b"Connection: close\r\n\r\n" + VERSION_BODY
_KEY_BODY = b'{"success":true,"allowedOps":[],"isReadOnly":false}'
KEY_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_KEY_BODY), _KEY_BODY
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
STATS_PATH = b"/__stats__"
MAX_HEAD = 64 * 1024


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM when the benchmark process dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def rss_mb() -> float:
    """Current resident set size (VmRSS) of this process, MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# ---------------------------------------------------------------------------------------- target
class _TargetStats:
    requests = 0
    connections = 0


class _TargetProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        _TargetStats.connections += 1

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        buffer = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        close = False
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head, buffer = buffer[:end], buffer[end + 4 :]
            parts = head.split(b" ", 2)
            path = parts[1].split(b"?", 1)[0] if len(parts) > 2 else b""
            if path == STATS_PATH:
                body = json.dumps(
                    {
                        "requests": _TargetStats.requests,
                        "connections": _TargetStats.connections,
                        "cpu_seconds": time.process_time(),
                    }
                ).encode()
                out.append(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                continue
            _TargetStats.requests += 1
            if path == b"/instance_name":
                out.append(OK_KEEP)
            elif path == b"/api/check_admin_key":
                out.append(KEY_OK)
            elif path == b"/close/instance_name":
                out.append(OK_CLOSE)
                close = True
                break
            else:
                out.append(NOT_FOUND)
        if len(buffer) > MAX_HEAD:
            close = True
        self._buffer = b"" if close else buffer
        if out:
            transport.write(b"".join(out))
        if close:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


async def _serve_target() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_TargetProtocol, "127.0.0.1", 0, backlog=4096, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    try:
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()


# ------------------------------------------------------------------------------ operator's side
def _operator_imports() -> dict[str, Any]:
    """Import the operator's modules (from the checkout when the package is not installed)."""
    if importlib.util.find_spec("oneie_operator") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
    import httpx

    from oneie_operator.cli.main import tune_garbage_collector
    from oneie_operator.health.assessment import Thresholds
    from oneie_operator.health.engine import EngineSettings, ProbeEngine
    from oneie_operator.health.probing import ProbeTarget, run_probe
    from oneie_operator.observability.metrics import Metrics
    from oneie_operator.providers import DestinationPolicy, ProviderHTTP, default_registry, validate_settings
    from oneie_operator.vault import Keyring, seal

    return {
        "httpx": httpx,
        "Thresholds": Thresholds,
        "EngineSettings": EngineSettings,
        "ProbeEngine": ProbeEngine,
        "ProbeTarget": ProbeTarget,
        "run_probe": run_probe,
        "Metrics": Metrics,
        "DestinationPolicy": DestinationPolicy,
        "ProviderHTTP": ProviderHTTP,
        "default_registry": default_registry,
        "validate_settings": validate_settings,
        "Keyring": Keyring,
        "seal": seal,
        "tune_garbage_collector": tune_garbage_collector,
    }


class _Fleet:
    """``connections`` Convex connections over ``namespaces`` tenants, each with its own sealed key."""

    def __init__(self, mods: dict[str, Any], job: JsonDict) -> None:
        rng = random.Random(job["seed"])
        self.keyring = mods["Keyring"].from_env(rng.randbytes(32).hex(), None)
        provider = mods["default_registry"]().get("convex")
        # Liveness only (credentialCheckEvery huge: its Nth probe never comes), as in the published
        # series; a job may set "credential_check_every" (1 = the operator's default) to add the key check.
        thresholds = mods["Thresholds"](
            interval_seconds=job["interval"],
            timeout_seconds=job.get("timeout", 10.0),
            credential_check_every=job.get("credential_check_every", 1_000_000_000),
        )
        self.targets = []
        per_ns = -(-job["connections"] // job["namespaces"])
        for i in range(job["connections"]):
            namespace, name = f"tenant-{i // per_ns:05d}", f"conn-{i % per_ns}"
            settings = mods["validate_settings"](provider, {"url": job["url"]}, "spec.convex")
            token = "".join(rng.choice("abcdef0123456789") for _ in range(32))
            sealed = mods["seal"](
                self.keyring, {"deployKey": f"dev:happy-otter-123|{token}"}, namespace=namespace, connection=name
            )
            self.targets.append(
                mods["ProbeTarget"](namespace, name, provider, settings, sealed, thresholds, uid=f"uid-{i}")
            )


def _policy(mods: dict[str, Any]) -> Any:
    return mods["DestinationPolicy"](allow_loopback=True, allow_plain_http=True)


def _clients(mods: dict[str, Any], job: JsonDict, policy: Any, metrics: Any) -> list[Any]:
    """``job["clients"]`` ProviderHTTP instances; ``pool`` None = exactly what ``Services.build`` makes."""
    # Several clients share one TLS context (a context per client would load the CA bundle again:
    # about 0.6 MiB and 20 ms each); unused on plain http, as here, but part of the layout's cost.
    tls = ssl.create_default_context()
    pool = job.get("pool") or job["concurrency"] + 100  # Services.build: PROBE_CONCURRENCY + 100
    return [
        mods["ProviderHTTP"](
            policy=policy, timeout=10.0, on_call=metrics.observe_call, verify=tls, max_connections=pool
        )
        for _ in range(job.get("clients", 1))
    ]


def _sharding(clients: list[Any]) -> Callable[[str], Any]:
    if len(clients) == 1:
        only = clients[0]
        return lambda _namespace: only
    return lambda namespace: clients[zlib.crc32(namespace.encode()) % len(clients)]


async def _engine_job(mods: dict[str, Any], job: JsonDict) -> JsonDict:
    """Run the real engine; stop at the last of ``marks`` (probe counts) or after ``duration`` s."""
    rss_start = rss_mb()
    fleet = _Fleet(mods, job)
    metrics = mods["Metrics"]()
    policy = _policy(mods)
    clients = _clients(mods, job, policy, metrics)
    shard = _sharding(clients)
    free: list[Any] | None = None
    if job.get("assign") == "slot":
        if len(clients) < job["concurrency"]:
            raise ValueError("the per-slot layout needs a client per probe slot")
        free = list(clients)
    failures: list[str] = []
    ordinal: dict[tuple[str, str], int] = {}
    lateness_by_cycle: dict[int, list[float]] = {1: [], 2: [], 3: []}  # 3 = third and later
    latencies: list[float] = []
    completed_at: list[float] = []
    # Cut points: process_time/monotonic at given probe counts (taken in the result hook).
    marks: dict[int, tuple[float, float]] = {}
    wanted = sorted(set(job.get("marks", ())))
    done = asyncio.Event()
    failed = [0]
    engine: Any = None

    async def prober(target: Any, check: bool) -> Any:
        # The engine appended (namespace, start - due) just before calling us, synchronously.
        key = (target.namespace, target.name)
        cycle = ordinal[key] = ordinal.get(key, 0) + 1
        lateness_by_cycle[min(cycle, 3)].append(engine.lateness[-1][1])
        if free is None:  # handlers/services.py: run_probe(target, keyring, services.http, ...)
            return await mods["run_probe"](target, fleet.keyring, shard(target.namespace), check_credentials=check)
        # Per-slot layout: a probe checks a client out of a LIFO free list for its duration. The
        # engine runs at most ``concurrency`` probes at once, so the list never runs dry.
        client = free.pop()
        try:
            return await mods["run_probe"](target, fleet.keyring, client, check_credentials=check)
        finally:
            free.append(client)

    async def on_result(target: Any, tracker: Any, old: str, new: str) -> None:
        # What HealthReporter does on every probe in the steady state (metrics, the status
        # document); its Kubernetes write happens only on a change or the 10-minute heartbeat.
        latest = tracker.outcomes[-1]
        metrics.observe_probe(
            target.namespace,
            target.name,
            target.provider.name,
            ok=latest.ok,
            seconds=latest.seconds,
            reason=latest.reason,
            state=new,
            error_rate=tracker.error_rate,
            consecutive_failures=tracker.consecutive_failures,
        )
        tracker.status()
        latencies.append(latest.seconds)
        completed_at.append(time.monotonic())
        if not latest.ok:
            failed[0] += 1
            if len(failures) < 3:
                failures.append(f"{latest.reason}: {latest.message}")
        if wanted and len(completed_at) == wanted[0]:
            marks[wanted.pop(0)] = (time.process_time(), time.monotonic())
            if not wanted:
                done.set()

    settings = mods["EngineSettings"](
        max_concurrency=job["concurrency"],
        max_per_namespace=job["per_namespace"],
        initial_jitter_seconds=job["jitter"],
    )
    engine = mods["ProbeEngine"](prober, on_result, settings, rng=random.Random(job["seed"]))
    cpu_registering, registering_at = time.process_time(), time.monotonic()
    for target in fleet.targets:
        engine.upsert(target)
    rss_registered = rss_mb()
    cpu_started, started_at = time.process_time(), time.monotonic()
    task = asyncio.create_task(engine.run())
    timed_out = False
    try:
        async with asyncio.timeout(job.get("duration") or job["deadline"]):
            await done.wait()
    except TimeoutError:
        timed_out = not job.get("duration")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        cpu_end, end_at = time.process_time(), time.monotonic()
        for client in clients:
            await client.aclose()
    if timed_out:
        failures.insert(0, f"deadline {job['deadline']}s: {len(completed_at)} probes, marks reached {sorted(marks)}")
    interval = job["interval"]
    steady = [t for t in completed_at if t - started_at >= interval]
    keys = [(t.namespace, t.name) for t in fleet.targets]
    return {
        "marks": {str(k): v for k, v in marks.items()},
        "registration_s": started_at - registering_at,
        "registration_cpu_s": cpu_started - cpu_registering,
        "run_s": end_at - started_at,
        "run_cpu_s": cpu_end - cpu_started,
        "probes": len(completed_at),
        "failed": failed[0],
        "failures": failures,
        "first_cycle_done_s": (completed_at[len(fleet.targets) - 1] - started_at)
        if len(completed_at) >= len(fleet.targets)
        else None,
        "steady_probes": len(steady),
        "steady_s": end_at - started_at - interval,
        "lateness": {str(k): _summary(v) for k, v in lateness_by_cycle.items()},
        "lateness_all": _summary([late for _, late in engine.lateness]),
        "latency": _summary(latencies),
        # Latency of the probes between the first and the last mark (the measured windows).
        "latency_marked": _summary(latencies[min(job["marks"]) : max(job["marks"])]) if job.get("marks") else None,
        "rss_mb": {"start": rss_start, "registered": rss_registered, "end": rss_mb(), "max": max_rss_mb()},
        "outcomes_held": sum(len(tr.outcomes) for ns, name in keys if (tr := engine.tracker(ns, name))),
        "full_tracker_bytes": _full_tracker_bytes(mods) if job.get("duration") else None,
    }


def _summary(values: list[float]) -> JsonDict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


async def _layout_job(mods: dict[str, Any], job: JsonDict) -> JsonDict:
    concurrency = job["concurrency"]
    fleet = _Fleet(mods, {**job, "connections": concurrency, "namespaces": concurrency, "interval": 300.0})
    policy = _policy(mods)
    metrics = mods["Metrics"]()
    rss_before = rss_mb()
    clients = _clients(mods, job, policy, metrics)
    rss_clients = rss_mb()
    # Each task is one connection of a namespace of its own; the client it uses is fixed by a
    # stable hash of the namespace (as a sharded layout would pick it), or is the task's own
    # (per-slot layout: as many clients as tasks).
    shard = _sharding(clients)
    per_slot = job.get("assign") == "slot"
    remaining = [0]
    failures: list[str] = []
    failed = [0]

    async def worker(i: int) -> None:
        target = fleet.targets[i]
        client = clients[i] if per_slot else shard(target.namespace)
        while remaining[0] > 0:
            remaining[0] -= 1
            outcome = await mods["run_probe"](target, fleet.keyring, client)
            if not outcome.ok:
                failed[0] += 1
                if len(failures) < 3:
                    failures.append(f"{outcome.reason}: {outcome.message}")

    async def burst(count: int) -> JsonDict:
        remaining[0] = count
        failed[0] = 0
        cpu0, wall0 = time.process_time(), time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(job["concurrency"])))
        return {
            "cpu_s": time.process_time() - cpu0,
            "wall_s": time.monotonic() - wall0,
            "probes": count,
            "failed": failed[0],
        }

    await burst(job["warmup"])
    before = await _target_stats(mods, job["url"])
    runs = [await burst(job["probes"]) for _ in range(job["repeats"])]
    after = await _target_stats(mods, job["url"])
    rss_end = rss_mb()
    for client in clients:
        await client.aclose()
    return {
        "runs": runs,
        "failures": failures,
        "rss_mb": {"clients": rss_clients - rss_before, "end": rss_end},
        # New TCP connections the target accepted during the measured runs (1 is this stats call).
        "target_connections": after["connections"] - before["connections"] - 1,
        "target_requests": after["requests"] - before["requests"],
    }


async def _target_stats(mods: dict[str, Any], url: str) -> JsonDict:
    base = mods["httpx"].URL(url).copy_with(path="/__stats__")
    async with mods["httpx"].AsyncClient(trust_env=False) as client:
        stats: JsonDict = (await client.get(base)).json()
        return stats


def _full_tracker_bytes(mods: dict[str, Any], sample: int = 200) -> float:
    """Bytes a HealthTracker holds once its outcome deque (maxlen 100) is full, per connection."""
    import tracemalloc

    from oneie_operator.health.assessment import HealthTracker, ProbeOutcome
    from oneie_operator.health.probing import _now

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        trackers = [HealthTracker(mods["Thresholds"]()) for _ in range(sample)]
        for tracker in trackers:
            for i in range(tracker.outcomes.maxlen or 0):
                tracker.record(ProbeOutcome(True, 0.001 * i, _now()))
        return (tracemalloc.get_traced_memory()[0] - before) / sample
    finally:
        tracemalloc.stop()


def _run_ours(job: JsonDict) -> None:
    mods = _operator_imports()
    # As `oneie-operator run` does once its modules are loaded: freeze them out of the collector's
    # passes and widen its young generation (without this, collections took ~2.5 s of a 10,000-probe
    # start-up burst here against ~0.5 s).
    mods["tune_garbage_collector"]()
    kind = job["kind"]
    coro = _engine_job(mods, job) if kind == "engine" else _layout_job(mods, job)
    run: Callable[[Any], Any] = asyncio.run
    if job.get("loop", "uvloop") == "uvloop":  # as the operator runs (oneie_operator.cli.main)
        import uvloop

        run = uvloop.run
    result = run(coro)
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) >= 1 and argv[0] == "target":
        asyncio.run(_serve_target())
        return 0
    if len(argv) == 2 and argv[0] == "ours":
        _run_ours(json.loads(argv[1]))
        return 0
    print("usage: _probe_support.py target | ours '<json job>'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
