"""The Kubernetes emulator in a process of its own, instrumented for ``benchmarks/reconcile.py``.

    python benchmarks/_emulator_process.py [--port 0]

Serves :class:`~oneie_operator.testing.emulator.FixedKubernetesEmulator` with the CRDs of
``crds/`` (via :func:`~oneie_operator.testing.cluster.serve_emulator`) and prints one line,
``READY http://127.0.0.1:PORT``, once it listens. It stops on SIGTERM/SIGINT, or when its
standard input reaches end-of-file (the benchmark keeps a pipe open: if the benchmark dies,
the emulator goes with it).

The instrumentation lives under ``/__bench__/`` (never under ``/api``/``/apis``, so it cannot
collide with a resource path) and costs little per request: one tuple appended
to a list while recording, and a dict lookup when a BackendConnection is stored.

* ``POST /__bench__/reset?expect=N&prefix=P`` -- start recording: clear the request log and the
  Ready bookkeeping; the run is complete when ``N`` BackendConnections in namespaces starting
  with ``P`` have had ``Ready=True``.
* ``GET /__bench__/progress`` -- Ready count, completion time (``time.monotonic()``: one clock
  for all processes of the machine), this process's CPU seconds, open watches and the events
  not yet sent to them, and the writes (POST/PUT/PATCH/DELETE) recorded with the time of the last.
* ``GET /__bench__/log`` -- every request served since the reset (start, end, method, path,
  query, content type, user agent, body, status, response bytes, client port), and those served
  between the reset before and this one (``setup_log``: what built the state the run started
  from), plus the watches that were open at the reset and the creation/Ready times of each
  BackendConnection.
* ``GET /__bench__/not_ready?limit=K`` -- a sample of the BackendConnections not Ready yet, with
  their Ready condition (for the failure message of a run that times out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
from _common import serve_until_stopped

from oneie_operator.testing.emulator import FixedKubernetesEmulator

ROOT = Path(__file__).resolve().parents[1]
BC_STORE = ("one.ie", "backendconnections")
JsonDict = dict[str, Any]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: (start, end, method, path, query, content type, user agent, body, status, response bytes, client port)
LogEntry = tuple[float, float, str, str, str, str, str, str, int, int, int]


def is_ready(obj: JsonDict) -> bool:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def is_watch(request: aiohttp.web.BaseRequest) -> bool:
    return request.method == "GET" and (request.query.get("watch") in {"true", "1"} or "/watch/" in request.path)


@attrs.define(kw_only=True)
class RecordingEmulator(FixedKubernetesEmulator):
    """The emulator plus a request log and Ready bookkeeping for the benchmark (see module docstring)."""

    recording: bool = attrs.field(default=False, init=False)
    log: list[LogEntry] = attrs.field(factory=list, init=False)
    setup_log: list[LogEntry] = attrs.field(factory=list, init=False)
    expect: int = attrs.field(default=0, init=False)
    prefix: str = attrs.field(default="", init=False)
    reset_at: float = attrs.field(default=0.0, init=False)
    reset_cpu: float = attrs.field(default=0.0, init=False)
    all_ready_at: float | None = attrs.field(default=None, init=False)
    all_ready_cpu: float | None = attrs.field(default=None, init=False)
    created_at: dict[str, float] = attrs.field(factory=dict, init=False)
    ready_at: dict[str, float] = attrs.field(factory=dict, init=False)
    open_watches: dict[int, tuple[str, str, str]] = attrs.field(factory=dict, init=False)
    watches_at_reset: list[tuple[str, str, str]] = attrs.field(factory=list, init=False)
    #: Writes (POST/PUT/PATCH/DELETE) recorded since the reset, and when the last one ended.
    writes: int = attrs.field(default=0, init=False)
    last_write_at: float | None = attrs.field(default=None, init=False)
    _ids: itertools.count[int] = attrs.field(factory=itertools.count, init=False)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.startswith("/__bench__/"):
            return self._bench(raw_request)
        user_agent = raw_request.headers.get("User-Agent", "")
        if is_watch(raw_request):
            token = next(self._ids)
            self.open_watches[token] = (raw_request.path, raw_request.query_string, user_agent)
            try:
                return await super().__call__(raw_request)
            finally:
                del self.open_watches[token]
        start = time.monotonic()
        response = await super().__call__(raw_request)
        if self.recording:
            if raw_request.method in WRITE_METHODS:
                self.writes, self.last_write_at = self.writes + 1, time.monotonic()
            body = await raw_request.read() if raw_request.body_exists else b""
            payload = response.body if isinstance(response, aiohttp.web.Response) else None
            size = len(payload) if isinstance(payload, bytes | bytearray) else 0
            peer = raw_request.transport.get_extra_info("peername") if raw_request.transport else None
            self.log.append(
                (
                    start,
                    time.monotonic(),
                    raw_request.method,
                    raw_request.path,
                    raw_request.query_string,
                    raw_request.headers.get("Content-Type", ""),
                    user_agent,
                    body.decode("utf-8", "replace"),
                    response.status,
                    int(size),
                    int(peer[1]) if peer else 0,
                )
            )
        return response

    def _commit(self, store_key: Any, old: JsonDict | None, new: JsonDict) -> JsonDict:
        stored: JsonDict = super()._commit(store_key, old, new)
        if self.recording and store_key == BC_STORE:
            meta = stored["metadata"]
            namespace = meta.get("namespace") or ""
            if namespace.startswith(self.prefix):
                key = f"{namespace}/{meta['name']}"
                now = time.monotonic()
                if old is None:
                    self.created_at.setdefault(key, now)
                if key not in self.ready_at and is_ready(stored):
                    self.ready_at[key] = now
                    if len(self.ready_at) == self.expect:
                        self.all_ready_at, self.all_ready_cpu = now, time.process_time()
        return stored

    def watch_backlog(self) -> int:
        """Events stored but not yet sent to a watcher (the emulator's pending work for the watches)."""
        return sum(watcher.queue.qsize() for store in self._stores.values() for watcher in store.watchers)

    # --- /__bench__/ ----------------------------------------------------------------------------

    def _bench(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.Response:
        action = request.path.removeprefix("/__bench__/")
        if action == "reset" and request.method == "POST":
            self.recording = True
            self.setup_log, self.log = self.log, []
            self.expect = int(request.query.get("expect", "0"))
            self.prefix = request.query.get("prefix", "")
            self.created_at, self.ready_at = {}, {}
            self.writes, self.last_write_at = 0, None
            self.all_ready_at = self.all_ready_cpu = None
            self.watches_at_reset = list(self.open_watches.values())
            self.reset_at, self.reset_cpu = time.monotonic(), time.process_time()
            return aiohttp.web.json_response({"reset_at": self.reset_at})
        if action == "progress":
            return aiohttp.web.json_response(
                {
                    "ready": len(self.ready_at),
                    "created": len(self.created_at),
                    "all_ready_at": self.all_ready_at,
                    "all_ready_cpu": self.all_ready_cpu,
                    "requests": len(self.log),
                    "writes": self.writes,
                    "last_write_at": self.last_write_at,
                    "cpu": time.process_time(),
                    "now": time.monotonic(),
                    "watches": sorted(path for path, _, _ in self.open_watches.values()),
                    "watch_backlog": self.watch_backlog(),
                }
            )
        if action == "log":
            return aiohttp.web.json_response(
                {
                    "log": self.log,
                    "setup_log": self.setup_log,
                    "watches_at_reset": self.watches_at_reset,
                    "created_at": self.created_at,
                    "ready_at": self.ready_at,
                    "reset_at": self.reset_at,
                    "reset_cpu": self.reset_cpu,
                    "all_ready_at": self.all_ready_at,
                    "all_ready_cpu": self.all_ready_cpu,
                    "rss_mb": rss_mb(),
                }
            )
        if action == "not_ready":
            limit = int(request.query.get("limit", "10"))
            sample: list[JsonDict] = []
            for obj in self.list_objects("one.ie/v1alpha1/backendconnections"):
                meta = obj["metadata"]
                key = f"{meta.get('namespace')}/{meta['name']}"
                if meta.get("namespace", "").startswith(self.prefix) and key not in self.ready_at:
                    ready = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
                    sample.append({"name": key, "ready": ready[0] if ready else None})
            return aiohttp.web.json_response({"count": len(sample), "sample": sample[:limit]})
        return aiohttp.web.json_response({"error": f"unknown: {request.method} {request.path}"}, status=404)


def rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def serve(port: int) -> None:
    # Schema validation off: the benchmarks measure the operator, and their baseline predates it.
    await serve_until_stopped(RecordingEmulator(schema_validation=False), port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
