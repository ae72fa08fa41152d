"""Starting the operator: configuration → services → Kopf, in one call the CLI, demo and tests share."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
import kubernetes.client
from prometheus_client import start_http_server

from oneie_operator.config import OperatorConfig, namespace_entries_problem
from oneie_operator.errors import ConfigurationError, RegistryError
from oneie_operator.handlers.services import Services
from oneie_operator.kube.rest import KubeAPIError
from oneie_operator.observability.metrics import Metrics
from oneie_operator.platform_default import PlatformDefault, load_platform_default
from oneie_operator.providers.registry import ProviderRegistry, default_registry
from oneie_operator.vault import Keyring

logger = logging.getLogger("oneie_operator")


def check_startup(
    config: OperatorConfig, registry: ProviderRegistry | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Keyring, ProviderRegistry, PlatformDefault | None]:
    """Validate what start-up needs before touching the cluster: keys, plug-ins, platform default."""
    keyring = Keyring.from_env(config.encryption_key, config.encryption_keyring)
    registry = registry or default_registry()
    if registry.errors:
        raise ConfigurationError("provider plug-ins failed to load: " + "; ".join(str(e) for e in registry.errors))
    default = load_platform_default(os.environ if environ is None else environ, registry)
    return keyring, registry, default


def build_services(
    config: OperatorConfig,
    api_client: kubernetes.client.ApiClient,
    *,
    registry: ProviderRegistry | None = None,
    metrics: Metrics | None = None,
    environ: Mapping[str, str] | None = None,
) -> Services:
    """Validate what start-up needs (keys, plug-ins) and build the services; raise ConfigurationError."""
    keyring, registry, default = check_startup(config, registry, environ)
    return Services.build(config, registry, keyring, api_client, metrics, default)


def serve_metrics(config: OperatorConfig, metrics: Metrics) -> None:
    """Serve ``/metrics`` (METRICS_PORT) and check that the liveness port (HEALTH_PORT, served by
    Kopf once it starts) is free; a port that is taken is a :class:`ConfigurationError` naming the
    variable, not a traceback from deep inside Kopf's start-up."""
    if config.health_port:
        _check_free("HEALTH_PORT", config.bind_address, config.health_port)
    if config.metrics_port:
        try:
            start_http_server(config.metrics_port, addr=config.bind_address, registry=metrics.registry)
        except OSError as exc:
            raise _port_error("METRICS_PORT", config.bind_address, config.metrics_port, exc) from None
        logger.info("Serving metrics on %s:%s/metrics", config.bind_address, config.metrics_port)


def _check_free(variable: str, address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp's server does
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise _port_error(variable, address, port, exc) from None


def _port_error(variable: str, address: str, port: int, exc: OSError) -> ConfigurationError:
    return ConfigurationError(
        f"{variable}={port}: cannot listen on {address}:{port} ({exc.strerror or exc}); expected a free port "
        f"(another process, or another copy of the operator, is using it), or 0 to turn it off"
    )


def kopf_namespaces(entries: Sequence[str]) -> tuple[list[str], bool]:
    """WATCH_NAMESPACES entries as Kopf namespace patterns, and whether Kopf must scan namespaces.

    Kopf serves a namespace matching any one of its patterns; within one pattern
    (``"g,!e1,!e2"``) the first glob includes and each ``!`` glob excludes. So each inclusive entry
    becomes one pattern carrying every exclusion, and exclusions alone become one pattern (Kopf
    then implies ``*``). Exact names with no exclusion stay exact: Kopf serves them without listing
    namespaces. Anything else needs Kopf's namespace scanning (list and watch namespaces), or Kopf
    would treat the globs as names and silently serve nothing."""
    included = [e for e in entries if not e.startswith("!")]
    excluded = [e for e in entries if e.startswith("!")]
    patterns = [",".join([e, *excluded]) for e in included] if included else [",".join(excluded)]
    patterns = [p for p in patterns if p]
    scan = any(ch in p for p in patterns for ch in "*?!,")
    return patterns, scan


async def check_namespace_listing(services: Services, entries: Sequence[str]) -> None:
    """Globs and exclusions need Kopf to list and watch namespaces; without the permission Kopf
    takes them as namespace names, serves nothing and says so in one warning. Refuse to start
    instead (an API server that does not answer is left to Kopf's retries)."""
    try:
        await services.rest.list_namespaces(limit=1)
    except KubeAPIError as exc:
        if exc.status not in (401, 403):
            return
        raise ConfigurationError(
            f"WATCH_NAMESPACES={','.join(entries)}: globs and !exclusions need list and watch on namespaces"
            f" (the chart grants them when watch.namespaces has globs), but listing namespaces was refused"
            f" ({exc.status} {exc.reason}); grant them, or list exact namespace names"
        ) from None


async def run_operator(
    services: Services,
    *,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
    namespaces: Sequence[str] = (),
    settings: kopf.OperatorSettings | None = None,
) -> None:
    """Run Kopf with our handlers until ``stop_flag`` is set (or forever). ``settings``: Kopf's
    settings object to use (the startup handler fills it in; its owner may change it later, e.g.
    the demo shortens ``queueing.exit_timeout`` when it stops)."""
    problem = namespace_entries_problem(list(namespaces))
    if problem:
        raise ConfigurationError(f"--namespace: {problem}")
    import oneie_operator.handlers  # noqa: F401  (registers the handlers)
    from oneie_operator.handlers.kopfpatches import (
        causes,
        changing,
        echoes,
        emptypatch,
        essencecopy,
        fastviews,
        indexing,
        lazy_reprs,
        mergepatch,
        watching,
    )

    lazy_reprs.install()  # Kopf's per-change debug lines stop formatting whole objects when DEBUG is off
    indexing.install()  # our indexers called directly on each watch event, not as full handler invocations
    watching.install()  # likewise our @kopf.on.event handlers
    emptypatch.install()  # Kopf's check of what is left after its patch: no deep copy of the object for nothing
    essencecopy.install()  # Kopf's essence copies of JSON data by a JSON copier, not copy.deepcopy
    fastviews.install()  # Kopf's views of bodies look keys up in plain dicts in one step
    causes.install()  # no essence and diff for kinds without change handlers (our Secrets watch)
    echoes.install()  # the echo of our own write (Kopf's status patch, a binding) is indexed, not processed
    changing.install()  # the Organization reconcile awaited directly when Kopf has nothing of it in progress
    mergepatch.install()  # Kopf's merge patches (its status patches) sent by our REST client (bound below)

    config = services.config
    entries = tuple(namespaces) or config.watch_namespaces
    watch, scan_namespaces = kopf_namespaces(entries)
    if scan_namespaces:
        await check_namespace_listing(services, entries)
    settings = settings if settings is not None else kopf.OperatorSettings()
    # Kopf's scanning lists and watches namespaces (to match globs) and CRDs (resources added at
    # run time). Only globs and exclusions need it; we serve a fixed set of resources, so the
    # cluster-wide and exact-names cases keep it off (no RBAC for namespaces or CRDs needed).
    settings.scanning.disabled = not scan_namespaces
    liveness = f"http://{config.bind_address}:{config.health_port}/healthz" if config.health_port else None
    kwargs: dict[str, Any] = {}
    if config.peering_name:
        priority = config.peering_priority
        if priority is None:
            priority = random.SystemRandom().randint(1, 2**31 - 1)
        kwargs.update(standalone=False, peering_name=config.peering_name, priority=priority)
    else:
        kwargs.update(standalone=True)
    bound = mergepatch.bind(services.rest)  # for this Kopf's tasks only (they inherit this context)
    try:
        await kopf.operator(
            clusterwide=not watch,
            namespaces=watch,
            liveness_endpoint=liveness,
            # The namespaces served (WATCH_NAMESPACES, or the --namespace flags instead): the start-up
            # list of the watched Secrets keeps to them (handlers.connections.prefill_watched_secrets).
            memo=kopf.Memo(services=services, namespaces=entries),
            settings=settings,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            **kwargs,
        )
    finally:
        mergepatch.unbind(bound)


__all__ = [
    "RegistryError", "build_services", "check_namespace_listing", "check_startup", "kopf_namespaces", "run_operator",
    "serve_metrics",
]
