"""BackendConnections reconciled to Ready per second, beside the emulator's own ceiling for the same requests.

    python benchmarks/reconcile.py [--connections 500] [--repeat 3] [--replay-rounds 3] [--seed 20250601]

What is measured, per repeat (the figures printed last are the medians over the repeats):

1. **Operator.** A fresh emulator and a fresh operator. ``N`` credential Secrets and ``N``
   BackendConnections (round-robin over 10 namespaces, created beforehand, and the 4 providers,
   in an order shuffled by the seed, pointed at local fake provider servers with the credentials
   they accept) are created with at most ``--create-concurrency`` (50) POSTs in flight. The wall
   time runs from just before the first create until the emulator stores the ``N``-th
   ``Ready=True`` (the emulator notes that moment itself: polling adds no error).
   ``operator_conn_per_s = N / wall``. Every request the emulator served in that window is
   recorded (method, path, body, status, client) and counted by client, verb and resource.
2. **Ceiling.** A fresh emulator process, no operator: the recorded requests (the benchmark's
   creates *and* the operator's reads, writes, patches and Events, with their exact bodies) are
   replayed as fast as the emulator answers, over as many keep-alive connections as phase 1
   used (``--replay-concurrency``; auto: the distinct client connections of phase 1, 8-100),
   while the watches the operator held are open and read (the emulator serialises every event
   for each watcher: part of its cost; the replay ends when the answers are in *and* the
   watchers' backlog is empty). Requests on one object keep their recorded order;
   ``resourceVersion`` preconditions are dropped from bodies (the replayed objects have other
   versions). The requests that built phase 1's starting state (the namespaces, the warm-up's
   objects) are replayed first, untimed. The client is a minimal HTTP/1.1 client on asyncio
   streams with the requests prepared in advance: with aiohttp's client the replaying process
   used about as much CPU per request as the emulator (0.8 of a core) and would have been the
   limit; with this one it uses about 0.3 while the emulator runs at 0.9-1.0 of a core.

   The ceiling is the emulator's requests per second *of its own CPU time* over the replay
   (answers and watch events): what the single-threaded emulator serves with a core to itself.
   On a quiet machine it matches the wall-clock rate within a few per cent (the emulator is
   busy 0.93-0.99 of the replay); on a shared one other processes take the emulator's core
   away for part of a one-second replay, and the wall-clock rate then drops by up to half while
   the CPU-time rate stays within about 10 %. Both are printed (``emulator_ceiling_req_per_s``,
   ``emulator_ceiling_wall_req_per_s``), and so is the CPU the rest of the machine used during
   each phase (``other_load_cores``; "disturbed" above 0.3 of a core). The replay runs
   ``--replay-rounds`` times per repeat, each into a fresh emulator; the median round counts.
   ``emulator_ceiling_conn_per_s`` = that rate divided by the requests per connection of phase
   1; ``ratio = operator_conn_per_s / emulator_ceiling_conn_per_s`` (1.0: the operator is as
   fast as the emulator allows).

Layout, chosen for reproducible numbers on 2 cores: the emulator in a process of its own
(``benchmarks/_emulator_process.py``: it is single-threaded and it is the ceiling, so it shares
its interpreter with nothing), the operator in another (``python -m oneie_operator run
--kubeconfig K``, as deployed, with Kopf's and the ``kubernetes`` client's own connection
handling and its default thread pool), and this driver with the fake provider servers in a
third, nearly idle once the creates are sent (it polls the emulator's ``/__bench__/progress``
side endpoint 10 times a second: cheap, and not counted). An operator in the driver's process
would share its event loop and GIL with the fake providers, and would not be the deployed
command. Before each measurement 8 connections are reconciled in a ``warmup`` namespace
(imports, pools, threads), then ``--settle`` seconds pass so that Kopf's per-object workers of
the warm-up (kept 5 s after their last event, and counted against the operator's worker limit)
are gone, as they would be in a cluster that gets a burst of new objects. Everything runs on
``127.0.0.1`` with ports picked by the kernel; the children are stopped at the end, also on
failure, Ctrl-C or SIGTERM, and die with this process in any case (``PR_SET_PDEATHSIG``; the
emulator also stops when its stdin closes). Each phase has a deadline (``--timeout``); a run
that misses it fails with the number of Ready connections and a sample of the others' Ready
conditions.

``--py-spy FILE`` (py-spy beside this interpreter or on ``PATH``; ``pip install py-spy``)
samples the operator during phase 1 of the first repeat and prints where its busy time goes;
``--cprofile FILE`` runs the operator under cProfile in every repeat (slower: the figures are
then not comparable).

The last line of output is ``key=value`` pairs; everything before it is detail.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import (
    BenchmarkError,
    Child,
    JsonDict,
    emulator_child,
    machine_busy_seconds,
    make_credentials,
)
from _common import die_with_parent as _die_with_parent

from oneie_operator.testing.cluster import write_kubeconfig
from oneie_operator.testing.provider_servers import PROVIDERS, ProviderServers
from oneie_operator.vault import generate_key

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EMULATOR_SCRIPT = HERE / "_emulator_process.py"
DRIVER_UA = "oneie-bench-driver"
REPLAY_UA = "oneie-bench-replay"
NAMESPACES = 10
WARMUP_CONNECTIONS = 8
BENCH_PREFIX = "bench-"
WARMUP_NAMESPACE = "warmup"


# --- Objects ---------------------------------------------------------------------------------------


def connection_pair(index: int, namespace: str, provider: str, servers: ProviderServers) -> tuple[JsonDict, JsonDict]:
    """A credentials Secret and the BackendConnection that uses it."""
    name = f"conn-{index:04d}"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{name}-credentials", "namespace": namespace,
                     "labels": {"app": "bench", "one.ie/credentials": "true"}},
        "type": "Opaque",
        "stringData": dict(servers.credentials[provider]),
    }
    connection = {
        "apiVersion": "one.ie/v1alpha1",
        "kind": "BackendConnection",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
        "spec": {
            "provider": provider,
            provider: servers.settings(provider),
            "credentialsSecretRef": {"name": f"{name}-credentials"},
        },
    }
    return secret, connection


def benchmark_pairs(count: int, servers: ProviderServers, rng: random.Random) -> list[tuple[JsonDict, JsonDict]]:
    pairs = [
        connection_pair(i, f"{BENCH_PREFIX}{i % NAMESPACES:02d}", PROVIDERS[i % len(PROVIDERS)], servers)
        for i in range(count)
    ]
    rng.shuffle(pairs)
    return pairs


def collection_path(obj: Mapping[str, Any]) -> str:
    if obj["kind"] == "Namespace":
        return "/api/v1/namespaces"
    namespace = obj["metadata"]["namespace"]
    if obj["kind"] == "Secret":
        return f"/api/v1/namespaces/{namespace}/secrets"
    return f"/apis/one.ie/v1alpha1/namespaces/{namespace}/backendconnections"


# --- Child processes -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def emulator_process(workdir: Path, label: str) -> AsyncIterator[tuple[Child, str]]:
    async with emulator_child(EMULATOR_SCRIPT, f"emulator-{label}", workdir / f"emulator-{label}.log") as started:
        yield started


@contextlib.asynccontextmanager
async def operator_process(
    workdir: Path, kubeconfig: Path, label: str, *, cprofile: Path | None
) -> AsyncIterator[Child]:
    env = {
        **os.environ,
        "ENCRYPTION_KEY": generate_key(),
        "ALLOW_LOOPBACK": "true",
        "ALLOW_PLAIN_HTTP": "true",
        "METRICS_PORT": "0",
        "HEALTH_PORT": "0",
        "BIND_ADDRESS": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KUBECONFIG", None)
    env.pop("KUBERNETES_SERVICE_HOST", None)
    profile = ["-m", "cProfile", "-o", str(cprofile)] if cprofile else []
    command = [sys.executable, *profile, "-m", "oneie_operator", "run", "--kubeconfig", str(kubeconfig)]
    log_path = workdir / f"operator-{label}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env,
            preexec_fn=_die_with_parent, cwd=ROOT,
        )  # fmt: skip
    child = Child(f"operator-{label}", process, log_path)
    try:
        yield child
    finally:
        # SIGINT lets cProfile write its file (Kopf stops on either signal).
        await child.stop(signal.SIGINT if cprofile else signal.SIGTERM, timeout=20)


# --- Talking to the emulator -----------------------------------------------------------------------


def new_session(limit: int, user_agent: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
        headers={"User-Agent": user_agent, "Authorization": "Bearer benchmark"},
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def bench_call(session: aiohttp.ClientSession, url: str, action: str, method: str = "GET", **params: Any) -> Any:
    async with session.request(method, f"{url}/__bench__/{action}", params=params) as response:
        response.raise_for_status()
        return await response.json()


async def create(session: aiohttp.ClientSession, url: str, obj: Mapping[str, Any]) -> None:
    async with session.post(url + collection_path(obj), json=obj) as response:
        if response.status != 201:
            raise BenchmarkError(
                f"creating {obj['kind']} {obj['metadata']['name']}: HTTP {response.status} "
                f"{(await response.text())[:300]}"
            )
        await response.read()


async def create_all(
    session: aiohttp.ClientSession, url: str, pairs: Iterable[tuple[JsonDict, JsonDict]], concurrency: int
) -> None:
    queue = iter(pairs)

    async def worker() -> None:
        for secret, connection in queue:  # one shared iterator: each pair goes to one worker
            await create(session, url, secret)
            await create(session, url, connection)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def wait_until(
    session: aiohttp.ClientSession, url: str, deadline: float, operator: Child, what: str, interval: float = 0.1
) -> JsonDict:
    """Poll the emulator's progress until all expected connections were Ready (or fail clearly)."""
    while True:
        progress: JsonDict = await bench_call(session, url, "progress")
        if progress["all_ready_at"] is not None:
            return progress
        if operator.process.returncode is not None:
            raise BenchmarkError(
                f"the operator exited ({operator.process.returncode}) during {what}:\n{operator.tail()}"
            )
        if time.monotonic() > deadline:
            sample = await bench_call(session, url, "not_ready", limit=5)
            reasons = "\n".join(f"    {item['name']}: {describe_ready(item['ready'])}" for item in sample["sample"])
            raise BenchmarkError(
                f"timed out during {what}: {progress['ready']} Ready of {progress['created']} created "
                f"({sample['count']} not Ready); a sample:\n{reasons}\noperator log:\n{operator.tail(15)}"
            )
        await asyncio.sleep(interval)


def describe_ready(ready: Mapping[str, Any] | None) -> str:
    return f"{ready.get('reason')}: {ready.get('message')}" if ready else "no Ready condition yet"


async def wait_operator_watching(session: aiohttp.ClientSession, url: str, operator: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        watches = (await bench_call(session, url, "progress"))["watches"]
        if any(p.endswith("/backendconnections") for p in watches) and any(p.endswith("/secrets") for p in watches):
            return
        if operator.process.returncode is not None:
            raise BenchmarkError(f"the operator exited ({operator.process.returncode}) at start-up:\n{operator.tail()}")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the operator opened no watches within {timeout:.0f}s:\n{operator.tail()}")
        await asyncio.sleep(0.1)


# --- The request log -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    start: float
    end: float
    method: str
    path: str
    query: str
    content_type: str
    client: str
    body: str
    status: int
    response_bytes: int
    port: int

    @classmethod
    def from_log(cls, entry: Sequence[Any]) -> Request:
        start, end, method, path, query, content_type, agent, body, status, size, port = entry
        return cls(start, end, method, path, query, content_type, client_of(agent), body, status, size, port)

    @property
    def parts(self) -> tuple[str, str | None, str | None, str | None]:
        """(resource, namespace, name, subresource) of a resource path; ("(other)", ...) otherwise."""
        return resource_parts(self.path)

    @property
    def verb(self) -> str:
        _, _, name, sub = self.parts
        verbs = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }
        return verbs.get(self.method, self.method.lower()) + (f"/{sub}" if sub else "")

    def chain_key(self, serial: int) -> tuple[str, ...]:
        """Requests with one key must keep their order in a replay: those on one object."""
        resource, namespace, name, _ = self.parts
        if name is None and self.method == "POST":
            with contextlib.suppress(ValueError, AttributeError, TypeError):
                name = json.loads(self.body)["metadata"].get("name")
        if name is None:  # lists, generateName creates, non-resource paths: independent
            return ("#", str(serial))
        return (resource, namespace or "", name)


def resource_parts(path: str) -> tuple[str, str | None, str | None, str | None]:
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        rest = parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        rest = parts[3:]
    else:
        return "(other)", None, None, None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    rest += [None] * (3 - len(rest))  # type: ignore[list-item]
    return rest[0] or "(other)", namespace, rest[1], rest[2]


def client_of(user_agent: str) -> str:
    if user_agent.startswith("kopf/"):
        return "kopf"
    if user_agent.startswith("OpenAPI-Generator"):
        return "kubernetes"
    if user_agent == DRIVER_UA:
        return "benchmark"
    return user_agent or "?"


def without_versions(content_type: str, body: str) -> str:
    """The body without resourceVersion preconditions (a replay's objects have other versions)."""
    if not body or not content_type.startswith("application/"):
        return body
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if isinstance(doc, list):
        kept = [op for op in doc if not (isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion")]
        return body if len(kept) == len(doc) else json.dumps(kept)
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict) and "resourceVersion" in doc["metadata"]:
        doc["metadata"] = {k: v for k, v in doc["metadata"].items() if k != "resourceVersion"}
        return json.dumps(doc)
    return body


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- Phase 1: the operator -------------------------------------------------------------------------


@dataclass
class OperatorRun:
    wall: float
    created_after: float
    requests: list[Request]
    setup: list[Request]
    watches: list[tuple[str, str, str]]
    latencies: list[float]
    ready_times: list[float]
    emulator_cpu: float
    operator_cpu: float
    driver_cpu: float
    operator_rss_mb: float
    emulator_rss_mb: float
    connections: int
    #: Cores the machine spent outside the emulator, the operator and this driver meanwhile.
    others_cores: float = 0.0
    profile: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.connections / self.wall

    @property
    def per_connection(self) -> float:
        return len(self.requests) / self.connections


async def phase_operator(
    args: argparse.Namespace, workdir: Path, label: str, servers: ProviderServers, py_spy: Path | None
) -> OperatorRun:
    n = args.connections
    async with contextlib.AsyncExitStack() as stack:
        _, url = await stack.enter_async_context(emulator_process(workdir, label))
        kubeconfig = write_kubeconfig(workdir / f"kubeconfig-{label}", url)
        cprofile = Path(f"{args.cprofile}.{label}") if args.cprofile else None  # absolute: see main()
        operator = await stack.enter_async_context(operator_process(workdir, kubeconfig, label, cprofile=cprofile))
        session = await stack.enter_async_context(new_session(args.create_concurrency, DRIVER_UA))
        await wait_operator_watching(session, url, operator, timeout=60)

        # Warm-up: imports, pools and threads of the operator and the emulator.
        rng = random.Random(args.seed)
        warm = [
            connection_pair(9000 + i, WARMUP_NAMESPACE, PROVIDERS[i % len(PROVIDERS)], servers)
            for i in range(WARMUP_CONNECTIONS)
        ]
        await bench_call(session, url, "reset", "POST", expect=len(warm), prefix=WARMUP_NAMESPACE)
        await create_all(session, url, warm, min(len(warm), args.create_concurrency))
        await wait_until(session, url, time.monotonic() + 60, operator, "the warm-up")
        pairs = benchmark_pairs(n, servers, rng)
        for index in range(NAMESPACES):  # namespaces exist beforehand, as in a real cluster
            await create(
                session,
                url,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{BENCH_PREFIX}{index:02d}"}},
            )
        # Kopf keeps each object's worker for settings.queueing.idle_timeout (5 s) after its last
        # event, and the operator limits the workers: let the warm-up's workers go first.
        await asyncio.sleep(args.settle)

        # The measurement.
        await bench_call(session, url, "reset", "POST", expect=n, prefix=BENCH_PREFIX)
        spy = await start_py_spy(py_spy, operator.pid, workdir) if py_spy else None
        operator_cpu0, driver_cpu0, machine0 = operator.cpu_seconds(), time.process_time(), machine_busy_seconds()
        started = time.monotonic()
        await create_all(session, url, pairs, args.create_concurrency)
        created_after = time.monotonic() - started
        await wait_until(session, url, started + args.timeout, operator, "the measurement")
        operator_cpu, driver_cpu = operator.cpu_seconds() - operator_cpu0, time.process_time() - driver_cpu0
        machine, detected = machine_busy_seconds() - machine0, time.monotonic() - started
        emulator_cpu_now = (await bench_call(session, url, "progress"))["cpu"]
        profile = await stop_py_spy(spy) if spy else []
        log: JsonDict = await bench_call(session, url, "log")
        operator_rss = operator.rss_mb()
        if operator.process.returncode is not None:
            raise BenchmarkError(f"the operator exited during the run:\n{operator.tail()}")
    if cprofile:
        profile += cprofile_summary(cprofile)
    all_ready = float(log["all_ready_at"])
    requests = [Request.from_log(entry) for entry in log["log"] if entry[0] <= all_ready]
    created_at: dict[str, float] = log["created_at"]
    ready_at: dict[str, float] = log["ready_at"]
    return OperatorRun(
        wall=all_ready - started,
        created_after=created_after,
        requests=requests,
        setup=[Request.from_log(entry) for entry in log["setup_log"]],
        watches=[(str(path), str(query), str(agent)) for path, query, agent in log["watches_at_reset"]],
        latencies=[ready_at[key] - created_at[key] for key in ready_at if key in created_at],
        ready_times=sorted(t - started for t in ready_at.values()),
        emulator_cpu=float(log["all_ready_cpu"]) - float(log["reset_cpu"]),
        operator_cpu=operator_cpu,
        driver_cpu=driver_cpu,
        operator_rss_mb=operator_rss,
        emulator_rss_mb=float(log["rss_mb"]),
        connections=n,
        others_cores=max(0.0, machine - (emulator_cpu_now - float(log["reset_cpu"])) - operator_cpu - driver_cpu)
        / detected,
        profile=profile,
    )


# --- Phase 2: the emulator's ceiling ---------------------------------------------------------------


@dataclass
class ReplayRun:
    wall: float
    requests_wall: float
    requests: int
    emulator_cpu: float
    driver_cpu: float
    concurrency: int
    watch_events: int
    statuses: collections.Counter[int]
    #: CPU seconds the machine spent outside this driver and the emulator during the replay.
    others_cpu: float = 0.0
    #: Requests answered with another status than in phase 1: (request, status in the replay).
    changed: list[tuple[Request, int]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """The ceiling: requests per second of emulator CPU (what it serves with a core to itself)."""
        return self.requests / self.emulator_cpu

    @property
    def wall_rate(self) -> float:
        return self.requests / self.wall


class RawClient:
    """HTTP/1.1 over a pool of keep-alive asyncio streams, requests prepared in advance.

    A few tens of microseconds per request, several times less than aiohttp's or httpx's
    client: the emulator, not the replaying client, must be what limits the ceiling.
    """

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self._all: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        for _ in range(self.size):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self._all.append(writer)
            self._idle.put_nowait((reader, writer))

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
        for writer in self._all:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def prepare(self, method: str, target: str, body: bytes, content_type: str) -> bytes:
        head = [
            f"{method} {target} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"User-Agent: {REPLAY_UA}",
            "Authorization: Bearer benchmark",
            "Accept: application/json",
        ]
        if content_type:
            head.append(f"Content-Type: {content_type}")
        if body or method in {"POST", "PUT", "PATCH"}:
            head.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def send(self, prepared: bytes) -> int:
        """Send one prepared request on an idle connection; read the whole answer; return its status."""
        reader, writer = await self._idle.get()
        try:
            writer.write(prepared)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, chunked = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    await reader.readexactly(size + 2)
                await reader.readuntil(b"\r\n")
            elif length:
                await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            writer.close()
            raise BenchmarkError(f"the replay connection failed: {type(exc).__name__}: {exc}") from exc
        self._idle.put_nowait((reader, writer))
        return status


def replay_chains(requests: Sequence[Request]) -> list[list[Request]]:
    chains: dict[tuple[str, ...], list[Request]] = {}
    for serial, request in enumerate(sorted(requests, key=lambda r: r.start)):
        chains.setdefault(request.chain_key(serial), []).append(request)
    return list(chains.values())  # in the order of each chain's first request


async def consume_watch(session: aiohttp.ClientSession, url: str, counter: list[int], opened: asyncio.Event) -> None:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as response:
        opened.set()
        async for _line in response.content:
            counter[0] += 1


def watch_url(base: str, path: str, query: str) -> str:
    params = [p for p in query.split("&") if p and not p.startswith("resourceVersion=")]
    return f"{base}{path}?{'&'.join(params)}"


async def phase_replay(args: argparse.Namespace, workdir: Path, label: str, run: OperatorRun) -> ReplayRun:
    ports = {(r.client, r.port) for r in run.requests}
    concurrency = args.replay_concurrency or max(8, min(100, len(ports)))
    chains = replay_chains(run.requests)
    statuses: collections.Counter[int] = collections.Counter()
    changed: list[tuple[Request, int]] = []
    async with contextlib.AsyncExitStack() as stack:
        emulator, url = await stack.enter_async_context(emulator_process(workdir, f"{label}-replay"))
        host, port = url.removeprefix("http://").rsplit(":", 1)
        control = await stack.enter_async_context(new_session(4, DRIVER_UA))
        watch_session = await stack.enter_async_context(new_session(len(run.watches) + 1, REPLAY_UA))
        client = RawClient(host, int(port), concurrency)
        await client.open()
        stack.push_async_callback(client.close)
        prepared = {
            id(r): client.prepare(
                r.method,
                r.path + (f"?{r.query}" if r.query else ""),
                without_versions(r.content_type, r.body).encode(),
                r.content_type,
            )
            for r in [*run.setup, *run.requests]
        }
        events = [0]
        watchers = []
        for path, query, _agent in run.watches:  # the watches the operator held, consumed as it would
            opened = asyncio.Event()
            target = watch_url(url, path, query)
            watchers.append(asyncio.create_task(consume_watch(watch_session, target, events, opened)))
            await asyncio.wait_for(opened.wait(), 10)
        stack.push_async_callback(cancel_all, watchers)

        async def replay(chain: list[Request], record: bool = True) -> None:
            for request in chain:  # in order: the requests on one object
                status = await client.send(prepared[id(request)])
                if record:
                    statuses[status] += 1
                    if status != request.status:
                        changed.append((request, status))

        # Set-up, not timed: the state phase 1 started from (namespaces, the warm-up's objects);
        # it also runs the request paths of the emulator and uses every connection.
        await asyncio.wait_for(asyncio.gather(*(replay(c, False) for c in replay_chains(run.setup))), args.timeout)
        warm = client.prepare("GET", "/api/v1/namespaces/default", b"", "")
        await asyncio.gather(*(client.send(warm) for _ in range(concurrency * 3)))
        await wait_drained(control, url)
        await bench_call(control, url, "reset", "POST", expect=0, prefix=BENCH_PREFIX)  # same bookkeeping as phase 1
        events[0] = 0

        cpu0 = (await bench_call(control, url, "progress"))["cpu"]
        driver_cpu0, machine0 = time.process_time(), machine_busy_seconds()
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(replay(chain) for chain in chains)), args.timeout)
        requests_wall = time.monotonic() - started
        progress = await wait_drained(control, url)  # the watchers served too
        wall = time.monotonic() - started
        driver_cpu, machine = time.process_time() - driver_cpu0, machine_busy_seconds() - machine0
        cpu = progress["cpu"] - cpu0
        if emulator.process.returncode is not None:
            raise BenchmarkError(f"the replay emulator exited:\n{emulator.tail()}")
    others = max(0.0, machine - cpu - driver_cpu)
    return ReplayRun(
        wall, requests_wall, len(run.requests), cpu, driver_cpu, concurrency, events[0], statuses, others, changed
    )


async def wait_drained(control: aiohttp.ClientSession, url: str, timeout: float = 60) -> JsonDict:
    """Wait until the emulator has sent every stored event to its watchers; return its progress."""
    deadline = time.monotonic() + timeout
    while (progress := await bench_call(control, url, "progress"))["watch_backlog"]:
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the replay's watch streams did not drain: {progress['watch_backlog']} events")
        await asyncio.sleep(0.002)
    result: JsonDict = progress
    return result


async def cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- Profiling (optional) --------------------------------------------------------------------------


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


async def start_py_spy(out: Path, pid: int, workdir: Path) -> tuple[asyncio.subprocess.Process, Path] | None:
    binary = find_py_spy()
    if binary is None:
        print("  (py-spy not found: no profile)")
        return None
    log = (workdir / "py-spy.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--threads", "--nonblocking",
        "-o", str(out),
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent,
    )  # fmt: skip
    log.close()
    await asyncio.sleep(0.3)  # attached
    return process, out


async def stop_py_spy(spy: tuple[asyncio.subprocess.Process, Path]) -> list[str]:
    process, out = spy
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
    return collapsed_summary(out)


#: Leaf frames that mean "waiting", not working (py-spy cannot always tell a thread blocked in C).
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py)", "EpollSelector.select (selectors.py)")


def collapsed_summary(path: Path, top: int = 18) -> list[str]:
    """Where the busy samples are: by thread, by leaf function ("self"), by operator/Kopf frame ("total")."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return [f"  (no py-spy output at {path})"]
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        leaf = short_frame(frames[-1])
        if leaf in IDLE_LEAVES:
            idle += count
            continue
        total += count
        thread = frames[0].split("): ", 1)[-1] if frames[0].startswith("thread (") else frames[0]
        threads["thread pool (to_thread)" if thread.startswith("asyncio_") else thread] += count
        own[leaf] += count
        for name in {short_frame(f) for f in frames[1:] if "oneie_operator" in f or "kopf/" in f}:
            inclusive[name] += count
    if not total:
        return ["  (py-spy collected no busy samples)"]
    out = [f"  py-spy: {total} busy samples of the operator in phase 1 ({idle} idle ones left out; {path})"]
    out.append("  by thread: " + ", ".join(f"{name} {100 * c / total:.0f}%" for name, c in threads.most_common(6)))
    out.append("  self time by function (% of busy samples):")
    out += [f"    {100 * c / total:5.1f}%  {name}" for name, c in own.most_common(top)]
    out.append("  total time under operator/Kopf frames:")
    out += [f"    {100 * c / total:5.1f}%  {name}" for name, c in inclusive.most_common(top)]
    return out


def short_frame(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "lib/python3.11/", "/operator/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def cprofile_summary(path: Path, top: int = 25) -> list[str]:
    import io
    import pstats

    if not path.exists():
        return [f"  (no cProfile output at {path})"]
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    return [f"  cProfile of the operator (whole process life, {path}):", *buffer.getvalue().splitlines()]


# --- Report ----------------------------------------------------------------------------------------


def describe_phase1(run: OperatorRun) -> list[str]:
    n = run.connections
    lines = [
        f"  operator: {n} connections Ready in {run.wall:.2f}s = {run.rate:.1f}/s "
        f"(all creates sent after {run.created_after:.2f}s; first Ready at {run.ready_times[0]:.2f}s, "
        f"half at {percentile(run.ready_times, 0.5):.2f}s)",
        f"    create→Ready latency: p50 {percentile(run.latencies, 0.5):.2f}s, "
        f"p95 {percentile(run.latencies, 0.95):.2f}s, max {max(run.latencies):.2f}s",
        f"    CPU over the window (cores): emulator {run.emulator_cpu / run.wall:.2f}, operator "
        f"{run.operator_cpu / run.wall:.2f}, driver+fake providers {run.driver_cpu / run.wall:.2f}, "
        f"other processes of the machine {run.others_cores:.2f}{' (disturbed)' if run.others_cores > 0.3 else ''}; "
        f"RSS emulator {run.emulator_rss_mb:.0f} MB, operator {run.operator_rss_mb:.0f} MB",
        f"    {len(run.requests)} requests to the emulator = {run.per_connection:.2f} per connection "
        f"({sum(r.client != 'benchmark' for r in run.requests) / n:.2f} from the operator); "
        f"emulator CPU {1000 * run.emulator_cpu / len(run.requests):.2f} ms per request",
    ]
    by_kind: collections.Counter[tuple[str, str, str]] = collections.Counter(
        (r.client, r.verb, r.parts[0]) for r in run.requests
    )
    for (client, verb, resource), count in sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0])):
        sizes = [len(r.body) for r in run.requests if (r.client, r.verb, r.parts[0]) == (client, verb, resource)]
        lines.append(
            f"      {count:6d}  {count / n:5.2f}/conn  {client:<10} {verb:<14} {resource:<20}"
            f" body {statistics.mean(sizes):6.0f} B"
        )
    failures = collections.Counter((r.client, r.verb, r.parts[0], r.status) for r in run.requests if r.status >= 400)
    for (client, verb, resource, status), count in sorted(failures.items()):
        lines.append(f"      HTTP {status}: {count} × {client} {verb} {resource}")
    per_client = collections.Counter(r.client for r in run.requests)
    connections = collections.Counter(client for client, _ in {(r.client, r.port) for r in run.requests})
    lines.append(
        "    client connections used: "
        + ", ".join(f"{client} {connections[client]} ({per_client[client]} requests)" for client in sorted(per_client))
    )
    lines.append("    watches held: " + ", ".join(sorted(path for path, _, _ in run.watches)))
    return lines


def describe_phase2(replay: ReplayRun, run: OperatorRun) -> list[str]:
    changed = collections.Counter(
        f"{r.client} {r.verb} {r.parts[0]}: {r.status}→{status}" for r, status in replay.changed
    )
    others = replay.others_cpu / replay.wall
    return [
        f"  ceiling: {replay.requests} requests in {replay.emulator_cpu:.2f} emulator CPU seconds = "
        f"{replay.rate:.0f} req/s = {replay.rate / run.per_connection:.1f} connections/s; wall {replay.wall:.2f}s = "
        f"{replay.wall_rate:.0f} req/s with the emulator at {replay.emulator_cpu / replay.wall:.2f} of a core",
        f"    {replay.concurrency} connections; answers done at {replay.requests_wall:.2f}s, then the "
        f"{len(run.watches)} watches drained ({replay.watch_events} events); replay client "
        f"{replay.driver_cpu / replay.wall:.2f} cores, other processes {others:.2f}"
        f"{' (disturbed)' if others > 0.3 else ''}; statuses {dict(sorted(replay.statuses.items()))}"
        + (f"; not as in phase 1: {dict(changed.most_common(4))}" if changed else ""),
    ]


async def run_benchmark(args: argparse.Namespace) -> list[tuple[OperatorRun, ReplayRun]]:
    results: list[tuple[OperatorRun, ReplayRun]] = []
    rng = random.Random(args.seed)
    async with ProviderServers(make_credentials(rng)) as servers:
        with tempfile.TemporaryDirectory(prefix="oneie-bench-") as tmp:
            workdir = Path(tmp)
            for index in range(args.repeat):
                label = f"r{index + 1}"
                print(f"repeat {index + 1}/{args.repeat}:", flush=True)
                py_spy = Path(args.py_spy) if args.py_spy and index == 0 else None
                run = await phase_operator(args, workdir, label, servers, py_spy)
                for line in describe_phase1(run):
                    print(line, flush=True)
                rounds = []
                for round_index in range(args.replay_rounds):
                    rounds.append(await phase_replay(args, workdir, f"{label}-{round_index + 1}", run))
                    for line in describe_phase2(rounds[-1], run):
                        print(line, flush=True)
                replay = sorted(rounds, key=lambda r: r.rate)[len(rounds) // 2]  # the median round
                print(
                    f"    ratio {run.rate / (replay.rate / run.per_connection):.3f} (with the median ceiling of "
                    f"{len(rounds)} replay(s), {replay.rate:.0f} req/s)",
                    flush=True,
                )
                for line in run.profile:
                    print(line)
                results.append((run, replay))
    return results


def summary(args: argparse.Namespace, results: list[tuple[OperatorRun, ReplayRun]], total: float) -> str:
    def med(values: Iterable[float]) -> float:
        return statistics.median(list(values))

    op_rate = med(run.rate for run, _ in results)
    ceiling = med(replay.rate / run.per_connection for run, replay in results)
    ratio = med(run.rate / (replay.rate / run.per_connection) for run, replay in results)
    pairs = {
        "connections": args.connections,
        "repeats": len(results),
        "operator_conn_per_s": f"{op_rate:.1f}",
        "emulator_ceiling_conn_per_s": f"{ceiling:.1f}",
        "ratio": f"{ratio:.3f}",
        "requests_per_connection": f"{med(run.per_connection for run, _ in results):.2f}",
        "emulator_ceiling_req_per_s": f"{med(replay.rate for _, replay in results):.0f}",
        "emulator_ceiling_wall_req_per_s": f"{med(replay.wall_rate for _, replay in results):.0f}",
        "wall_s": f"{med(run.wall for run, _ in results):.2f}",
        "replay_wall_s": f"{med(replay.wall for _, replay in results):.2f}",
        "latency_p50_s": f"{med(percentile(run.latencies, 0.5) for run, _ in results):.2f}",
        "emulator_cpu_cores": f"{med(run.emulator_cpu / run.wall for run, _ in results):.2f}",
        "operator_cpu_cores": f"{med(run.operator_cpu / run.wall for run, _ in results):.2f}",
        "other_load_cores": f"{med(run.others_cores for run, _ in results):.2f}",
        "seed": args.seed,
        "total_s": f"{total:.1f}",
    }
    return " ".join(f"{key}={value}" for key, value in pairs.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connections", type=int, default=500, help="BackendConnections to reconcile (N)")
    parser.add_argument("--repeat", type=int, default=3, help="repeats; the medians are reported")
    parser.add_argument("--seed", type=int, default=20250601, help="seed of the credentials and the create order")
    parser.add_argument("--create-concurrency", type=int, default=50, help="concurrent create requests")
    parser.add_argument(
        "--replay-concurrency",
        type=int,
        default=0,
        help="client connections of the ceiling replay (0: as many as phase 1 used, 8-100)",
    )
    parser.add_argument(
        "--replay-rounds",
        type=int,
        default=3,
        help="replays per repeat, each into a fresh emulator (the median counts)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=6.0,
        help="seconds between the warm-up and the measurement (Kopf's idle workers exit)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for all N to become Ready")
    parser.add_argument("--py-spy", metavar="FILE", help="sample the operator with py-spy in repeat 1 (collapsed)")
    parser.add_argument("--cprofile", metavar="FILE", help="run the operator under cProfile; FILE.rN per repeat")
    args = parser.parse_args()
    if min(args.connections, args.repeat, args.replay_rounds) < 1:
        parser.error("--connections, --repeat and --replay-rounds must be at least 1")
    if args.cprofile:
        args.cprofile = str(Path(args.cprofile).resolve())  # the operator runs in the repository root

    started = time.monotonic()

    async def guarded() -> list[tuple[OperatorRun, ReplayRun]]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)  # clean up as on Ctrl-C
        return await run_benchmark(args)

    try:
        results = asyncio.run(guarded())
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    print(summary(args, results, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
