"""The watch event that only echoes the operator's own write: indexed, not processed again.

Changes: ``kopf._core.reactor.processing.process_resource_event`` (a private function, replaced on
its module before Kopf starts: ``running.py`` binds it into the processor when the operator
starts) and ``kopf._cogs.clients.patching.patch_obj`` (a private function, wrapped on its module;
``kopf._core.actions.application`` calls it through the module attribute). Checked against Kopf
1.45.2.

When Kopf has handled an event of an object, it patches the object's status with the result and
the API server sends the patched object back as the object's next watch event. Kopf processes
that echo in full (three per-object loggers, the essence and its diff, the causes, the handler
registry) only to find that nothing changed: for an Organization, one of the three watch events
a switch costs the operator. The echo is skipped here, but for the kind's indexers (ours read
the status), when all of these hold, so that Kopf provably has nothing to do with it:

- the kind has no ``@kopf.on.event`` handlers and no daemons or timers (they want every event);
- the patch was a status patch only (no metadata: finalizers, labels, annotations; no spec; no
  JSON-patch operations), left nothing to re-apply, and ended the handling: Kopf's progress
  storage is ``status.<name>.progress`` and the patched object has no progress left in it, and
  the patch did not "touch" (Kopf's wake-up for a delayed retry);
- the patched object has the ``generation``, labels, annotations, finalizers and deletion
  timestamp of the event Kopf handled: nobody changed what Kopf diffs in between (a merge patch
  does not check the version; such a change is processed by Kopf as before);
- the object's very next event is ``MODIFIED`` with exactly the ``resourceVersion`` that the
  patch answered, i.e. it is the object as Kopf's patch left it.

Any other event, and every event of a kind or a moment that does not qualify, goes through Kopf.
At most one expected echo is kept per object, and it is dropped by the object's next event.

The operator's own writes through its REST client can be declared the same way
(:func:`expect_own_write`): the watch event that carries exactly the resourceVersion the write
answered is indexed, not processed. Whoever declares one vouches that the kind's handlers have
nothing to do with the object as written: a binding Secret written by a switch (our Secret watch
would verify the digest we have just computed, and cache nothing: ``handlers/services.py``).
"""

from __future__ import annotations

import collections
import contextvars
from dataclasses import dataclass
from typing import Any, cast

import kopf
from kopf._cogs.clients import patching
from kopf._core.actions import loggers
from kopf._core.engines import indexing
from kopf._core.reactor import processing

#: Kopf's own functions (restored by :func:`uninstall`).
KOPF_PROCESS_RESOURCE_EVENT = processing.process_resource_event
KOPF_PATCH_OBJ = patching.patch_obj

#: The metadata that Kopf's change detection (and its finalizer logic) depends on.
WATCHED_METADATA = ("generation", "labels", "annotations", "finalizers", "deletionTimestamp")


@dataclass(frozen=True)
class PatchRecord:
    """The last patch Kopf applied in the current event's processing, and what it answered."""

    patch: Any
    resulting_body: Any
    remaining_patch: Any


_last_patch: contextvars.ContextVar[PatchRecord | None] = contextvars.ContextVar("oneie_last_patch", default=None)
#: (resource, uid) → the resourceVersion of the expected echo of Kopf's finished status patch.
_expected: dict[tuple[Any, str], str] = {}
#: Echoes only indexed so far, by plural (for tests and the benchmarks' checks).
_skipped: collections.Counter[str] = collections.Counter()
#: (group, version, plural, namespace, name) → the resourceVersion of the operator's own write.
_own_writes: dict[tuple[str, str, str, str, str], str] = {}


def expect_own_write(group: str, version: str, plural: str, namespace: str, name: str, resource_version: str) -> None:
    """The operator wrote this object (see the module docstring): its echo is only indexed."""
    _own_writes[(group, version, plural, namespace, name)] = resource_version


async def patch_obj(**kwargs: Any) -> Any:
    """Kopf's ``patch_obj``, remembering what it sent and what it answered (for this task)."""
    resulting_body, remaining_patch = await KOPF_PATCH_OBJ(**kwargs)
    _last_patch.set(PatchRecord(kwargs.get("patch"), resulting_body, remaining_patch))
    return resulting_body, remaining_patch


def echo_version(
    *, registry: Any, settings: Any, resource: Any, handled: dict[str, Any], record: PatchRecord | None
) -> str | None:
    """The resourceVersion of the echo Kopf would have nothing to do with (see the module
    docstring), or None when the next event must go through Kopf."""
    if record is None or not isinstance(record.resulting_body, dict) or record.remaining_patch:
        return None
    if registry._watching.has_handlers(resource=resource) or registry._spawning.has_handlers(resource=resource):
        return None
    storage = settings.persistence.progress_storage
    if not isinstance(storage, kopf.StatusProgressStorage):
        return None
    patch = record.patch
    if patch is None or getattr(patch, "fns", None) or set(patch) - {"status"}:
        return None
    touched: Any = patch
    for key in storage.touch_field[:-1]:
        touched = touched.get(key) if isinstance(touched, dict) else None
    if isinstance(touched, dict) and touched.get(storage.touch_field[-1]) is not None:
        return None  # a touch: Kopf's wake-up for a delayed retry
    result = record.resulting_body
    progress: Any = result
    for key in storage.field:
        progress = progress.get(key) if isinstance(progress, dict) else None
    if progress:  # a handler still in progress or waiting for its retry
        return None
    before, after = handled.get("metadata") or {}, result.get("metadata") or {}
    if any(before.get(key) != after.get(key) for key in WATCHED_METADATA) or after.get("deletionTimestamp"):
        return None
    version = after.get("resourceVersion")
    return str(version) if version else None


async def process_resource_event(**kwargs: Any) -> str | None:
    """Kopf's ``process_resource_event``, with the echo of its own finished status patch only indexed."""
    raw_event = kwargs["raw_event"]
    resource = kwargs["resource"]
    raw_body = raw_event.get("object") or {}
    meta = raw_body.get("metadata") or {}
    key = (resource, str(meta.get("uid") or ""))
    expected = _expected.pop(key, None)
    own = _own_writes.pop(
        (resource.group, resource.version, resource.plural, str(meta.get("namespace") or ""), str(meta.get("name"))),
        None,
    )
    version = meta.get("resourceVersion")
    if raw_event.get("type") == "MODIFIED" and version is not None and version in (expected, own):
        await _index_only(raw_body=raw_body, **kwargs)
        _skipped[resource.plural] += 1
        return None
    token = _last_patch.set(None)
    try:
        patched = await KOPF_PROCESS_RESOURCE_EVENT(**kwargs)  # the version Kopf's patch answered, if any
        record = _last_patch.get()
    finally:
        _last_patch.reset(token)
    if patched is not None and raw_event.get("type") != "DELETED":
        echo = echo_version(
            registry=kwargs["registry"], settings=kwargs["settings"], resource=resource, handled=raw_body, record=record
        )
        if echo is not None and echo == patched:
            _expected[key] = echo
    return patched


async def _index_only(
    *,
    raw_body: dict[str, Any],
    raw_event: Any,
    resource: Any,
    registry: Any,
    settings: Any,
    indexers: Any,
    memories: Any,
    memobase: Any,
    **_: Any,
) -> None:
    """What Kopf does for an event before it works out the causes: the object's memory, its
    fresh body for daemons, and the kind's indexes (as ``process_resource_event`` does)."""
    memory = await memories.recall(raw_body, noticed_by_listing=False, memobase=memobase)
    if memory.daemons_memory.live_fresh_body is not None:
        memory.daemons_memory.live_fresh_body._replace_with(raw_body)
    body = kopf.Body(cast(kopf.RawBody, raw_body))
    await indexing.index_resource(
        registry=registry,
        indexers=indexers,
        settings=settings,
        resource=resource,
        raw_event=raw_event,
        body=body,
        memo=memory.memo,
        memory=memory.indexing_memory,
        logger=loggers.TerseObjectLogger(body=body, settings=settings),
    )


def expected_echoes() -> int:
    """How many objects have an echo expected (for tests: at most one per object)."""
    return len(_expected) + len(_own_writes)


def skipped_echoes(plural: str) -> int:
    """How many echoes of that kind were only indexed since the process started."""
    return _skipped[plural]


def forget_echoes() -> None:
    """Expect no echo of any object (the next event of each goes through Kopf)."""
    _expected.clear()
    _own_writes.clear()


def install() -> None:
    """Skip the echoes (installing twice is harmless); before Kopf starts. An operator started
    again in the same process (the demo, tests) starts with no echo expected."""
    processing.process_resource_event = process_resource_event  # type: ignore[assignment]
    patching.patch_obj = patch_obj
    forget_echoes()


def uninstall() -> None:
    """Restore Kopf's own functions and forget the expected echoes."""
    processing.process_resource_event = KOPF_PROCESS_RESOURCE_EVENT
    patching.patch_obj = KOPF_PATCH_OBJ
    forget_echoes()


__all__ = [
    "KOPF_PATCH_OBJ",
    "KOPF_PROCESS_RESOURCE_EVENT",
    "PatchRecord",
    "echo_version",
    "expect_own_write",
    "expected_echoes",
    "forget_echoes",
    "install",
    "patch_obj",
    "process_resource_event",
    "skipped_echoes",
    "uninstall",
]
