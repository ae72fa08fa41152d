"""What the lean paths (``watching``, ``changing``) ask of a handler before awaiting it directly."""

from __future__ import annotations

from typing import Any


def marked_without_options(handler: Any, attribute: str) -> bool:
    """Whether Kopf's ``handler`` wraps a function marked with ``attribute`` and sets none of Kopf's
    execution options (errors, timeout, retries, backoff), which only Kopf's own path honours."""
    return bool(
        getattr(handler.fn, attribute, False)
        and handler.errors is None
        and handler.timeout is None
        and handler.retries is None
        and handler.backoff is None
    )


__all__ = ["marked_without_options"]
