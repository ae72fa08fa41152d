"""An empty Kopf patch turned into JSON-patch ops without deep-copying the object first.

Changes: ``kopf._cogs.structs.patches.Patch.as_json_patch`` (a method of a private class,
wrapped on the class). Checked against Kopf 1.45.2.

After every patch it applies, Kopf checks what is left of it (``patching.patch_obj``:
``remaining_patch.as_json_patch(fresh_body)``, where the remaining patch holds only callable
transformations, usually none). ``as_json_patch`` deep-copies the whole object it is given and
only then returns ``[]`` for an empty patch: for an Organization, whose status carries the switch
history, that copy was the largest single cost of a switch in Kopf (~10 % of the operator's CPU
time in the switch phase of ``benchmarks/switch.py``, cProfile with ``time.process_time``). The
wrapper returns ``[]`` at once for an empty patch (Kopf's own answer); any other patch goes to
Kopf's method unchanged.
"""

from __future__ import annotations

from typing import Any

from kopf._cogs.structs import patches

#: Kopf's own ``Patch.as_json_patch``.
KOPF_AS_JSON_PATCH = patches.Patch.as_json_patch


def as_json_patch(self: patches.Patch, body: Any = None) -> patches.JSONPatch:
    """Kopf's ``as_json_patch``, answering an empty patch (no changes, no transformations) at once."""
    if not self:
        return []
    return KOPF_AS_JSON_PATCH(self, body)


def install() -> None:
    """Use :func:`as_json_patch` (installing twice is harmless)."""
    patches.Patch.as_json_patch = as_json_patch  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore Kopf's own method."""
    patches.Patch.as_json_patch = KOPF_AS_JSON_PATCH  # type: ignore[method-assign]


__all__ = ["KOPF_AS_JSON_PATCH", "as_json_patch", "install", "uninstall"]
