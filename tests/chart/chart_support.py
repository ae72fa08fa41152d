"""Shared helpers of the chart, Dockerfile and GitOps tests (tests/chart/).

The tools come from ``.ci/tools.sh`` (helm v4 from the npm package, Debian's lua5.4 and lua5.1).
A test that needs a missing tool is skipped on a developer's machine, but fails under CI
(``CI`` set to anything but ``false``/``0``/empty): a green CI run must have run them.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "oneie-operator"
VALUES_ALL = Path(__file__).resolve().parent / "values-all.yaml"
TOOLS_BIN = Path(os.environ.get("ONEIE_TOOLS", "/var/tmp/oneie-tools")) / "bin"
RELEASE = "oneie-operator"
NAMESPACE = "oneie-system"


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidate = TOOLS_BIN / name
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def require_tool(name: str) -> str:
    """The tool's path; skip the test when it is missing, fail instead under CI."""
    path = find_tool(name)
    if path is None:
        message = f"{name} not found on PATH or in {TOOLS_BIN}: run `bash .ci/tools.sh`"
        if under_ci():
            pytest.fail(message + " (CI is set: chart tests must run, not skip)")
        pytest.skip(message)
    return path


# ---------------------------------------------------------------------------------------------
# helm
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HelmResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def helm(*args: str, check: bool = True) -> HelmResult:
    binary = require_tool("helm")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/oneie-helm/cache",
        "HELM_CONFIG_HOME": "/tmp/oneie-helm/config",
        "HELM_DATA_HOME": "/tmp/oneie-helm/data",
    }
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, env=env)
    result = HelmResult(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{result.output}")
    return result


def set_args(values: dict[str, str] | None) -> list[str]:
    args: list[str] = []
    for key, value in (values or {}).items():
        args += ["--set", f"{key}={value}"]
    return args


def template_args(
    *,
    values_files: Iterable[Path] = (),
    sets: dict[str, str] | None = None,
    include_crds: bool = False,
    kube_version: str | None = None,
    api_versions: Iterable[str] = (),
) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values_files:
        args += ["--values", str(path)]
    args += set_args(sets)
    if include_crds:
        args.append("--include-crds")
    if kube_version:
        args += ["--kube-version", kube_version]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


@functools.lru_cache(maxsize=64)
def _render_cached(key: tuple[Any, ...]) -> tuple[dict[str, Any], ...]:
    values_files, sets, include_crds, kube_version, api_versions = key
    result = helm(
        *template_args(
            values_files=values_files,
            sets=dict(sets),
            include_crds=include_crds,
            kube_version=kube_version,
            api_versions=api_versions,
        )
    )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(
    *,
    values_files: Iterable[Path] = (),
    sets: dict[str, str] | None = None,
    include_crds: bool = False,
    kube_version: str | None = None,
    api_versions: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """`helm template` of the chart, parsed (cached: templates are deterministic except random keys)."""
    key = (tuple(values_files), tuple(sorted((sets or {}).items())), include_crds, kube_version, tuple(api_versions))
    return [dict(doc) for doc in _render_cached(key)]


def render_fails(sets: dict[str, str] | None = None, values_files: Iterable[Path] = ()) -> str:
    """Render with bad values; return helm's message (the render must fail)."""
    result = helm(*template_args(values_files=values_files, sets=sets), check=False)
    assert result.returncode != 0, f"helm accepted {sets}:\n{result.stdout[:2000]}"
    return result.output


def find(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(docs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The operator container's env: name -> value (str) or valueFrom (dict)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs).get("env", [])}


# ---------------------------------------------------------------------------------------------
# RBAC
# ---------------------------------------------------------------------------------------------

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)


def grants(rules: Iterable[dict[str, Any]]) -> set[Grant]:
    """Expand RBAC rules into (apiGroup, resource, verb) triples (no wildcards expected)."""
    out: set[Grant] = set()
    for rule in rules:
        assert not rule.get("resourceNames"), "unexpected resourceNames"
        assert not rule.get("nonResourceURLs"), "unexpected nonResourceURLs"
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out


def expand(groups: Iterable[str], resources: Iterable[str], verbs: Iterable[str]) -> set[Grant]:
    return {(g, r, v) for g in groups for r in resources for v in verbs}


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def iter_leaves(values: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Leaves of a values tree: scalars, lists and empty maps (a map with keys is a branch)."""
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from iter_leaves(value, (*path, str(key)))
    else:
        yield path, values
