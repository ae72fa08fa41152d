"""Our indexers called directly on each watch event, not through Kopf's handler machinery.

Changes: ``kopf._core.engines.indexing.index_resource`` (a private function, replaced on its
module; ``kopf._core.reactor.processing`` calls it through the module attribute). Checked against
Kopf 1.45.2.

Kopf runs every indexer of a kind on every watch event of it (an Organization's own status patch
included) as a full handler invocation: a cause, a progress state, the lifecycle, the logging
context, every kwarg of every handler built. For our indexers, pure functions of the namespace,
name, spec and status that never fail, that was ~8 % of the operator's CPU per switch
(``benchmarks/switch.py --py-spy``). An indexer marked with :func:`lean_indexer` is awaited here
with exactly those four arguments (the raw dicts of the event), and its result is stored through
Kopf's own ``OperatorIndexers.replace``, as Kopf would store it.

Kopf's own path is kept whenever anything is not the plain case: a DELETED event (Kopf discards
the object's entries), an indexer of that kind that is not marked or has a filter (labels,
annotations, field, ``when``), an indexing state left by an earlier failure, or an indexer that
raises (Kopf then runs them all again, and logs and ignores the error as it does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from kopf._core.actions import execution
from kopf._core.engines import indexing

#: The attribute :func:`lean_indexer` sets on an indexer function.
LEAN_ATTRIBUTE = "__oneie_lean_indexer__"
#: Kopf's own ``index_resource``, called for everything but the plain case.
KOPF_INDEX_RESOURCE = indexing.index_resource

F = TypeVar("F", bound=Callable[..., Any])


def lean_indexer(fn: F) -> F:
    """Mark an async indexer ``fn(*, namespace, name, spec, status, **_)`` (a pure function of
    those, which does not raise) to be called directly (put it under ``@kopf.index``)."""
    setattr(fn, LEAN_ATTRIBUTE, True)
    return fn


def _lean_handlers(registry: Any, resource: Any) -> list[Any] | None:
    """The kind's indexers if every one of them is marked and unfiltered, else None."""
    found = []
    for handler in registry._indexing.get_all_handlers():
        if handler.selector is not None and not handler.selector.check(resource):
            continue
        plain = (
            getattr(handler.fn, LEAN_ATTRIBUTE, False)
            and asyncio.iscoroutinefunction(handler.fn)
            and handler.labels is None
            and handler.annotations is None
            and handler.field is None
            and handler.value is None
            and handler.when is None
        )
        if not plain:
            return None
        found.append(handler)
    return found


async def index_resource(*, indexers: Any, registry: Any, raw_event: Any, memory: Any, body: Any,
                         resource: Any, **kwargs: Any) -> None:
    """Kopf's ``index_resource``, with marked indexers called directly (see the module docstring)."""
    everything = dict(indexers=indexers, registry=registry, raw_event=raw_event, memory=memory, body=body,
                      resource=resource, **kwargs)
    if raw_event.get("type") == "DELETED" or memory.indexing_state is not None:
        return await KOPF_INDEX_RESOURCE(**everything)
    handlers = _lean_handlers(registry, resource)
    if handlers is None:
        return await KOPF_INDEX_RESOURCE(**everything)
    if not handlers:
        return None  # no indexer of this kind (Kopf: nothing to do)
    raw = raw_event.get("object") or {}
    meta = raw.get("metadata") or {}
    spec, status = raw.get("spec") or {}, raw.get("status") or {}
    outcomes = {}
    try:
        for handler in handlers:
            result = await handler.fn(namespace=meta.get("namespace"), name=meta.get("name"), spec=spec, status=status)
            outcomes[handler.id] = execution.Outcome(final=True, result=result)
    except Exception:  # not the plain case after all: Kopf's own path (it logs and ignores the error)
        return await KOPF_INDEX_RESOURCE(**everything)
    indexers.replace(body=body, outcomes=outcomes)
    return None


def install() -> None:
    """Use :func:`index_resource` for Kopf's indexing (installing twice is harmless)."""
    indexing.index_resource = index_resource


def uninstall() -> None:
    """Restore Kopf's own ``index_resource``."""
    indexing.index_resource = KOPF_INDEX_RESOURCE


__all__ = ["KOPF_INDEX_RESOURCE", "LEAN_ATTRIBUTE", "index_resource", "install", "lean_indexer", "uninstall"]
