"""The operator's own configuration, read from the environment and validated at start-up.

Every field is an environment variable (upper case, no prefix, e.g. ``METRICS_PORT``).
An invalid value stops the operator with a message naming the variable and the expected
format (:class:`~oneie_operator.errors.ConfigurationError`), never echoing its value: some
of these (``ENCRYPTION_KEY``) are secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from oneie_operator.errors import ConfigurationError

#: One WATCH_NAMESPACES entry: a namespace name (a DNS label), a glob of one (``*`` any characters,
#: ``?`` one), or either of them after ``!`` (an exclusion); ``values.schema.json`` of the chart
#: has the same pattern for ``watch.namespaces``.
NAMESPACE_ENTRY = re.compile(r"^!?([a-z0-9]([-a-z0-9]*[a-z0-9])?|[-a-z0-9*?]*[*?][-a-z0-9*?]*)$")


class OperatorConfig(BaseSettings):
    """Operator settings. Each field's description is what ``oneie-operator run --help`` shows."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    encryption_key: str | None = Field(
        default=None,
        repr=False,
        description="ENCRYPTION_KEY: 64 hex characters (32 random bytes); `oneie-operator keygen` makes one.",
    )
    """The single AES-256 key for a simple setup. Ignored when ``ENCRYPTION_KEYRING`` is set."""

    encryption_keyring: str | None = Field(
        default=None,
        repr=False,
        description='ENCRYPTION_KEYRING: JSON {"primary": "ID", "keys": {"ID": "<64 hex>", ...}} for rotation.',
    )
    """Several keys with ids, one primary: new values use the primary, old ones still decrypt."""

    watch_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="WATCH_NAMESPACES: comma-separated namespace names or globs (tenant-a-*), "
        "!glob excludes; empty = all namespaces.",
    )
    """Which namespaces the operator serves: those matching at least one name or glob and no ``!``
    exclusion (only exclusions: every namespace but those). Empty means the whole cluster. Globs
    and exclusions make the operator list and watch namespaces (a namespace created later that
    matches is served from then on); exact names alone do not."""

    pod_namespace: str = Field(
        default="oneie-system",
        description="POD_NAMESPACE: the operator's own namespace (the chart sets it); the provider catalog goes there.",
    )
    """Where the ``oneie-providers`` ConfigMap is published (reconcile.catalog)."""

    metrics_port: int = Field(default=8080, ge=0, le=65535, description="METRICS_PORT: 0-65535; 0 = off.")
    """Port of the Prometheus ``/metrics`` endpoint."""

    health_port: int = Field(default=8081, ge=0, le=65535, description="HEALTH_PORT: 0-65535; 0 = off.")
    """Port of the liveness endpoint ``/healthz`` (Kopf's liveness probe)."""

    bind_address: str = Field(default="0.0.0.0", description="BIND_ADDRESS: address the HTTP endpoints listen on.")  # noqa: S104
    """Address the metrics and health endpoints listen on (``127.0.0.1`` in the demo)."""

    peering_name: str | None = Field(
        default=None, description="PEERING_NAME: a KopfPeering name for 2+ replicas; unset = standalone."
    )
    """With several replicas, Kopf's peering elects one active operator; unset runs standalone."""

    peering_priority: int | None = Field(
        default=None, ge=0, le=2**31 - 1,
        description="PEERING_PRIORITY: 0-2147483647; unset = random per process.",
    )
    """With peering, the replica with the highest priority works and the others stand by; replicas
    with equal priorities would all pause, so each process picks a random one unless told."""

    allow_loopback: bool = Field(default=False, description="ALLOW_LOOPBACK: true/false.")
    """Allow provider URLs on loopback addresses (local development and the demo only)."""

    allow_private: bool = Field(default=False, description="ALLOW_PRIVATE: true/false.")
    """Allow provider URLs on private (RFC 1918, ULA, CGNAT) addresses, e.g. self-hosted backends."""

    allow_plain_http: bool = Field(default=False, description="ALLOW_PLAIN_HTTP: true/false.")
    """Allow sending credentials over plain http (never do this outside a trusted network)."""

    provider_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="PROVIDER_TIMEOUT_SECONDS: seconds, 0 < t <= 120."
    )
    """Timeout of one credential test against a provider."""

    max_response_bytes: int = Field(default=1_048_576, ge=1024, description="MAX_RESPONSE_BYTES: bytes, at least 1024.")
    """Provider answers larger than this are refused as a protocol error (no memory blow-up)."""

    retry_delay_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="RETRY_DELAY_SECONDS: seconds before retrying a transient failure."
    )
    """Back-off before a transient failure (provider down, Secret missing) is retried."""

    switch_progress_delay_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="SWITCH_PROGRESS_DELAY_SECONDS: 0-60, seconds before a switch writes its live steps.",
    )
    """A switch shorter than this writes no live progress (``status.switching``): its steps and
    timings are in ``status.lastSwitch``; a longer one shows the step it is in, then every step.
    0 writes every step of every switch (an API call and a watch event each)."""

    probe_concurrency: int = Field(default=200, ge=1, le=10000, description="PROBE_CONCURRENCY: 1-10000.")
    """Health probes in flight at once, overall."""

    probe_concurrency_per_namespace: int = Field(
        default=10, ge=1, le=1000, description="PROBE_CONCURRENCY_PER_NAMESPACE: 1-1000."
    )
    """Health probes in flight at once within one namespace: one tenant cannot starve the others."""

    probe_initial_jitter_seconds: float = Field(
        default=60.0, ge=0, le=3600, description="PROBE_INITIAL_JITTER_SECONDS: 0-3600."
    )
    """A new connection's first probe comes at a random delay up to this (no stampede). After a
    restart, a connection already probed continues its schedule from ``status.health.lastProbeTime``
    (an overdue one at a random point of its interval) instead."""

    webhook_port: int = Field(default=0, ge=0, le=65535, description="WEBHOOK_PORT: 0-65535; 0 = off.")
    """Port of the validating admission webhook (HTTPS); 0 disables it."""

    webhook_cert_file: str | None = Field(default=None, description="WEBHOOK_CERT_FILE: path to a PEM certificate.")
    """The webhook's TLS certificate (reloaded when the file changes, e.g. by cert-manager)."""

    webhook_key_file: str | None = Field(default=None, description="WEBHOOK_KEY_FILE: path to a PEM private key.")
    """The webhook's TLS private key."""

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, tuple | list):
            problem = namespace_entries_problem(value)
            if problem:
                raise ValueError(problem)
        return value


def namespace_entries_problem(entries: tuple[object, ...] | list[object]) -> str | None:
    """What is wrong with WATCH_NAMESPACES entries (or ``run --namespace`` values), or None."""
    bad = [str(e) for e in entries if not NAMESPACE_ENTRY.match(str(e)) or len(str(e).lstrip("!")) > 63]
    if not bad:
        return None
    return (
        f"{', '.join(repr(b) for b in bad)} is no namespace name or glob: each entry is a namespace"
        " name (lower-case letters, digits and '-', at most 63), or a glob of one with * and ?,"
        " optionally after ! to exclude"
    )


def load_config(environ: Mapping[str, str] | None = None) -> OperatorConfig:
    """Read and validate the configuration; raise ConfigurationError naming each bad variable."""
    try:
        if environ is None:
            return OperatorConfig()
        lowered = {key.lower(): value for key, value in environ.items()}
        known = {name for name in OperatorConfig.model_fields}
        return OperatorConfig.model_validate({key: value for key, value in lowered.items() if key in known})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = str(error["loc"][0]).upper() if error["loc"] else "?"
            field = OperatorConfig.model_fields.get(name.lower())
            expected = field.description if field is not None and field.description else ""
            problems.append(f"{name}: {error['msg']} (expected {expected.split(': ', 1)[-1]})")
        raise ConfigurationError("invalid operator configuration: " + "; ".join(problems)) from None
