"""Reporting the probe engine's results: status, Events, metrics.

Status ``health`` is written only when something changes (state, failures, error) and as a
heartbeat; Events only on transitions; metrics on every probe. A refused status write is
not lost: the connection stays "dirty" and the next probe writes again. The engine itself is
built with the services (``handlers.services``) and started and stopped with the operator
(``handlers.lifecycle``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from oneie_operator.errors import CredentialsRejectedError
from oneie_operator.handlers.memory import ProbeRequests
from oneie_operator.health.assessment import HealthTracker, State
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


class HealthReporter:
    """Turns probe results into status writes, Events and metrics."""

    def __init__(
        self, metrics: Metrics, objects: CustomObjects, events: EventRecorder, requests: ProbeRequests
    ) -> None:
        self.metrics = metrics
        self.objects = objects
        self.events = events
        self.requests = requests
        self._written: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._answered: dict[tuple[str, str], str] = {}
        #: Connections whose credentials a probe found rejected (to restore Ready when they pass again).
        self._rejected: set[tuple[str, str]] = set()

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
        essential = {k: v for k, v in health.items() if k not in ("lastProbeTime", "responseTimeMilliseconds")}
        previous, written_at = self._written.get(key, ({}, 0.0))
        due = time.monotonic() - written_at >= HEARTBEAT_SECONDS
        # A requested probe (one.ie/probe) is always written, and echoes the request it answers.
        requested = self.requests.get(*key)
        answered = requested is not None and self._answered.get(key) != requested
        if requested is not None:
            health["lastRequest"] = requested
        if essential != previous or due or key in self._dirty or old != new or answered:
            try:
                await write_health(self.objects, target.namespace, target.name, health, latest_error(tracker))
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
        # A rejection found by any call counts (Notion's probe is authenticated); acceptance only
        # from a probe that ran the credential test.
        if latest.reason == CREDENTIALS_REJECTED or (latest.ok and latest.credentials_checked):
            await self._credentials(target, latest.ok, latest.message)
        if old != new and new in TRANSITION_EVENTS:
            kind, reason = TRANSITION_EVENTS[new]
            detail = f" ({latest.reason}: {latest.message})" if not latest.ok else f" ({latest.seconds * 1000:.0f} ms)"
            await self._event(target, kind, reason, f"{target.name} is {new}, was {old}{detail}")

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
        self._written.pop((namespace, name), None)
        self._dirty.discard((namespace, name))
        self._answered.pop((namespace, name), None)
        self._rejected.discard((namespace, name))

    def __len__(self) -> int:
        """Connections with anything remembered."""
        return len(self._written.keys() | self._dirty | self._answered.keys() | self._rejected)


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
