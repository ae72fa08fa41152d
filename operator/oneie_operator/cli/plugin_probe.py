"""``kubectl oneie probe CONN [--wait]``: ask the operator for an immediate health probe.

Sets the annotation ``one.ie/probe`` to a new timestamp; the operator's probe engine probes the
connection at once. ``--wait`` waits until ``status.health.lastProbeTime`` changes and prints the
new health (exit 0; 1 when the connection is offline), or gives up after ``--timeout`` (exit 3).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from oneie_operator.cli.plugin_common import ExitCode, emit, notice, now_stamp, say
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.cli.plugin_wait import wait_for
from oneie_operator.names import CONNECTION_KIND, CONNECTIONS, PROBE_ANNOTATION, qualified

DEFAULT_TIMEOUT = 60.0


def _health(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict((obj.get("status") or {}).get("health") or {})


def cmd_probe(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.require(CONNECTIONS, args.name)
    before = _health(obj).get("lastProbeTime")
    stamp = now_stamp()
    patched = cluster.patch(CONNECTIONS, args.name, {"metadata": {"annotations": {PROBE_ANNOTATION: stamp}}},
                            dry_run=args.dry_run)
    request = {"namespace": cluster.namespace, "connection": args.name, "annotations": {PROBE_ANNOTATION: stamp}}
    if args.dry_run:
        notice(args, {"kind": "DryRun", **request},
               f"would set annotation {PROBE_ANNOTATION}={stamp} on backendconnection {cluster.namespace}/{args.name}")
        return ExitCode.OK
    if not args.wait:
        notice(args, {"kind": "ProbeRequested", **request},
               f"{qualified(CONNECTION_KIND, args.name)} probe requested ({PROBE_ANNOTATION}={stamp})")
        return ExitCode.OK

    def probed(version: dict[str, Any]) -> dict[str, Any] | None:
        health = _health(version)
        return health if health.get("lastProbeTime") and health.get("lastProbeTime") != before else None

    timeout = DEFAULT_TIMEOUT if args.timeout is None else float(args.timeout)
    health = wait_for(cluster, CONNECTIONS, args.name, probed, timeout=timeout, start=patched,
                      what=f"a probe of {cluster.namespace}/{args.name} (status.health.lastProbeTime to change)")
    if args.output != "table":
        emit({"kind": "ProbeResult", "namespace": cluster.namespace, "connection": args.name, "health": health},
             args.output)
    else:
        shown = ", ".join(f"{k} {v}" for k, v in health.items())
        say(f"{qualified(CONNECTION_KIND, args.name)} probed: {shown}")
    return ExitCode.NOT_OK if health.get("status") == "offline" else ExitCode.OK
