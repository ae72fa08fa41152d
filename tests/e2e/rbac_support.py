"""What the chart grants the operator, and the grants no end-to-end flow uses (with the reason)."""

from __future__ import annotations

from pathlib import Path

import yaml
from e2e_support import Tenant
from org_support import apply_org, switch, wait_org, wait_used_by

from oneie_operator.testing.identities import OPERATOR

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

#: Verbs the chart grants that no flow of this module uses, each with the reason it stays.
UNUSED_ON_PURPOSE: dict[Grant, str] = {
    ("one.ie", "organizations/finalizers", "update"): "checked by the admission plug-in "
    "OwnerReferencesPermissionEnforcement when the operator writes an owner reference with blockOwnerDeletion "
    "to an Organization (the binding Secret); the emulator has no admission plug-ins",
    ("one.ie", "backendconnections/finalizers", "update"): "the same check, for the encrypted credentials "
    "Secret owned by its BackendConnection",
    ("one.ie", "organizations", "get"): "no code reads one Organization by name today (Kopf lists and watches); "
    "kept because list and watch already show every Organization, so get gives no further access, and "
    "`kubectl oneie`-style reads by the operator need no chart change",
    ("authorization.k8s.io", "subjectaccessreviews", "create"): "only the admission webhook asks it (may the "
    "connection's author read its Secret?); the emulator calls no webhooks, so these flows never reach it: "
    "tests/admission/test_webhook.py exercises it under the chart's roles",
    ("", "configmaps", "patch"): "the provider catalog (oneie-providers) is patched only when it already exists, "
    "i.e. when the operator starts again in the same cluster (reconcile/catalog.py); these flows start it once",
    ("", "secrets", "update"): "a replace conditioned on a read resourceVersion: the binding or encrypted "
    "copy rewritten after it was read (repair, re-encryption), or after a create answered 409 / a patch "
    "whose owner-reference test failed (kube/secrets.py); a switch and a first store write with one patch "
    "or create, so these flows do not reach it",
    ("", "secrets", "delete"): "only when the very first activation of an organization fails after its binding "
    "Secret was written (rollback to no backend, reconcile/organizations.py); not reached by these flows",
}




def grants_of(rendered: Path) -> set[Grant]:
    """Every (apiGroup, resource, verb) a rendered chart's roles bind to the operator's ServiceAccount."""
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs
             if d["kind"] in ("Role", "ClusterRole")}
    out: set[Grant] = set()
    sa = OPERATOR.service_account
    for binding in docs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and (s.get("namespace"), s.get("name")) == sa
                   for s in binding.get("subjects") or []):
            continue
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        for rule in roles[(ref["kind"], namespace, ref["name"])]["rules"]:
            out |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return out


async def switch_main_to_next(tenant: Tenant) -> None:
    """The flow both RBAC runs drive: connections ``main`` (Convex) and ``next`` (Supabase) Ready,
    ``acme`` activated on ``main``, switched to ``next``, and ``usedBy`` following it."""
    await tenant.good("main", "convex")
    await tenant.good("next", "supabase")
    await apply_org(tenant, "acme", "main")
    await wait_org(tenant, "acme", active="main", result="Succeeded")
    await switch(tenant, "acme", "next")
    await wait_org(tenant, "acme", active="next", result="Succeeded", to="next")
    await wait_used_by(tenant, "next", "acme", True)
    await wait_used_by(tenant, "main", "acme", False)
