"""Operator-wide Kopf settings and start-up/clean-up."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

import kopf

from oneie_operator.errors import APIServerError, OneieError
from oneie_operator.handlers.admission import FailClosedWebhookServer
from oneie_operator.handlers.services import Services
from oneie_operator.names import FINALIZER, WATCH_SELECTOR
from oneie_operator.reconcile.catalog import publish_catalog


class LeanStatusDiffBaseStorage(kopf.StatusDiffBaseStorage):
    """Kopf's status diff-base storage, with the same essence built without copying the status.

    Kopf builds the essence (spec, labels, annotations) of every watch event by deep-copying the
    whole object and then deleting what it does not track. An Organization's status (switch
    history, conditions, Kopf's own bookkeeping) is most of the object, so the copy grew with the
    history (``benchmarks/switch.py``). Only the tracked parts are handed to Kopf's own builder
    here; with extra fields (field handlers, which we do not use) Kopf's full path is kept.
    ``metadata.generation`` is part of the essence (see :meth:`build`).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if extra_fields:
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        lean: dict[str, Any] = {k: v for k, v in body.items() if k not in ("status", "metadata")}
        # The generation too: a spec changed and changed back (A → B → A) while a handler of it
        # waited for its retry (the API server away) must still differ from the last handled
        # one, or Kopf finds no change, drops the retry, and status stays stale (tests/e2e/test_api_faults.py).
        lean["metadata"] = {k: meta[k] for k in ("labels", "annotations", "generation") if k in meta}
        return super().build(body=cast(kopf.Body, lean))


class QuietWatchHandlers(logging.Filter):
    """Drop Kopf's "Handler '...' succeeded." line for the watch-only handlers.

    ``secret_changed`` runs on every event of every labelled Secret in the watched namespaces and
    ``connection_changed`` on every connection event: a success line each is noise in the logs
    (and a measurable share of the operator's CPU in a burst of switches). Their failures, and
    every line of the reconcile handlers, are still logged."""

    QUIET = frozenset(f"Handler {name!r} succeeded." for name in ("secret_changed", "connection_changed"))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.QUIET


def tenant_side_transient_reasons() -> frozenset[str]:
    """The reasons of our typed errors that are the tenant's or the provider's side and retried:
    a missing Secret, a provider that is down, slow or rate-limiting (not the API server's), and
    a deletion held because an organization uses the connection."""
    found: set[str] = set()
    pending: list[type[OneieError]] = [OneieError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.transient and not issubclass(cls, APIServerError):
            found.add(cls.reason)
    return frozenset(found | {"DeletionBlocked"})  # a held deletion: an organization still uses it


class TenantProblemsAsWarnings(logging.Filter):
    """Log Kopf's "Handler '...' failed temporarily: <Reason>: ..." as a WARNING, not an ERROR,
    when the reason is one of our typed tenant- or provider-side problems.

    The connection handler raises ``kopf.TemporaryError("<Reason>: <message>")`` for them
    (``handlers/connections.py``); the status and an Event already say so, and the operator
    retries by itself: nothing is wrong with the operator. Any other temporary failure (the API
    server's, an unexpected one) stays an ERROR."""

    PATTERN = re.compile(r"^Handler '[^']+' failed temporarily: (?P<reason>[A-Za-z]+): ")

    def __init__(self, reasons: Iterable[str] | None = None) -> None:
        super().__init__()
        self.reasons = frozenset(reasons) if reasons is not None else tenant_side_transient_reasons()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR:
            match = self.PATTERN.match(record.getMessage())
            if match and match["reason"] in self.reasons:
                record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def install_log_filters() -> None:
    """Our filters on Kopf's per-object logger (once, however often the operator starts)."""
    objects_logger = logging.getLogger("kopf.objects")
    for kind in (QuietWatchHandlers, TenantProblemsAsWarnings):
        if not any(isinstance(f, kind) for f in objects_logger.filters):
            objects_logger.addFilter(kind())


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own finalizer. Kopf's bookkeeping (handler progress, the last handled spec) lives in
    # status.kopf (declared in the CRDs), not in annotations: then everything a handler writes is
    # one status patch instead of a metadata patch plus a status patch, i.e. one API call and one
    # watch event less per reconcile (benchmarks/switch.py). It also keeps every ``one.ie/...``
    # annotation (``one.ie/reconcile-trigger``, ``one.ie/rollback``) part of what Kopf diffs.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    settings.persistence.diffbase_storage = LeanStatusDiffBaseStorage(name="kopf")
    # Events are posted on purpose with stable reasons (kopf.event); log lines are not Events.
    install_log_filters()
    settings.posting.enabled = True
    settings.posting.level = logging.CRITICAL
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # One worker per object; idle workers go soon, so a burst of objects is not handled in waves
    # (measured by benchmarks/reconcile.py: 34 → ~60 connections/s for 500 new connections).
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 0.5
    settings.networking.request_timeout = 60
    # The Secret watch (and so Kopf's cache and our handler) covers only the Secrets that carry
    # the one.ie/credentials label: tenants' opted-in credentials and the operator's own. The API
    # server does the filtering (labelSelector on the list and the watch), so other Secrets (e.g.
    # service-account tokens) never reach the operator, and a cluster with many Secrets costs it
    # nothing. A handler's ``labels=`` filter would be client-side only: every Secret would still
    # be listed, sent and cached.
    settings.watching.label_selectors["", "v1", "secrets"] = WATCH_SELECTOR
    # We serve a fixed set of resources: no need to watch CRDs (and no RBAC for it).
    settings.scanning.disabled = True
    services: Services = memo["services"]
    config = services.config
    if config.webhook_port:
        # The chart owns the ValidatingWebhookConfiguration; Kopf only serves the endpoint, and
        # refuses what arrives at any other path (handlers/admission.py: fail closed).
        settings.admission.server = FailClosedWebhookServer(
            addr=config.bind_address, port=config.webhook_port,
            certfile=config.webhook_cert_file, pkeyfile=config.webhook_key_file,
        )
        settings.admission.managed = None
    else:
        # The validating handlers are registered, but the webhook is off: serve nothing.
        settings.admission.server = _no_webhook_server


@kopf.on.startup()
async def start_background_work(memo: kopf.Memo, **_: Any) -> None:
    """The probe engine starts with the operator, before any resource is handled (it was built
    with the services; handlers register connections with it as they reconcile them)."""
    services: Services = memo["services"]
    services.start()


@kopf.on.cleanup()
async def stop_background_work(memo: kopf.Memo, **_: Any) -> None:
    services: Services = memo["services"]
    await services.stop()


@kopf.on.startup()
async def publish_provider_catalog(memo: kopf.Memo, **_: Any) -> None:
    """The ``oneie-providers`` ConfigMap: what each registered provider needs (for the dashboard's form)."""
    services: Services = memo["services"]
    await publish_catalog(services.api_client, services.registry, services.config.pod_namespace)


async def _no_webhook_server(fn: Any) -> AsyncIterator[Any]:
    """An admission "server" that never listens (Kopf requires one when admission handlers exist)."""
    await asyncio.Event().wait()
    yield {}  # pragma: no cover  (never reached)


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """Kopf connects with the same credentials as our own API client (one source of truth)."""
    services: Services = memo["services"]
    cfg = services.api_client.configuration
    # The refreshing accessor: it runs the client's refresh hook (re-reads a rotated service-account
    # token, re-runs an exec plug-in) before reading the key, so a login after a 401 gets the new
    # token, not the one that was just refused.
    auth = cfg.get_api_key_with_prefix("BearerToken", alias="authorization")
    scheme, token = (auth.split(" ", 1) if " " in auth else ("Bearer", auth)) if auth else (None, None)
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        default_namespace=None,
    )
