"""`kubectl oneie migrate-labels` and `uninstall-cleanup` (issue 12, item 12) as a user runs them:
a subprocess against the emulator, with the real operator running (then stopped, as after an uninstall)."""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from oneie_operator.demo.environment import LocalEnvironment, env_stop_operator, local_environment
from oneie_operator.testing.kubeapi import condition, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

API = "one.ie/v1alpha1"
LABEL = "one.ie/credentials"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    async with local_environment(Path(tmp_path_factory.mktemp("upgrade"))) as environment:
        yield environment


async def plugin(env: LocalEnvironment, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oneie_operator.cli.kubectl_plugin", *args, "--kubeconfig", str(env.kubeconfig),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def secret(env: LocalEnvironment, ns: str, name: str, *, type_: str = "Opaque",
                 labels: dict[str, str] | None = None) -> None:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in env.providers.credentials["convex"].items()}
    await env.api.apply({"apiVersion": "v1", "kind": "Secret", "type": type_,
                         "metadata": {"name": name, "namespace": ns, "labels": labels or {}}, "data": data})


async def connection(env: LocalEnvironment, ns: str, name: str, secret_name: str) -> None:
    await env.api.apply({"apiVersion": API, "kind": "BackendConnection", "metadata": {"name": name, "namespace": ns},
                         "spec": {"provider": "convex", "convex": env.providers.settings("convex"),
                                  "credentialsSecretRef": {"name": secret_name}}})


async def labels_of(env: LocalEnvironment, ns: str, name: str) -> dict[str, str]:
    obj = await env.api.get("v1", "Secret", ns, name)
    assert obj is not None
    return dict(obj["metadata"].get("labels") or {})


async def ready_reason(env: LocalEnvironment, ns: str, name: str) -> str:
    return str(condition(await env.api.get(API, "BackendConnection", ns, name), "Ready").get("reason") or "")


async def test_migrate_labels_opts_in_exactly_the_secrets_connections_use(env: LocalEnvironment) -> None:
    for ns in ("tenant-m", "tenant-n"):
        await env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await secret(env, "tenant-m", "shared")                                   # used by two connections
    await secret(env, "tenant-m", "custom", type_="example.com/custom")       # not Opaque
    await secret(env, "tenant-m", "said-no", labels={LABEL: "false"})          # its owner said no
    await secret(env, "tenant-m", "already", labels={LABEL: "true"})
    await secret(env, "tenant-m", "unused")                                   # no connection names it
    await secret(env, "tenant-n", "creds")
    for name, ref in [("a", "shared"), ("b", "shared"), ("c", "custom"), ("d", "said-no"), ("e", "missing"),
                      ("f", "already")]:
        await connection(env, "tenant-m", name, ref)
    await connection(env, "tenant-n", "g", "creds")

    async def not_opted_in() -> bool:
        return await ready_reason(env, "tenant-m", "a") == "SecretNotOptedIn"
    await wait_for(not_opted_in, timeout=20, what="the unlabelled Secret refused (before the migration)")

    code, out, err = await plugin(env, "migrate-labels", "-n", "tenant-m", "--dry-run")
    assert code == 1, (out, err)  # custom and said-no are left: they need a person
    assert "secret/shared -n tenant-m: would label one.ie/credentials=true (used by backendconnection/a, " \
        "backendconnection/b)" in out
    assert LABEL not in await labels_of(env, "tenant-m", "shared")

    code, out, err = await plugin(env, "migrate-labels", "-n", "tenant-m")
    assert code == 1, (out, err)
    lines = sorted(out.splitlines())
    assert lines == sorted([
        "secret/already -n tenant-m: already labelled one.ie/credentials=true",
        "secret/custom -n tenant-m: not labelled: type example.com/custom, not Opaque (used by backendconnection/c);"
        " the operator never reads it: put the credentials in an Opaque Secret",
        "secret/missing -n tenant-m: not found (used by backendconnection/e): nothing to label",
        "secret/said-no -n tenant-m: not labelled: it carries one.ie/credentials=false (used by"
        " backendconnection/d); left as it is",
        "secret/shared -n tenant-m: labelled one.ie/credentials=true (used by backendconnection/a,"
        " backendconnection/b)",
    ]), out
    assert (await labels_of(env, "tenant-m", "shared"))[LABEL] == "true"
    assert LABEL not in await labels_of(env, "tenant-m", "custom")
    assert (await labels_of(env, "tenant-m", "said-no"))[LABEL] == "false"
    assert LABEL not in await labels_of(env, "tenant-m", "unused")
    assert LABEL not in await labels_of(env, "tenant-n", "creds"), "-n tenant-m touched another namespace"

    async def ready() -> bool:  # the operator picks the labelled Secret up by itself
        return await ready_reason(env, "tenant-m", "a") == "CredentialsVerified"
    await wait_for(ready, timeout=30, what="connection a Ready after the migration")

    code, out, _ = await plugin(env, "migrate-labels", "-A")
    assert "secret/creds -n tenant-n: labelled one.ie/credentials=true (used by backendconnection/g)" in out
    assert "secret/shared -n tenant-m: already labelled" in out
    assert (await labels_of(env, "tenant-n", "creds"))[LABEL] == "true"


async def test_uninstall_cleanup_removes_the_finalizers_so_nothing_stays_stuck(env: LocalEnvironment) -> None:
    ns = "tenant-u"
    await env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await secret(env, ns, "creds", labels={LABEL: "true"})
    await connection(env, ns, "db", "creds")
    await env.api.apply({"apiVersion": API, "kind": "Organization", "metadata": {"name": "acme", "namespace": ns},
                         "spec": {"backend": {"connectionRef": {"name": "db"}}}})

    async def finalized() -> bool:  # connections carry it (Organizations do not, today: cleaned up if they do)
        obj = await env.api.get(API, "BackendConnection", ns, "db")
        return obj is not None and "one.ie/finalizer" in (obj["metadata"].get("finalizers") or [])
    await wait_for(finalized, timeout=30, what="the operator's finalizer")

    await env_stop_operator(env)  # the operator uninstalled
    await env.api.delete(API, "Organization", ns, "acme")
    await env.api.delete(API, "BackendConnection", ns, "db")
    stuck: dict[str, Any] | None = await env.api.get(API, "BackendConnection", ns, "db")
    assert stuck is not None and stuck["metadata"].get("deletionTimestamp"), "stuck on the finalizer"

    code, out, err = await plugin(env, "uninstall-cleanup", "-A", "--dry-run")
    assert code == 0, err
    assert f"backendconnection/db -n {ns}: would remove finalizer one.ie/finalizer" in out
    assert await env.api.get(API, "BackendConnection", ns, "db") is not None

    code, out, err = await plugin(env, "uninstall-cleanup", "-A")
    assert code == 0, err
    assert f"backendconnection/db -n {ns}: removed finalizer one.ie/finalizer" in out

    async def gone() -> bool:
        return await env.api.get(API, "BackendConnection", ns, "db") is None
    await wait_for(gone, timeout=10, what="the connection deleted once the finalizer is gone")
    code, out, _ = await plugin(env, "uninstall-cleanup", "-A")
    assert code == 0 and "no Organizations and BackendConnections carry one.ie/finalizer" in out
