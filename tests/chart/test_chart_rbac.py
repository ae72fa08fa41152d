"""RBAC rendered by the chart: the operator's least-privilege contract and the tenant roles.

OPERATOR_CONTRACT is the documented list of what the operator may do (the chart README repeats
it). The rendered (Cluster)Roles must grant exactly that set, and a scan of the operator's code
checks that every Kubernetes call it makes is covered, so a new call without a new rule fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from chart_support import (
    NAMESPACE,
    RELEASE,
    REPO,
    VALUES_ALL,
    Grant,
    expand,
    find,
    grants,
    load_yaml_documents,
    one,
    render,
)

ONE_IE = "one.ie"
KINDS = ["organizations", "backendconnections"]

#: What the operator does, and why (the contract; see templates/rbac-operator.yaml).
OPERATOR_CONTRACT: set[Grant] = (
    # Kopf lists and watches both kinds, patches them (finalizer, annotations); the operator reads
    # connections and annotates objects to re-trigger reconciles.
    expand([ONE_IE], KINDS, ["get", "list", "watch", "patch"])
    # Status written by Kopf and by the operator (switch progress, usedBy).
    | expand([ONE_IE], [f"{k}/status" for k in KINDS], ["patch"])
    # Owner references with blockOwnerDeletion on the Secrets it writes
    # (OwnerReferencesPermissionEnforcement needs update on the owner's finalizers).
    | expand([ONE_IE], [f"{k}/finalizers" for k in KINDS], ["update"])
    # Tenants' credential Secrets (read, watched for rotation) and its own encrypted and binding
    # Secrets (create, replace = update, delete).
    | expand([""], ["secrets"], ["get", "list", "watch", "create", "update", "patch", "delete"])
    # Events with stable reasons.
    | expand([""], ["events"], ["create"])
)
#: The admission webhook asks whether a connection's author may read its Secret (cluster-scoped).
ACCESS_REVIEWS = expand(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])
#: With 2+ replicas (Kopf peering).
PEERING_CLUSTER = expand(["kopf.dev"], ["clusterkopfpeerings"], ["get", "list", "watch", "patch"])
PEERING_NAMESPACED = expand(["kopf.dev"], ["kopfpeerings"], ["get", "list", "watch", "patch"])
#: With watch.namespaces (Kopf matches the list against the cluster's namespaces).
NAMESPACES = expand([""], ["namespaces"], ["list", "watch"])

ALL_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
READ = ["get", "list", "watch"]


def operator_subject(doc: dict[str, Any]) -> bool:
    return {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE} in doc.get("subjects", [])


def operator_grants(docs: list[dict[str, Any]]) -> dict[str | None, set[Grant]]:
    """Grants of the operator's ServiceAccount, by namespace (None = cluster-wide)."""
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    out: dict[str | None, set[Grant]] = {}
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding") or not operator_subject(binding):
            continue
        if binding["roleRef"]["name"] == f"{RELEASE}-provider-catalog":
            continue  # named ConfigMap grants: test_provider_catalog_roles
        namespace = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        out.setdefault(namespace, set()).update(grants(role["rules"]))
    return out


def cluster_role(docs: list[dict[str, Any]], suffix: str) -> dict[str, Any]:
    return one(docs, "ClusterRole", f"{RELEASE}-{suffix}")


# --- the operator --------------------------------------------------------------------------


def test_operator_cluster_wide_grants_exactly_the_contract() -> None:
    assert operator_grants(render()) == {None: OPERATOR_CONTRACT | ACCESS_REVIEWS}


def test_provider_catalog_roles() -> None:
    """The operator may create the catalog ConfigMap and get and patch only that one (it compares before
    writing: a restart writes nothing), in its own namespace;
    every authenticated user may get only that one (names and descriptions of Secret keys)."""
    for docs in (render(), render(sets={"watch.namespaces": "{tenant-acme}"})):
        writer = one(docs, "Role", f"{RELEASE}-provider-catalog")
        assert writer["metadata"]["namespace"] == "oneie-system"
        assert writer["rules"] == [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["oneie-providers"],
             "verbs": ["get", "patch"]},
        ]
        assert operator_subject(one(docs, "RoleBinding", f"{RELEASE}-provider-catalog"))
        reader = one(docs, "Role", f"{RELEASE}-provider-catalog-readers")
        assert reader["rules"] == [{"apiGroups": [""], "resources": ["configmaps"],
                                    "resourceNames": ["oneie-providers"], "verbs": ["get"]}]
        binding = one(docs, "RoleBinding", f"{RELEASE}-provider-catalog-readers")
        assert binding["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                        "name": "system:authenticated"}]


def test_operator_cluster_wide_with_peering() -> None:
    expected = OPERATOR_CONTRACT | ACCESS_REVIEWS | PEERING_CLUSTER
    assert operator_grants(render(values_files=[VALUES_ALL])) == {None: expected}


@pytest.mark.parametrize("replicas", ["1", "2"])
def test_operator_per_namespace_grants_exactly_the_contract(replicas: str) -> None:
    docs = render(
        sets={"watch.namespaces": "{tenant-acme,tenant-globex}", "replicas": replicas, "peering.crds.install": "true"}
    )
    peering = PEERING_NAMESPACED if replicas == "2" else set()
    assert operator_grants(docs) == {
        None: NAMESPACES | ACCESS_REVIEWS,
        "tenant-acme": OPERATOR_CONTRACT | peering,
        "tenant-globex": OPERATOR_CONTRACT | peering,
    }
    assert not [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == RELEASE]


def test_no_wildcards_anywhere() -> None:
    for doc in render(values_files=[VALUES_ALL]):
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), f"{doc['metadata']['name']}: wildcard in {field}"


def test_rbac_can_be_left_out() -> None:
    docs = render(sets={"rbac.create": "false", "rbac.tenantRoles.create": "false"})
    assert not [d for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]


# What the operator's code calls. Client method -> (resource of the contract, verb).
CLIENT_VERBS = {
    "read": "get",
    "list": "list",
    "create": "create",
    "replace": "update",
    "patch": "patch",
    "delete": "delete",
    "get": "get",
}
#: Code that runs with the user's credentials (the kubectl plug-in: everything in cli/ but the
#: operator's entry point main.py) or only in tests and the demo, never as the operator.
NOT_OPERATOR = ("testing/", "demo/", "cli/")
OPERATOR_CLI = "cli/main.py"


def operator_sources() -> Iterable[tuple[Path, str]]:
    root = REPO / "operator" / "oneie_operator"
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative == OPERATOR_CLI or not relative.startswith(NOT_OPERATOR):
            yield path, path.read_text(encoding="utf-8")


def test_every_kubernetes_call_of_the_operator_is_in_the_contract() -> None:
    used: set[Grant] = set()
    for path, text in operator_sources():
        # kubernetes client: CoreV1Api.read_namespaced_secret, CustomObjectsApi.patch_..._status, ...
        for action, kind, status in re.findall(r"\.(\w+?)_namespaced_(secret|event|custom_object)(_status)?\b", text):
            verb = CLIENT_VERBS[action]
            if kind == "custom_object":
                used |= {(ONE_IE, f"{k}/status" if status else k, verb) for k in KINDS}
            else:
                used.add(("", f"{kind}s", verb))
        # Kopf handlers and indexes: list + watch the resource, patch it (not for watch-only events).
        for decorator, group in re.findall(r"@kopf\.(on\.\w+|index)\((GROUP|\"\")", text):
            resources = ["secrets"] if group == '""' else KINDS
            api_group = "" if group == '""' else ONE_IE
            verbs = ["list", "watch"] + (["patch"] if decorator not in ("on.event", "index") else [])
            used |= expand([api_group], resources, verbs)
        if ".create_subject_access_review(" in text:
            used |= ACCESS_REVIEWS
        if ".list_namespaces(" in text:  # globs in WATCH_NAMESPACES (granted with watch.namespaces only)
            used |= NAMESPACES
        if "kopf.event(" in text or ('"POST"' in text and re.search(r'"/api/v1/namespaces/\{[^}]*\}/events"', text)):
            used.add(("", "events", "create"))  # Kopf's Events, or ours (kube/events.py), as Kopf posts them
        assert "CoordinationV1Api" not in text and "AppsV1Api" not in text, f"{path}: new API, extend the contract"
    assert used, "the scan found nothing: the patterns are out of date"
    contract = OPERATOR_CONTRACT | ACCESS_REVIEWS | NAMESPACES
    assert used <= contract, f"calls without a rule: {sorted(used - contract)}"
    # And the contract carries nothing the code does not use, except what Kopf/the API server need
    # without a call in our code: Kopf patches status through the subresource; owner references
    # need finalizers/update.
    implicit = expand([ONE_IE], [f"{k}/finalizers" for k in KINDS], ["update"]) | expand([ONE_IE], KINDS, ["get"])
    assert ACCESS_REVIEWS <= used, "the webhook's SubjectAccessReview is no longer called: drop its rule"
    assert OPERATOR_CONTRACT - used <= implicit | expand([ONE_IE], [f"{k}/status" for k in KINDS], ["patch"])


# --- tenant roles --------------------------------------------------------------------------


def test_platform_owner() -> None:
    docs = render(values_files=[VALUES_ALL])
    role = cluster_role(docs, "platform-owner")
    assert grants(role["rules"]) == (
        expand([ONE_IE], KINDS, ALL_VERBS) | expand(["", "events.k8s.io"], ["events"], READ)
    )
    binding = one(docs, "ClusterRoleBinding", f"{RELEASE}-platform-owner")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert {(s["kind"], s["name"]) for s in binding["subjects"]} == {
        ("Group", "platform-owners"),
        ("User", "alice@example.com"),
    }
    assert not find(render(), "ClusterRoleBinding", f"{RELEASE}-platform-owner"), "bound only when asked"


def test_org_owner_manages_its_resources_and_secrets() -> None:
    role = cluster_role(render(), "org-owner")
    assert grants(role["rules"]) == (
        expand([ONE_IE], KINDS, ALL_VERBS)
        | expand([""], ["secrets"], ["get", "list", "watch", "create", "update", "patch", "delete"])
        | expand(["", "events.k8s.io"], ["events"], READ)
    )
    assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in role["metadata"]["labels"])


def test_org_user_reads_and_never_sees_secrets() -> None:
    role = cluster_role(render(), "org-user")
    assert grants(role["rules"]) == expand([ONE_IE], KINDS, READ)
    assert not any(g[1] == "secrets" or g[1].startswith("secrets/") for g in grants(role["rules"]))


def aggregated(docs: list[dict[str, Any]], to: str) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] == "ClusterRole"
        and d["metadata"].get("labels", {}).get(f"rbac.authorization.k8s.io/aggregate-to-{to}") == "true"
    ]


def test_nothing_aggregated_to_view_reads_secrets() -> None:
    docs = render(values_files=[VALUES_ALL])
    roles = aggregated(docs, "view")
    assert [r["metadata"]["name"] for r in roles] == [f"{RELEASE}-aggregate-to-view"]
    for role in roles:
        assert grants(role["rules"]) == expand([ONE_IE], KINDS, READ)
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"] and "" not in rule["apiGroups"]


def test_admin_and_edit_get_only_our_resources() -> None:
    docs = render()
    for to in ("admin", "edit"):
        roles = aggregated(docs, to)
        assert [r["metadata"]["name"] for r in roles] == [f"{RELEASE}-aggregate-to-edit"]
        assert grants(roles[0]["rules"]) == expand([ONE_IE], KINDS, ALL_VERBS)
    # The roles that do grant Secrets are never aggregated.
    for suffix in ("org-owner", "platform-owner", "org-user"):
        labels = cluster_role(docs, suffix)["metadata"]["labels"]
        assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in labels)


def test_aggregation_can_be_turned_off() -> None:
    docs = render(sets={"rbac.tenantRoles.aggregateToDefaultRoles": "false"})
    assert not aggregated(docs, "view") and not aggregated(docs, "edit") and not aggregated(docs, "admin")


def test_tenant_example_binds_the_charts_roles() -> None:
    rendered_roles = {d["metadata"]["name"] for d in render() if d["kind"] == "ClusterRole"}
    bindings = load_yaml_documents(REPO / "examples" / "tenant" / "rbac.yaml")
    namespace = load_yaml_documents(REPO / "examples" / "namespace.yaml")[0]["metadata"]["name"]
    by_role = {}
    for binding in bindings:
        assert binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] == namespace
        assert binding["roleRef"]["kind"] == "ClusterRole" and binding["roleRef"]["name"] in rendered_roles
        assert [s["kind"] for s in binding["subjects"]] == ["Group"]
        by_role[binding["roleRef"]["name"]] = binding["subjects"][0]["name"]
    assert by_role == {f"{RELEASE}-org-owner": "acme-owners", f"{RELEASE}-org-user": "acme-users"}
