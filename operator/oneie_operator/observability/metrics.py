"""The operator's Prometheus metrics, all prefixed ``oneie_`` (DESIGN §6).

Label values are bounded: provider names, namespaces and object names of live objects
(removed when the object goes away), fixed call/outcome words. Histograms carry no
per-object labels.

The per-connection gauges (``oneie_connection_*``: eight series per connection) are not
``prometheus_client`` children: a child costs about 0.7 KiB (a lock, a value object, label
tuples), so 10,000 connections held some 55 MiB in them. :class:`ConnectionSeries` keeps one
small record per connection and renders the same families, names, labels and values at scrape
time.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

DECRYPTION_REASONS = frozenset({"DecryptionFailed", "EncryptionKeyNotFound"})


class SwitchLike(Protocol):
    @property
    def result(self) -> str: ...
    @property
    def seconds(self) -> float: ...
    @property
    def steps(self) -> Sequence[Mapping[str, object]]: ...
    @property
    def explicit_rollback(self) -> bool: ...


HEALTH_STATES = ("online", "degraded", "offline", "unknown")
_CONNECTION_LABELS = ("namespace", "connection", "provider")


@dataclass(slots=True)
class _Connection:
    """One connection's gauges; ``None``: that series does not exist (yet, or any more)."""

    ready_provider: str | None = None
    ready: float = 0.0
    key_id: str | None = None
    health_provider: str | None = None
    state: str | None = None
    response_seconds: float | None = None
    error_rate: float | None = None
    consecutive_failures: float | None = None
    credentials_rejected: float | None = None

    def has_health(self) -> bool:
        return self.health_provider is not None

    def clear_health(self) -> None:
        self.health_provider = self.state = None
        self.response_seconds = self.error_rate = self.consecutive_failures = self.credentials_rejected = None


class ConnectionSeries(Collector):
    """The ``oneie_connection_*`` gauges of every connection, rendered at scrape time.

    Written from the event loop, read by the ``/metrics`` server's thread: the records are
    copied under a lock before rendering.
    """

    #: family name -> (help, label names beyond namespace/connection/provider)
    FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
        "oneie_connection_ready": ("1 when the BackendConnection is Ready, else 0.", ()),
        "oneie_connection_health": ("1 for the connection's current health state, 0 for the others.", ("state",)),
        "oneie_connection_response_seconds": ("Response time of the connection's latest health probe.", ()),
        "oneie_connection_error_rate": ("Share of failed probes over the connection's window (0..1).", ()),
        "oneie_connection_consecutive_failures": ("Consecutive failed health probes of the connection.", ()),
        "oneie_connection_credentials_rejected": (
            "1 while the provider rejects the connection's credentials in its health check, else 0.",
            (),
        ),
    }

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], _Connection] = {}
        self.lock = threading.Lock()

    def label_names(self) -> dict[str, tuple[str, ...]]:
        """Each family's label names (also when it has no sample yet)."""
        return {name: _CONNECTION_LABELS + extra for name, (_, extra) in self.FAMILIES.items()}

    def _families(self) -> dict[str, GaugeMetricFamily]:
        return {
            name: GaugeMetricFamily(name, doc, labels=_CONNECTION_LABELS + extra)
            for name, (doc, extra) in self.FAMILIES.items()
        }

    def describe(self) -> Iterable[Metric]:
        return self._families().values()

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            snapshot = [(key, _copy(record)) for key, record in self.records.items()]
        families = self._families()
        ready = families["oneie_connection_ready"]
        health = families["oneie_connection_health"]
        gauges = (
            ("response_seconds", families["oneie_connection_response_seconds"]),
            ("error_rate", families["oneie_connection_error_rate"]),
            ("consecutive_failures", families["oneie_connection_consecutive_failures"]),
            ("credentials_rejected", families["oneie_connection_credentials_rejected"]),
        )
        for (namespace, name), record in snapshot:
            if record.ready_provider is not None:
                ready.add_metric([namespace, name, record.ready_provider], record.ready)
            provider = record.health_provider
            if provider is None:
                continue
            labels = [namespace, name, provider]
            if record.state is not None:
                for candidate in HEALTH_STATES:
                    health.add_metric([*labels, candidate], 1.0 if candidate == record.state else 0.0)
            for attribute, family in gauges:
                value = getattr(record, attribute)
                if value is not None:
                    family.add_metric(labels, value)
        yield from families.values()


def _copy(record: _Connection) -> _Connection:
    return _Connection(
        record.ready_provider, record.ready, record.key_id, record.health_provider, record.state,
        record.response_seconds, record.error_rate, record.consecutive_failures, record.credentials_rejected,
    )  # fmt: skip


class Metrics:
    """One set of metrics in its own registry (tests and the demo can run several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            "oneie_reconciles",
            "Reconciles of operator resources, by kind and result.",
            ["kind", "result"],
            registry=r,
        )
        self.reconcile_errors = Counter(
            "oneie_reconcile_errors",
            "Reconciles that ended in an error, by kind and reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "oneie_reconcile_duration_seconds",
            "Time to reconcile one resource, by kind.",
            ["kind"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.provider_calls = Counter(
            "oneie_provider_calls",
            "Calls the operator made to providers, by tenant namespace, provider, call and outcome.",
            ["namespace", "provider", "call", "outcome"],
            registry=r,
        )
        self.provider_call_duration = Histogram(
            "oneie_provider_call_duration_seconds",
            "Duration of calls to providers, by provider and call.",
            ["provider", "call"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.credentials_by_key = Gauge(
            "oneie_credentials_encrypted",
            "Connections whose credentials are encrypted under each key id.",
            ["key_id"],
            registry=r,
        )
        self.decryption_failures = Counter(
            "oneie_decryption_failures",
            "Encrypted credentials that failed authentication or named an unknown key.",
            ["namespace"],
            registry=r,
        )
        self.switch_duration = Histogram(
            "oneie_switch_duration_seconds", "End-to-end duration of backend switches, by result.",
            ["result"], registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.switch_step_duration = Histogram(
            "oneie_switch_step_duration_seconds", "Duration of each step of a backend switch, by step.",
            ["step"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.switches = Counter(
            "oneie_switches", "Backend switches, by result (Succeeded, RolledBack, Failed).",
            ["result"], registry=r,
        )
        self.rollbacks = Counter(
            "oneie_rollbacks", "Rollbacks to the previous backend, by kind (automatic, explicit).",
            ["kind"], registry=r,
        )
        self.probe_duration = Histogram(
            "oneie_probe_duration_seconds", "Duration of health probes, by provider.",
            ["provider"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.probes = Counter(
            "oneie_probes", "Health probes, by provider and result (success or the failure reason).",
            ["provider", "result"], registry=r,
        )
        self.probe_failures = Counter(
            "oneie_probe_failures", "Failed health probes, by provider and reason.",
            ["provider", "reason"], registry=r,
        )
        #: The per-connection gauges (``oneie_connection_*``), see :class:`ConnectionSeries`.
        self.connections = ConnectionSeries()
        r.register(self.connections)
        self._connections_in: Tally[str] = Tally()  # namespace -> connections with a Ready series
        # The children of the series written on every provider call and probe, looked up once: a
        # ``labels()`` call takes a lock and builds tuples (~10 % of a probe's own CPU for five).
        self._call_series: dict[str, dict[tuple[str, str, str], Counter]] = {}
        self._call_durations: dict[tuple[str, str], Histogram] = {}
        self._probe_series: dict[tuple[str, str], tuple[Histogram, Counter]] = {}
        # The same for the fixed-label series of every reconcile and switch (a few per switch).
        self._fixed: dict[tuple[int, tuple[str, ...]], Any] = {}
        # Fixed label values exist from the start, so rate() sees the first event after a restart.
        for result in ("Succeeded", "RolledBack", "Failed"):
            self.switches.labels(result)
            self.switch_duration.labels(result)
        for kind in ("automatic", "explicit"):
            self.rollbacks.labels(kind)
        for step in ("resolve", "test", "activate", "healthGate", "rollback"):
            self.switch_step_duration.labels(step)
        for kind in ("BackendConnection", "Organization"):
            self.reconcile_duration.labels(kind)

    def observe_call(self, provider: str, call: str, outcome: str, seconds: float, namespace: str = "") -> None:
        """The ``on_call`` hook of the providers' HTTP client: per-tenant usage (``namespace``) whose
        series go when the namespace's last connection does (:meth:`forget_connection`)."""
        tenant = self._call_series.get(namespace)
        if tenant is None:
            tenant = self._call_series[namespace] = {}
        counter = tenant.get((provider, call, outcome))
        if counter is None:
            counter = tenant[(provider, call, outcome)] = self.provider_calls.labels(namespace, provider, call, outcome)
        counter.inc()
        duration = self._call_durations.get((provider, call))
        if duration is None:
            duration = self._call_durations[(provider, call)] = self.provider_call_duration.labels(provider, call)
        duration.observe(seconds)

    def count_security_events(self, namespace: str, reasons: Iterable[str]) -> None:
        """Count failed decryptions (tampering, wrong or lost keys) from a reconcile's Event reasons."""
        for reason in reasons:
            if reason in DECRYPTION_REASONS:
                self.decryption_failures.labels(namespace).inc()

    def _child(self, metric: Counter | Histogram, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label values (for series of few, fixed
        values only: kinds, outcomes, results, steps; never per tenant or connection)."""
        key = (id(metric), values)
        child = self._fixed.get(key)
        if child is None:
            child = self._fixed[key] = metric.labels(*values)
        return child

    def observe_reconcile(self, kind: str, outcome: str, seconds: float) -> None:
        """One reconcile of ``kind`` done: its duration and outcome (``changed``, ``unchanged``, ...)."""
        self._child(self.reconcile_duration, kind).observe(seconds)
        self._child(self.reconciles, kind, outcome).inc()

    def observe_switch(self, record: SwitchLike) -> None:
        self._child(self.switch_duration, record.result).observe(record.seconds)
        self._child(self.switches, record.result).inc()
        for step in record.steps:
            if step.get("result") != "Skipped":
                duration = self._child(self.switch_step_duration, str(step["name"]))
                duration.observe(float(str(step["milliseconds"])) / 1000)
        if record.result == "RolledBack":
            self._child(self.rollbacks, "automatic").inc()
        elif record.explicit_rollback:
            self._child(self.rollbacks, "explicit").inc()

    def set_connection(self, namespace: str, name: str, provider: str, ready: bool, key_id: str | None) -> None:
        series = self.connections
        with series.lock:
            record = series.records.get((namespace, name))
            if record is None:
                record = series.records[(namespace, name)] = _Connection()
            if record.ready_provider is None:
                self._connections_in[namespace] += 1
            record.ready_provider = provider
            record.ready = 1.0 if ready else 0.0
            old, changed = record.key_id, key_id is not None and record.key_id != key_id
            if changed:
                record.key_id = key_id
        if changed:
            if old is not None:
                self.credentials_by_key.labels(old).dec()
            self.credentials_by_key.labels(key_id).inc()

    def observe_probe(
        self, namespace: str, name: str, provider: str, *, ok: bool, seconds: float, reason: str,
        state: str, error_rate: float, consecutive_failures: int,
    ) -> None:
        result = "success" if ok else reason
        children = self._probe_series.get((provider, result))
        if children is None:
            children = self._probe_series[(provider, result)] = (
                self.probe_duration.labels(provider), self.probes.labels(provider, result)
            )
        children[0].observe(seconds)
        children[1].inc()
        if not ok:
            self.probe_failures.labels(provider, reason).inc()
        series = self.connections
        with series.lock:
            record = self._record(namespace, name, provider)
            record.state = state
            record.response_seconds = seconds
            record.error_rate = error_rate
            record.consecutive_failures = consecutive_failures

    def _record(self, namespace: str, name: str, provider: str) -> _Connection:
        """The connection's record with its health series on ``provider`` (caller holds the lock)."""
        records = self.connections.records
        record = records.get((namespace, name))
        if record is None:
            record = records[(namespace, name)] = _Connection()
        if record.health_provider != provider:
            record.clear_health()  # a new provider: the old provider's health series go
            record.health_provider = provider
        return record

    def set_credentials_rejected(self, namespace: str, name: str, provider: str, *, rejected: bool) -> None:
        """From a probe that checked the credentials (the series goes with :meth:`forget_health`)."""
        with self.connections.lock:
            self._record(namespace, name, provider).credentials_rejected = 1.0 if rejected else 0.0

    def restore_health(self, namespace: str, name: str, provider: str, health: Mapping[str, object],
                       *, credentials_rejected: bool | None = None) -> None:
        """The health gauges from a connection's stored ``status.health`` (what its last probe found),
        for a process that has not probed it yet (after a restart); the next probe overwrites them."""
        state = health.get("status")
        series = self.connections
        with series.lock:
            existing = series.records.get((namespace, name))
            if (existing is not None and existing.has_health()) or state not in ("online", "degraded", "offline"):
                return
            record = self._record(namespace, name, provider)
            record.state = str(state)
            response, rate, failures = (
                health.get("responseTimeMilliseconds"), health.get("errorRate"), health.get("consecutiveFailures")
            )
            if isinstance(response, int | float):
                record.response_seconds = response / 1000.0
            if isinstance(rate, int | float):
                record.error_rate = float(rate)
            if isinstance(failures, int | float):
                record.consecutive_failures = float(failures)
            if credentials_rejected is not None:  # from the Ready condition: what the last check found
                record.credentials_rejected = 1.0 if credentials_rejected else 0.0

    def forget_health(self, namespace: str, name: str) -> None:
        series = self.connections
        with series.lock:
            record = series.records.get((namespace, name))
            if record is None:
                return
            record.clear_health()
            if record.ready_provider is None:
                del series.records[(namespace, name)]

    def forget_connection(self, namespace: str, name: str) -> None:
        """Remove the series of a deleted connection."""
        series = self.connections
        with series.lock:
            record = series.records.pop((namespace, name), None)
        if record is not None:
            if record.ready_provider is not None:
                self._connections_in[namespace] -= 1
                if self._connections_in[namespace] <= 0:
                    del self._connections_in[namespace]
            if record.key_id is not None:
                self.credentials_by_key.labels(record.key_id).dec()
        self.forget_tenant_calls(namespace)

    def forget_tenant_calls(self, namespace: str) -> None:
        """Remove a tenant's provider-call series once it has no connection left (also called when a
        probe of a deleted connection finishes late and its calls re-created them)."""
        if namespace and not self._connections_in.get(namespace):
            for labels in self._call_series.pop(namespace, ()):  # the tenant's last connection went
                self.provider_calls.remove(namespace, *labels)
