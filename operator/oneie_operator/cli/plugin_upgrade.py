"""``kubectl oneie migrate-labels | uninstall-cleanup``: the upgrade and uninstall chores.

``migrate-labels`` opts in the credential Secrets that existing BackendConnections use (the
label ``one.ie/credentials: "true"``, required since the Secrets opt in; see CHANGELOG.md): only
``Opaque`` Secrets in the connection's own namespace that carry no ``one.ie/credentials`` label
yet (a Secret labelled otherwise said no, or is the operator's own: left as it is).

``uninstall-cleanup`` removes the operator's finalizer (``one.ie/finalizer``) from Organizations
and BackendConnections once the operator is gone, so they, their namespaces and the CRDs can be
deleted without getting stuck (docs/install.md, "Uninstall").

Both print one line per object and what they did (``--dry-run``: what they would do; the API
server checks the change, nothing is stored). Exit 0 when everything was done (or nothing was
needed), 1 when some referenced Secret had to be left unlabelled (the line says why).
"""

from __future__ import annotations

import argparse
from typing import Any

from oneie_operator.cli.plugin_common import ExitCode, say
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.names import CONNECTIONS, CREDENTIALS_LABEL, FINALIZER, KINDS, OPTED_IN, ORGANIZATIONS

SHORT = {ORGANIZATIONS: "organization", CONNECTIONS: "backendconnection"}


def cmd_migrate_labels(args: argparse.Namespace, cluster: Cluster) -> int:
    dry = "would label" if args.dry_run else "labelled"
    users: dict[tuple[str, str], list[str]] = {}  # (namespace, Secret) -> connections using it
    skipped = 0
    for conn in cluster.list(CONNECTIONS, all_namespaces=args.all_namespaces):
        meta, spec = conn["metadata"], conn.get("spec") or {}
        ref = spec.get("credentialsSecretRef") or {}
        name, namespace = str(ref.get("name") or ""), str(meta.get("namespace") or cluster.namespace)
        if not name:
            continue
        if ref.get("namespace") and ref["namespace"] != namespace:
            say(f"secret/{name} -n {ref['namespace']}: not labelled: backendconnection/{meta['name']} -n {namespace}"
                " names another namespace (refused by the operator; move the Secret into its namespace)")
            skipped += 1
            continue
        users.setdefault((namespace, name), []).append(meta["name"])
    for (namespace, name), conns in sorted(users.items()):
        used_by = ", ".join(f"backendconnection/{c}" for c in conns)
        where = f"secret/{name} -n {namespace}"
        secret = cluster.read_secret_metadata(namespace, name)
        if secret is None:
            say(f"{where}: not found (used by {used_by}): nothing to label")
            continue
        labels = secret["labels"]
        if labels.get(CREDENTIALS_LABEL) == OPTED_IN:
            say(f"{where}: already labelled {CREDENTIALS_LABEL}={OPTED_IN}")
            continue
        if secret["type"] != "Opaque":
            say(f"{where}: not labelled: type {secret['type']}, not Opaque (used by {used_by}); the operator never"
                " reads it: put the credentials in an Opaque Secret")
            skipped += 1
            continue
        if CREDENTIALS_LABEL in labels:
            say(f"{where}: not labelled: it carries {CREDENTIALS_LABEL}={labels[CREDENTIALS_LABEL]} (used by"
                f" {used_by}); left as it is")
            skipped += 1
            continue
        cluster.label_secret(namespace, name, {CREDENTIALS_LABEL: OPTED_IN}, dry_run=args.dry_run)
        say(f"{where}: {dry} {CREDENTIALS_LABEL}={OPTED_IN} (used by {used_by})")
    return int(ExitCode.NOT_OK if skipped else ExitCode.OK)


def cmd_uninstall_cleanup(args: argparse.Namespace, cluster: Cluster) -> int:
    done = "would remove" if args.dry_run else "removed"
    count = 0
    for plural in (ORGANIZATIONS, CONNECTIONS):
        for obj in cluster.list(plural, all_namespaces=args.all_namespaces):
            meta: dict[str, Any] = obj["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if FINALIZER not in finalizers:
                continue
            body = {"metadata": {"resourceVersion": meta["resourceVersion"],
                                 "finalizers": [f for f in finalizers if f != FINALIZER]}}
            cluster.patch(plural, meta["name"], body, dry_run=args.dry_run, namespace=meta["namespace"])
            say(f"{SHORT[plural]}/{meta['name']} -n {meta['namespace']}: {done} finalizer {FINALIZER}")
            count += 1
    kinds = " and ".join(f"{KINDS[p]}s" for p in (ORGANIZATIONS, CONNECTIONS))
    say(f"{count} finalizer(s) {done}" if count else f"no {kinds} carry {FINALIZER}")
    return int(ExitCode.OK)
