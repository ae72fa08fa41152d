"""Status conditions as the Kubernetes API conventions and kstatus want them.

A condition is ``{type, status, reason, message, lastTransitionTime, observedGeneration}``;
``lastTransitionTime`` changes only when ``status`` does. kstatus (Flux) and Argo CD read
``Ready`` plus the abnormal-true ``Reconciling`` and ``Stalled`` conditions.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes writes it (second precision, ``Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str = ""


def merge_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    *,
    generation: int | None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return the new list of conditions: ``updates`` applied over ``current``.

    Conditions not mentioned in ``updates`` are kept as they are. The order is stable
    (existing first, new ones appended) so unchanged statuses compare equal.
    """
    stamp = now or now_rfc3339()
    result: list[dict[str, Any]] = [dict(c) for c in (current or [])]
    index = {c.get("type"): i for i, c in enumerate(result)}
    for cond in updates:
        old = result[index[cond.type]] if cond.type in index else None
        transition = stamp if old is None or old.get("status") != cond.status else old.get("lastTransitionTime", stamp)
        new = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message[:1024],
            "lastTransitionTime": transition,
        }
        if generation is not None:
            new["observedGeneration"] = generation
        if old is None:
            index[cond.type] = len(result)
            result.append(new)
        else:
            result[index[cond.type]] = new
    return result


def get_condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def is_true(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return cond is not None and cond.get("status") == "True"


def ready(reason: str, message: str) -> list[Condition]:
    """The set for a resource that reached its desired state."""
    return [
        Condition("Ready", "True", reason, message),
        Condition("Reconciling", "False", reason, ""),
        Condition("Stalled", "False", reason, ""),
    ]


def stalled(reason: str, message: str) -> list[Condition]:
    """The set for a failure that needs a change (spec, Secret) before it can succeed."""
    return [
        Condition("Ready", "False", reason, message),
        Condition("Reconciling", "False", reason, ""),
        Condition("Stalled", "True", reason, message),
    ]


def retrying(reason: str, message: str) -> list[Condition]:
    """The set for a transient failure that the operator retries by itself."""
    return [
        Condition("Ready", "False", reason, message),
        Condition("Reconciling", "True", reason, message),
        Condition("Stalled", "False", reason, ""),
    ]


def progressing(reason: str, message: str) -> list[Condition]:
    """The set while work is under way (kstatus: InProgress)."""
    return [
        Condition("Ready", "Unknown", reason, message),
        Condition("Reconciling", "True", reason, message),
        Condition("Stalled", "False", reason, ""),
    ]


def healthy(state: str, subject: str, detail: str = "") -> Condition:
    """``Healthy`` from a health state: True only while online; degraded and offline are False."""
    suffix = f" ({detail})" if detail else ""
    if state == "online":
        return Condition("Healthy", "True", "Online", f"{subject} is online")
    if state == "degraded":
        return Condition("Healthy", "False", "Degraded", f"{subject} is degraded{suffix}")
    if state == "offline":
        return Condition("Healthy", "False", "Offline", f"{subject} is offline{suffix}")
    return Condition("Healthy", "Unknown", "NotProbed", f"{subject} has not been probed yet")
