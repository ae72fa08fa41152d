"""Health-probe cost and schedule drift: our ProbeEngine against Prometheus' blackbox_exporter.

    python benchmarks/probes.py [--rate 200] [--probes 1500] [--repeats 3] [--compression 12] [--close]
                                [--connections 10000] [--drift-cycles 2.4] [--shared-cycles 1]
                                [--layout-probes 1000] [--py-spy FILE]

Needs Debian's ``prometheus-blackbox-exporter`` (``.ci/prometheus.sh`` installs it): without
``/usr/bin/prometheus-blackbox-exporter`` the benchmark stops at once with a message naming that
script. Detail lines first; the last line is only ``key=value`` pairs. About 3.5 minutes.

**The target** (all parts). One local HTTP server in a process of its own
(``benchmarks/_probe_support.py target``: a minimal HTTP/1.1 responder on ``asyncio.Protocol``,
port picked by the kernel) that answers ``GET /instance_name`` like a Convex deployment's liveness route
(``200 text/plain`` with a version string, keep-alive). Its CPU is charged to neither side. It
counts the requests and TCP connections of each side (keep-alive vs one connection per probe).

**Client layouts.** The engine's ``prober`` decides which ``ProviderHTTP`` a probe uses. Measured:

* ``deployed`` -- what the operator runs: the one shared ``ProviderHTTP`` that ``Services.build``
  makes (``aiohttp`` with the guarded resolver, a pool of ``PROBE_CONCURRENCY + 100`` connections)
  and every provider call uses; ``handlers/health.py`` probes with ``run_probe(target, keyring,
  services.http)``;
* ``sharded_8`` -- the comparison: 8 such clients, pool ``concurrency / 8`` each, picked by a hash
  of the namespace (does one pool's bookkeeping cost at high concurrency? it did with httpcore).

The clients of a layout share one TLS context (a context per client would load the CA bundle
again); all use the operator's ``DestinationPolicy`` (loopback and plain http allowed here).

**Part 1 -- CPU per 1,000 probes, ours vs blackbox_exporter.** Same target, same fixed total rate
(``--rate``, default 200 probes/s), same bound on probes in flight (``--concurrency``, default 200,
the operator's ``PROBE_CONCURRENCY`` default); ``--repeats`` windows of ``--probes`` probes after
``--warmup`` probes; the figure is the median window.

* *Ours*: the real :class:`ProbeEngine` (not a loop around ``run_probe``) in a process of its own
  (``_probe_support.py ours``): ``rate x 5`` Convex connections in tenants of 5 on a 5 s interval
  (initial jitter 5 s), probed through :func:`run_probe` (unseal, ``ConvexProvider.probe``,
  classify) with ``on_call`` wired to the operator's ``Metrics``; the result hook does the
  steady-state part of ``HealthReporter`` (``Metrics.observe_probe``, ``tracker.status()``; its
  Kubernetes write happens only on a change or the 10-minute heartbeat, so never here). Windows
  are cut at probe counts in the result hook; charged: that process's ``time.process_time()``
  (scheduler, probes, metrics: the scheduler IS the client). Run with the ``deployed`` layout
  (the headline: ``ours_cpu_s_per_1000``, ``ratio``) and with ``sharded_8`` (``ours_sharded_8_*``).
* *Theirs*: ``prometheus-blackbox-exporter``, module ``http_2xx`` (``valid_status_codes: [200]``,
  plain http, IPv4), driven by this process over keep-alive connections with
  ``GET /probe?target=http://127.0.0.1:PORT/instance_name&module=http_2xx`` at the same rate and
  in-flight bound; every answer must say ``probe_success 1``. Charged: the exporter's CPU
  (utime + stime of ``/proc/PID/stat``, all threads), which includes serving ``/probe`` and
  rendering its metrics; the driver's CPU is not charged (it plays Prometheus).
* Asymmetries, stated: ours reuses keep-alive connections to the one target, the exporter opens a
  TCP connection per probe by design (a new HTTP client per probe) -- see the target's counts. In
  production (one host per connection, probed every 300 s, keep-alive expiring after 5 s) ours
  connects (and negotiates TLS) for every probe too; ``--close`` makes the target answer
  ``Connection: close`` to both sides for that like-for-like case. Ours pays for a scheduler,
  theirs for an HTTP request from Prometheus. ``mean in flight`` = rate x mean latency.

**Part 2 -- schedule drift and RSS with 10,000 connections.** The real engine with
``--connections`` Convex connections in tenants of 5; interval 300 s and initial jitter 60 s (the
operator's defaults) both divided by ``--compression`` (default 12: 25 s and 5 s), so the load is
``compression`` times the real one (10,000 / 300 s = 33 probes/s and a start-up burst of
10,000 / 60 s = 167/s in real time). Drift is ``engine.lateness`` (probe start minus due time,
waits for a concurrency slot included), split by cycle: the 1st probe of each connection (the jittered start,
a backlog under compression), the 2nd, the 3rd and later (steady state; the headline, or all
probes when the run is too short for a 3rd); seconds and fraction of the interval. Also probes/s
after the first interval vs expected, and RSS (VmRSS) after imports, after registering the
connections, at the end (it includes the Prometheus series of every probed connection) and the
peak, plus what the health trackers will add once full (100 outcomes each; not reached in a short
run). Runs with ``deployed`` for ``--drift-cycles`` intervals (the ``drift_*`` and ``rss_*``
figures), then with ``sharded_8`` for ``--shared-cycles`` (shorter).

**Part 3 -- client layout** (DESIGN §7): :func:`run_probe` in a closed loop with ``--concurrency``
tasks (one connection each, namespaces of their own) against the one target host, each layout in
a fresh process, after a warm-up of twice ``--concurrency`` probes; probes/s and CPU per 1,000
probes (median of ``--repeats`` runs of ``--layout-probes``), new TCP connections per 1,000 probes
at the target during the measured runs, failed probes, RSS of the clients.

Our worker runs on uvloop, the operator's default event loop (``--loop asyncio`` for asyncio's),
with the operator's garbage-collector settings (``cli.main.tune_garbage_collector``, as
``oneie-operator run`` applies them once its modules are loaded).

Reproducible: fixed seeds (credentials, jitter), warm-ups, medians; run it twice and compare.
Everything runs one at a time (2 cores). Cleanup: every child (target, exporter, workers, py-spy)
is stopped at the end, also on failure, Ctrl-C or SIGTERM, and dies with this process in any case
(``PR_SET_PDEATHSIG``; the target also stops when its stdin closes); ports are picked by the
kernel on 127.0.0.1 (the exporter's by binding port 0 first).

``--py-spy FILE`` samples the part-1 engine process (``deployed`` layout; py-spy beside this
interpreter: ``pip install py-spy``) and prints where its CPU goes.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _probe_support import die_with_parent, percentile

HERE = Path(__file__).resolve().parent
SUPPORT = HERE / "_probe_support.py"
BLACKBOX = Path("/usr/bin/prometheus-blackbox-exporter")
INSTALL_SCRIPT = ".ci/prometheus.sh"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
JsonDict = dict[str, Any]

BLACKBOX_CONFIG = """\
modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      valid_status_codes: [200]
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""


@dataclass(frozen=True)
class Layout:
    name: str
    clients: int
    pool: int | None  # None: what Services.build makes (concurrency + 100 connections)
    assign: str  # "shared", "namespace" (hash) or "slot" (per probe)

    def describe(self) -> str:
        pool = "pool as Services.build" if self.pool is None else f"pool {self.pool}"
        how = {"shared": "shared", "namespace": "by namespace hash", "slot": "one per probe slot"}[self.assign]
        return f"{self.clients} client{'s' if self.clients > 1 else ''} x {pool}, {how}"

    def job(self) -> JsonDict:
        return {"clients": self.clients, "pool": self.pool, "assign": self.assign}


def layouts(concurrency: int) -> list[Layout]:
    return [
        Layout("deployed", 1, None, "shared"),
        Layout("sharded_8", 8, max(1, concurrency // 8), "namespace"),
    ]


DEPLOYED, BEFORE = "deployed", "sharded_8"  # the operator's layout, and the comparison


class BenchmarkError(Exception):
    pass


def say(line: str = "") -> None:
    print(line, flush=True)


# ------------------------------------------------------------------------------------ processes
class Children:
    """Every child process of the benchmark; ``stop_all`` ends them (TERM, then KILL)."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def spawn(self, *argv: str, **kwargs: Any) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*argv, preexec_fn=die_with_parent, **kwargs)
        self.procs.append(proc)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc in self.procs:
            self.procs.remove(proc)

    async def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.close()
            await self.stop(proc)


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_target(children: Children) -> tuple[asyncio.subprocess.Process, int]:
    proc = await children.spawn(
        sys.executable, str(SUPPORT), "target", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
    if len(line) != 2 or line[0] != "READY":
        raise BenchmarkError(f"the target did not start: {line!r}")
    return proc, int(line[1])


async def target_stats(session: aiohttp.ClientSession, port: int) -> JsonDict:
    async with session.get(f"http://127.0.0.1:{port}/__stats__") as response:
        stats: JsonDict = await response.json()
        return stats


def stats_delta(before: JsonDict, after: JsonDict) -> JsonDict:
    return {key: after[key] - before[key] for key in ("requests", "connections", "cpu_seconds")}


async def run_worker(
    children: Children, job: JsonDict, timeout: float, spy_to: tuple[str, Path] | None = None
) -> JsonDict:
    """Run ``_probe_support.py ours JOB`` and return its RESULT (stderr shown on failure)."""
    with tempfile.TemporaryFile() as errors:
        proc = await children.spawn(
            sys.executable, str(SUPPORT), "ours", json.dumps(job), stdout=asyncio.subprocess.PIPE, stderr=errors
        )
        spy = None
        if spy_to is not None:
            spy = await children.spawn(
                spy_to[0], "record", "--pid", str(proc.pid), "--rate", "100", "--format", "raw", "--output",
                str(spy_to[1]), "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            await children.stop(proc)
            raise BenchmarkError(f"the engine worker ({job['kind']}) took more than {timeout:.0f}s") from None
        finally:
            if spy is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(spy.wait(), 10)
                await children.stop(spy)
        children.procs.remove(proc)
        for line in out.decode().splitlines():
            if line.startswith("RESULT "):
                result: JsonDict = json.loads(line[len("RESULT ") :])
                return result
        errors.seek(0)
        tail = errors.read().decode(errors="replace")[-3000:]
        raise BenchmarkError(f"the engine worker ({job['kind']}) failed (exit {proc.returncode}):\n{tail}")


# ------------------------------------------------------------------------------------ blackbox
def require_blackbox() -> Path:
    if not (BLACKBOX.is_file() and os.access(BLACKBOX, os.X_OK)):
        raise BenchmarkError(
            f"{BLACKBOX} is missing: run {INSTALL_SCRIPT} (it installs Debian's prometheus-blackbox-exporter), "
            "or: apt-get install --no-install-recommends prometheus-blackbox-exporter"
        )
    return BLACKBOX


async def blackbox_version() -> str:
    proc = await asyncio.create_subprocess_exec(
        str(BLACKBOX), "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    first = out.decode(errors="replace").strip().splitlines()
    return first[0] if first else "unknown version"


async def start_blackbox(
    children: Children, session: aiohttp.ClientSession, workdir: Path
) -> tuple[asyncio.subprocess.Process, int]:
    config = workdir / "blackbox.yml"
    config.write_text(BLACKBOX_CONFIG)
    log = workdir / "blackbox.log"
    for _attempt in range(3):
        port = free_port()
        log_file = _open_log(log)
        try:
            proc = await children.spawn(
                str(BLACKBOX), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn", stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            )  # fmt: skip
        finally:
            log_file.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/-/healthy") as response:
                    if response.status == 200:
                        return proc, port
            await asyncio.sleep(0.05)
        await children.stop(proc)
    raise BenchmarkError(f"blackbox_exporter did not start; its log:\n{log.read_text(errors='replace')[-2000:]}")


def _open_log(path: Path) -> Any:
    return open(path, "wb")  # handed to the child, closed by the caller


async def drive_blackbox(
    session: aiohttp.ClientSession, port: int, target: str, rate: float, count: int, concurrency: int
) -> JsonDict:
    """``count`` probes through the exporter at ``rate``/s, at most ``concurrency`` in flight."""
    url = f"http://127.0.0.1:{port}/probe"
    params = {"target": target, "module": "http_2xx"}
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures: list[str] = []

    async def one() -> None:
        started = time.monotonic()
        try:
            async with session.get(url, params=params) as response:
                text = await response.text()
            if response.status != 200 or "\nprobe_success 1" not in text:
                failures.append(f"HTTP {response.status}: {text[-300:]!r}")
        except aiohttp.ClientError as exc:
            failures.append(repr(exc))
        finally:
            latencies.append(time.monotonic() - started)
            slots.release()

    tasks = []
    began = time.monotonic()
    for i in range(count):
        delay = began + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return {"wall_s": time.monotonic() - began, "latencies": latencies, "failures": failures}


# ------------------------------------------------------------------------------------ parts
def per_1000(cpu: float, probes: int) -> float:
    return cpu / probes * 1000


async def part1_ours(
    children: Children,
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    url: str,
    tport: int,
    layout: Layout,
    spy_to: tuple[str, Path] | None,
) -> JsonDict:
    interval = 5.0
    marks = [args.warmup + i * args.probes for i in range(args.repeats + 1)]
    job = {
        "kind": "engine",
        "url": url,
        "connections": round(args.rate * interval),
        "namespaces": max(1, round(args.rate * interval / 5)),
        "interval": interval,
        "jitter": interval,
        "concurrency": args.concurrency,
        "per_namespace": 10,
        **layout.job(),
        "loop": args.loop,
        "seed": args.seed,
        "marks": marks,
        "deadline": 60 + marks[-1] / args.rate * 3,
    }
    before = await target_stats(session, tport)
    result = await run_worker(children, job, job["deadline"] + 60, spy_to)
    target = stats_delta(before, await target_stats(session, tport))
    if result["failures"]:
        raise BenchmarkError(f"ours ({layout.name}): probes failed: {result['failures']}")
    windows = []
    for start, end in itertools.pairwise(marks):
        (cpu0, wall0), (cpu1, wall1) = result["marks"][str(start)], result["marks"][str(end)]
        windows.append({"cpu_per_1000": per_1000(cpu1 - cpu0, end - start), "rate": (end - start) / (wall1 - wall0)})
    cpu = statistics.median(w["cpu_per_1000"] for w in windows)
    rate = statistics.median(w["rate"] for w in windows)
    latency = result["latency_marked"]
    say(
        f"  ours, {layout.name} ({layout.describe()}; ProbeEngine, {job['connections']} connections / "
        f"{interval:g}s): cpu_s/1000 per window {[fmt(w['cpu_per_1000']) for w in windows]} -> median {fmt(cpu)}; "
        f"rate {rate:.1f}/s; latency p50 {latency['p50'] * 1000:.2f} ms p99 {latency['p99'] * 1000:.2f} ms; "
        f"mean in flight {rate * latency['mean']:.2f}; target saw {target['requests']} requests on "
        f"{target['connections']} new connections"
    )
    return {"cpu": cpu, "rate": rate}


async def part1_blackbox(
    children: Children, session: aiohttp.ClientSession, args: argparse.Namespace, target_url: str, tport: int
) -> JsonDict:
    with tempfile.TemporaryDirectory(prefix="probes-bench-") as tmp:
        proc, port = await start_blackbox(children, session, Path(tmp))
        try:
            warm = await drive_blackbox(session, port, target_url, args.rate, args.warmup, args.concurrency)
            if warm["failures"]:
                raise BenchmarkError(f"blackbox: probes failed in the warm-up: {warm['failures'][:3]}")
            before = await target_stats(session, tport)
            windows = []
            latencies: list[float] = []
            for _ in range(args.repeats):
                cpu0 = proc_cpu_seconds(proc.pid)
                run = await drive_blackbox(session, port, target_url, args.rate, args.probes, args.concurrency)
                cpu1 = proc_cpu_seconds(proc.pid)
                if run["failures"]:
                    raise BenchmarkError(f"blackbox: {len(run['failures'])} probes failed: {run['failures'][:3]}")
                windows.append(
                    {"cpu_per_1000": per_1000(cpu1 - cpu0, args.probes), "rate": args.probes / run["wall_s"]}
                )
                latencies += run["latencies"]
            target = stats_delta(before, await target_stats(session, tport))
            rss = rss_of(proc.pid)
        finally:
            await children.stop(proc)
    cpu = statistics.median(w["cpu_per_1000"] for w in windows)
    rate = statistics.median(w["rate"] for w in windows)
    say(
        f"  blackbox_exporter (module http_2xx): cpu_s/1000 per window {[fmt(w['cpu_per_1000']) for w in windows]} "
        f"-> median {fmt(cpu)}; rate {rate:.1f}/s; /probe latency p50 {percentile(latencies, 50) * 1000:.2f} ms "
        f"p99 {percentile(latencies, 99) * 1000:.2f} ms; mean in flight {rate * statistics.fmean(latencies):.2f}; "
        f"RSS {rss:.1f} MiB; target saw {target['requests']} requests on {target['connections']} new connections"
    )
    return {"cpu": cpu, "rate": rate}


def rss_of(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def part2_drift(
    children: Children,
    session: aiohttp.ClientSession,
    args: argparse.Namespace,
    url: str,
    tport: int,
    layout: Layout,
    cycles: float,
) -> JsonDict:
    interval = 300.0 / args.compression
    job = {
        "kind": "engine",
        "url": url,
        "connections": args.connections,
        "namespaces": max(1, args.connections // 5),
        "interval": interval,
        "jitter": 60.0 / args.compression,
        "concurrency": args.concurrency,
        "per_namespace": 10,
        **layout.job(),
        "loop": args.loop,
        "seed": args.seed,
        "duration": interval * cycles,
        "deadline": interval * cycles,
    }
    before = await target_stats(session, tport)
    run = await run_worker(children, job, interval * cycles + 120)
    target = stats_delta(before, await target_stats(session, tport))
    expected = args.connections / interval
    overall = run["probes"] / run["run_s"]
    steady = run["steady_probes"] / run["steady_s"] if run["steady_s"] >= interval / 2 else None
    first_done = run["first_cycle_done_s"]
    say(
        f"  {layout.name} ({layout.describe()}), {cycles:g} intervals = {run['run_s']:.1f}s: {run['probes']} probes "
        f"({run['failed']} failed), {overall:.0f}/s overall"
        + (f", {steady:.0f}/s after the first interval" if steady is not None else "")
        + f" (expected {expected:.0f}/s); every connection probed once "
        + (f"after {first_done:.1f}s" if first_done is not None else "never (not all were)")
        + f"; cpu {per_1000(run['run_cpu_s'], max(1, run['probes'])):.3f} s/1000; latency p50 "
        f"{run['latency']['p50'] * 1000:.1f} ms p99 {run['latency']['p99'] * 1000:.1f} ms; target saw "
        f"{target['requests']} requests on {target['connections']} new connections"
    )
    say(lateness_line("lateness, 1st probe (jittered start)", run["lateness"]["1"], interval))
    say(lateness_line("lateness, 2nd probe", run["lateness"]["2"], interval))
    say(lateness_line("lateness, 3rd+ probe (steady state)", run["lateness"]["3"], interval))
    say(lateness_line("lateness, all (engine.lateness)", run["lateness_all"], interval))
    rss = run["rss_mb"]
    say(
        f"    RSS: {rss['start']:.1f} MiB after imports, {rss['registered']:.1f} after registering "
        f"{args.connections} connections ({(rss['registered'] - rss['start']) * 1024 / args.connections:.1f} KiB "
        f"each), {rss['end']:.1f} at the end (peak {rss['max']:.1f}; the Prometheus series of every probed "
        f"connection and {run['outcomes_held']} probe outcomes held by the trackers)"
    )
    if run.get("full_tracker_bytes"):
        full = run["full_tracker_bytes"]
        say(
            f"    not reached in this run: a tracker keeps its last 100 outcomes ({full / 1024:.1f} KiB per connection "
            f"when full, tracemalloc), so after 100 cycles ({100 * 300 / 3600:.1f} h in real time) the trackers hold "
            f"about {full * args.connections / 2**20:.0f} MiB more at {args.connections} connections"
        )
    return {**run, "overall": overall, "steady": steady, "interval": interval}


def layout_warmup(args: argparse.Namespace) -> int:
    """Enough warm-up probes for every task (and so every pool client) to have connected."""
    return max(args.layout_probes // 5, 2 * args.concurrency)


async def part3_layouts(children: Children, args: argparse.Namespace, url: str) -> dict[str, JsonDict]:
    out: dict[str, JsonDict] = {}
    for layout in layouts(args.concurrency):
        job = {
            "kind": "layout",
            "url": url,
            "concurrency": args.concurrency,
            **layout.job(),
            "loop": args.loop,
            "probes": args.layout_probes,
            "warmup": layout_warmup(args),
            "repeats": args.repeats,
            "seed": args.seed,
        }
        result = await run_worker(children, job, 180)
        runs = result["runs"]
        figures = out[layout.name] = {
            "rate": statistics.median(r["probes"] / r["wall_s"] for r in runs),
            "cpu_per_1000": statistics.median(per_1000(r["cpu_s"], r["probes"]) for r in runs),
            "failed": sum(r["failed"] for r in runs),
        }
        requests = result["target_requests"]
        conns = result["target_connections"] / requests * 1000 if requests else 0.0
        say(
            f"  {layout.name:15s} ({layout.describe()}): {figures['rate']:.0f} probes/s "
            f"(runs {[round(r['probes'] / r['wall_s']) for r in runs]}), cpu {fmt(figures['cpu_per_1000'])} s/1000 "
            f"(runs {[fmt(per_1000(r['cpu_s'], r['probes'])) for r in runs]}), {conns:.0f} new TCP connections "
            f"per 1000 probes, clients {result['rss_mb']['clients']:.1f} MiB RSS; "
            f"{figures['failed']} of {args.repeats * args.layout_probes} measured probes failed"
            + (f" ({result['failures'][0]})" if result["failures"] else "")
        )
    return out


# ------------------------------------------------------------------------------------ reporting
def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def lateness_line(label: str, summary: JsonDict, interval: float) -> str:
    if not summary.get("n"):
        return f"    {label}: no probes"
    return (
        f"    {label}: n={summary['n']} p50={fmt(summary['p50'])}s p99={fmt(summary['p99'])}s "
        f"max={fmt(summary['max'])}s (p99 = {summary['p99'] / interval:.4f} of the interval)"
    )


def py_spy_summary(path: str, top: int = 12) -> list[str]:
    self_time: collections.Counter[str] = collections.Counter()
    groups: collections.Counter[str] = collections.Counter()
    total = 0
    rules = (
        ("httpcore current_async_library (import sniffio attempts)", "current_async_library (httpcore"),
        ("httpcore pool bookkeeping (_assign_requests_to_connections, closing)", "_assign_requests_to_connections"),
        ("httpcore pool bookkeeping (_assign_requests_to_connections, closing)", "_close_connections"),
        ("engine scheduler (run/_start/_push)", "ProbeEngine.run "),
        ("engine scheduler (run/_start/_push)", "ProbeEngine._start"),
        ("result hook (metrics, status)", "on_result"),
        ("unseal (AES-GCM)", "unseal ("),
    )
    with open(path, encoding="utf-8", errors="replace") as raw:
        for line in raw:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            self_time[frames[-1]] += n
            for group, needle in rules:
                if any(needle in frame for frame in frames):
                    groups[group] += n
                    break
    if not total:
        return ["  py-spy: no samples"]
    lines = [f"  py-spy ({total} samples of the part-1 engine process; {path}):"]
    lines += [f"    {n / total:6.1%}  {group}" for group, n in groups.most_common()]
    lines.append("    top self time:")
    lines += [f"    {n / total:6.1%}  {frame}" for frame, n in self_time.most_common(top)]
    return lines


def environment_line() -> str:
    import importlib.metadata as md

    versions = []
    for dist in ("aiohttp", "yarl", "multidict", "prometheus-client"):
        try:
            versions.append(f"{dist} {md.version(dist)}")
        except md.PackageNotFoundError:
            versions.append(f"{dist} -")
    return f"environment: Python {sys.version.split()[0]}, {', '.join(versions)}; {os.cpu_count()} CPUs"


# ------------------------------------------------------------------------------------ main
def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def find_py_spy(output: str) -> tuple[str, Path]:
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    if spy is None:
        raise BenchmarkError("--py-spy needs py-spy beside this interpreter: pip install py-spy")
    return spy, Path(output).resolve()


async def amain(args: argparse.Namespace) -> int:
    require_blackbox()
    spy_to = find_py_spy(args.py_spy) if args.py_spy else None
    by_name = {layout.name: layout for layout in layouts(args.concurrency)}
    children = Children()
    started = time.monotonic()
    final: dict[str, str] = {}
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=args.concurrency + 8), timeout=aiohttp.ClientTimeout(total=60)
        ) as session:
            target_proc, tport = await start_target(children)
            path = "/close" if args.close else ""
            url = f"http://127.0.0.1:{tport}{path}"
            say(environment_line() + f"; our worker's event loop: {args.loop} (the operator's default is uvloop)")
            say(f"load average before: {load_average()} (other work on this machine perturbs every figure)")
            say(f"blackbox_exporter: {await blackbox_version()}")
            say(
                f"target: 127.0.0.1:{tport} GET {path}/instance_name -> 200 text/plain "
                f"({'Connection: close' if args.close else 'keep-alive'}), pid {target_proc.pid}"
            )

            # ---- part 1
            say(
                f"part 1: CPU per 1,000 probes at {args.rate:g} probes/s, <= {args.concurrency} in flight, "
                f"{args.repeats} windows x {args.probes} probes after {args.warmup} warm-up probes (median window)"
            )
            ours = await part1_ours(children, session, args, url, tport, by_name[DEPLOYED], spy_to)
            if spy_to is not None:
                for line in py_spy_summary(str(spy_to[1])):
                    say(line)
            theirs = await part1_blackbox(children, session, args, f"{url}/instance_name", tport)
            ours_old = await part1_ours(children, session, args, url, tport, by_name[BEFORE], None)
            ratio, ratio_old = ours["cpu"] / theirs["cpu"], ours_old["cpu"] / theirs["cpu"]
            say(
                f"  ratio ours/blackbox = {ratio:.2f} as deployed ({DEPLOYED}: one shared ProviderHTTP), "
                f"{ratio_old:.2f} with {BEFORE} (goal: <= 0.6)"
            )
            final.update(
                probes=str(args.probes * args.repeats),
                rate_per_s=f"{args.rate:g}",
                concurrency=str(args.concurrency),
                ours_cpu_s_per_1000=fmt(ours["cpu"]),
                blackbox_cpu_s_per_1000=fmt(theirs["cpu"]),
                ratio=f"{ratio:.2f}",
                goal_cpu_at_most_0_6_of_blackbox="yes" if ratio <= 0.6 else "no",
                ours_layout=DEPLOYED,
                ours_sharded_8_cpu_s_per_1000=fmt(ours_old["cpu"]),
                ratio_sharded_8=f"{ratio_old:.2f}",
            )

            # ---- part 2
            interval = 300.0 / args.compression
            say(
                f"part 2: drift with {args.connections} connections, interval 300s / {args.compression:g} = "
                f"{interval:g}s, initial jitter 60s / {args.compression:g} = {60 / args.compression:g}s "
                f"(expected {args.connections / interval:.0f} probes/s; real time: {args.connections / 300:.0f}/s "
                f"and a start-up burst of {args.connections / 60:.0f}/s)"
            )
            rec = await part2_drift(children, session, args, url, tport, by_name[DEPLOYED], args.drift_cycles)
            old = await part2_drift(children, session, args, url, tport, by_name[BEFORE], args.shared_cycles)
            steady = rec["lateness"]["3"] if rec["lateness"]["3"].get("n") else rec["lateness_all"]
            final.update(
                connections=str(args.connections),
                compression=f"{args.compression:g}",
                interval_s=f"{interval:g}",
                drift_layout=DEPLOYED,
                drift_p50_s=fmt(steady["p50"], 4),
                drift_p99_s=fmt(steady["p99"], 4),
                drift_p99_fraction_of_interval=fmt(steady["p99"] / interval, 4),
                drift_all_p99_s=fmt(rec["lateness_all"]["p99"], 3),
                drift_startup_p99_s=fmt(rec["lateness"]["1"]["p99"], 3),
                probes_per_s=f"{rec['steady'] if rec['steady'] is not None else rec['overall']:.0f}",
                expected_probes_per_s=f"{args.connections / interval:.0f}",
                sharded_8_drift_p99_s=fmt(old["lateness_all"]["p99"], 3),
                sharded_8_probes_per_s=f"{old['overall']:.0f}",
                rss_registered_mb=f"{rec['rss_mb']['registered']:.0f}",
                rss_mb=f"{rec['rss_mb']['end']:.0f}",
                rss_peak_mb=f"{rec['rss_mb']['max']:.0f}",
            )

            # ---- part 3
            say(
                f"part 3: client layouts, run_probe in a closed loop, {args.concurrency} tasks to one host, "
                f"{args.repeats} x {args.layout_probes} probes after {layout_warmup(args)} warm-up probes (median)"
            )
            figures = await part3_layouts(children, args, url)
            healthy = [name for name in figures if not figures[name]["failed"]]
            best = min(healthy or figures, key=lambda name: figures[name]["cpu_per_1000"])
            say(f"  cheapest per probe without failures: {best}")
            for name, values in figures.items():
                final[f"layout_{name}_per_s"] = f"{values['rate']:.0f}"
                final[f"layout_{name}_cpu_s_per_1000"] = fmt(values["cpu_per_1000"])
            final["best_layout"] = best
            final["elapsed_s"] = f"{time.monotonic() - started:.0f}"
            say(f"load average after: {load_average()}")
    finally:
        await children.stop_all()
    say(" ".join(f"{key}={value}" for key, value in final.items()))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="part 1: probes per second, both sides")
    parser.add_argument("--probes", type=int, default=1500, help="part 1: probes per measured window")
    parser.add_argument("--warmup", type=int, default=400, help="part 1: warm-up probes, both sides")
    parser.add_argument("--repeats", type=int, default=3, help="measured windows / runs per measurement")
    parser.add_argument("--concurrency", type=int, default=200, help="probes in flight at most (both sides)")
    parser.add_argument("--close", action="store_true", help="the target closes the connection after every answer")
    parser.add_argument("--connections", type=int, default=10_000, help="part 2: registered connections")
    parser.add_argument("--compression", type=float, default=12.0, help="part 2: 300 s interval divided by this")
    parser.add_argument("--drift-cycles", type=float, default=2.4, help="part 2: intervals to run (deployed)")
    parser.add_argument(
        "--shared-cycles", "--deployed-cycles", dest="shared_cycles", type=float, default=1.0,
        help="part 2: intervals to run with sharded_8 (--deployed-cycles is its old name)",
    )  # fmt: skip
    parser.add_argument("--layout-probes", type=int, default=1000, help="part 3: probes per run")
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop",
        help="our worker's event loop: uvloop, the operator's default (oneie-operator run --loop), or asyncio",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=20250601)
    parser.add_argument("--py-spy", metavar="FILE", help="sample the part-1 engine process into FILE (raw)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def terminate(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, terminate)
    try:
        return asyncio.run(amain(args))
    except BenchmarkError as exc:
        print(f"probes benchmark failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("probes benchmark interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
