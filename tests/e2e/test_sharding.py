"""Two operators, two Helm releases, one API server: sharding by namespace patterns.

Shard A (release ``shard-a``, ``watch.namespaces: [tenant-a-*]``) and shard B (``shard-b``,
``[tenant-b-*]``) run as two operator instances, each in its own thread and event loop with its
own service-account token and exactly the RBAC ``helm template`` renders for its release, against
one emulator with authentication and RBAC on. Each tenant namespace has Secrets, two connections and an
Organization; ``tenant-c`` belongs to no shard. The emulator records every request by user and
namespace, so the test can show that each operator reconciled its own tenants, made no request in
any other tenant's namespace (Secrets included) and that nobody served ``tenant-c``. A namespace
created after start-up (``tenant-a-3``) is picked up by shard A (Kopf watches namespaces).

With the glob bug (Kopf's namespace scanning off, so a glob is taken as a namespace name and
matches nothing) neither shard reconciles anything and the first wait fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import kopf
import pytest
import pytest_asyncio
import yaml
from e2e_support import Tenant
from org_support import apply_org, wait_org
from prometheus_client import generate_latest

from oneie_operator.config import load_config
from oneie_operator.demo.environment import LocalEnvironment, demo_config_env, local_environment
from oneie_operator.demo.scenario import leak_scan
from oneie_operator.handlers.services import Services
from oneie_operator.kube.client import load_api_client
from oneie_operator.running import build_services, run_operator
from oneie_operator.testing.authn import service_account
from oneie_operator.testing.cluster import write_kubeconfig
from oneie_operator.testing.identities import load_objects

pytestmark = pytest.mark.asyncio(loop_scope="module")

REPO = Path(__file__).resolve().parents[2]
HELM = Path(os.environ.get("ONEIE_TOOLS", "/var/tmp/oneie-tools")) / "bin" / "helm"
SHARDS = {"shard-a": "tenant-a-*", "shard-b": "tenant-b-*"}
RELEASE_NAMESPACE = "oneie-system"
#: Cluster-scoped requests a shard makes: the start-up check and Kopf's scanning (namespaces to
#: match the globs, CRDs: Kopf's scanning watches both).
CLUSTER_SCOPED = {("", "namespaces", "list"), ("", "namespaces", "watch"),
                  ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
                  ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}


@dataclass
class Shard:
    """One operator, in its own thread and event loop (as a second process would have its own):
    Kopf treats every task of its loop as its own and cancels them all when it stops."""

    release: str
    user: str
    services: Services
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException]


def render_release(release: str, pattern: str, path: Path) -> Path:
    if not HELM.is_file():
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"{HELM} missing under CI: run `bash .ci/tools.sh`")
        pytest.skip(f"{HELM} missing: run `bash .ci/tools.sh`")
    out = subprocess.run(
        [str(HELM), "template", release, str(REPO / "charts" / "oneie-operator"), "--namespace", RELEASE_NAMESPACE,
         "--set", f"watch.namespaces={{{pattern}}}"],
        check=True, capture_output=True, text=True, timeout=60,
        env={**os.environ, "HELM_CACHE_HOME": "/tmp/oneie-helm/cache", "HELM_CONFIG_HOME": "/tmp/oneie-helm/config",
             "HELM_DATA_HOME": "/tmp/oneie-helm/data"}).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


async def start_shard(env: LocalEnvironment, release: str, pattern: str) -> Shard:
    assert env.secure is not None
    docs = list(yaml.safe_load_all(render_release(release, pattern, env.workdir / f"{release}.yaml").read_text()))
    load_objects(env.emulator, [env.workdir / f"{release}.yaml"])
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container_env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert container_env["WATCH_NAMESPACES"] == pattern  # what the chart gives the operator
    identity = service_account(RELEASE_NAMESPACE, pod["serviceAccountName"])
    token = secrets.token_urlsafe(24)
    env.secure.access.authenticator.add(token, identity)
    kubeconfig = write_kubeconfig(env.workdir / f"{release}.kubeconfig", env.url, token=token,
                                  ca_file=env.workdir / "tls" / "emulator.crt")
    environ = {**demo_config_env({"PROVIDER_TIMEOUT_SECONDS": "1"}), **{k: v for k, v in env.environ.items()
                                                                        if k == "ENCRYPTION_KEY"},
               "WATCH_NAMESPACES": container_env["WATCH_NAMESPACES"],
               "POD_NAMESPACE": RELEASE_NAMESPACE}
    services = build_services(load_config(environ), load_api_client(str(kubeconfig)), environ=environ)
    stop, ready, errors = threading.Event(), threading.Event(), []

    async def operate() -> None:
        try:
            await run_operator(services, stop_flag=stop, ready_flag=ready, settings=kopf.OperatorSettings())
        finally:
            await services.close()

    def main() -> None:
        try:
            asyncio.run(operate())
        except BaseException as exc:  # reported by the fixture
            errors.append(exc)

    thread = threading.Thread(target=main, name=release, daemon=True)
    thread.start()
    if not await asyncio.to_thread(ready.wait, 30):
        raise AssertionError(f"{release} did not become ready: {errors}")
    return Shard(release, identity.name, services, stop, thread, errors)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shards(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[LocalEnvironment, list[Shard]]]:
    workdir = Path(tmp_path_factory.mktemp("e2e-shards"))
    async with local_environment(workdir, rbac=True, start_operator=False) as env:
        running: list[Shard] = []
        try:
            for release, pattern in SHARDS.items():
                running.append(await start_shard(env, release, pattern))
            yield env, running
        finally:
            for shard in running:
                shard.stop.set()
            for shard in running:
                await asyncio.to_thread(shard.thread.join, 30)
                assert not shard.thread.is_alive(), f"{shard.release} did not stop"
                assert shard.errors == [], shard.errors


async def populate(tenant: Tenant) -> None:
    for name, provider in (("main", "convex"), ("next", "supabase")):
        await tenant.secret(f"{name}-creds", dict(tenant.env.providers.credentials[provider]))
        await tenant.connection(name, provider)
    await apply_org(tenant, "acme", "main")


async def test_each_shard_serves_its_own_tenants_only(
    shards: tuple[LocalEnvironment, list[Shard]], plaintexts: set[str]
) -> None:
    env, (shard_a, shard_b) = shards
    assert env.secure is not None
    tenants = {ns: Tenant(env, ns, plaintexts) for ns in ("tenant-a-1", "tenant-a-2", "tenant-b-1", "tenant-c")}
    for tenant in tenants.values():
        await populate(tenant)
    served = [t for ns, t in tenants.items() if ns != "tenant-c"]
    for tenant in served:
        await tenant.wait_ready("main", "True", timeout=30)
        await tenant.wait_ready("next", "True", timeout=30)
        await wait_org(tenant, "acme", active="main", result="Succeeded")
    # A namespace created after start-up is served by the shard whose pattern it matches.
    late = Tenant(env, "tenant-a-3", plaintexts)
    await populate(late)
    await late.wait_ready("main", "True", timeout=30)
    await wait_org(late, "acme", active="main", result="Succeeded")

    unserved = await tenants["tenant-c"].get("main")
    assert unserved is not None and not (unserved.get("status") or {}).get("conditions"), unserved.get("status")

    mine = {shard_a.user: {"tenant-a-1", "tenant-a-2", "tenant-a-3"}, shard_b.user: {"tenant-b-1"}}
    for user, own in mine.items():
        went = env.secure.access.allowed_in[user]
        namespaces = {ns for ns, *_ in went}
        assert namespaces - {""} == own | {RELEASE_NAMESPACE}, f"{user} made requests in {sorted(namespaces)}"
        assert {(g, r, v) for ns, g, r, v in went if ns == ""} <= CLUSTER_SCOPED
        assert {(g, r, v) for ns, g, r, v in went if ns == RELEASE_NAMESPACE} <= {
            ("", "configmaps", "get"), ("", "configmaps", "create"),
            ("", "configmaps", "patch")}  # the provider catalog (read, compared, written when it differs)
        for ns in own:  # it did the work: Secrets read and written, status written, in each of its own
            assert {("", "secrets", "list"), ("", "secrets", "create"),
                    ("one.ie", "backendconnections/status", "patch"),
                    ("one.ie", "organizations/status", "patch")} <= {(g, r, v) for n, g, r, v in went if n == ns}
        refusals = [r for r in env.secure.access.refusals if r[0] == user]
        assert refusals == [], refusals
    errors = [line for line in env.logs.lines if line.startswith(("ERROR", "CRITICAL"))]
    assert errors == [], errors[:5]

    # And no credential in any log line, Event, status, Secret or either shard's metrics.
    plaintexts.update(v for creds in env.providers.credentials.values() for v in creds.values())
    await leak_scan(env, plaintexts)
    for shard in (shard_a, shard_b):
        metrics = generate_latest(shard.services.metrics.registry).decode()
        own, other = ("tenant-a-1", "tenant-b-1") if shard is shard_a else ("tenant-b-1", "tenant-a-1")
        assert f'namespace="{own}"' in metrics and f'namespace="{other}"' not in metrics  # its own tenants only
        assert 'namespace="tenant-c"' not in metrics
        assert not [p for p in plaintexts if len(p) >= 8 and p in metrics]


async def test_globs_without_namespace_listing_stop_the_operator_clearly(tmp_path: Path) -> None:
    """The chart's cluster-wide roles (no list/watch of namespaces) and a glob: the operator refuses
    to start, naming WATCH_NAMESPACES and the missing permission, instead of serving nothing."""
    from oneie_operator.demo.environment import env_start_operator
    from oneie_operator.errors import ConfigurationError

    async with local_environment(tmp_path, rbac=True, start_operator=False,
                                 config_env={"WATCH_NAMESPACES": "tenant-a-*"}) as env:
        with pytest.raises(ConfigurationError) as info:
            await env_start_operator(env)
        env.operator = None  # it stopped with that error: nothing left to stop
    message = str(info.value)
    assert message.startswith("WATCH_NAMESPACES=tenant-a-*: globs and !exclusions need list and watch on namespaces")
    assert "403 Forbidden" in message
