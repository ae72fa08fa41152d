"""GitOps: the Argo CD health check (Lua, run with lua5.4 and lua5.1 like Argo CD's gopher-lua),
its argocd-cm packaging, and the Argo CD / Flux objects of docs/gitops/.

The objects given to the health check are built with the operator's own condition helpers
(oneie_operator.reconcile.conditions), so the check is tested against what the operator writes.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_support import REPO, load_yaml_documents, require_tool

from oneie_operator import errors
from oneie_operator.reconcile import conditions as cond

GITOPS = REPO / "docs" / "gitops"
HEALTH_LUA = GITOPS / "argocd" / "health.lua"
KINDS = ("Organization", "BackendConnection")
LUAS = ("lua5.4", "lua5.1")


def to_lua(value: Any) -> str:
    """A Python value (JSON-like) as a Lua expression, as Argo CD hands `obj` to the script."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid Lua escapes for this text
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{json.dumps(k)}] = {to_lua(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(type(value))


def run_health(lua: str, obj: dict[str, Any]) -> tuple[str, str]:
    binary = require_tool(lua)
    program = (
        f"obj = {to_lua(obj)}\n"
        f"local check = assert(loadfile({json.dumps(str(HEALTH_LUA))}))\n"
        "local hs = check()\n"
        "io.write(hs.status, '\\n', hs.message or '')\n"
    )
    proc = subprocess.run([binary, "-"], input=program, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    status, _, message = proc.stdout.partition("\n")
    return status, message


def make(
    kind: str,
    *,
    generation: int = 3,
    observed: int | None = 3,
    conditions: list[cond.Condition] | None = None,
    status: bool = True,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "one.ie/v1alpha1",
        "kind": kind,
        "metadata": {"name": "acme", "namespace": "tenant-acme", "generation": generation},
        "spec": {},
    }
    if status:
        obj["status"] = {
            "observedGeneration": observed,
            "conditions": cond.merge_conditions([], conditions or [], generation=observed, now="2026-01-01T00:00:00Z"),
        }
    return obj


TRANSIENT = errors.ProviderUnreachableError.reason
PERMANENT = errors.CredentialsRejectedError.reason

# (id, object factory, expected status, expected message)
CASES: list[tuple[str, Any, str, str]] = [
    (
        "ready",
        lambda k: make(k, conditions=cond.ready("CredentialsVerified", "credentials verified")),
        "Healthy",
        "credentials verified",
    ),
    (
        "ready-switched",
        lambda k: make(
            k,
            conditions=[
                *cond.ready("Switched", "convex backend acme-convex is active"),
                cond.Condition("Switching", "False", "Switched"),
            ],
        ),
        "Healthy",
        "convex backend acme-convex is active",
    ),
    ("no-status", lambda k: make(k, status=False), "Progressing", "Waiting for the operator to report a status"),
    (
        "empty-conditions",
        lambda k: make(k, conditions=[]),
        "Progressing",
        "Waiting for the operator to report a status",
    ),
    (
        "generation-behind",
        lambda k: make(
            k, generation=4, observed=3, conditions=cond.ready("CredentialsVerified", "credentials verified")
        ),
        "Progressing",
        "Waiting for the operator to observe generation 4",
    ),
    (
        "generation-behind-even-if-stalled",
        lambda k: make(k, generation=5, observed=4, conditions=cond.stalled(PERMANENT, "rejected")),
        "Progressing",
        "Waiting for the operator to observe generation 5",
    ),
    (
        "reconciling",
        lambda k: make(k, conditions=cond.progressing("Reconciling", "testing credentials")),
        "Progressing",
        "testing credentials",
    ),
    (
        "retrying-transient",
        lambda k: make(k, conditions=cond.retrying(TRANSIENT, "provider unreachable: refused")),
        "Progressing",
        "provider unreachable: refused",
    ),
    (
        "switching",
        lambda k: make(
            k,
            conditions=[
                *cond.ready("Active", "old backend active"),
                cond.Condition("Switching", "True", "Switching", "to acme-supabase"),
            ],
        ),
        "Progressing",
        "old backend active",
    ),
    (
        "stalled",
        lambda k: make(k, conditions=cond.stalled(PERMANENT, "credentials rejected by the provider (401)")),
        "Degraded",
        "credentials rejected by the provider (401)",
    ),
    (
        "ready-false-permanent",
        lambda k: make(k, conditions=[cond.Condition("Ready", "False", "InvalidSpec", "bad url")]),
        "Degraded",
        "bad url",
    ),
    (
        "ready-false-transient",
        lambda k: make(k, conditions=[cond.Condition("Ready", "False", "SecretNotFound", "")]),
        "Progressing",
        "SecretNotFound",
    ),
    (
        "ready-unknown",
        lambda k: make(k, conditions=[cond.Condition("Ready", "Unknown", "Pending", "")]),
        "Progressing",
        "Pending",
    ),
    (
        "no-ready-condition",
        lambda k: make(k, conditions=[cond.Condition("Healthy", "True", "Online", "")]),
        "Progressing",
        "Waiting for the Ready condition",
    ),
]


@pytest.mark.parametrize("lua", LUAS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("case", "factory", "status", "message"), CASES, ids=[c[0] for c in CASES])
def test_argocd_health_check(lua: str, kind: str, case: str, factory: Any, status: str, message: str) -> None:
    assert run_health(lua, factory(kind)) == (status, message)


def test_transient_reasons_match_the_operator() -> None:
    """The script's list of retried reasons is exactly the operator's transient errors."""

    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    transient = {c.reason for c in subclasses(errors.OneieError) if c.transient}
    table = HEALTH_LUA.read_text().split("local transient = {", 1)[1].split("}", 1)[0]
    assert set(re.findall(r"(\w+) = true", table)) == transient


def test_argocd_cm_carries_the_script_for_both_kinds() -> None:
    (config_map,) = load_yaml_documents(GITOPS / "argocd" / "argocd-cm.yaml")
    assert (config_map["kind"], config_map["metadata"]["name"], config_map["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )
    script = HEALTH_LUA.read_text()
    assert config_map["data"] == {f"resource.customizations.health.one.ie_{k}": script for k in KINDS}
    kubernetes_validate.validate(config_map, kubernetes_validate.latest_version(), strict=True)


def brace_globs(pattern: str) -> list[str]:
    match = re.fullmatch(r"\{(.*)\}", pattern)
    return match.group(1).split(",") if match else [pattern]


def test_argocd_application_selects_the_tenant_manifests() -> None:
    (app,) = load_yaml_documents(GITOPS / "argocd" / "application.yaml")
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    root = REPO / source["path"]
    files = [p.relative_to(root).as_posix() for p in root.rglob("*.yaml")]
    selected = sorted(
        f for f in files if any(fnmatch.fnmatch(f, g) for g in brace_globs(source["directory"]["include"]))
    )
    assert selected == ["convex/backendconnection.yaml", "namespace.yaml", "organization.yaml", "tenant/rbac.yaml"]
    kinds = sorted(d["kind"] for f in selected for d in load_yaml_documents(root / f))
    assert kinds == ["BackendConnection", "Namespace", "Organization", "RoleBinding", "RoleBinding"]
    assert "Secret" not in kinds, "credentials never come from Git in clear"
    assert app["spec"]["destination"]["namespace"] == "tenant-acme"
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}


def test_flux_objects() -> None:
    (repo,) = load_yaml_documents(GITOPS / "flux" / "gitrepository.yaml")
    (kustomization,) = load_yaml_documents(GITOPS / "flux" / "kustomization.yaml")
    assert repo["apiVersion"] == "source.toolkit.fluxcd.io/v1" and repo["kind"] == "GitRepository"
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1" and kustomization["kind"] == "Kustomization"
    spec = kustomization["spec"]
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
    assert spec["wait"] is True and spec["prune"] is True and spec["timeout"]
    assert (REPO / spec["path"]).is_dir()
    # Every file re-included by the ignore rules exists, and no Secret is among them.
    for line in repo["spec"]["ignore"].splitlines():
        if line.startswith("!") and "*" not in line:
            path = REPO / line[1:].lstrip("/")
            assert path.exists(), line
            if path.is_file():
                assert all(d["kind"] != "Secret" for d in load_yaml_documents(path)), line


def test_tenant_example_is_valid() -> None:
    for path in sorted((REPO / "examples" / "tenant").glob("*.yaml")):
        for doc in load_yaml_documents(path):
            kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_docs_mention_the_pieces() -> None:
    text = (REPO / "docs" / "gitops.md").read_text()
    for needle in (
        "kstatus",
        "observedGeneration",
        "Reconciling",
        "Stalled",
        "resource.customizations.health",
        "docs/gitops/argocd/argocd-cm.yaml",
        "health.lua",
    ):
        assert needle in text, needle


def test_yaml_in_gitops_parses() -> None:
    for path in sorted(Path(GITOPS).rglob("*.yaml")):
        assert list(yaml.safe_load_all(path.read_text())), path
