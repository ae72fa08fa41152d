"""Live updates: Kubernetes watches (the user's identity) fanned out to browsers as Server-Sent Events.

One watch per kind (Organizations, BackendConnections, Events) runs in a thread with the plug-in's
synchronous client, over every namespace the user may list (else the dashboard's namespace).
Each change becomes an SSE ``change`` event naming the object (never its body: the page reads the
view again through the API). When a watch cannot reach the API server, an ``unreachable`` event
carries a sentence for the banner; ``reachable`` clears it when a watch works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

import kubernetes.watch
from aiohttp import web
from kubernetes.client.exceptions import ApiException

from oneie_operator.cli.dashboard.api import unreachable
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.names import CONNECTIONS, GROUP, ORGANIZATIONS, VERSION

RETRY_SECONDS = 2.0
WATCH_SECONDS = 30


class Hub:
    """The watches and the browsers listening to them."""

    def __init__(self, cluster: Cluster, *, namespace: str, cluster_wide: bool) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.cluster_wide = cluster_wide
        self.listeners: set[asyncio.Queue[tuple[str, dict[str, Any]]]] = set()
        self.stopping = threading.Event()
        self.unreachable: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        for kind in (ORGANIZATIONS, CONNECTIONS, "events"):
            thread = threading.Thread(target=self._watch, args=(kind,), name=f"dashboard-watch-{kind}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        if self.loop is None:
            return
        def deliver() -> None:
            if event == "unreachable":
                self.unreachable = str(data.get("message"))
            elif event == "reachable":
                self.unreachable = None
            for queue in list(self.listeners):
                queue.put_nowait((event, data))
        with contextlib.suppress(RuntimeError):  # the loop closed while stopping
            self.loop.call_soon_threadsafe(deliver)

    def _list_func(self, kind: str, cluster_wide: bool) -> tuple[Any, tuple[Any, ...]]:
        if kind == "events":
            core = self.cluster.core
            return (core.list_event_for_all_namespaces, ()) if cluster_wide else (
                core.list_namespaced_event, (self.namespace,))
        custom = self.cluster.custom
        if cluster_wide:
            return custom.list_cluster_custom_object, (GROUP, VERSION, kind)
        return custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, kind)

    def _watch(self, kind: str) -> None:
        cluster_wide = self.cluster_wide
        while not self.stopping.is_set():
            func, args = self._list_func(kind, cluster_wide)
            watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
            try:
                stream = watcher.stream(func, *args, timeout_seconds=WATCH_SECONDS,  # type: ignore[no-untyped-call]
                                        _request_timeout=WATCH_SECONDS + 10)
                for event in stream:
                    if self.unreachable is not None:
                        self.publish("reachable", {})
                    obj = event.get("object")
                    self.publish("change", _identify(kind, event.get("type"), obj))
                    if self.stopping.is_set():
                        break
                if self.unreachable is not None:
                    self.publish("reachable", {})
            except ApiException as exc:
                if exc.status == 403 and cluster_wide:
                    cluster_wide = False  # may not watch every namespace: the dashboard's namespace then
                    continue
                if exc.status not in (403, 410):
                    self.publish("unreachable", {"message": f"Watching {kind} failed: HTTP {exc.status} {exc.reason}"})
                self.stopping.wait(RETRY_SECONDS)
            except Exception as exc:  # connection refused, reset, timeout
                text = f"{unreachable(self.cluster, exc)} Retrying every {RETRY_SECONDS:.0f} s."
                self.publish("unreachable", {"message": text})
                self.stopping.wait(RETRY_SECONDS)
            finally:
                watcher.stop()  # type: ignore[no-untyped-call]


def _identify(kind: str, type_: object, obj: object) -> dict[str, Any]:
    """Which object changed, by name and version only (no body, so no spec or data leaves here)."""
    if kind == "events":
        involved = getattr(obj, "involved_object", None)
        meta = getattr(obj, "metadata", None)
        return {"kind": "events", "type": str(type_),
                "namespace": str(getattr(meta, "namespace", "") or ""),
                "involved": str(getattr(involved, "name", "") or "")}
    meta = (obj or {}).get("metadata") or {} if isinstance(obj, dict) else {}
    return {"kind": kind, "type": str(type_), "namespace": str(meta.get("namespace", "")),
            "name": str(meta.get("name", "")), "resourceVersion": str(meta.get("resourceVersion", ""))}


def sse_route(hub: Hub) -> web.RouteTableDef:
    r = web.RouteTableDef()

    @r.get("/api/events")
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        hub.listeners.add(queue)
        try:
            first = ("unreachable", {"message": hub.unreachable}) if hub.unreachable else ("hello", {})
            await response.write(_frame(*first))
            while True:
                try:
                    event, data = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(_frame(event, data))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.listeners.discard(queue)
        return response

    return r


def _frame(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
