"""Our watch-event handlers (``@kopf.on.event``) awaited directly, not through Kopf's handler machinery.

Changes: ``kopf._core.reactor.processing.process_watching_cause`` (a private function, replaced on
its module; ``process_resource_causes`` looks it up there at each call). Checked against Kopf 1.45.2.

Kopf runs each ``@kopf.on.event`` handler as a full handler invocation (a progress state built
from scratch, the lifecycle, the handler's context variables, a "succeeded" log record), on every
watch event of the kind: for ``secret_changed`` that is every event of every labelled Secret (a
switch's binding write included), for ``connection_changed`` every connection event. When every
handler Kopf selects for the event (its own filters still apply) is marked with
:func:`lean_watcher`, each is awaited here with Kopf's own kwargs of the cause, one after the other,
and a failure is logged with Kopf's own texts and ignored, as Kopf does for these handlers
(``errors`` unset: ignored; a temporary error is not retried either). Their "succeeded" lines are
dropped by ``log_lines.QuietWatchHandlers`` anyway, so nothing logged changes. Any unmarked handler
selected for the event: Kopf's own path for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import kopf
from kopf._core.reactor import processing

from oneie_operator.handlers.kopfpatches.marks import marked_without_options

#: The attribute :func:`lean_watcher` sets on a handler function.
LEAN_ATTRIBUTE = "__oneie_lean_watcher__"
#: Kopf's own ``process_watching_cause``.
KOPF_PROCESS_WATCHING_CAUSE = processing.process_watching_cause

F = TypeVar("F", bound=Callable[..., Any])


def lean_watcher(fn: F) -> F:
    """Mark an async ``@kopf.on.event`` handler (put it under the decorator) to be awaited directly.
    Only for handlers without Kopf options (errors, timeout, retries, backoff) and silent on success."""
    setattr(fn, LEAN_ATTRIBUTE, True)
    return fn


def _plain(handler: Any) -> bool:
    return marked_without_options(handler, LEAN_ATTRIBUTE)


async def process_watching_cause(*, lifecycle: Any, registry: Any, settings: Any, cause: Any) -> None:
    """Kopf's ``process_watching_cause``, with marked handlers awaited directly (see the module docstring)."""
    handlers = registry._watching.get_handlers(cause=cause)
    if not handlers or not all(_plain(handler) for handler in handlers):
        await KOPF_PROCESS_WATCHING_CAUSE(lifecycle=lifecycle, registry=registry, settings=settings, cause=cause)
        return
    logger = cause.logger
    kwargs = cause.kwargs
    for handler in handlers:
        try:
            await handler.fn(**kwargs)
        except kopf.TemporaryError as e:
            logger.error(f"{handler} failed temporarily: {str(e) or repr(e)}")
        except kopf.PermanentError as e:
            logger.error(f"{handler} failed permanently: {str(e) or repr(e)}")
        except Exception as e:
            logger.exception(f"{handler} failed with an exception and will ignore it: {str(e) or repr(e)}")


def install() -> None:
    """Use :func:`process_watching_cause` for Kopf's watch events (installing twice is harmless)."""
    processing.process_watching_cause = process_watching_cause  # type: ignore[assignment]


def uninstall() -> None:
    """Restore Kopf's own ``process_watching_cause``."""
    processing.process_watching_cause = KOPF_PROCESS_WATCHING_CAUSE


__all__ = [
    "KOPF_PROCESS_WATCHING_CAUSE", "LEAN_ATTRIBUTE", "install", "lean_watcher", "process_watching_cause", "uninstall",
]
