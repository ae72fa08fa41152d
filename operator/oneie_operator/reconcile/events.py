"""What a reconcile wants said about it: Kubernetes Events as plain data (the handlers post them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class EventNote:
    """One Kubernetes Event: ``reason`` is a stable CamelCase word, ``message`` is safe to show."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
