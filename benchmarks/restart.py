"""An operator restart at fleet scale: provider calls and API writes during the resume, and its time.

    python benchmarks/restart.py [--connections 2000] [--organizations 500] [--runs 1]

What is measured, per run:

1. **Set-up.** A fresh emulator process (``benchmarks/_emulator_process.py``, schema validation
   and RBAC off), fake provider servers on 127.0.0.1 in this process (they record every request
   they receive), ``N`` credential Secrets and ``N`` BackendConnections (round-robin over
   ``--namespaces`` namespaces and the 4 providers, ``spec.healthCheck.intervalSeconds``
   ``--probe-interval``, default 86400) and ``M`` Organizations, each on one of the connections
   (``healthGate`` off), all created before the operator starts.
2. **First start** (the same-run baseline). The operator is started (``python -m oneie_operator
   run``, a process of its own, as deployed) and runs until every connection and organization is
   Ready, every connection has been probed once (``status.health.lastProbeTime``), no object has a
   handler pending (Kopf's ``status.kopf.progress``: a retry after a write the overloaded API
   server refused is work a restart must finish), and the emulator has seen no write for
   ``--quiet`` seconds: the fleet is settled. ``first_start_seconds``
   runs from the operator's launch until every object is Ready.
3. **Kill.** The operator gets SIGKILL (no clean-up code of ours runs); the emulator starts a
   new request log and the fake providers' request counts are noted.
4. **Resume.** The same operator command is started again, with the same key. ``resume_seconds``
   runs from its launch until the operator has run the resume handler of every object: its own
   counter ``oneie_reconciles_total`` (one increment per finished reconcile, by kind; a fresh
   process starts at 0) reaches ``N`` for BackendConnection and ``M`` for Organization, read from
   its ``/metrics`` 5 times a second. Then ``--linger`` more seconds pass (background writers,
   e.g. ``usedBy``, write within 5 s), and the window closes.

   ``provider_calls_during_resume``: requests the fake providers received in the window. Scheduled
   probes are kept out of it by the schedule itself: every connection was probed during the
   settling, its interval (``--probe-interval``) is far longer than the window, and a restarted
   operator continues each connection's schedule from ``status.health.lastProbeTime``. A probe in
   the window is therefore not on its schedule (a restart stampede) and counts; the operator's
   ``oneie_probes_total`` is printed beside it as ``probes_during_resume``.
   ``api_writes_during_resume``: POST/PUT/PATCH/DELETE requests the emulator served in the window
   (every client: Kopf, our REST client, the ``kubernetes`` client), itemised by verb and resource.
   ``api_reads_during_resume`` (GETs other than watches) is printed beside them.

``resume_over_first_start`` = ``resume_seconds / first_start_seconds``. The goal is 0 provider
calls and 0 API writes in every run (``runs_meeting_goal``). ``--connections 200
--organizations 50`` makes a quick check (under a minute).

The last line of output is ``key=value`` pairs (the figures of the last run, the worst counts
over all runs); everything before it is detail.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _common import BenchmarkError, Child, JsonDict, die_with_parent, emulator_child

from oneie_operator.testing.cluster import write_kubeconfig
from oneie_operator.testing.provider_servers import PROVIDERS, ProviderServers
from oneie_operator.vault import generate_key

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EMULATOR_SCRIPT = HERE / "_emulator_process.py"
DRIVER_UA = "oneie-bench-driver"
PREFIX = "rs-"
BC_PATH = "/apis/one.ie/v1alpha1/backendconnections"
ORG_PATH = "/apis/one.ie/v1alpha1/organizations"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


# --- Objects ---------------------------------------------------------------------------------------


def fleet(args: argparse.Namespace, servers: ProviderServers) -> list[JsonDict]:
    """Namespaces, then each connection's Secret and connection, then the organizations."""
    namespaces = [f"{PREFIX}{i:02d}" for i in range(args.namespaces)]
    objects: list[JsonDict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in namespaces
    ]
    for i in range(args.connections):
        namespace, provider, name = namespaces[i % len(namespaces)], PROVIDERS[i % len(PROVIDERS)], f"conn-{i:05d}"
        objects.append({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"{name}-credentials", "namespace": namespace,
                         "labels": {"one.ie/credentials": "true"}},
            "stringData": dict(servers.credentials[provider]),
        })
        objects.append({
            "apiVersion": "one.ie/v1alpha1", "kind": "BackendConnection",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "provider": provider, provider: servers.settings(provider),
                "credentialsSecretRef": {"name": f"{name}-credentials"},
                "healthCheck": {"intervalSeconds": args.probe_interval, "timeoutSeconds": 10},
            },
        })
    for i in range(args.organizations):  # connection i lives in namespace i % namespaces
        objects.append({
            "apiVersion": "one.ie/v1alpha1", "kind": "Organization",
            "metadata": {"name": f"org-{i:05d}", "namespace": namespaces[i % len(namespaces)]},
            "spec": {"backend": {"connectionRef": {"name": f"conn-{i:05d}"}},
                     "switchPolicy": {"timeoutSeconds": 30, "autoRollback": True, "healthGate": False}},
        })
    return objects


def collection_path(obj: Mapping[str, Any]) -> str:
    kind, namespace = obj["kind"], obj["metadata"].get("namespace")
    if kind == "Namespace":
        return "/api/v1/namespaces"
    if kind == "Secret":
        return f"/api/v1/namespaces/{namespace}/secrets"
    plural = "backendconnections" if kind == "BackendConnection" else "organizations"
    return f"/apis/one.ie/v1alpha1/namespaces/{namespace}/{plural}"


# --- Child processes and HTTP ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def operator_process(
    workdir: Path, kubeconfig: Path, label: str, key: str, metrics_port: int, jitter: float
) -> AsyncIterator[Child]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENCRYPTION_")},
        "ENCRYPTION_KEY": key,
        "ALLOW_LOOPBACK": "true",
        "ALLOW_PLAIN_HTTP": "true",
        "METRICS_PORT": str(metrics_port),
        "PROBE_INITIAL_JITTER_SECONDS": str(jitter),
        "HEALTH_PORT": "0",
        "BIND_ADDRESS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KUBECONFIG", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    log_path = workdir / f"operator-{label}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(kubeconfig),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            preexec_fn=die_with_parent, cwd=ROOT,
        )  # fmt: skip
    child = Child(f"operator-{label}", process, log_path)
    try:
        yield child
    finally:
        await child.stop(signal.SIGTERM, timeout=20)


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=50),
        headers={"User-Agent": DRIVER_UA, "Authorization": "Bearer benchmark"},
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def bench_call(session: aiohttp.ClientSession, url: str, action: str, method: str = "GET", **params: Any) -> Any:
    async with session.request(method, f"{url}/__bench__/{action}", params=params) as response:
        response.raise_for_status()
        return await response.json()


async def create_all(session: aiohttp.ClientSession, url: str, objects: Sequence[JsonDict], concurrency: int) -> None:
    queue = iter(objects)

    async def worker() -> None:
        for obj in queue:  # one shared iterator: each object goes to one worker
            async with session.post(url + collection_path(obj), json=obj) as response:
                if response.status != 201:
                    raise BenchmarkError(f"creating {obj['kind']} {obj['metadata']['name']}: HTTP {response.status}"
                                         f" {(await response.text())[:300]}")
                await response.read()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def list_items(session: aiohttp.ClientSession, url: str, path: str) -> list[JsonDict]:
    async with session.get(url + path) as response:
        response.raise_for_status()
        items: list[JsonDict] = (await response.json()).get("items") or []
    return [item for item in items if str(item["metadata"].get("namespace", "")).startswith(PREFIX)]


def ready(obj: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


async def scrape(session: aiohttp.ClientSession, port: int) -> list[tuple[str, dict[str, str], float]]:
    """The operator's metrics as (name, labels, value); empty while it does not answer yet."""
    try:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
    except aiohttp.ClientError:
        return []
    samples = []
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            samples.append((match["name"], labels, float(match["value"])))
    return samples


def total(samples: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == want for k, want in labels.items()))


# --- One run ---------------------------------------------------------------------------------------


@dataclass
class RunResult:
    first_start: float
    settle: float
    resume: float
    provider_calls: int
    probes: int
    writes: list[tuple[str, str, str]]  # (method, path, client)
    write_bodies: list[str]  # the first few writes during the resume, with their bodies (for diagnosis)
    first_writes: list[tuple[str, str, str]]  # the first start's and the settling's
    reads: collections.Counter[str]
    operator_cpu: float
    emulator_requests: int


def resource_of(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:] if parts[:1] == ["apis"] else parts
    if len(rest) >= 2 and rest[0] == "namespaces":
        rest = rest[2:] or ["namespaces"]
    return "/".join(p for i, p in enumerate(rest) if i != 1) or path  # drop the object's name


async def one_run(args: argparse.Namespace, workdir: Path, label: str) -> RunResult:
    async with contextlib.AsyncExitStack() as stack:
        servers = await stack.enter_async_context(ProviderServers())
        _, url = await stack.enter_async_context(
            emulator_child(EMULATOR_SCRIPT, f"emulator-{label}", workdir / f"emulator-{label}.log"))
        session = await stack.enter_async_context(new_session())
        kubeconfig = write_kubeconfig(workdir / f"kubeconfig-{label}", url)
        key, metrics_port = generate_key(), free_port()
        n, m = args.connections, args.organizations

        objects = fleet(args, servers)
        print(f"[{label}] creating {len(objects)} objects ...", flush=True)
        await create_all(session, url, [o for o in objects if o["kind"] == "Namespace"], 1)
        await create_all(session, url, [o for o in objects if o["kind"] != "Namespace"], args.create_concurrency)

        # --- First start: until everything is Ready (the baseline), then settled.
        await bench_call(session, url, "reset", "POST", expect=n, prefix=PREFIX)
        started = time.monotonic()
        first = await stack.enter_async_context(
            operator_process(workdir, kubeconfig, f"{label}-first", key, metrics_port, args.initial_jitter))
        deadline = started + args.timeout
        while True:
            first.check_alive("the first start")
            progress = await bench_call(session, url, "progress")
            if progress["all_ready_at"] is not None:
                orgs = await list_items(session, url, ORG_PATH)
                if sum(ready(o) for o in orgs) == m:
                    break
            if time.monotonic() > deadline:
                orgs = await list_items(session, url, ORG_PATH)
                raise BenchmarkError(f"first start: {progress['ready']} of {n} connections and"
                                     f" {sum(ready(o) for o in orgs)} of {m} organizations Ready after"
                                     f" {args.timeout}s:\n{first.tail()}")
            await asyncio.sleep(0.5 if progress["all_ready_at"] is None else 2.0)
        first_start = time.monotonic() - started
        print(f"[{label}] first start: {n} connections and {m} organizations Ready in {first_start:.1f}s", flush=True)
        while True:  # settled: every connection probed once, no handler pending, no write for --quiet s
            first.check_alive("the settling")
            conns = await list_items(session, url, BC_PATH)
            probed = sum(bool(((c.get("status") or {}).get("health") or {}).get("lastProbeTime")) for c in conns)
            # A handler Kopf will run again (a retry after a refused write: its progress in status.kopf)
            # is work left over, which a restart must finish: not a settled fleet.
            pending = sum(bool(((o.get("status") or {}).get("kopf") or {}).get("progress"))
                          for o in [*conns, *await list_items(session, url, ORG_PATH)])
            progress = await bench_call(session, url, "progress")
            last = progress["last_write_at"] or started
            if probed == n and not pending and progress["now"] - last >= args.quiet:
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"not settled: {probed} of {n} connections probed, {pending} objects with a"
                                     f" handler pending:\n{first.tail()}")
            await asyncio.sleep(2.0)
        settle = time.monotonic() - started
        print(f"[{label}] settled after {settle:.1f}s (all probed once, {args.quiet:.0f}s without a write)", flush=True)

        # --- Kill, then resume.
        before = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o.get("status") or {}
                  for path in (BC_PATH, ORG_PATH) for o in await list_items(session, url, path)}
        first.process.kill()  # SIGKILL: no clean-up of ours runs
        await first.process.wait()
        await bench_call(session, url, "reset", "POST", expect=0, prefix=PREFIX)
        calls_before = sum(server.request_count for server in servers)
        started = time.monotonic()
        second = await stack.enter_async_context(
            operator_process(workdir, kubeconfig, f"{label}-resume", key, metrics_port, args.initial_jitter))
        deadline = started + args.timeout
        samples: list[tuple[str, dict[str, str], float]] = []
        while True:
            second.check_alive("the resume")
            samples = await scrape(session, metrics_port)
            done_bc = total(samples, "oneie_reconciles_total", kind="BackendConnection")
            done_org = total(samples, "oneie_reconciles_total", kind="Organization")
            if done_bc >= n and done_org >= m:
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"resume: {done_bc:.0f}/{n} connections and {done_org:.0f}/{m} organizations"
                                     f" reconciled after {args.timeout}s:\n{second.tail()}")
            await asyncio.sleep(0.2)
        resume = time.monotonic() - started
        print(f"[{label}] resume: every object's handler ran after {resume:.1f}s; lingering {args.linger:.0f}s",
              flush=True)
        await asyncio.sleep(args.linger)
        second.check_alive("the linger")
        samples = await scrape(session, metrics_port)
        provider_calls = sum(server.request_count for server in servers) - calls_before
        log: JsonDict = await bench_call(session, url, "log")
        operator_cpu = second.cpu_seconds()

    entries = [e for e in log["log"] if e[6] != DRIVER_UA]
    writes = [(e[2], e[3], client_of(e[6])) for e in entries if e[2] in WRITES]
    reads = collections.Counter(resource_of(e[3]) for e in entries if e[2] == "GET")
    write_bodies = [f"{e[2]} {e[3]}: {changed_fields(e[3], e[7], before)}" for e in entries if e[2] in WRITES][:5]
    first_writes = [(e[2], e[3], client_of(e[6])) for e in log["setup_log"] if e[2] in WRITES and e[6] != DRIVER_UA]
    return RunResult(
        first_start=first_start, settle=settle, resume=resume, provider_calls=provider_calls,
        probes=int(total(samples, "oneie_probes_total")),
        writes=writes, write_bodies=write_bodies, first_writes=first_writes, reads=reads, operator_cpu=operator_cpu,
        emulator_requests=len(entries),
    )


def changed_fields(path: str, body: str, before: Mapping[str, Mapping[str, Any]]) -> str:
    """What a status write changed against the status stored before the kill (for diagnosis)."""
    parts = [p for p in path.split("/") if p]
    try:
        key = f"{parts[parts.index('namespaces') + 1]}/{parts[parts.index('namespaces') + 3]}"
        written = json.loads(body).get("status") or {}
    except (ValueError, IndexError, AttributeError):
        return body[:300]
    old = before.get(key, {})
    changed = {k: (old.get(k), v) for k, v in written.items() if old.get(k) != v}
    if "conditions" in changed:
        was = {c.get("type"): c for c in old.get("conditions") or []}
        changed["conditions"] = [(was.get(c.get("type")), c) for c in written["conditions"]
                                 if was.get(c.get("type")) != c]  # type: ignore[assignment]
    return json.dumps(changed)[:1500]


def client_of(user_agent: str) -> str:
    if user_agent.startswith("kopf/"):
        return "kopf"
    if user_agent.startswith("OpenAPI-Generator"):
        return "kubernetes"
    return user_agent.split("/")[0] or "?"


def report(label: str, run: RunResult) -> None:
    print(f"[{label}] for comparison, the first start and the settling wrote {len(run.first_writes)} times:")
    for (method, resource, client), count in collections.Counter(
            (m, resource_of(p), c) for m, p, c in run.first_writes).most_common(8):
        print(f"    write {method:6} {resource:40} {client:12} x{count}")
    print(f"[{label}] provider requests in the resume window: {run.provider_calls}"
          f" (probes the operator ran meanwhile: {run.probes})")
    print(f"[{label}] API requests in the resume window: {run.emulator_requests}; writes {len(run.writes)}")
    for (method, resource, client), count in sorted(
            collections.Counter((m, resource_of(p), c) for m, p, c in run.writes).items()):
        print(f"    write {method:6} {resource:40} {client:12} x{count}")
    for sample in run.write_bodies:
        print(f"    e.g. {sample}")
    for resource, count in sorted(run.reads.items()):
        print(f"    read  GET    {resource:40} x{count}")
    print(f"[{label}] operator CPU during the resume window: {run.operator_cpu:.1f}s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--organizations", type=int, default=500)
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--probe-interval", type=int, default=86400, help="spec.healthCheck.intervalSeconds")
    parser.add_argument("--initial-jitter", type=float, default=30.0,
                        help="PROBE_INITIAL_JITTER_SECONDS of both starts (a never-probed connection's first probe)")
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds without a write: settled")
    parser.add_argument("--linger", type=float, default=10.0, help="seconds watched after the last resume handler")
    parser.add_argument("--create-concurrency", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=1200.0, help="deadline of each phase, seconds")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    if args.organizations > args.connections:
        parser.error("--organizations must not exceed --connections (each uses its own connection)")
    random.seed(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="oneie-restart-"))
    runs: list[RunResult] = []
    try:
        for index in range(args.runs):
            label = f"run{index + 1}"
            run = asyncio.run(one_run(args, workdir, label))
            report(label, run)
            runs.append(run)
    except BenchmarkError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        print(f"logs kept in {workdir}", file=sys.stderr)
        return 1
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"logs in {workdir}")
    last = runs[-1]
    met = sum(r.provider_calls == 0 and not r.writes for r in runs)
    figures = {
        "connections": args.connections,
        "organizations": args.organizations,
        "runs": len(runs),
        "provider_calls_during_resume": max(r.provider_calls for r in runs),
        "api_writes_during_resume": max(len(r.writes) for r in runs),
        "probes_during_resume": max(r.probes for r in runs),
        "api_reads_during_resume": sum(last.reads.values()),
        "resume_seconds": f"{last.resume:.2f}",
        "first_start_seconds": f"{last.first_start:.2f}",
        "resume_over_first_start": f"{last.resume / last.first_start:.3f}",
        "resume_seconds_median": f"{statistics.median(r.resume for r in runs):.2f}",
        "runs_meeting_goal": f"{met}/{len(runs)}",
    }
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
