"""Is this object managed by a GitOps tool? Then a change made with kubectl will be reverted.

A pure function of the object's metadata. The evidence looked for:

* **Argo CD**: annotation ``argocd.argoproj.io/tracking-id`` (the default tracking method since
  Argo CD 2.x/3.0, often with the label ``app.kubernetes.io/instance``: "annotation+label"), or
  ``argocd.argoproj.io/instance`` (a common custom tracking label, sometimes an annotation). The
  label ``app.kubernetes.io/instance`` alone is *not* evidence: Helm charts set it too.
* **Flux**: labels ``kustomize.toolkit.fluxcd.io/name`` / ``kustomize.toolkit.fluxcd.io/namespace``
  (a Kustomization) or ``helm.toolkit.fluxcd.io/name`` (a HelmRelease).
* **managedFields** written by ``argocd-controller`` / ``argocd-application-controller`` (Argo CD)
  or ``kustomize-controller`` / ``helm-controller`` (Flux).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ARGO_TRACKING_ID = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE = "argocd.argoproj.io/instance"
INSTANCE_LABEL = "app.kubernetes.io/instance"
FLUX_KUSTOMIZE_NAME = "kustomize.toolkit.fluxcd.io/name"
FLUX_KUSTOMIZE_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"
FLUX_HELM_NAME = "helm.toolkit.fluxcd.io/name"
FLUX_HELM_NAMESPACE = "helm.toolkit.fluxcd.io/namespace"
MANAGERS = {
    "argocd-controller": "Argo CD",
    "argocd-application-controller": "Argo CD",
    "kustomize-controller": "Flux",
    "helm-controller": "Flux",
}


@dataclass(frozen=True)
class GitOpsOwner:
    tool: str  # "Argo CD" or "Flux"
    owner: str  # the Application / Kustomization / HelmRelease, when known
    evidence: str  # what gave it away


def detect_gitops(obj: Mapping[str, Any]) -> list[GitOpsOwner]:
    """Every sign that a GitOps tool manages ``obj`` (empty: none found)."""
    meta = obj.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    found: list[GitOpsOwner] = []

    tracking = annotations.get(ARGO_TRACKING_ID)
    if tracking:
        app = tracking.split(":", 1)[0]
        with_label = f" and label {INSTANCE_LABEL}" if labels.get(INSTANCE_LABEL) else ""
        found.append(GitOpsOwner("Argo CD", f"Application {app}", f"annotation {ARGO_TRACKING_ID}{with_label}"))
    for where, values in (("label", labels), ("annotation", annotations)):
        if values.get(ARGO_INSTANCE):
            found.append(GitOpsOwner("Argo CD", f"Application {values[ARGO_INSTANCE]}", f"{where} {ARGO_INSTANCE}"))

    kustomization = labels.get(FLUX_KUSTOMIZE_NAME)
    if kustomization or labels.get(FLUX_KUSTOMIZE_NAMESPACE):
        owner = _qualified(labels.get(FLUX_KUSTOMIZE_NAMESPACE), kustomization)
        found.append(GitOpsOwner("Flux", f"Kustomization {owner}", f"labels {FLUX_KUSTOMIZE_NAME}/namespace"))
    release = labels.get(FLUX_HELM_NAME)
    if release:
        owner = _qualified(labels.get(FLUX_HELM_NAMESPACE), release)
        found.append(GitOpsOwner("Flux", f"HelmRelease {owner}", f"label {FLUX_HELM_NAME}"))

    seen: set[str] = set()
    for entry in meta.get("managedFields") or []:
        manager = str((entry or {}).get("manager") or "")
        if manager in MANAGERS and manager not in seen:
            seen.add(manager)
            found.append(GitOpsOwner(MANAGERS[manager], "", f"managedFields manager {manager}"))
    return found


def _qualified(namespace: str | None, name: str | None) -> str:
    return f"{namespace}/{name or '?'}" if namespace else (name or "?")


def gitops_warning(kind: str, obj: Mapping[str, Any], change: str, advice: str) -> str | None:
    """The warning to print before changing ``obj`` by hand, or ``None`` when no GitOps tool manages it."""
    owners = detect_gitops(obj)
    if not owners:
        return None
    meta = obj.get("metadata") or {}
    tools = sorted({o.tool for o in owners})
    evidence = "; ".join(dict.fromkeys(o.owner for o in owners if o.owner)) or ""
    signs = ", ".join(o.evidence for o in owners)
    pause = {"Argo CD": "turn off the Application's auto-sync/self-heal", "Flux": "`flux suspend` the Kustomization"}
    return (
        f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')} is managed by {' and '.join(tools)} "
        f"({evidence + '; ' if evidence else ''}{signs}): the next sync will revert this change ({change}). "
        f"{advice} To keep a manual change for now, first {' / '.join(pause[t] for t in tools)}."
    )
