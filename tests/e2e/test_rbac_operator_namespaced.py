"""The operator restricted to a list of namespaces, under the chart's per-namespace Roles only.

With ``watch.namespaces`` the chart renders a Role and RoleBinding in each watched namespace plus
one small ClusterRole (list/watch namespaces: Kopf matches the list against the cluster). The
operator runs with ``WATCH_NAMESPACES`` and exactly those roles (``helm template`` output loaded
into the emulator with RBAC enforced): a connection becomes Ready and an organization switches
with no request refused, and nothing in another namespace is touched.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from e2e_support import Tenant
from rbac_support import UNUSED_ON_PURPOSE, grants_of, switch_main_to_next

from oneie_operator.demo.environment import LocalEnvironment, local_environment
from oneie_operator.testing.identities import OPERATOR

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
HELM = Path(os.environ.get("ONEIE_TOOLS", "/var/tmp/oneie-tools")) / "bin" / "helm"
WATCHED = "t-watched"
#: Found by this test: Kopf never lists or watches namespaces here. With exact names only, the
#: operator keeps Kopf's scanning off (running.kopf_namespaces); globs turn it on and use the grant
#: (tests/e2e/test_sharding.py).
UNUSED_NAMESPACED = {
    ("", "namespaces", "list"): "exact namespace names need no listing; Kopf's scanning is off for them",
    ("", "namespaces", "watch"): "exact namespace names need no watching; Kopf's scanning is off for them",
}


#: Grants this short flow reaches in some runs only (timing); test_rbac_operator.py requires them.
NOT_ALWAYS_REACHED = {
    ("one.ie", "organizations", "patch"): "a write to the Organization itself (not its status): the "
    "reconcile-trigger annotation when a handler must run again, which depends on how the watch "
    "events of this short flow interleave",
    ("", "secrets", "get"): "a read of one Secret: the encrypted copy or a binding when the operator's "
    "cache of the watched Secrets (a list at start-up, then the watch) does not have it yet at that "
    "version, and an organization's binding on a steady reconcile; in this short flow the cache "
    "usually has everything",
}


def render_roles(path: Path) -> Path:
    if not HELM.is_file():
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{HELM} missing under CI: run `bash .ci/tools.sh`")
        pytest.skip(f"{HELM} missing: run `bash .ci/tools.sh`")
    out = subprocess.run(
        [str(HELM), "template", "oneie-operator", str(REPO / "charts" / "oneie-operator"), "--namespace",
         "oneie-system", "--set", f"watch.namespaces={{{WATCHED}}}"],
        check=True, capture_output=True, text=True, timeout=60,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/oneie-helm/cache", "HELM_CONFIG_HOME": "/tmp/oneie-helm/config",
             "HELM_DATA_HOME": "/tmp/oneie-helm/data"}).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d["kind"] in
            ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    workdir = Path(tmp_path_factory.mktemp("e2e-rbac-ns"))
    roles = render_roles(workdir / "roles.yaml")
    async with local_environment(workdir, config_env={"PROVIDER_TIMEOUT_SECONDS": "1", "WATCH_NAMESPACES": WATCHED},
                                 rbac=True, chart_rbac=roles) as environment:
        yield environment


async def test_watched_namespace_only_with_per_namespace_roles(env: LocalEnvironment, plaintexts: set[str]) -> None:
    tenant = Tenant(env, WATCHED, plaintexts)
    await switch_main_to_next(tenant)
    assert env.secure is not None
    refusals = [r for r in env.secure.access.refusals if r[0] == OPERATOR.name]
    assert refusals == [], refusals
    used = env.secure.access.allowed[OPERATOR.name]
    assert not [u for u in used if u[1] != "namespaces" and u not in grants_of(env.workdir / "roles.yaml")]
    unused = (grants_of(env.workdir / "roles.yaml") - used - set(UNUSED_ON_PURPOSE) - set(UNUSED_NAMESPACED)
              - set(NOT_ALWAYS_REACHED))
    assert not unused, f"the chart grants the operator verbs it never used: {sorted(unused)}"
    assert not set(UNUSED_NAMESPACED) & used, "a grant listed as unused was used: update UNUSED_NAMESPACED"
