"""Kopf's copies of an object's essence made by a copier for JSON data, not ``copy.deepcopy``.

Changes: the ``copy`` module as seen by ``kopf._cogs.configs.diffbase`` and
``kopf._cogs.configs.progress`` (the module attribute replaced by a stand-in whose ``deepcopy`` is
:func:`json_deepcopy`). Checked against Kopf 1.45.2.

On every watch event of an Organization or a BackendConnection, Kopf builds the object's essence
(``DiffBaseStorage.build``: a deep copy of the body's spec and metadata, then of its labels and
annotations) and clears its own bookkeeping from the old and the new essence
(``ProgressStorage.clear``: a deep copy each). ``copy.deepcopy`` is general (a memo of every object,
dispatch per type) and was ~8 % of the operator's CPU time in the switch phase of
``benchmarks/switch.py`` (cProfile with ``time.process_time``). What it copies there is JSON data
as the API server sent it (dicts, lists, strings, numbers, booleans, None): :func:`json_deepcopy`
copies exactly those, several times faster, and hands anything else to ``copy.deepcopy``. The
result is equal to ``copy.deepcopy``'s; only aliasing inside the copied value is not kept (JSON
data has none).
"""

from __future__ import annotations

import copy
import types
from typing import Any

from kopf._cogs.configs import diffbase, progress

_ATOMS = (str, int, float, bool, type(None))
#: The modules whose ``copy`` is replaced.
MODULES = (diffbase, progress)


def json_deepcopy(value: Any, memo: Any = None) -> Any:
    """A deep copy of JSON data (dicts with string keys, lists, atoms); anything else: ``copy.deepcopy``."""
    kind = type(value)
    if kind is dict:
        return {key: json_deepcopy(item) for key, item in value.items()}
    if kind is list:
        return [json_deepcopy(item) for item in value]
    if kind in _ATOMS:
        return value
    return copy.deepcopy(value)


#: What the patched modules see as ``copy``.
STAND_IN = types.SimpleNamespace(deepcopy=json_deepcopy, copy=copy.copy)


def install() -> None:
    """Use :func:`json_deepcopy` in Kopf's essence building (installing twice is harmless)."""
    for module in MODULES:
        module.copy = STAND_IN  # type: ignore[attr-defined]


def uninstall() -> None:
    """Give those modules the ``copy`` module back."""
    for module in MODULES:
        module.copy = copy  # type: ignore[attr-defined]


__all__ = ["MODULES", "STAND_IN", "install", "json_deepcopy", "uninstall"]
