"""Readable tables of our resources, for ``kubectl oneie`` and the demo."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def condition_of(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def render_connections(items: Sequence[Mapping[str, Any]]) -> str:
    rows = [["NAMESPACE", "NAME", "PROVIDER", "READY", "REASON", "HEALTH", "KEY", "MESSAGE"]]
    for obj in items:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        ready = condition_of(obj, "Ready")
        rows.append(
            [
                str(meta.get("namespace", "")),
                str(meta.get("name", "")),
                str(spec.get("provider", "")),
                str(ready.get("status", "Unknown")),
                str(ready.get("reason", "")),
                str((status.get("health") or {}).get("status", "unknown")),
                str((status.get("credentials") or {}).get("keyId", "")),
                str(ready.get("message", ""))[:80],
            ]
        )
    return _table(rows)


def render_organizations(items: Sequence[Mapping[str, Any]]) -> str:
    rows = [["NAMESPACE", "NAME", "PROVIDER", "ACTIVE", "PREVIOUS", "READY", "REASON"]]
    for obj in items:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        ready = condition_of(obj, "Ready")
        rows.append(
            [
                str(meta.get("namespace", "")),
                str(meta.get("name", "")),
                str(status.get("provider", "")),
                str(status.get("activeConnection", "")),
                str(status.get("previousConnection", "")),
                str(ready.get("status", "Unknown")),
                str(ready.get("reason", "")),
            ]
        )
    return _table(rows)
