"""Readable tables (and their structured twins) of our resources, for ``kubectl oneie`` and the demo.

Everything here is a pure function of the objects as the API returns them (plain mappings):
``*_summary`` picks the fields a person looks at first (the same fields ``-o json`` prints),
``render_*`` lays them out as kubectl-like tables, ``describe_*`` as a detail view. Nothing
here ever shows credential material: connections only carry key ids and field names.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

NONE = "-"


def condition_of(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def table(header: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "", *,
          wrap_last: int | None = None) -> str:
    """A kubectl-like table: upper-case header, columns padded, empty cells shown as ``-``.

    With ``wrap_last``, a last cell longer than that many characters is wrapped (at spaces) onto
    continuation lines under its own column, so nothing is cut off.
    """
    cells = [[str(h) for h in header]]
    for row in rows:
        row_cells = [_cell(v) for v in row]
        if wrap_last is None or len(row_cells[-1]) <= wrap_last:
            cells.append(row_cells)
            continue
        pieces = textwrap.wrap(row_cells[-1], wrap_last, break_long_words=True, break_on_hyphens=False) or [""]
        cells.append([*row_cells[:-1], pieces[0]])
        cells.extend([*([""] * (len(row_cells) - 1)), piece] for piece in pieces[1:])
    return "\n".join(indent + line for line in _table(cells).splitlines())


def _cell(value: object) -> str:
    if value is None or value == "" or value == []:
        return NONE
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def is_ready(obj: Mapping[str, Any]) -> bool:
    return condition_of(obj, "Ready").get("status") == "True"


def not_ready_summary(orgs: Sequence[Mapping[str, Any]], conns: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a status listing is not all Ready, as one sentence per kind (``None`` when all are):
    ``2 connections not Ready: tenant-a/broken (CredentialsRejected), tenant-b/x (Reconciling)``."""
    parts = []
    for noun, items in (("organization", orgs), ("connection", conns)):
        bad = [obj for obj in items if not is_ready(obj)]
        if not bad:
            continue
        names = ", ".join(
            f"{_meta(obj).get('namespace', '')}/{_meta(obj).get('name', '')} "
            f"({condition_of(obj, 'Ready').get('reason') or 'no Ready condition yet'})"
            for obj in bad
        )
        parts.append(f"{len(bad)} {noun}{'' if len(bad) == 1 else 's'} not Ready: {names}")
    return "; ".join(parts) or None


# -- BackendConnection --------------------------------------------------------------------------


def connection_summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a BackendConnection a person (or a script) looks at first."""
    meta, spec, status = _meta(obj), obj.get("spec") or {}, _status(obj)
    ready = condition_of(obj, "Ready")
    health = status.get("health") or {}
    creds = status.get("credentials") or {}
    return {
        "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")),
        "provider": str(spec.get("provider") or status.get("provider") or ""),
        "ready": str(ready.get("status", "Unknown")),
        "reason": str(ready.get("reason", "")),
        "message": str(ready.get("message", "")),
        "health": str(health.get("status") or "unknown"),
        "responseTimeMilliseconds": health.get("responseTimeMilliseconds"),
        "lastProbeTime": health.get("lastProbeTime"),
        "keyId": str(creds.get("keyId") or ""),
        "keyIds": list(creds.get("keyIds") or ([creds["keyId"]] if creds.get("keyId") else [])),
        "usedBy": list(status.get("usedBy") or []),
    }


def render_connections(items: Sequence[Mapping[str, Any]], *, namespace_column: bool = True) -> str:
    rows = []
    for obj in items:
        s = connection_summary(obj)
        row = [s["name"], s["provider"], s["ready"], s["reason"], s["health"], s["keyId"], s["usedBy"],
               s["message"]]
        rows.append([s["namespace"], *row] if namespace_column else row)
    header = ["NAME", "PROVIDER", "READY", "REASON", "HEALTH", "KEY-ID", "USED-BY", "MESSAGE"]
    return table(["NAMESPACE", *header] if namespace_column else header, rows, wrap_last=60)


def describe_connection(obj: Mapping[str, Any]) -> str:
    s = connection_summary(obj)
    status = _status(obj)
    health = status.get("health") or {}
    creds = status.get("credentials") or {}
    lines = [
        f"BackendConnection {s['namespace']}/{s['name']}",
        *_fields(
            [
                ("Provider", s["provider"]),
                ("Ready", f"{s['ready']} ({s['reason']})" if s["reason"] else s["ready"]),
                ("Message", s["message"]),
                ("Capabilities", status.get("capabilities")),
                ("Used by", s["usedBy"]),
            ]
        ),
        "Health:",
        *_fields(
            [
                ("Status", s["health"]),
                ("Response time", _ms(health.get("responseTimeMilliseconds"))),
                ("Error rate", health.get("errorRate")),
                ("Consecutive failures", health.get("consecutiveFailures")),
                ("Last probe", health.get("lastProbeTime")),
                ("Last error", health.get("lastError")),
            ],
            indent="  ",
        ),
        "Credentials (encrypted; never shown):",
        *_fields(
            [
                ("Secret", creds.get("secretName")),
                ("Key id", creds.get("keyId")),
                ("Key ids in use", creds.get("keyIds")),
                ("Fields", creds.get("fields")),
                ("Source Secret", creds.get("sourceSecretName")),
                ("Encrypted at", creds.get("encryptedAt")),
            ],
            indent="  ",
        ),
        "Conditions:",
        render_conditions(obj, indent="  "),
    ]
    return "\n".join(lines)


# -- Organization -------------------------------------------------------------------------------


def organization_summary(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an Organization a person (or a script) looks at first."""
    meta, spec, status = _meta(obj), obj.get("spec") or {}, _status(obj)
    ready, healthy = condition_of(obj, "Ready"), condition_of(obj, "Healthy")
    last = status.get("lastSwitch") or {}
    switching = status.get("switching") or {}
    return {
        "namespace": str(meta.get("namespace", "")),
        "name": str(meta.get("name", "")),
        "provider": str(status.get("provider") or ""),
        "desiredConnection": str(((spec.get("backend") or {}).get("connectionRef") or {}).get("name") or ""),
        "activeConnection": str(status.get("activeConnection") or ""),
        "previousConnection": str(status.get("previousConnection") or ""),
        "ready": str(ready.get("status", "Unknown")),
        "reason": str(ready.get("reason", "")),
        "message": str(ready.get("message", "")),
        "healthy": str(healthy.get("status", "Unknown")),
        "healthReason": str(healthy.get("reason", "")),
        "switching": dict(switching) if switching else None,
        "lastSwitch": {
            "from": last.get("from", ""),
            "to": last.get("to", ""),
            "result": last.get("result", ""),
            "totalMilliseconds": last.get("totalMilliseconds"),
            "reason": last.get("reason", ""),
            "message": last.get("message", ""),
            "finishedAt": last.get("finishedAt", ""),
        }
        if last
        else None,
    }


def render_organizations(items: Sequence[Mapping[str, Any]], *, namespace_column: bool = True) -> str:
    rows = []
    for obj in items:
        s = organization_summary(obj)
        last = s["lastSwitch"] or {}
        result = last.get("result", "")
        if s["switching"]:
            result = f"Switching:{s['switching'].get('step', '')}"
        row = [s["name"], s["provider"], s["activeConnection"], s["previousConnection"], s["ready"], s["healthy"],
               result, _ms(last.get("totalMilliseconds"), unit=False), s["reason"]]
        rows.append([s["namespace"], *row] if namespace_column else row)
    header = ["NAME", "PROVIDER", "ACTIVE", "PREVIOUS", "READY", "HEALTHY", "LAST-SWITCH", "TOTAL-MS", "REASON"]
    return table(["NAMESPACE", *header] if namespace_column else header, rows)


def render_steps(steps: Sequence[Mapping[str, Any]], indent: str = "  ") -> str:
    """The timed steps of one switch: name, result, milliseconds."""
    rows = [[s.get("name", ""), s.get("result", ""), _ms(s.get("milliseconds"), unit=False)] for s in steps]
    return table(["STEP", "RESULT", "MS"], rows, indent=indent)


def describe_switch(last: Mapping[str, Any], indent: str = "  ") -> str:
    """One switch: from → to, result, total, reason and message, then its steps."""
    lines = [
        f"{last.get('from') or '(nothing)'} → {last.get('to') or '?'}: {last.get('result') or '?'} in "
        f"{_ms(last.get('totalMilliseconds'))}" + (f" ({last['reason']})" if last.get("reason") else ""),
    ]
    if last.get("message"):
        lines.append(f"{indent}{last['message']}")
    if last.get("steps"):
        lines.append(render_steps(last["steps"], indent=indent))
    return "\n".join(lines)


def describe_organization(obj: Mapping[str, Any]) -> str:
    s = organization_summary(obj)
    status = _status(obj)
    switching = s["switching"]
    lines = [
        f"Organization {s['namespace']}/{s['name']}",
        *_fields(
            [
                ("Provider", s["provider"]),
                ("Desired", s["desiredConnection"] or "(platform default)"),
                ("Active", s["activeConnection"]),
                ("Previous", s["previousConnection"]),
                ("Ready", f"{s['ready']} ({s['reason']})" if s["reason"] else s["ready"]),
                ("Message", s["message"]),
                ("Healthy", f"{s['healthy']} ({s['healthReason']})" if s["healthReason"] else s["healthy"]),
                ("Binding", (status.get("binding") or {}).get("name")),
                ("Switched at", status.get("switchedAt")),
                ("Switching", f"to {switching.get('to')}, step {switching.get('step')}" if switching else None),
            ]
        ),
        "Conditions:",
        render_conditions(obj, indent="  "),
    ]
    last = status.get("lastSwitch")
    if last:
        lines += ["Last switch:", "  " + describe_switch(last, indent="    ")]
    history = list(status.get("history") or [])
    if history:
        rows = [
            [h.get("finishedAt", ""), h.get("from", ""), h.get("to", ""), h.get("result", ""),
             _ms(h.get("totalMilliseconds"), unit=False), h.get("reason", "")]
            for h in history
        ]
        lines += ["History (newest first):",
                  table(["FINISHED", "FROM", "TO", "RESULT", "TOTAL-MS", "REASON"], rows, indent="  ", wrap_last=60)]
    return "\n".join(lines)


# -- shared -------------------------------------------------------------------------------------


def render_conditions(obj: Mapping[str, Any], indent: str = "") -> str:
    conds = _status(obj).get("conditions") or []
    if not conds:
        return f"{indent}(none yet)"
    rows = [[c.get("type", ""), c.get("status", ""), c.get("reason", ""), str(c.get("message", ""))]
            for c in conds]
    return table(["TYPE", "STATUS", "REASON", "MESSAGE"], rows, indent=indent, wrap_last=90)


def _fields(pairs: Sequence[tuple[str, object]], indent: str = "  ") -> list[str]:
    width = max(len(label) for label, _ in pairs) + 1
    return [f"{indent}{(label + ':').ljust(width)} {_cell(value)}" for label, value in pairs]


def _ms(value: object, *, unit: bool = True) -> str:
    if value is None or value == "":
        return NONE
    try:
        number = float(str(value))
    except ValueError:
        return str(value)
    text = f"{number:.1f}" if number < 100 else f"{number:.0f}"
    return f"{text} ms" if unit else text
