"""The diff-base essence of Organizations and BackendConnections, built without copying the status.

Changes: :class:`kopf.StatusDiffBaseStorage.build` (public class, overridden method), which Kopf
calls for every watch event to find what changed. It relies on Kopf's ``build`` deriving the
essence from the spec, labels and annotations only (never the status), so handing it a body
without the status gives the same essence. Checked against Kopf 1.45.2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf


class LeanStatusDiffBaseStorage(kopf.StatusDiffBaseStorage):
    """Kopf's status diff-base storage, with the same essence built without copying the status.

    Kopf builds the essence (spec, labels, annotations) of every watch event by deep-copying the
    whole object and then deleting what it does not track. An Organization's status (switch
    history, conditions, Kopf's own bookkeeping) is most of the object, so the copy grew with the
    history (``benchmarks/switch.py``). Only the tracked parts are handed to Kopf's own builder
    here; with extra fields (field handlers, which we do not use) Kopf's full path is kept.
    ``metadata.generation`` is part of the essence (see :meth:`build`).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if extra_fields:
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        lean: dict[str, Any] = {k: v for k, v in body.items() if k not in ("status", "metadata")}
        # The generation too: a spec changed and changed back (A → B → A) while a handler of it
        # waited for its retry (the API server away) must still differ from the last handled
        # one, or Kopf finds no change, drops the retry, and status stays stale (tests/e2e/test_api_faults.py).
        lean["metadata"] = {k: meta[k] for k in ("labels", "annotations", "generation") if k in meta}
        return super().build(body=cast(kopf.Body, lean))


__all__ = ["LeanStatusDiffBaseStorage"]
