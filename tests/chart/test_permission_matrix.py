"""The README's permission matrix ("Who may do what"), proven on an API server that enforces RBAC.

`helm template` renders the chart's roles; they are loaded into the emulator with
authentication and RBAC on (Kubernetes RBAC semantics: tests/emulator/test_access.py), with
the example tenant's bindings (examples/tenant/rbac.yaml) and the platform-owner binding of
``rbac.platformOwner.groups``. Then every request behind every README row is made, for real,
as each identity (bearer tokens over HTTPS; writes with ``dryRun=All`` so nothing changes), and
the README's yes/no must equal what the server answered (403 = no). kubectl with per-identity
contexts and the ``kubectl oneie`` plug-in are run for a representative part of the matrix.

What this cannot prove: admission-time checks (``OwnerReferencesPermissionEnforcement``), RBAC
escalation checks on writing Roles/Bindings, and anything about a real cluster's other
authorizers (Node, webhook).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from chart_support import REPO, render

from oneie_operator.testing.authn import user
from oneie_operator.testing.cluster import TLSFiles, serve_emulator
from oneie_operator.testing.identities import CHART_RBAC, SecureCluster, secure_emulator

KUBECTL = "/usr/bin/kubectl"
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")
PLATFORM_OWNERS = {"rbac.platformOwner.groups": "{platform-owners}"}
OWN, OTHER = "tenant-acme", "tenant-globex"
ONE_IE = "one.ie"
KINDS = ("organizations", "backendconnections")
NAMES = {"organizations": "acme", "backendconnections": "acme-convex", "secrets": "creds", "events": "e1"}
KIND_OF = {"organizations": "Organization", "backendconnections": "BackendConnection", "secrets": "Secret",
           "events": "Event"}

#: README row -> the requests behind it: (verb, apiGroup, resource, subresource, cluster-wide?).
Request = tuple[str, str, str, str, bool]
ROWS: dict[str, list[Request]] = {
    "Read organizations and connections (get, list, watch)":
        [(v, ONE_IE, k, "", False) for k in KINDS for v in ("get", "list", "watch")],
    "Change organizations and connections: `kubectl apply`/`edit`, `kubectl oneie switch` (patch)":
        [("patch", ONE_IE, k, "", False) for k in KINDS],
    "Create, replace and delete organizations and connections (create, update, delete)":
        [(v, ONE_IE, k, "", False) for k in KINDS for v in ("create", "update", "delete")],
    "List organizations in all namespaces (list, cluster-wide)": [("list", ONE_IE, "organizations", "", True)],
    "Write status of organizations and connections (patch `/status`)":
        [("patch", ONE_IE, k, "status", False) for k in KINDS],
    "Read Secrets: the credentials (get, list)": [(v, "", "secrets", "", False) for v in ("get", "list")],
    "Create, replace and delete Secrets (create, update, delete)":
        [(v, "", "secrets", "", False) for v in ("create", "update", "delete")],
    "Read Events (get, list)": [(v, "", "events", "", False) for v in ("get", "list")],
    "Create Events (create)": [("create", "", "events", "", False)],
}
#: README column -> (kubeconfig context or "operator", namespace the requests are made in).
COLUMNS = {
    "Platform owner": ("platform-owner", OWN),
    "Org owner, own namespace": ("org-owner", OWN),
    "Org owner, other namespace": ("org-owner", OTHER),
    "Org user": ("org-user", OWN),
    "Operator": ("operator", OWN),
}


def rendered_rbac() -> list[dict[str, Any]]:
    return [d for d in render(sets=PLATFORM_OWNERS) if d["kind"] in RBAC_KINDS]


def readme_matrix() -> dict[str, dict[str, bool]]:
    """The README table: row -> column -> allowed."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Action (requests checked)"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    table: dict[str, dict[str, bool]] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert all(c in ("yes", "no") for c in cells[1:]), f"README cell not yes/no: {line}"
        table[cells[0]] = {column: cell == "yes" for column, cell in zip(header[1:], cells[1:], strict=True)}
    return table


def test_rendered_roles_file_matches_the_chart() -> None:
    """The roles the demo and the e2e tests load (testing/chart-rbac.yaml) are what the chart renders."""
    docs = rendered_rbac()
    if os.environ.get("ONEIE_REGENERATE"):
        header = "".join(line + "\n" for line in CHART_RBAC.read_text().splitlines() if line.startswith("#"))
        CHART_RBAC.write_text(header + yaml.safe_dump_all(docs, sort_keys=False))
    stored = [d for d in yaml.safe_load_all(CHART_RBAC.read_text()) if d]
    assert stored == docs, "testing/chart-rbac.yaml is stale: regenerate it (see its header)"


def test_readme_rows_and_columns_are_the_checked_ones() -> None:
    matrix = readme_matrix()
    assert set(matrix) == set(ROWS), "README rows without requests here (or the reverse)"
    for row in matrix.values():
        assert set(row) == set(COLUMNS)


@contextlib.asynccontextmanager
async def chart_on_emulator(tmp_path: Path) -> AsyncIterator[tuple[Any, SecureCluster, aiohttp.ClientSession]]:
    """The emulator (HTTPS, authentication and RBAC on) with the freshly rendered chart roles,
    the example tenant's bindings and objects of each kind in tenant-acme and tenant-globex."""
    rbac_file = tmp_path / "chart-rbac.yaml"
    rbac_file.write_text(yaml.safe_dump_all(rendered_rbac(), sort_keys=False))
    tls = TLSFiles.create(tmp_path / "tls")
    context = ssl.create_default_context(cafile=str(tls.cert))
    crds = sorted((REPO / "crds").glob("*.yaml"))
    async with serve_emulator(crds, tls=tls) as (emulator, url):
        secure = secure_emulator(emulator, url, tls.cert, tmp_path, [REPO / "examples" / "tenant" / "rbac.yaml"],
                                 chart_rbac=rbac_file)
        for namespace in (OWN, OTHER):
            seed(emulator, namespace)
        async with aiohttp.ClientSession(url, connector=aiohttp.TCPConnector(ssl=context)) as http:
            yield emulator, secure, http
        assert not emulator.errors


async def test_the_readme_matrix_is_what_the_api_server_enforces(tmp_path: Path) -> None:
    async with chart_on_emulator(tmp_path) as (_, secure, http):
        tokens = {**secure.tokens, "operator": secure.operator_token}
        observed: dict[str, dict[str, bool]] = {}
        for row, requests in ROWS.items():
            for column, (who, namespace) in COLUMNS.items():
                answers = [await allowed(http, tokens[who], namespace, r) for r in requests]
                assert len(set(answers)) == 1, f"{row} / {column}: mixed answers {list(zip(requests, answers))}"
                observed.setdefault(row, {})[column] = answers[0]
        assert observed == readme_matrix(), diff(observed, readme_matrix())
        await kubectl_and_plugin_agree(secure, tmp_path)


async def test_chart_resources_land_in_the_built_in_admin_edit_view_roles(tmp_path: Path) -> None:
    """rbac.tenantRoles.aggregateToDefaultRoles: the chart's aggregate-to-* ClusterRoles are
    aggregated (label selectors, https://kubernetes.io/docs/reference/access-authn-authz/rbac/#aggregated-clusterroles)
    into the built-in ``view`` (read organizations and connections), ``edit`` and ``admin`` (write
    them); ``view`` still reads no Secrets."""
    async with chart_on_emulator(tmp_path) as (emulator, secure, http):
        for role in ("view", "edit", "admin"):
            emulator.create_object("rbac.authorization.k8s.io/v1/rolebindings", {
                "metadata": {"name": f"dev-{role}"}, "subjects": [
                    {"kind": "User", "name": "developer", "apiGroup": "rbac.authorization.k8s.io"}],
                "roleRef": {"kind": "ClusterRole", "name": role, "apiGroup": "rbac.authorization.k8s.io"}},
                f"ns-{role}")
            seed(emulator, f"ns-{role}")
        token = "developer-token"
        secure.access.authenticator.add(token, user("developer"))
        for role, (read, write, secrets) in {"view": (True, False, False), "edit": (True, True, True),
                                             "admin": (True, True, True)}.items():
            ns = f"ns-{role}"
            assert await allowed(http, token, ns, ("list", ONE_IE, "organizations", "", False)) is read
            assert await allowed(http, token, ns, ("patch", ONE_IE, "backendconnections", "", False)) is write
            assert await allowed(http, token, ns, ("get", "", "secrets", "", False)) is secrets, role
        view = emulator.get_object("rbac.authorization.k8s.io/v1/clusterroles", None, "view")
        assert {"apiGroups": ["one.ie"], "resources": ["organizations", "backendconnections"],
                "verbs": ["get", "list", "watch"]} in view["rules"]
        assert not [r for r in view["rules"] if "secrets" in r.get("resources", [])]


def seed(emulator: Any, namespace: str) -> None:
    """One object of each kind the rows touch, created directly (not through RBAC)."""
    # Valid objects: the emulator validates them against the CRD's schema, as an API server does.
    emulator.create_object("one.ie/v1alpha1/backendconnections", {
        "metadata": {"name": "acme-convex"},
        "spec": {"provider": "convex", "convex": {"url": "https://happy-otter-123.convex.cloud"},
                 "credentialsSecretRef": {"name": "creds"}}}, namespace)
    emulator.create_object("one.ie/v1alpha1/backendconnections", {
        "metadata": {"name": "acme-notion"},
        "spec": {"provider": "notion", "notion": {}, "credentialsSecretRef": {"name": "creds"}}}, namespace)
    emulator.create_object("one.ie/v1alpha1/organizations", {
        "metadata": {"name": "acme"}, "spec": {"backend": {"connectionRef": {"name": "acme-convex"}}}}, namespace)
    emulator.create_object("v1/secrets", {"metadata": {"name": "creds"}, "stringData": {"k": "v"}}, namespace)
    emulator.create_object("v1/events", {"metadata": {"name": "e1"}, "reason": "Test", "message": "m"}, namespace)


async def allowed(http: aiohttp.ClientSession, token: str, namespace: str, request: Request) -> bool:
    """Make the request as the token's identity; True unless the server refused it (403)."""
    verb, group, resource, subresource, cluster_wide = request
    base = "/api/v1" if not group else "/apis/one.ie/v1alpha1"
    collection = f"{base}/{resource}" if cluster_wide else f"{base}/namespaces/{namespace}/{resource}"
    item = f"{collection}/{NAMES[resource]}" + (f"/{subresource}" if subresource else "")
    api_version = "v1" if not group else "one.ie/v1alpha1"
    method, path, body, params = {
        "get": ("GET", item, None, {}),
        "list": ("GET", collection, None, {}),
        "watch": ("GET", collection, None, {"watch": "true", "timeoutSeconds": "0"}),
        "create": ("POST", collection, {"apiVersion": api_version, "kind": KIND_OF[resource],
                                        "metadata": {"name": "new-one"}}, {"dryRun": "All"}),
        "update": ("PUT", item, {"apiVersion": api_version, "kind": KIND_OF[resource],
                                 "metadata": {"name": NAMES[resource]}}, {"dryRun": "All"}),
        "patch": ("PATCH", item, {"metadata": {"labels": {"checked": "yes"}}}, {"dryRun": "All"}),
        "delete": ("DELETE", item, None, {"dryRun": "All"}),
    }[verb]
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/merge-patch+json" if method == "PATCH" else "application/json"
    async with http.request(method, path, params=params, headers=headers,
                            data=None if body is None else json.dumps(body)) as response:
        text = await response.text()
    assert response.status != 401, f"{path}: the token was not accepted"
    assert response.status < 500, f"{method} {path}: {response.status} {text[:300]}"
    return response.status != 403


def diff(observed: dict[str, dict[str, bool]], documented: dict[str, dict[str, bool]]) -> str:
    lines = ["README and API server disagree:"]
    for row, columns in documented.items():
        for column, value in columns.items():
            if observed.get(row, {}).get(column) != value:
                lines.append(f"  {row} / {column}: README {'yes' if value else 'no'}, server "
                             f"{'yes' if observed.get(row, {}).get(column) else 'no'}")
    return "\n".join(lines)


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, env=env)
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


async def kubectl_and_plugin_agree(secure: SecureCluster, tmp_path: Path) -> None:
    """Real clients with the per-identity contexts of one kubeconfig see the same verdicts."""
    base = [KUBECTL, "--kubeconfig", str(secure.kubeconfig), "--cache-dir", str(tmp_path / "cache")]
    forbidden = re.compile(r'is forbidden: User "[^"]+" cannot')
    cases: list[tuple[list[str], bool]] = [
        (["--context", "org-user", "-n", OWN, "get", "organizations.one.ie"], True),
        (["--context", "org-user", "-n", OWN, "delete", "organizations.one.ie", "acme", "--dry-run=server"], False),
        (["--context", "org-user", "-n", OWN, "get", "secrets"], False),
        (["--context", "org-owner", "-n", OWN, "get", "secrets"], True),
        (["--context", "org-owner", "-n", OTHER, "get", "backendconnections.one.ie"], False),
        (["--context", "platform-owner", "get", "backendconnections.one.ie", "-A"], True),
        (["--context", "platform-owner", "-n", OWN, "get", "secrets", "creds"], False),
        (["-n", OWN, "get", "secrets", "creds"], True),  # the default context: a cluster admin
    ]
    for args, ok in cases:
        code, out = await run(*base, *args)
        assert (code == 0) == ok, f"kubectl {' '.join(args)}: {out}"
        if not ok:
            assert forbidden.search(out), out
    can_i = await run(*base, "--context", "org-user", "-n", OWN, "auth", "can-i", "patch", "organizations.one.ie")
    assert can_i[1].strip() == "no"
    plugin = [sys.executable, "-m", "oneie_operator.cli.kubectl_plugin", "--kubeconfig", str(secure.kubeconfig)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    code, out = await run(*plugin, "--context", "org-user", "-n", OWN, "switch", "acme", "--to", "acme-notion", env=env)
    assert code != 0 and "forbidden" in out.lower(), out
    code, out = await run(*plugin, "--context", "org-owner", "-n", OWN, "switch", "acme", "--to", "acme-notion",
                          env=env)
    assert code == 0, out
