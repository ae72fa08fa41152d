"""Kopf works out what changed in an object only for kinds with handlers that ask.

Changes: ``kopf._core.reactor.processing._detect_causes`` (a private function, replaced on its
module; ``process_resource_causes`` calls it through the module attribute). Checked against
Kopf 1.45.2.

For every watch event Kopf builds the object's essence (a copy of everything but its status),
fetches the last handled one and diffs the two, before it looks at which handlers the kind has.
Only change handlers (``on.create``/``update``/``resume``/``delete``/``field``) and daemons or
timers use that diff. Our Secrets watch has neither, only ``@kopf.on.event``: there the essence
was a copy of each Secret's ``data`` (tenants' credentials among them) made for nothing, on every
Secret event, one per switch (the binding Secret's). For a kind without change handlers and
without daemons or timers, the watching cause is built as Kopf builds it and the rest is skipped;
any other kind goes through Kopf's own function.
"""

from __future__ import annotations

from typing import Any

from kopf._core.intents import causes
from kopf._core.reactor import processing

#: Kopf's own ``_detect_causes`` (restored by :func:`uninstall`).
KOPF_DETECT_CAUSES = processing._detect_causes


def detect_causes(
    *,
    indexers: Any,
    registry: Any,
    settings: Any,
    resource: Any,
    raw_event: Any,
    body: Any,
    patch: Any,
    memory: Any,
    local_logger: Any,
    event_logger: Any,
) -> Any:
    """Kopf's ``_detect_causes``, without the diff where no handler of the kind uses it."""
    if registry._changing.has_handlers(resource=resource) or registry._spawning.has_handlers(resource=resource):
        return KOPF_DETECT_CAUSES(
            indexers=indexers,
            registry=registry,
            settings=settings,
            resource=resource,
            raw_event=raw_event,
            body=body,
            patch=patch,
            memory=memory,
            local_logger=local_logger,
            event_logger=event_logger,
        )
    watching_cause = (
        causes.detect_watching_cause(
            raw_event=raw_event,
            resource=resource,
            indices=indexers.indices,
            logger=local_logger,
            patch=patch,
            body=body,
            memo=memory.memo,
        )
        if registry._watching.has_handlers(resource=resource)
        else None
    )
    return processing._Causes(watching_cause, None, None)


def install() -> None:
    """Use :func:`detect_causes` (installing twice is harmless)."""
    processing._detect_causes = detect_causes  # type: ignore[assignment]


def uninstall() -> None:
    """Restore Kopf's own ``_detect_causes``."""
    processing._detect_causes = KOPF_DETECT_CAUSES


__all__ = ["KOPF_DETECT_CAUSES", "detect_causes", "install", "uninstall"]
