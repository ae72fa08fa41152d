"""The operator's Prometheus metrics, all prefixed ``oneie_`` (DESIGN §6).

Label values are bounded: provider names, namespaces and object names of live objects
(removed when the object goes away), fixed call/outcome words. Histograms carry no
per-object labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.connection_ready = Gauge(
            "oneie_connection_ready",
            "1 when the BackendConnection is Ready, else 0.",
            ["namespace", "connection", "provider"],
            registry=r,
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
        self.health_state = Gauge(
            "oneie_connection_health", "1 for the connection's current health state, 0 for the others.",
            ["namespace", "connection", "provider", "state"], registry=r,
        )
        self.response_time = Gauge(
            "oneie_connection_response_seconds", "Response time of the connection's latest health probe.",
            ["namespace", "connection", "provider"], registry=r,
        )
        self.error_rate = Gauge(
            "oneie_connection_error_rate", "Share of failed probes over the connection's window (0..1).",
            ["namespace", "connection", "provider"], registry=r,
        )
        self.consecutive_failures = Gauge(
            "oneie_connection_consecutive_failures", "Consecutive failed health probes of the connection.",
            ["namespace", "connection", "provider"], registry=r,
        )
        self.credentials_rejected = Gauge(
            "oneie_connection_credentials_rejected",
            "1 while the provider rejects the connection's credentials in its health check, else 0.",
            ["namespace", "connection", "provider"], registry=r,
        )
        self._health_series: dict[tuple[str, str], str] = {}
        self._rejected_series: set[tuple[str, str, str]] = set()
        self._call_series: dict[str, set[tuple[str, str, str]]] = {}
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
        self._key_of: dict[tuple[str, str], str] = {}
        self._provider_of: dict[tuple[str, str], str] = {}

    def observe_call(self, provider: str, call: str, outcome: str, seconds: float, namespace: str = "") -> None:
        """The ``on_call`` hook of the providers' HTTP client: per-tenant usage (``namespace``) whose
        series go when the namespace's last connection does (:meth:`forget_connection`)."""
        self.provider_calls.labels(namespace, provider, call, outcome).inc()
        self._call_series.setdefault(namespace, set()).add((provider, call, outcome))
        self.provider_call_duration.labels(provider, call).observe(seconds)

    def count_security_events(self, namespace: str, reasons: Iterable[str]) -> None:
        """Count failed decryptions (tampering, wrong or lost keys) from a reconcile's Event reasons."""
        for reason in reasons:
            if reason in DECRYPTION_REASONS:
                self.decryption_failures.labels(namespace).inc()

    def observe_switch(self, record: SwitchLike) -> None:
        self.switch_duration.labels(record.result).observe(record.seconds)
        self.switches.labels(record.result).inc()
        for step in record.steps:
            if step.get("result") != "Skipped":
                self.switch_step_duration.labels(str(step["name"])).observe(float(str(step["milliseconds"])) / 1000)
        if record.result == "RolledBack":
            self.rollbacks.labels("automatic").inc()
        elif record.explicit_rollback:
            self.rollbacks.labels("explicit").inc()

    def set_connection(self, namespace: str, name: str, provider: str, ready: bool, key_id: str | None) -> None:
        key = (namespace, name)
        old_provider = self._provider_of.get(key)
        if old_provider is not None and old_provider != provider:
            self.connection_ready.remove(namespace, name, old_provider)
        self._provider_of[key] = provider
        self.connection_ready.labels(namespace, name, provider).set(1 if ready else 0)
        if key_id is not None and self._key_of.get(key) != key_id:
            old = self._key_of.get(key)
            if old is not None:
                self.credentials_by_key.labels(old).dec()
            self._key_of[key] = key_id
            self.credentials_by_key.labels(key_id).inc()

    def observe_probe(
        self, namespace: str, name: str, provider: str, *, ok: bool, seconds: float, reason: str,
        state: str, error_rate: float, consecutive_failures: int,
    ) -> None:
        self.probe_duration.labels(provider).observe(seconds)
        self.probes.labels(provider, "success" if ok else reason).inc()
        if not ok:
            self.probe_failures.labels(provider, reason).inc()
        self._health_series[(namespace, name)] = provider
        for candidate in ("online", "degraded", "offline", "unknown"):
            self.health_state.labels(namespace, name, provider, candidate).set(1 if candidate == state else 0)
        self.response_time.labels(namespace, name, provider).set(seconds)
        self.error_rate.labels(namespace, name, provider).set(error_rate)
        self.consecutive_failures.labels(namespace, name, provider).set(consecutive_failures)

    def set_credentials_rejected(self, namespace: str, name: str, provider: str, *, rejected: bool) -> None:
        """From a probe that checked the credentials (the series goes with :meth:`forget_health`)."""
        self._health_series[(namespace, name)] = provider
        self._rejected_series.add((namespace, name, provider))
        self.credentials_rejected.labels(namespace, name, provider).set(1 if rejected else 0)

    def restore_health(self, namespace: str, name: str, provider: str, health: Mapping[str, object],
                       *, credentials_rejected: bool | None = None) -> None:
        """The health gauges from a connection's stored ``status.health`` (what its last probe found),
        for a process that has not probed it yet (after a restart); the next probe overwrites them."""
        state = health.get("status")
        if (namespace, name) in self._health_series or state not in ("online", "degraded", "offline"):
            return
        self._health_series[(namespace, name)] = provider
        for candidate in ("online", "degraded", "offline", "unknown"):
            self.health_state.labels(namespace, name, provider, candidate).set(1 if candidate == state else 0)
        for gauge, value, scale in (
            (self.response_time, health.get("responseTimeMilliseconds"), 1000.0),
            (self.error_rate, health.get("errorRate"), 1.0),
            (self.consecutive_failures, health.get("consecutiveFailures"), 1.0),
        ):
            if isinstance(value, int | float):
                gauge.labels(namespace, name, provider).set(value / scale)
        if credentials_rejected is not None:  # from the Ready condition: what the last check found
            self._rejected_series.add((namespace, name, provider))
            self.credentials_rejected.labels(namespace, name, provider).set(1 if credentials_rejected else 0)

    def forget_health(self, namespace: str, name: str) -> None:
        provider = self._health_series.pop((namespace, name), None)
        if provider is None:
            return
        for candidate in ("online", "degraded", "offline", "unknown"):
            self.health_state.remove(namespace, name, provider, candidate)
        for gauge in (self.response_time, self.error_rate, self.consecutive_failures):
            gauge.remove(namespace, name, provider)
        if (namespace, name, provider) in self._rejected_series:
            self._rejected_series.discard((namespace, name, provider))
            self.credentials_rejected.remove(namespace, name, provider)

    def forget_connection(self, namespace: str, name: str) -> None:
        """Remove the series of a deleted connection."""
        self.forget_health(namespace, name)
        key = (namespace, name)
        provider = self._provider_of.pop(key, None)
        if provider is not None:
            self.connection_ready.remove(namespace, name, provider)
        old = self._key_of.pop(key, None)
        if old is not None:
            self.credentials_by_key.labels(old).dec()
        self.forget_tenant_calls(namespace)

    def forget_tenant_calls(self, namespace: str) -> None:
        """Remove a tenant's provider-call series once it has no connection left (also called when a
        probe of a deleted connection finishes late and its calls re-created them)."""
        if namespace and not any(ns == namespace for ns, _ in self._provider_of):
            for labels in self._call_series.pop(namespace, ()):  # the tenant's last connection went
                self.provider_calls.remove(namespace, *labels)
