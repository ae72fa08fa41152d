"""Reporting the probe engine's results: status, Events, metrics.

Status ``health`` is written only when something changes (state, failures, error) and as a
heartbeat; Events only on transitions; metrics on every probe. A refused status write is
not lost: it is tried again soon (back-off), and the connection stays "dirty" until it lands.
After a restart, what the last probe (by an earlier process) wrote counts as written
(:meth:`HealthReporter.resume`): a probe that finds the same writes nothing. The engine itself is
built with the services (``handlers.services``) and started and stopped with the operator
(``handlers.lifecycle``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from oneie_operator.errors import CredentialsRejectedError
from oneie_operator.handlers.memory import ProbeRequests
from oneie_operator.health.assessment import HealthTracker, LastProbe, State
from oneie_operator.health.probing import ProbeTarget
from oneie_operator.kube.events import EventRecorder
from oneie_operator.kube.secrets import CustomObjects
from oneie_operator.names import API_VERSION, CONNECTION_KIND, CONNECTIONS
from oneie_operator.observability.metrics import Metrics
from oneie_operator.reconcile import conditions

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 600.0
#: A probe outcome or a condition with this reason: the provider rejected the credentials.
CREDENTIALS_REJECTED = CredentialsRejectedError.reason
TRANSITION_EVENTS = {
    "online": ("Normal", "BackendOnline"),
    "degraded": ("Warning", "BackendDegraded"),
    "offline": ("Warning", "BackendOffline"),
}


def essential(health: Mapping[str, Any]) -> dict[str, Any]:
    """What of ``status.health`` is worth a write when it changes: not the probe's time and
    latency (those go with the heartbeat), nor the echo of a probe request."""
    return {k: v for k, v in health.items() if k not in ("lastProbeTime", "responseTimeMilliseconds", "lastRequest")}


class HealthReporter:
    """Turns probe results into status writes, Events and metrics."""

    def __init__(
        self,
        metrics: Metrics,
        objects: CustomObjects,
        events: EventRecorder,
        requests: ProbeRequests,
        trackers: Callable[[str, str], HealthTracker | None],
    ) -> None:
        self.metrics = metrics
        self.objects = objects
        self.events = events
        self.requests = requests
        #: A connection's current tracker in the probe engine (None once it is no longer probed):
        #: what a retried write writes.
        self._trackers = trackers
        self._written: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._answered: dict[tuple[str, str], str] = {}
        #: Connections whose credentials a probe found rejected (to restore Ready when they pass again).
        self._rejected: set[tuple[str, str]] = set()
        #: Refused status writes being tried again (see _rewrite_later).
        self._rewrites: dict[tuple[str, str], asyncio.Task[None]] = {}

    def resume(self, namespace: str, name: str, health: Mapping[str, Any], last: LastProbe) -> None:
        """A connection this process has not probed yet, whose last probe (by an earlier process)
        wrote ``health``: its next probe writes status only if it finds something else (or the
        heartbeat is due, counted from that probe), as if this process had written it."""
        key = (namespace, name)
        if key in self._written:
            return
        age = max(0.0, time.time() - last.at)
        self._written[key] = (essential(health), time.monotonic() - age)
        if health.get("lastRequest"):
            self._answered[key] = str(health["lastRequest"])

    async def __call__(self, target: ProbeTarget, tracker: HealthTracker, old: State, new: State) -> None:
        latest = tracker.outcomes[-1]
        key = (target.namespace, target.name)
        self.metrics.observe_probe(
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
            self.metrics.count_security_events(target.namespace, [latest.reason])
        health = tracker.status()
        # errorRate is essential: it falls back as failures leave the window, and status must
        # say what the metric says.
        essential_now = essential(health)
        previous, written_at = self._written.get(key, ({}, 0.0))
        due = time.monotonic() - written_at >= HEARTBEAT_SECONDS
        # A requested probe (one.ie/probe) is always written, and echoes the request it answers.
        requested = self.requests.get(*key)
        answered = requested is not None and self._answered.get(key) != requested
        if requested is not None:
            health["lastRequest"] = requested
        if essential_now != previous or due or key in self._dirty or old != new or answered:
            if not await self._write(key, tracker, health, requested):
                self._dirty.add(key)
                logger.warning("health status of %s/%s not written; will retry", target.namespace, target.name)
                self._rewrite_later(key)
        # A rejection found by any call counts (Notion's probe is authenticated); acceptance only
        # from a probe that ran the credential test.
        if latest.reason == CREDENTIALS_REJECTED or (latest.ok and latest.credentials_checked):
            await self._credentials(target, latest.ok, latest.message)
        if old != new and new in TRANSITION_EVENTS:
            kind, reason = TRANSITION_EVENTS[new]
            detail = f" ({latest.reason}: {latest.message})" if not latest.ok else f" ({latest.seconds * 1000:.0f} ms)"
            await self._event(target, kind, reason, f"{target.name} is {new}, was {old}{detail}")

    async def _write(
        self, key: tuple[str, str], tracker: HealthTracker, health: dict[str, Any], requested: str | None
    ) -> bool:
        """Write ``health``; whether the API took it."""
        try:
            await write_health(self.objects, key[0], key[1], health, latest_error(tracker))
        except Exception as exc:  # the API refused or is away
            logger.debug("health status of %s/%s: %s", key[0], key[1], type(exc).__name__)
            return False
        self._dirty.discard(key)
        self._written[key] = (essential(health), time.monotonic())
        if requested is not None:
            self._answered[key] = requested
        return True

    def _rewrite_later(self, key: tuple[str, str]) -> None:
        """A refused write is tried again soon (back-off 1 s doubling to 60 s) with the latest
        health, not only at the next probe (an interval later: up to a day)."""
        task = self._rewrites.get(key)
        if task is None or task.done():
            self._rewrites[key] = asyncio.create_task(self._rewrite(key), name=f"health status {key[0]}/{key[1]}")

    async def _rewrite(self, key: tuple[str, str]) -> None:
        delay = 1.0
        try:
            while key in self._dirty:
                await asyncio.sleep(delay)
                tracker = self._trackers(*key)
                if tracker is None or not tracker.outcomes or key not in self._dirty:
                    return  # no longer probed, or the next probe wrote it
                health = tracker.status()
                requested = self.requests.get(*key)
                if requested is not None:
                    health["lastRequest"] = requested
                if await self._write(key, tracker, health, requested):
                    return
                delay = min(delay * 2, 60.0)
        finally:
            if self._rewrites.get(key) is asyncio.current_task():
                del self._rewrites[key]

    def close(self) -> None:
        """Stop trying refused writes (the operator stops)."""
        for task in self._rewrites.values():
            task.cancel()
        self._rewrites.clear()

    async def _credentials(self, target: ProbeTarget, accepted: bool, message: str) -> None:
        """A probe's credential check: rejected → Ready=False ``CredentialsRejected`` and an Event;
        accepted again after such a rejection → Ready=True. (A fixed source Secret is re-verified by
        the connection's own reconcile, which overwrites this condition either way.)"""
        key = (target.namespace, target.name)
        self.metrics.set_credentials_rejected(*key, target.provider.name, rejected=not accepted)
        if accepted and key not in self._rejected:
            return  # the usual case: no API read
        obj = await self.objects.get(CONNECTIONS, target.namespace, target.name)
        if obj is None:
            return
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        if target.uid and meta.get("uid") != target.uid:
            return
        current = conditions.get_condition(status.get("conditions"), "Ready") or {}
        probe_rejected = current.get("status") == "False" and current.get("reason") == CREDENTIALS_REJECTED
        generation = meta.get("generation")
        if accepted:
            if not probe_rejected:
                self._rejected.discard(key)  # the reconcile re-verified meanwhile
                return
            text = "the health check's credential test passes again"
            updates = conditions.ready("CredentialsVerified", text)
            kind, reason = "Normal", "CredentialsVerified"
        else:
            text = (
                f"the health check found the credentials rejected by {target.provider.display_name} ({message}); "
                "fix the credentials Secret (it is re-verified when it changes)"
            )
            if probe_rejected and current.get("message") == text:
                return
            updates = conditions.stalled(CREDENTIALS_REJECTED, text)
            kind, reason = "Warning", CREDENTIALS_REJECTED
        merged = conditions.merge_conditions(status.get("conditions"), updates, generation=generation)
        try:
            await self.objects.patch_status(
                CONNECTIONS, target.namespace, target.name, {"conditions": merged}
            )
        except Exception as exc:  # the next credential check tries again
            logger.warning(
                "Ready of %s/%s not written (%s); will retry", target.namespace, target.name, type(exc).__name__
            )
            return
        if accepted:
            self._rejected.discard(key)
        else:
            self._rejected.add(key)
        self.metrics.set_connection(*key, target.provider.name, accepted, None)
        await self._event(target, kind, reason, text)

    async def _event(self, target: ProbeTarget, kind: str, reason: str, message: str) -> None:
        involved = {"apiVersion": API_VERSION, "kind": CONNECTION_KIND, "name": target.name,
                    "namespace": target.namespace, "uid": target.uid}
        await self.events.post(involved, kind, reason, message)

    def forget(self, namespace: str, name: str) -> None:
        task = self._rewrites.pop((namespace, name), None)
        if task is not None:
            task.cancel()
        self._written.pop((namespace, name), None)
        self._dirty.discard((namespace, name))
        self._answered.pop((namespace, name), None)
        self._rejected.discard((namespace, name))

    def __len__(self) -> int:
        """Connections with anything remembered."""
        return len(self._written.keys() | self._dirty | self._answered.keys() | self._rejected | self._rewrites.keys())


def latest_error(tracker: HealthTracker) -> str:
    latest = tracker.outcomes[-1] if tracker.outcomes else None
    return f"{latest.reason}: {latest.message}" if latest is not None and not latest.ok else ""


def healthy_condition(name: str, health: Mapping[str, Any], detail: str = "") -> conditions.Condition:
    """The connection's ``Healthy`` condition, from its ``status.health``."""
    return conditions.healthy(str(health.get("status") or "unknown"), name, detail[:512])


async def write_health(
    objects: CustomObjects, namespace: str, name: str, health: Mapping[str, Any] | None, detail: str = ""
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

    await objects.update_status(CONNECTIONS, namespace, name, build)
