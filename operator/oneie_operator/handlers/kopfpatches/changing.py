"""Our change handler awaited directly when Kopf has nothing of it in progress.

Changes: ``kopf._core.reactor.processing.process_changing_cause`` (a private function, replaced on
its module; ``process_resource_causes`` looks it up there at each call). Checked against Kopf 1.45.2.

For every creation, update or resume of an object, Kopf runs its change handlers through its
progress machinery: the handlers' state read back from the object's status, purposes, the
lifecycle, the handler's context variables, an outcome stored in the patch and purged again,
two "succeeded"/"processed" log records (dropped for Organizations by
``log_lines.QuietOrganizationSuccesses``). For the Organization reconcile (one handler that
catches its own typed errors and schedules its own retries) that machinery was ~13 % of the
operator's CPU per switch (``benchmarks/switch.py``, CPU-time profile). When all of these hold,
the handler is awaited here with Kopf's own kwargs, and what Kopf would leave in the patch
afterwards is left there the same way:

- the cause is a creation, an update or a resume (never a deletion: finalizers stay Kopf's);
- Kopf selects exactly one handler for it (its filters still apply), marked with
  :func:`lean_changer`, async, without Kopf options (errors, timeout, retries, backoff) and not a
  field handler;
- Kopf's progress storage is ``status.<name>.progress`` and the object has no progress in it:
  no handler is in progress, waiting for a retry, or superseded.

Then, as Kopf does once every handler succeeded: the handler's return value (if any) goes into
status, the new essence is stored as the diff base (when it changed), and the object counts as
handled once (no resume handlers on the next listing). The progress Kopf would store and purge
again in the same patch is not written at all. A handler that raises on this path is run again
through Kopf's own path at once, which records the failure and retries it as Kopf does (a bug
costs one attempt more; our handler returns its typed errors, it does not raise them). Any other
cause, object or handler: Kopf's own path.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import kopf
from kopf._cogs.structs import dicts
from kopf._core.actions import execution, progression
from kopf._core.intents import causes
from kopf._core.reactor import processing

from oneie_operator.handlers.kopfpatches.marks import marked_without_options

#: The attribute :func:`lean_changer` sets on a handler function.
LEAN_ATTRIBUTE = "__oneie_lean_changer__"
#: Kopf's own ``process_changing_cause`` (restored by :func:`uninstall`).
KOPF_PROCESS_CHANGING_CAUSE = processing.process_changing_cause
#: The causes the lean path takes (Kopf's handler reasons but deletion).
LEAN_REASONS = frozenset({causes.Reason.CREATE, causes.Reason.UPDATE, causes.Reason.RESUME})

F = TypeVar("F", bound=Callable[..., Any])

_lean_runs = 0


def lean_changer(fn: F) -> F:
    """Mark an async change handler (put it under Kopf's decorators) to be awaited directly when
    Kopf has nothing of the object in progress. Only for handlers without Kopf options that are
    silent on success and handle (and retry) their own errors; see the module docstring."""
    setattr(fn, LEAN_ATTRIBUTE, True)
    return fn


def _plain(handler: Any) -> bool:
    return (
        marked_without_options(handler, LEAN_ATTRIBUTE)
        and asyncio.iscoroutinefunction(handler.fn)
        and handler.field is None
    )


def lean_handler(*, registry: Any, settings: Any, cause: Any) -> Any | None:
    """The one handler the lean path would await for this cause, or None for Kopf's own path."""
    if cause.reason not in LEAN_REASONS:
        return None
    storage = settings.persistence.progress_storage
    if not isinstance(storage, kopf.StatusProgressStorage):
        return None
    if dicts.resolve(cause.body, storage.field, None):  # something in progress, retried or superseded
        return None
    handlers = registry._changing.get_handlers(cause=cause)
    if len(handlers) != 1 or not _plain(handlers[0]):
        return None
    return handlers[0]


async def process_changing_cause(
    *, lifecycle: Any, registry: Any, settings: Any, memory: Any, cause: Any
) -> Collection[float]:
    """Kopf's ``process_changing_cause``, with a marked handler awaited directly (see the module docstring)."""
    global _lean_runs
    handler = lean_handler(registry=registry, settings=settings, cause=cause)
    if handler is None:
        return await KOPF_PROCESS_CHANGING_CAUSE(
            lifecycle=lifecycle, registry=registry, settings=settings, memory=memory, cause=cause
        )
    kwargs = {
        "param": handler.param,
        "retry": 0,
        "started": datetime.datetime.now(datetime.UTC),
        "runtime": datetime.timedelta(0),
    } | dict(cause.async_kwargs)
    try:
        result = await handler.fn(**kwargs)
        failed = False
    except asyncio.CancelledError:
        raise
    except Exception:
        failed = True
    if failed:  # Kopf's own path runs it again (outside this except: no chained traceback) and
        # records the failure for its retry
        cause.logger.debug(f"{handler} raised on the lean path; running it through Kopf's own path.")
        return await KOPF_PROCESS_CHANGING_CAUSE(
            lifecycle=lifecycle, registry=registry, settings=settings, memory=memory, cause=cause
        )
    _lean_runs += 1
    outcome = execution.Outcome(final=True, result=execution.Result(result))
    progression.deliver_results(outcomes={handler.id: outcome}, patch=cause.patch)
    if cause.new is not None and cause.old != cause.new:
        settings.persistence.diffbase_storage.store(body=cause.body, patch=cause.patch, essence=cause.new)
    memory.fully_handled_once = True
    return []


def lean_runs() -> int:
    """How many handler runs took the lean path since the process started (for tests and benchmarks)."""
    return _lean_runs


def install() -> None:
    """Use :func:`process_changing_cause` for Kopf's change causes (installing twice is harmless)."""
    processing.process_changing_cause = process_changing_cause  # type: ignore[assignment]


def uninstall() -> None:
    """Restore Kopf's own ``process_changing_cause``."""
    processing.process_changing_cause = KOPF_PROCESS_CHANGING_CAUSE


__all__ = [
    "KOPF_PROCESS_CHANGING_CAUSE",
    "LEAN_ATTRIBUTE",
    "LEAN_REASONS",
    "install",
    "lean_changer",
    "lean_handler",
    "lean_runs",
    "process_changing_cause",
    "uninstall",
]
