"""Kopf glue for BackendConnection: turn events into reconcile calls and apply the result."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import kopf

from oneie_operator.errors import APIServerUnavailableError, ProviderRateLimitedError, keeps_last_good
from oneie_operator.handlers.health import healthy_condition, write_health
from oneie_operator.handlers.kopfpatches.indexing import lean_indexer
from oneie_operator.handlers.kopfpatches.watching import lean_watcher
from oneie_operator.handlers.services import Services
from oneie_operator.health.assessment import LastProbe, Thresholds
from oneie_operator.health.probing import ProbeTarget
from oneie_operator.kube.events import EventQueue
from oneie_operator.kube.rest import KubeAPIError
from oneie_operator.names import (
    BINDING_CONNECTION_ANNOTATION,
    BINDING_DIGEST_ANNOTATION,
    CONNECTION_KIND,
    CONNECTIONS,
    GROUP,
    MANAGED_BY,
    ORGANIZATION_LABEL,
    ORGANIZATIONS,
    PROBE_ANNOTATION,
    TRIGGER_ANNOTATION,
    VERSION,
    WATCH_SELECTOR,
)
from oneie_operator.platform_default import PLATFORM_DEFAULT
from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.connections import (
    ConnectionObject,
    ConnectionResult,
    owned_secret_name,
    reconcile_connection,
)
from oneie_operator.reconcile.events import EventNote
from oneie_operator.vault import verify_digest

logger = logging.getLogger(__name__)

#: Keys of the ``organization_refs`` index (handlers.organizations): ``(REF_BINDING, namespace,
#: binding Secret)`` and ``(REF_CONNECTION, namespace, connection)`` → organization.
REF_BINDING, REF_CONNECTION = "binding", "connection"


async def trigger(services: Services, plural: str, namespace: str, name: str, cause: str) -> None:
    """Make an object reconcile (an annotation Kopf watches). A write the API server does not take
    (away, overloaded) is not lost: the retrigger keeps trying it. These run in watch-event
    handlers, which Kopf does not retry, and nothing else may wake the object: an organization
    waiting for its connection to become Ready would wait forever."""
    try:
        await services.objects.annotate(plural, namespace, name, {TRIGGER_ANNOTATION: cause})
    except KubeAPIError as exc:
        logger.warning("%s %s/%s not triggered yet (%s %s); trying again", plural, namespace, name,
                       exc.status or "no answer", exc.reason)
        services.retrigger.schedule(plural, namespace, name, 1.0)


def post_events(events: EventQueue, body: kopf.Body, notes: list[EventNote]) -> None:
    """Hand the Events over to be posted in the background (``kube.events.EventQueue``), as ``kopf.event`` would."""
    if notes:
        involved = {key: str(value) for key, value in kopf.build_object_reference(body).items()}
        for note in notes:
            events.post(involved, note.type, note.reason, note.message)


def apply_result(result: ConnectionResult, patch: kopf.Patch) -> None:
    for key, value in result.status.items():
        patch.status[key] = value
    for label, value in result.labels.items():
        patch.metadata.labels[label] = value


@kopf.on.resume(GROUP, VERSION, CONNECTIONS)
@kopf.on.create(GROUP, VERSION, CONNECTIONS)
@kopf.on.update(GROUP, VERSION, CONNECTIONS)
async def reconcile(
    body: kopf.Body,
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str | None,
    name: str,
    uid: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    retry: int,
    **kwargs: Any,
) -> None:
    ns = namespace or ""
    services: Services = memo["services"]
    started = time.perf_counter()
    obj = ConnectionObject(
        namespace=ns,
        name=name,
        uid=uid,
        generation=int(meta.get("generation") or 0),
        spec=dict(spec),
        status=dict(status),
        labels=dict(meta.get("labels") or {}),
    )
    try:
        result = await reconcile_connection(obj, services.connection_deps())
    except KubeAPIError as exc:
        # The API server away or refusing: again in 5 s, woken by the retrigger (an annotation it
        # keeps trying to write), not by Kopf's delayed retry, whose own wake-up write is lost
        # when the API server refuses that too (at 2,000 connections: retries that never ran).
        services.metrics.reconcile_errors.labels(CONNECTION_KIND, APIServerUnavailableError.reason).inc()
        logger.warning("connection %s/%s: the API server answered %s %s; trying again in 5 s", ns, name,
                       exc.status or "nothing", exc.reason)
        services.retrigger.schedule(CONNECTIONS, ns, name, 5.0)
        return
    apply_result(result, patch)
    post_events(services.event_queue, body, result.events)
    metrics = services.metrics
    metrics.count_security_events(ns, [note.reason for note in result.events])
    outcome = "unchanged" if result.unchanged else "error" if result.error else "ready"
    metrics.observe_reconcile(CONNECTION_KIND, outcome, time.perf_counter() - started)
    provider = str(spec.get("provider") or "")
    if result.error is not None:
        metrics.reconcile_errors.labels(CONNECTION_KIND, result.error.reason).inc()
        metrics.set_connection(ns, name, provider, False, None)
    else:
        # Also when nothing changed (a resume after a restart): a fresh process has no series yet.
        stored = result.status.get("credentials") or obj.status.get("credentials") or {}
        metrics.set_connection(ns, name, provider, True, stored.get("keyId"))
        health = obj.status.get("health")
        if isinstance(health, Mapping):  # until this process probes it: what the last probe found
            # A Ready connection's credentials were accepted by their last check (a rejection
            # turns Ready False): the rejected gauge is 0 again, as before the restart.
            metrics.restore_health(ns, name, provider, health, credentials_rejected=False)
    register_for_probes(services, obj, result, dict(meta.get("annotations") or {}))
    if result.retry_after is not None:
        # Exponential back-off (a provider's Retry-After is taken as given); the status patch
        # above is applied together with Kopf's retry bookkeeping.
        rate_limited = isinstance(result.error, ProviderRateLimitedError)
        delay = result.retry_after if rate_limited else min(result.retry_after * 2 ** min(retry, 8), 600.0)
        # "<Reason>: <message>": the log filter TenantProblemsAsWarnings (kopfpatches/log_lines.py) reads the reason.
        raise kopf.TemporaryError(f"{result.error.reason if result.error else 'Error'}: {result.error}", delay=delay)


def register_for_probes(
    services: Services, obj: ConnectionObject, result: ConnectionResult, annotations: dict[str, str]
) -> None:
    """A usable connection is probed on its interval; an unusable one is not probed at all."""
    engine = services.probe_engine
    if result.error is not None or result.provider is None or result.settings is None or result.sealed is None:
        if result.error is not None and not keeps_last_good(result.error):
            engine.remove(obj.namespace, obj.name)  # its spec or Secret is unusable; last good stays otherwise
        return
    limits = obj.spec.get("rateLimits") or {}
    # After a restart: the schedule and the health state continue from the last probe's (status.health).
    health = obj.status.get("health")
    last = None if engine.knows(obj.namespace, obj.name) else LastProbe.from_status(health)
    if last is not None and isinstance(health, Mapping):
        services.health.resume(obj.namespace, obj.name, health, last)
    engine.upsert(
        ProbeTarget(
            namespace=obj.namespace,
            name=obj.name,
            uid=obj.uid,
            provider=result.provider,
            settings=result.settings,
            sealed=result.sealed,
            thresholds=Thresholds.from_spec(obj.spec.get("healthCheck")),
            requests_per_minute=limits.get("requestsPerMinute"),
            requests_per_day=limits.get("requestsPerDay"),
        ),
        last,
    )
    requested = annotations.get(PROBE_ANNOTATION)
    if requested and services.probe_requests.take(obj.namespace, obj.name, requested):
        # Answered already (status.health echoes it) when an earlier process saw it: not again.
        if not (isinstance(health, Mapping) and health.get("lastRequest") == requested):
            engine.request(obj.namespace, obj.name)


@kopf.on.startup()
async def prefill_watched_secrets(memo: kopf.Memo, **_: Any) -> None:
    """Before the watches start: one list of the Secrets the Secret watch covers, so that the
    resume of every object finds them (Kopf runs the connections' resume handlers as soon as their
    own watch lists them, not after the Secrets' events). Without it, an unchanged connection costs
    two Secret reads on resume; with a Kopf index instead, Kopf's start-up waits for every indexed
    object (quadratic in their number: the resume of 1,000 connections took 2.3 times longer).
    With namespace patterns (globs, ``!`` exclusions) there is nothing to list by name: the watch
    fills the cache."""
    services: Services = memo["services"]
    namespaces: tuple[str, ...] = tuple(memo.get("namespaces") or services.config.watch_namespaces)
    if any(ns.startswith("!") or any(ch in ns for ch in "*?[") for ns in namespaces):
        return
    query = urlencode({"labelSelector": WATCH_SELECTOR})
    paths = [f"/api/v1/namespaces/{ns}/secrets?{query}" for ns in namespaces] or [f"/api/v1/secrets?{query}"]
    for path in paths:
        try:
            answer = await services.rest.request("GET", path)
        except KubeAPIError as exc:  # the watch fills the cache instead; reads meanwhile
            logger.warning("Secrets not listed at start-up (%s %s); the watch fills the cache",
                           exc.status or "no answer", exc.reason)
            return
        for item in answer.get("items") or []:
            meta = item.get("metadata") or {}
            services.watched_secrets.seen(str(meta.get("namespace") or ""), str(meta.get("name") or ""), item)


@kopf.index(GROUP, VERSION, CONNECTIONS)
@lean_indexer
async def connections_by_secret(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[tuple[str, str], tuple[str, str]]:
    """(namespace, Secret name) → (connection, the Secret version the connection last saw)."""
    ns = namespace or ""
    creds = status.get("credentials") or {}
    entries: dict[tuple[str, str], tuple[str, str]] = {}
    source = (spec.get("credentialsSecretRef") or {}).get("name")
    if source:
        entries[(ns, source)] = (name, str(creds.get("sourceResourceVersion") or ""))
    entries[(ns, owned_secret_name(name))] = (name, str(creds.get("resourceVersion") or ""))
    return entries


def binding_is_intact(services: Services, body: kopf.Body) -> bool:
    """Whether a binding Secret is exactly as the operator wrote it (keyed digest matches)."""
    import base64
    import binascii

    annotations = body.get("metadata", {}).get("annotations") or {}
    try:
        data = {k: base64.b64decode(v).decode() for k, v in (body.get("data") or {}).items()}
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Genuine also when stamped by an older key of the keyring (after a rotation): the
    # organization re-stamps it quietly when it reconciles (at start-up, Kopf resumes them all).
    return verify_digest(services.keyring, data, annotations.get(BINDING_DIGEST_ANNOTATION)).genuine


def forget_binding_user(services: Services, namespace: str, meta: kopf.Meta) -> None:
    """A binding Secret is gone: its organization no longer uses the connection it served.

    This is how a deleted Organization leaves ``usedBy``: its binding is garbage-collected with it
    (Organizations carry no finalizer, and Kopf runs an optional delete handler only for objects
    another finalizer holds). A binding deleted by hand while its organization lives is restored
    by the organization's reconcile, which reports the usage again (the latest report wins)."""
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    organization = labels.get(ORGANIZATION_LABEL)
    served = annotations.get(BINDING_CONNECTION_ANNOTATION)
    ours = all(labels.get(key) == value for key, value in MANAGED_BY.items())
    if ours and organization and served and served != PLATFORM_DEFAULT:
        services.usage.report(namespace, served, organization, False)


@kopf.on.event("", "v1", "secrets")
@lean_watcher
async def secret_changed(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """A credentials Secret (or our encrypted copy) changed: let the connection re-reconcile."""
    ns = namespace or ""
    services: Services = memo["services"]
    deleted = event.get("type") == "DELETED"
    refs: kopf.Index[tuple[str, str, str], str] = kwargs["organization_refs"]
    owners = list(refs.get((REF_BINDING, ns, name), []))
    services.watched_secrets.seen(ns, name, body, deleted)
    if deleted:
        forget_binding_user(services, ns, meta)
    if owners and not deleted and binding_is_intact(services, body):
        owners = []  # our own write, as we wrote it: nothing for the organization to check
    for organization in owners:
        # A binding Secret changed or vanished: its organization checks (and restores) it.
        await trigger(services, ORGANIZATIONS, ns, organization, f"{name}@{meta.get('resourceVersion')}")
    index: kopf.Index[tuple[str, str], tuple[str, str]] = kwargs["connections_by_secret"]
    users = index.get((ns, name))
    if not users:
        return
    version = "deleted" if deleted else str(meta.get("resourceVersion") or "")
    for connection, seen_version in list(users):
        if version != seen_version:
            await trigger(services, CONNECTIONS, ns, connection, f"{name}@{version}")


@kopf.on.delete(GROUP, VERSION, CONNECTIONS)
async def guard_deletion(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    retry: int,
    **kwargs: Any,
) -> None:
    """A connection in use by an organization is not deleted out from under it."""
    ns = namespace or ""
    services: Services = memo["services"]
    refs: kopf.Index[tuple[str, str, str], str] = kwargs["organization_refs"]
    users = sorted(set(refs.get((REF_CONNECTION, ns, name), [])))
    if users:
        message = (
            f"deletion is held: Organization(s) {', '.join(users)} use this connection;"
            " switch them to another connection first"
        )
        if retry == 0:  # one Event per deletion attempt; the check itself is cheap (an index lookup)
            post_events(services.event_queue, body, [EventNote("Warning", "DeletionBlocked", message)])
        raise kopf.TemporaryError(f"DeletionBlocked: {message}", delay=5)  # "<Reason>: ", see kopfpatches/log_lines.py
    services.forget_connection(ns, name)


@kopf.on.event(GROUP, VERSION, CONNECTIONS)
@lean_watcher
async def connection_changed(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Organizations that want or use a connection re-check it once its new state is *stored*.

    Readiness, the verified credentials' version or the health changed: a failed switch may now
    succeed, a binding may need the new credentials, ``Healthy`` follows the health. This runs on
    the watch event that carries the new status, not in the reconcile handler (whose status Kopf
    writes after it returns): an organization triggered from the handler could read the
    connection before its new status is stored, find nothing changed, and not retry."""
    ns = namespace or ""
    services: Services = memo["services"]
    deleted = event.get("type") == "DELETED"
    if not deleted:
        services.watch.seen(ns, name, meta, body.get("spec") or {}, status)
    health = status.get("health")
    if not deleted and isinstance(health, Mapping) and health.get("status"):
        # Healthy follows status.health; a reconcile's patch built from an older status may have
        # undone it: put it right (a read and a conditional write, only when they disagree).
        stored = conditions.get_condition(status.get("conditions"), "Healthy") or {}
        if stored.get("reason") != healthy_condition(name, health).reason:
            try:
                await write_health(services.objects, ns, name, None)
            except KubeAPIError as exc:  # not lost: the connection is woken again, which comes back here
                logger.warning("Healthy of %s/%s not written yet (%s %s); trying again", ns, name,
                               exc.status or "no answer", exc.reason)
                services.retrigger.schedule(CONNECTIONS, ns, name, 1.0)
    ready = conditions.get_condition(status.get("conditions"), "Ready") or {}
    state = (
        meta.get("generation"),
        ready.get("status"),
        ready.get("reason"),
        (status.get("credentials") or {}).get("resourceVersion"),
        (status.get("health") or {}).get("status") or "unknown",
    )
    changed = services.watch.state_changed(ns, name, state)
    if deleted:
        # Gone (also when its deletion did not pass through guard_deletion, e.g. a finalizer
        # removed by hand): nothing of it stays behind.
        services.forget_connection(ns, name)
    if not changed:
        return  # first seen (at start-up, organizations resume anyway) or nothing that matters
    refs: kopf.Index[tuple[str, str, str], str] = kwargs["organization_refs"]
    for organization in sorted(set(refs.get((REF_CONNECTION, ns, name), []))):
        await trigger(services, ORGANIZATIONS, ns, organization, f"{name}@{meta.get('resourceVersion')}")
