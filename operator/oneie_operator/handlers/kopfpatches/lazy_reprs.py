"""Kopf's per-change debug lines, formatted only when they are logged.

Changes: the ``__repr__`` of Kopf's private ``kopf._cogs.structs.bodies.Body`` and
``kopf._cogs.structs.diffs.Diff`` (methods replaced on the classes). Checked against Kopf 1.45.2.

Kopf (1.45) logs ``f"{title} is in progress: {body!r}"`` and ``f"{title} diff: {cause.diff!r}"``
at DEBUG for every change it handles. An f-string is built before the logger looks at its level,
so every Organization and BackendConnection change formatted the whole object (a few KiB of
nested dicts) only to discard it: ~7 % of the operator's CPU per switch in
``benchmarks/switch.py --py-spy`` (``MappingView.__repr__``), on the critical path of every switch
since all reconciles share one interpreter.

:func:`install` gives Kopf's ``Body`` and ``Diff`` a ``repr`` that stays the full one whenever the
``kopf.objects`` logger is enabled for DEBUG (``--verbose``) and is otherwise a short name of the
object (``<Body Organization team-a/org rv=42>``, ``<Diff of 3 items>``) — those lines are then
dropped anyway, and a short name is also what any other text that quotes a body should show.
Installing twice is harmless; :func:`uninstall` restores Kopf's own methods (tests).
"""

from __future__ import annotations

import logging
from typing import Any

from kopf._cogs.structs import bodies, diffs

#: Kopf's per-object logger: the one its ``... is in progress`` and ``diff`` lines go to.
KOPF_OBJECTS_LOGGER = logging.getLogger("kopf.objects")

_ORIGINAL_BODY_REPR = bodies.Body.__repr__
_ORIGINAL_DIFF_REPR = diffs.Diff.__repr__


def _body_repr(self: bodies.Body) -> str:
    if KOPF_OBJECTS_LOGGER.isEnabledFor(logging.DEBUG):
        return _ORIGINAL_BODY_REPR(self)
    meta: Any = self.get("metadata") or {}
    where = "/".join(part for part in (meta.get("namespace"), meta.get("name")) if part)
    return f"<Body {self.get('kind') or '?'} {where or '?'} rv={meta.get('resourceVersion') or '?'}>"


def _diff_repr(self: diffs.Diff) -> str:
    if KOPF_OBJECTS_LOGGER.isEnabledFor(logging.DEBUG):
        return _ORIGINAL_DIFF_REPR(self)
    return f"<Diff of {len(self)} items>"


def install() -> None:
    """Make Kopf's ``Body``/``Diff`` ``repr`` lazy (full only while DEBUG is on)."""
    bodies.Body.__repr__ = _body_repr  # type: ignore[method-assign,assignment]
    diffs.Diff.__repr__ = _diff_repr  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore Kopf's own ``repr`` of ``Body`` and ``Diff``."""
    bodies.Body.__repr__ = _ORIGINAL_BODY_REPR  # type: ignore[method-assign]
    diffs.Diff.__repr__ = _ORIGINAL_DIFF_REPR  # type: ignore[method-assign]


__all__ = ["KOPF_OBJECTS_LOGGER", "install", "uninstall"]
