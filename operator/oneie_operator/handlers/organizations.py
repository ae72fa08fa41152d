"""Kopf glue for Organization: run the reconcile, apply its result, count the switch."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import kopf

from oneie_operator.errors import OneieError
from oneie_operator.handlers.connections import REF_BINDING, REF_CONNECTION, post_events
from oneie_operator.handlers.services import Services
from oneie_operator.reconcile.connections import GROUP, VERSION
from oneie_operator.reconcile.organizations import OrgObject, binding_name, connection_ref, reconcile_organization

PLURAL = "organizations"
logger = logging.getLogger(__name__)
#: After a reconcile that could not finish (API server unreachable, binding undetermined).
RETRY_DELAY_SECONDS = 5


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
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
    **_: Any,
) -> None:
    services: Services = memo["services"]
    ns = namespace or ""
    started = time.perf_counter()
    obj = OrgObject(
        namespace=ns,
        name=name,
        uid=uid,
        generation=int(meta.get("generation") or 0),
        spec=dict(spec),
        status=dict(status),
        annotations=dict(meta.annotations),
        managed_fields=tuple(meta.get("managedFields") or ()),
    )
    try:
        deps = dataclasses.replace(services.org_deps(), watched=services.watched_secret)
        result = await reconcile_organization(obj, deps)
    except OneieError as exc:  # typed, its text safe; status left as it was, we run again later
        services.metrics.reconcile_errors.labels("Organization", exc.reason).inc()
        services.retrigger.schedule(PLURAL, ns, name, RETRY_DELAY_SECONDS if exc.transient else 60.0)
        logger.warning("organization %s/%s: %s: %s; trying again later", ns, name, exc.reason, exc)
        return
    for key, value in result.status.items():
        patch.status[key] = value
    post_events(body, result.events)
    for connection, using in result.usage:
        services.usage.report(ns, connection, name, using)  # written in the background, coalesced
    metrics = services.metrics
    metrics.reconcile_duration.labels("Organization").observe(time.perf_counter() - started)
    metrics.reconciles.labels("Organization", "unchanged" if result.unchanged else "changed").inc()
    if result.switch is not None:
        metrics.observe_switch(result.switch)
        metrics.count_security_events(ns, [result.switch.reason])
        if result.switch.result != "Succeeded":
            metrics.reconcile_errors.labels("Organization", result.switch.reason).inc()
    if result.retry_after is not None:  # the API server stopped the switch: run it again later
        services.retrigger.schedule(PLURAL, ns, name, result.retry_after)


@kopf.index(GROUP, VERSION, PLURAL)
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
