"""Kopf glue for Organization: run the reconcile, apply its result, count the switch."""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf

from oneie_operator.errors import OneieError
from oneie_operator.handlers.connections import REF_BINDING, REF_CONNECTION, post_events
from oneie_operator.handlers.kopfpatches.changing import lean_changer
from oneie_operator.handlers.kopfpatches.indexing import lean_indexer
from oneie_operator.handlers.services import Services
from oneie_operator.names import GROUP, ORGANIZATION_KIND, ORGANIZATIONS, VERSION
from oneie_operator.reconcile.organizations import (
    OrgObject,
    SwitchRecord,
    binding_name,
    connection_ref,
    reconcile_organization,
)

logger = logging.getLogger(__name__)
#: After a reconcile that could not finish (API server unreachable, binding undetermined).
RETRY_DELAY_SECONDS = 5


@kopf.on.resume(GROUP, VERSION, ORGANIZATIONS)
@kopf.on.create(GROUP, VERSION, ORGANIZATIONS)
@kopf.on.update(GROUP, VERSION, ORGANIZATIONS)
@lean_changer
async def reconcile(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    patch: kopf.Patch,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    services: Services = memo["services"]
    ns = namespace or ""
    started = time.perf_counter()
    # The plain dicts of the body, each looked up once: copying Kopf's spec/status views key by
    # key walks the body from its root for every key (a measurable share of a switch's CPU).
    meta: Any = body.get("metadata") or {}
    obj = OrgObject(
        namespace=ns,
        name=name,
        uid=uid,
        generation=int(meta.get("generation") or 0),
        spec=dict(body.get("spec") or {}),
        status=dict(body.get("status") or {}),
        annotations=dict(meta.get("annotations") or {}),
        managed_fields=tuple(meta.get("managedFields") or ()),
    )
    try:
        result = await reconcile_organization(obj, services.org_deps())
    except OneieError as exc:  # typed, its text safe; status left as it was, we run again later
        services.metrics.reconcile_errors.labels(ORGANIZATION_KIND, exc.reason).inc()
        services.retrigger.schedule(ORGANIZATIONS, ns, name, RETRY_DELAY_SECONDS if exc.transient else 60.0)
        logger.warning("organization %s/%s: %s: %s; trying again later", ns, name, exc.reason, exc)
        return
    for key, value in result.status.items():
        patch.status[key] = value
    post_events(services.event_queue, body, result.events)
    for connection, using in result.usage:
        services.usage.report(ns, connection, name, using)  # written in the background, coalesced
    metrics = services.metrics
    outcome = "unchanged" if result.unchanged else "changed"
    metrics.observe_reconcile(ORGANIZATION_KIND, outcome, time.perf_counter() - started)
    if result.switch is not None:
        log_switch(ns, name, result.switch)
        metrics.observe_switch(result.switch)
        metrics.count_security_events(ns, [result.switch.reason])
        if result.switch.result != "Succeeded":
            metrics.reconcile_errors.labels(ORGANIZATION_KIND, result.switch.reason).inc()
    if result.retry_after is not None:  # the API server stopped the switch: run it again later
        services.retrigger.schedule(ORGANIZATIONS, ns, name, result.retry_after)


def log_switch(namespace: str, name: str, switch: SwitchRecord) -> None:
    """One line per switch or rollback (Kopf's generic success lines of Organizations are dropped:
    ``kopfpatches/log_lines.py``): what changed, how it ended, and how long it took."""
    what = "rollback" if switch.explicit_rollback else "switch"
    level = logging.INFO if switch.result == "Succeeded" else logging.WARNING
    logger.log(level, "organization %s/%s: %s %s → %s %s in %.0f ms (%s)", namespace, name, what,
               switch.source or "(none)", switch.target, switch.result, switch.seconds * 1000, switch.reason)


@kopf.index(GROUP, VERSION, ORGANIZATIONS)
@lean_indexer
async def organization_refs(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> dict[tuple[str, str, str], str]:
    """What an organization refers to → the organization: its binding Secret, and the connections
    it wants (``spec``) or has active (``status``).

    One index, not one per question: Kopf runs every indexer of a kind on every watch event of it,
    each one a handler invocation of its own (~5 % of the operator's CPU per switch for two)."""
    ns = namespace or ""
    connections = {connection_ref(spec), status.get("activeConnection")}
    refs = {(REF_CONNECTION, ns, str(conn)): name for conn in connections if conn}
    refs[(REF_BINDING, ns, binding_name(name))] = name
    return refs
