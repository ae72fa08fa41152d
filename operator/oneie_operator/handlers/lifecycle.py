"""Operator-wide Kopf settings and start-up/clean-up."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from oneie_operator.handlers.kopfpatches.diffbase import LeanStatusDiffBaseStorage
from oneie_operator.handlers.kopfpatches.log_lines import install_log_filters
from oneie_operator.handlers.kopfpatches.webhook import FailClosedWebhookServer, no_webhook_server
from oneie_operator.handlers.services import Services
from oneie_operator.names import FINALIZER, WATCH_SELECTOR
from oneie_operator.reconcile.catalog import publish_catalog


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
    # Events are posted on purpose with stable reasons (kube.events.EventQueue); log lines are not Events.
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
    # settings.scanning (namespaces, CRDs) is decided by running.run_operator from WATCH_NAMESPACES.
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
        settings.admission.server = no_webhook_server


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
