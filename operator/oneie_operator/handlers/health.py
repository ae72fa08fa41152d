"""Kopf glue for health monitoring: run the probe engine, report its results.

Status ``health`` is written only when something changes (state, failures, error) and as a
heartbeat; Events only on transitions; metrics on every probe. A refused status write is
not lost: the connection stays "dirty" and the next probe writes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from oneie_operator.handlers.services import Services
from oneie_operator.health.assessment import HealthTracker, State
from oneie_operator.health.engine import EngineSettings, ProbeEngine
from oneie_operator.health.probing import ProbeTarget, run_probe
from oneie_operator.reconcile.connections import API_VERSION

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 600.0
TRANSITION_EVENTS = {
    "online": ("Normal", "BackendOnline"),
    "degraded": ("Warning", "BackendDegraded"),
    "offline": ("Warning", "BackendOffline"),
}


class HealthReporter:
    """Turns probe results into status writes, Events and metrics."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self._written: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._answered: dict[tuple[str, str], str] = {}

    async def __call__(self, target: ProbeTarget, tracker: HealthTracker, old: State, new: State) -> None:
        latest = tracker.outcomes[-1]
        key = (target.namespace, target.name)
        self.services.metrics.observe_probe(
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
        if not latest.ok:
            self.services.metrics.count_security_events(target.namespace, [latest.reason])
        health = tracker.status()
        essential = {
            k: v for k, v in health.items() if k not in ("lastProbeTime", "responseTimeMilliseconds", "errorRate")
        }
        previous, written_at = self._written.get(key, ({}, 0.0))
        due = time.monotonic() - written_at >= HEARTBEAT_SECONDS
        # A requested probe (one.ie/probe) is always written, and echoes the request it answers.
        requested = self.services.probe_requests.get(key)
        answered = requested is not None and self._answered.get(key) != requested
        if requested is not None:
            health["lastRequest"] = requested
        if essential != previous or due or key in self._dirty or old != new or answered:
            try:
                await self.services.objects.patch_status(
                    "backendconnections", target.namespace, target.name, {"health": health}
                )
            except Exception as exc:  # the API refused: keep it dirty, the next probe writes again
                self._dirty.add(key)
                logger.warning(
                    "health status of %s/%s not written (%s); will retry",
                    target.namespace,
                    target.name,
                    type(exc).__name__,
                )
            else:
                self._dirty.discard(key)
                self._written[key] = (essential, time.monotonic())
                if requested is not None:
                    self._answered[key] = requested
        if old != new and new in TRANSITION_EVENTS:
            kind, reason = TRANSITION_EVENTS[new]
            detail = f" ({latest.reason}: {latest.message})" if not latest.ok else f" ({latest.seconds * 1000:.0f} ms)"
            body: kopf.RawBody = {
                "apiVersion": API_VERSION,
                "kind": "BackendConnection",
                "metadata": {"name": target.name, "namespace": target.namespace, "uid": target.uid},
            }
            kopf.event(kopf.Body(body), type=kind, reason=reason, message=f"{target.name} is {new}, was {old}{detail}")

    def forget(self, namespace: str, name: str) -> None:
        self._written.pop((namespace, name), None)
        self._dirty.discard((namespace, name))
        self._answered.pop((namespace, name), None)


@kopf.on.startup()
async def start_probe_engine(memo: kopf.Memo, **_: Any) -> None:
    services: Services = memo["services"]
    reporter = HealthReporter(services)

    config = services.config

    async def prober(target: ProbeTarget) -> Any:
        return await run_probe(target, services.keyring, services.http)

    settings = EngineSettings(
        max_concurrency=config.probe_concurrency,
        max_per_namespace=config.probe_concurrency_per_namespace,
        initial_jitter_seconds=config.probe_initial_jitter_seconds,
    )
    engine = ProbeEngine(prober, reporter, settings)
    services.probe_engine = engine
    services.health_reporter = reporter
    # The engine's task is started by the first registration (ensure_running), from inside a
    # resource handler: only there does the context carry Kopf's event-posting queue. Kopf gives
    # each object a shallow copy of the memo, so the task lives in one shared, mutable holder
    # (a key set on an object's copy would start one engine loop per object).
    memo["probe_engine_task"] = {}


def ensure_running(memo: kopf.Memo, engine: ProbeEngine) -> None:
    holder: dict[str, asyncio.Task[None]] = memo["probe_engine_task"]
    task = holder.get("task")
    if task is None or task.done():
        holder["task"] = asyncio.create_task(engine.run(), name="probe engine")


@kopf.on.cleanup()
async def stop_probe_engine(memo: kopf.Memo, **_: Any) -> None:
    holder: dict[str, asyncio.Task[None]] = memo.get("probe_engine_task") or {}
    task = holder.pop("task", None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
