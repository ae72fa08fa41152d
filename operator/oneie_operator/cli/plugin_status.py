"""``kubectl oneie status [NAME]``: organizations and connections as tables, or one in detail."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from oneie_operator.cli.plugin_common import ExitCode, PluginError, emit, say
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.kube.tables import (
    connection_summary,
    describe_connection,
    describe_organization,
    is_ready,
    not_ready_summary,
    organization_summary,
    render_connections,
    render_organizations,
)
from oneie_operator.names import CONNECTIONS, ORGANIZATIONS

#: ``kind/name`` prefixes accepted like kubectl's (``org/acme``, ``bconn/main``).
PREFIXES = {
    "org": ORGANIZATIONS, "orgs": ORGANIZATIONS, "organization": ORGANIZATIONS, "organizations": ORGANIZATIONS,
    "bc": CONNECTIONS, "bconn": CONNECTIONS, "backendconnection": CONNECTIONS, "backendconnections": CONNECTIONS,
}


def cmd_status(args: argparse.Namespace, cluster: Cluster) -> int:
    if args.name:
        return _status_of(args, cluster, args.name)
    orgs = cluster.list(ORGANIZATIONS, args.all_namespaces)
    conns = cluster.list(CONNECTIONS, args.all_namespaces)
    code = ExitCode.OK if all(is_ready(o) for o in orgs + conns) else ExitCode.NOT_OK
    if args.output != "table":
        emit({"kind": "OneieStatus", "ready": code == ExitCode.OK,
              "organizations": [organization_summary(o) for o in orgs],
              "connections": [connection_summary(c) for c in conns]}, args.output)
        return code
    where = "all namespaces" if args.all_namespaces else f"namespace {cluster.namespace}"
    say("Organizations:")
    say(render_organizations(orgs, namespace_column=args.all_namespaces) if orgs else f"  (none in {where})")
    say("\nBackendConnections:")
    say(render_connections(conns, namespace_column=args.all_namespaces) if conns else f"  (none in {where})")
    _explain(orgs, conns)
    return code


def _explain(orgs: list[dict[str, Any]], conns: list[dict[str, Any]]) -> None:
    """Say on stderr why the exit code is not 0 (scripts read the code, people the sentence)."""
    why = not_ready_summary(orgs, conns)
    if why:
        say(f"\nexit {int(ExitCode.NOT_OK)}: {why}", sys.stderr)


def _status_of(args: argparse.Namespace, cluster: Cluster, name: str) -> int:
    if args.all_namespaces:
        raise PluginError("a NAME cannot be combined with -A (use -n NAMESPACE)")
    plurals = [ORGANIZATIONS, CONNECTIONS]
    if "/" in name:
        prefix, name = name.split("/", 1)
        if prefix.lower().split(".")[0] not in PREFIXES:
            raise PluginError(f"unknown kind {prefix!r}: use org/NAME or bconn/NAME")
        plurals = [PREFIXES[prefix.lower().split(".")[0]]]
    found: list[tuple[str, dict[str, Any]]] = []
    for plural in plurals:
        obj = cluster.get(plural, name)
        if obj is not None:
            found.append((plural, obj))
    if not found:
        kinds = " or ".join("Organization" if p == ORGANIZATIONS else "BackendConnection" for p in plurals)
        raise PluginError(f'no {kinds} named "{name}" in namespace "{cluster.namespace}"')
    code = ExitCode.OK if all(is_ready(obj) for _, obj in found) else ExitCode.NOT_OK
    if args.output != "table":
        docs = [_detail_document(plural, obj) for plural, obj in found]
        emit(docs[0] if len(docs) == 1 else {"kind": "List", "items": docs}, args.output)
        return code
    for index, (plural, obj) in enumerate(found):
        if index:
            say()
        say(describe_organization(obj) if plural == ORGANIZATIONS else describe_connection(obj))
    _explain([o for p, o in found if p == ORGANIZATIONS], [o for p, o in found if p == CONNECTIONS])
    return code


def _detail_document(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    status = obj.get("status") or {}
    if plural == ORGANIZATIONS:
        doc = {"kind": "Organization", **organization_summary(obj)}
        # ``attempt`` is the operator's own bookkeeping (which change a failed switch was tried
        # for, so it is not retried until something changes): not for people.
        last = status.get("lastSwitch")
        doc["lastSwitch"] = {k: v for k, v in last.items() if k != "attempt"} if last else last
        doc["history"] = list(status.get("history") or [])
    else:
        doc = {"kind": "BackendConnection", **connection_summary(obj), "healthDetails": status.get("health") or {}}
    doc["conditions"] = list(status.get("conditions") or [])
    return doc
