"""Kopf's mapping views (``body.spec``, ``meta.get("name")``) look keys up in plain dicts in one step.

Changes: ``kopf._cogs.structs.dicts.MappingView.__getitem__`` and ``.get`` (a private class, two
methods replaced on it; every view Kopf makes, ``Body``, ``Meta``, ``Spec``, ``Status``, inherits
them). Checked against Kopf 1.45.2.

Kopf answers every key of a view with ``resolve()``: the view's path is parsed, walked from the
root with a structural ``match`` against ``collections.abc.Mapping`` for each level (an ABC
instance check each), and a view over a view (``Meta`` over ``Body`` over the event's dict)
resolves again at each level. Kopf reads its bodies that way dozens of times per watch event (its
three per-object loggers, causes, finalizers, indexing): about 7 % of the operator's CPU in a
burst of switches (``benchmarks/switch.py``, profiled). Here a view first unwraps the views it
is built on to the dict at their root and the full path, and walks that path over plain ``dict``
objects (what the watch stream's JSON gives). Anything else on the way (a ``Patch``, a list, a
string, a model of the ``kubernetes`` client) goes to Kopf's own code, so every answer and every
error (``KeyError`` for a missing key, ``TypeError`` for a non-mapping) stays Kopf's.
"""

from __future__ import annotations

from typing import Any

from kopf._cogs.structs import dicts

#: Kopf's own methods, used for everything but plain dicts (and restored by :func:`uninstall`).
KOPF_GETITEM = dicts.MappingView.__getitem__
KOPF_GET = dicts.MappingView.get


def _root(view: dicts.MappingView[Any, Any]) -> tuple[dict[Any, Any] | None, tuple[str, ...]]:
    """The plain dict under a chain of views and the full path from it (None: not a plain dict)."""
    src: Any = view._src
    path: tuple[str, ...] = view._path
    while type(src) is not dict:
        if not isinstance(src, dicts.MappingView):
            return None, path
        path = src._path + path
        src = src._src
    return src, path


def getitem(self: dicts.MappingView[Any, Any], item: Any) -> Any:
    """``view[item]``: Kopf's answer, over plain dicts without ``resolve()``."""
    value, path = _root(self)
    if value is None:
        return KOPF_GETITEM(self, item)
    for key in path:
        if type(value) is not dict:
            return KOPF_GETITEM(self, item)
        value = value[key]  # a missing level: KeyError, as Kopf's resolve() raises it
    if type(value) is not dict:
        return KOPF_GETITEM(self, item)
    return value[item]


def get(self: dicts.MappingView[Any, Any], item: Any, default: Any = None) -> Any:
    """``view.get(item, default)``: ``Mapping.get`` (``self[item]``, ``default`` on a KeyError)."""
    try:
        return getitem(self, item)
    except KeyError:
        return default


def install() -> None:
    """Use :func:`getitem` and :func:`get` for Kopf's views (installing twice is harmless)."""
    dicts.MappingView.__getitem__ = getitem  # type: ignore[method-assign]
    dicts.MappingView.get = get  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    """Restore Kopf's own methods."""
    dicts.MappingView.__getitem__ = KOPF_GETITEM  # type: ignore[method-assign]
    dicts.MappingView.get = KOPF_GET  # type: ignore[method-assign]


__all__ = ["KOPF_GET", "KOPF_GETITEM", "get", "getitem", "install", "uninstall"]
