"""``kubectl oneie``: look at tenants' backends from the command line.

Commands: ``status [-n NS | -A]`` (connections and organizations with their conditions).
Exit codes: 0 every listed object is Ready; 1 some object is not Ready; 2 usage or API error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from oneie_operator.kube.tables import condition_of, render_connections, render_organizations

GROUP, VERSION = "one.ie", "v1alpha1"


def _list(api: Any, plural: str, namespace: str | None) -> list[dict[str, Any]]:
    if namespace is None:
        result = api.list_cluster_custom_object(GROUP, VERSION, plural)
    else:
        result = api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
    return list(result.get("items") or [])


def cmd_status(args: argparse.Namespace) -> int:
    import kubernetes.client

    from oneie_operator.kube.client import load_api_client

    api = kubernetes.client.CustomObjectsApi(load_api_client(args.kubeconfig))
    namespace = None if args.all_namespaces else (args.namespace or "default")
    connections = _list(api, "backendconnections", namespace)
    organizations = _list(api, "organizations", namespace)
    print("BackendConnections:")
    print(render_connections(connections) if connections else "  (none)")
    print("\nOrganizations:")
    print(render_organizations(organizations) if organizations else "  (none)")
    everything = connections + organizations
    return 0 if all(condition_of(o, "Ready").get("status") == "True" for o in everything) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kubectl oneie", description="Tenant backends managed by oneie-operator.")
    parser.add_argument("--kubeconfig", default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="connections and organizations with their conditions")
    status.add_argument("-n", "--namespace", default=None)
    status.add_argument("-A", "--all-namespaces", action="store_true")
    status.set_defaults(func=cmd_status)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:  # API/connection errors: a message, not a traceback
        print(f"kubectl oneie: {type(exc).__name__}: {str(exc)[:300]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
