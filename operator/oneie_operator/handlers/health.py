"""Kopf glue for health monitoring: run the probe engine, report its results.

Status ``health`` is written only when something changes (state, failures, error) and as a
heartbeat; Events only on transitions; metrics on every probe. A refused status write is
not lost: the connection stays "dirty" and the next probe writes again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from oneie_operator.handlers.services import Services
from oneie_operator.health.assessment import HealthTracker, State
from oneie_operator.health.engine import EngineSettings, ProbeEngine
from oneie_operator.health.probing import ProbeTarget, run_probe
from oneie_operator.reconcile import conditions
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
        # errorRate is essential: it falls back as failures leave the window, and status must
        # say what the metric says.
        essential = {k: v for k, v in health.items() if k not in ("lastProbeTime", "responseTimeMilliseconds")}
        previous, written_at = self._written.get(key, ({}, 0.0))
        due = time.monotonic() - written_at >= HEARTBEAT_SECONDS
        # A requested probe (one.ie/probe) is always written, and echoes the request it answers.
        requested = self.services.probe_requests.get(key)
        answered = requested is not None and self._answered.get(key) != requested
        if requested is not None:
            health["lastRequest"] = requested
        if essential != previous or due or key in self._dirty or old != new or answered:
            try:
                await write_health(self.services, target.namespace, target.name, health, latest_error(tracker))
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


def latest_error(tracker: HealthTracker) -> str:
    latest = tracker.outcomes[-1] if tracker.outcomes else None
    return f"{latest.reason}: {latest.message}" if latest is not None and not latest.ok else ""


def healthy_condition(name: str, health: Mapping[str, Any], detail: str = "") -> conditions.Condition:
    """The connection's ``Healthy`` condition, from its ``status.health``."""
    return conditions.healthy(str(health.get("status") or "unknown"), name, detail[:512])


async def write_health(
    services: Services, namespace: str, name: str, health: Mapping[str, Any] | None, detail: str = ""
) -> None:
    """Write ``status.health`` (when given) and the ``Healthy`` condition that follows it, in one
    write based on the stored conditions (a concurrent reconcile's conditions are kept)."""

    def build(status: Mapping[str, Any]) -> dict[str, Any] | None:
        current = dict(health) if health is not None else dict(status.get("health") or {})
        cond = healthy_condition(name, current, detail)
        stored = conditions.get_condition(status.get("conditions"), "Healthy") or {}
        same = stored.get("status") == cond.status and stored.get("reason") == cond.reason
        if health is None and same:
            return None
        changes: dict[str, Any] = {} if health is None else {"health": dict(health)}
        if not same or (detail and stored.get("message") != cond.message):
            generation = conditions.get_condition(status.get("conditions"), "Ready") or {}
            changes["conditions"] = conditions.merge_conditions(
                status.get("conditions"), [cond], generation=generation.get("observedGeneration")
            )
        return changes

    await services.objects.update_status("backendconnections", namespace, name, build)


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
    # resource handler: only there does the context carry Kopf's event-posting queue.
    memo["probe_engine_task"] = None


def ensure_running(memo: kopf.Memo, engine: ProbeEngine) -> None:
    task: asyncio.Task[None] | None = memo.get("probe_engine_task")
    if task is None or task.done():
        memo["probe_engine_task"] = asyncio.create_task(engine.run(), name="probe engine")


@kopf.on.cleanup()
async def stop_probe_engine(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("probe_engine_task")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
