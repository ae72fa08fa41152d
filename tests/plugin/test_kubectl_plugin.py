"""`kubectl oneie` as a user runs it: a subprocess against the emulator, with the real operator running.

The operator runs in this test's event loop (`local_environment`), so every plug-in call is an
`asyncio` subprocess: the loop keeps serving the operator while the plug-in waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from oneie_operator.demo.environment import LocalEnvironment, local_environment, restart_operator
from oneie_operator.testing.cluster import write_kubeconfig
from oneie_operator.testing.kubeapi import condition, wait_for
from oneie_operator.vault import EncryptionKey, Keyring, generate_key

pytestmark = pytest.mark.asyncio(loop_scope="module")

API = "one.ie/v1alpha1"
ORG, BC = (API, "Organization"), (API, "BackendConnection")
STEPS = ["resolve", "test", "activate", "healthGate"]
#: The steps the operator reports live in status.switching (those that wait on a provider).
LIVE_STEPS = ["resolve", "test", "healthGate"]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    workdir = Path(tmp_path_factory.mktemp("plugin"))
    # SWITCH_PROGRESS_DELAY_SECONDS=0: every switch writes every live step, however fast, so the
    # plug-in's live display is checked step by step (the delay itself: tests/unit/test_switch_progress.py).
    config = {"PROVIDER_TIMEOUT_SECONDS": "10", "SWITCH_PROGRESS_DELAY_SECONDS": "0"}
    async with local_environment(workdir, config_env=config) as environment:
        yield environment


def _environ(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "ENCRYPTION_KEYRING", "KUBECONFIG")}
    environ.update(extra)
    return environ


async def plugin(env: LocalEnvironment, *args: str, kubeconfig: Path | None = None, timeout: float = 60,
                 **environ: str) -> Result:
    """`python -m oneie_operator.cli.kubectl_plugin ARGS --kubeconfig K` in a subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oneie_operator.cli.kubectl_plugin", *args,
        "--kubeconfig", str(kubeconfig or env.kubeconfig),
        env=_environ(**environ), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


# -- a tenant namespace with connections and organizations --------------------------------------------


class Ns:
    def __init__(self, env: LocalEnvironment, name: str) -> None:
        self.env, self.name = env, name

    async def good(self, conn: str, provider: str) -> dict[str, Any]:
        await self.secret(f"{conn}-creds", dict(self.env.providers.credentials[provider]))
        await self.connection(conn, provider)
        return await self.wait_conn(conn, "True")

    async def secret(self, name: str, data: dict[str, str]) -> None:
        await self.env.api.apply({"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": name, "namespace": self.name,
                                               "labels": {"one.ie/credentials": "true"}},
                                  "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})

    async def connection(self, conn: str, provider: str) -> None:
        await self.env.api.apply({"apiVersion": API, "kind": "BackendConnection",
                                  "metadata": {"name": conn, "namespace": self.name},
                                  "spec": {"provider": provider, provider: self.env.providers.settings(provider),
                                           "credentialsSecretRef": {"name": f"{conn}-creds"}}})

    async def wait_conn(self, conn: str, ready: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            obj = await self.env.api.get(*BC, self.name, conn)
            cond = condition(obj, "Ready")
            return obj if cond.get("status") == ready and cond.get("observedGeneration") == \
                obj["metadata"]["generation"] else None
        return await wait_for(probe, timeout=20, what=f"{self.name}/{conn} Ready={ready}")

    async def org(self, name: str, conn: str, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
        meta = {"name": name, "namespace": self.name, **(metadata or {})}
        await self.env.api.apply({"apiVersion": API, "kind": "Organization", "metadata": meta,
                                  "spec": {"backend": {"connectionRef": {"name": conn}}}})
        return await self.wait_org(name, conn)

    async def get_org(self, name: str) -> dict[str, Any]:
        obj = await self.env.api.get(*ORG, self.name, name)
        assert obj is not None
        return obj

    async def wait_org(self, name: str, active: str, result: str = "Succeeded") -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            obj = await self.get_org(name)
            status = obj.get("status") or {}
            done = status.get("observedGeneration") == obj["metadata"]["generation"] and not status.get("switching")
            last = status.get("lastSwitch") or {}
            return obj if done and status.get("activeConnection") == active and last.get("result") == result \
                else None
        return await wait_for(probe, timeout=30, what=f"{self.name}/{name} on {active} ({result})")


def live_steps(text: str) -> list[str]:
    """The steps printed live (``  [  0.12s] test …``), in order."""
    return [line.split("]", 1)[1].split()[0] for line in text.splitlines() if line.strip().startswith("[")]


# -- status ---------------------------------------------------------------------------------------------


async def test_status_tables_details_and_exit_codes(env: LocalEnvironment) -> None:
    ns, bad = Ns(env, "p-status"), Ns(env, "p-status-bad")

    async def broken() -> None:
        await bad.secret("broken-creds", {"deployKey": "dev:wrong|nope"})
        await bad.connection("broken", "convex")
        await bad.wait_conn("broken", "False")

    async def ready() -> None:
        await ns.good("main", "convex")
        await ns.org("acme", "main")

        async def used() -> bool:  # usedBy is written in the background, half a second later
            conn = await env.api.get(*BC, ns.name, "main") or {}
            return (conn.get("status") or {}).get("usedBy") == ["acme"]
        await wait_for(used, timeout=10, what="main's usedBy")

    await asyncio.gather(ready(), broken())
    own = write_kubeconfig(env.workdir / "kubeconfig-p-status", env.url, namespace=ns.name)
    unreachable = write_kubeconfig(env.workdir / "kubeconfig-closed", "http://127.0.0.1:9")
    calls = {  # independent: run at once
        "list": plugin(env, "status", "-n", ns.name),
        "detail": plugin(env, "status", "acme", "-n", ns.name),
        "conn": plugin(env, "status", "bconn/main", "-n", ns.name),
        "bad-list": plugin(env, "status", "-n", bad.name),
        "bad-detail": plugin(env, "status", "broken", "-n", bad.name),
        "all-json": plugin(env, "status", "-A", "-o", "json"),
        "detail-yaml": plugin(env, "status", "org/acme", "-n", ns.name, "-o", "yaml"),
        "all-table": plugin(env, "status", "-A"),
        "from-context": plugin(env, "status", "acme", kubeconfig=own),
        "missing": plugin(env, "status", "nothing-here", "-n", ns.name),
        "A-and-n": plugin(env, "status", "-A", "-n", ns.name),
        "down": plugin(env, "status", kubeconfig=unreachable),
        "nofile": plugin(env, "status", kubeconfig=env.workdir / "no-such-kubeconfig"),
    }
    r = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))

    # The tables: every object Ready → exit 0.
    assert r["list"].code == 0, r["list"]
    lines = r["list"].out.splitlines()
    assert lines[1].split() == ["NAME", "PROVIDER", "ACTIVE", "PREVIOUS", "READY", "HEALTHY", "LAST-SWITCH",
                                "TOTAL-MS", "REASON"]
    assert lines[2].split()[:5] == ["acme", "convex", "main", "-", "True"]
    assert lines[2].split()[6] == "Succeeded" and float(lines[2].split()[7]) > 0
    conn_header = lines.index("BackendConnections:") + 1
    assert lines[conn_header].split()[:7] == ["NAME", "PROVIDER", "READY", "REASON", "HEALTH", "KEY-ID", "USED-BY"]
    row = lines[conn_header + 1].split()
    key_id = EncryptionKey.from_hex(env.services.config.encryption_key or "").id
    assert row[:4] == ["main", "convex", "True", "CredentialsVerified"] and row[5:7] == [key_id, "acme"]

    # The detail view: conditions, the last switch's timed steps, the history.
    detail = r["detail"]
    assert detail.code == 0, detail
    assert "Organization p-status/acme" in detail.out and "Last switch:" in detail.out
    assert "(nothing) → main: Succeeded in" in detail.out
    for step in STEPS:
        assert any(line.split()[:2] == [step, "Succeeded"] for line in detail.out.splitlines()), step
    assert "History (newest first):" in detail.out
    assert r["conn"].code == 0 and "BackendConnection p-status/main" in r["conn"].out and key_id in r["conn"].out

    # A connection that is not Ready makes the list (and its own detail) exit 1.
    assert r["bad-list"].code == 1 and "CredentialsRejected" in r["bad-list"].out
    # ... and says why on stderr, naming each object that is not Ready and its reason.
    assert f"exit 1: 1 connection not Ready: {bad.name}/broken (CredentialsRejected)" in r["bad-list"].err
    assert "exit 1:" not in r["list"].err
    assert r["bad-detail"].code == 1 and "Ready:" in r["bad-detail"].out
    assert "CredentialsRejected" in r["bad-detail"].out

    # -o json / -o yaml parse; -A lists every namespace.
    doc = r["all-json"].json()
    assert doc["kind"] == "OneieStatus" and doc["ready"] is False and r["all-json"].code == 1
    orgs = {(o["namespace"], o["name"]): o for o in doc["organizations"]}
    assert orgs[(ns.name, "acme")]["activeConnection"] == "main"
    assert orgs[(ns.name, "acme")]["lastSwitch"]["result"] == "Succeeded"
    conns = {(c["namespace"], c["name"]): c for c in doc["connections"]}
    assert conns[(ns.name, "main")]["usedBy"] == ["acme"] and conns[(bad.name, "broken")]["ready"] == "False"
    detail_yaml = yaml.safe_load(r["detail-yaml"].out)
    assert detail_yaml["kind"] == "Organization" and [s["name"] for s in detail_yaml["lastSwitch"]["steps"]] == STEPS
    assert "NAMESPACE" in r["all-table"].out and bad.name in r["all-table"].out

    # The namespace defaults to the kubeconfig context's.
    assert r["from-context"].code == 0 and "Organization p-status/acme" in r["from-context"].out

    # Errors are exit 2 with a message, never a traceback.
    assert r["missing"].code == 2 and "nothing-here" in r["missing"].err
    assert r["A-and-n"].code == 2
    assert r["down"].code == 2 and "127.0.0.1" in r["down"].err
    assert r["nofile"].code == 2 and "no-such-kubeconfig" in r["nofile"].err
    assert not any("Traceback" in result.err for result in r.values())


# -- switch ---------------------------------------------------------------------------------------------


async def test_switch_wait_prints_live_steps_times_out_and_attaches(env: LocalEnvironment) -> None:
    ns = Ns(env, "p-switch")
    await asyncio.gather(ns.good("main", "convex"), ns.good("next", "supabase"))
    await ns.org("acme", "main")
    supabase = env.providers["supabase"]
    supabase.fault, supabase.fault_path = "slow:3", "/rest/v1/"  # the credential test of the switch is slow
    try:
        # --timeout shorter than the switch: exit 3, the switch goes on.
        early = await plugin(env, "switch", "acme", "--to", "next", "--wait", "--timeout", "0.5", "-n", ns.name)
        assert early.code == 3, early
        assert "timed out" in early.err and "last step seen: test" in early.err
        assert live_steps(early.out) == ["resolve", "test"]
        # The same command again attaches to the running switch and reports its end.
        attached = await plugin(env, "switch", "acme", "--to", "next", "--wait", "-n", ns.name)
        assert attached.code == 0, attached
        assert live_steps(attached.out)[-1] == "healthGate"
        assert "main → next: Succeeded in" in attached.out
        test_ms = next(float(line.split()[2]) for line in attached.out.splitlines() if line.split()[:1] == ["test"])
        assert test_ms >= 2900  # the slow credential test, timed
    finally:
        supabase.fault, supabase.fault_path = "ok", None
    assert (await ns.get_org("acme"))["status"]["activeConnection"] == "next"

    # A whole switch followed from the start: every step live, in order, then the timed steps.
    back = await plugin(env, "switch", "acme", "--to", "main", "--wait", "-n", ns.name)
    assert back.code == 0, back
    assert back.out.splitlines()[0] == "Switch p-switch/acme: next → main"
    assert live_steps(back.out) == LIVE_STEPS
    assert "next → main: Succeeded in" in back.out
    assert [line.split()[:2] for line in back.out.splitlines() if line.split()[:1] in ([s] for s in STEPS)
            and "…" not in line] == [[s, "Succeeded"] for s in STEPS]
    assert "WARNING" not in back.err

    # -o json: the result document on stdout, live progress on stderr.
    as_json = await plugin(env, "switch", "acme", "--to", "next", "--wait", "-o", "json", "-n", ns.name)
    assert as_json.code == 0, as_json
    doc = as_json.json()
    assert doc["succeeded"] is True and doc["lastSwitch"]["to"] == "next"
    assert [s["name"] for s in doc["lastSwitch"]["steps"]] == STEPS
    assert live_steps(as_json.err) == LIVE_STEPS

    # Without --wait: requested, exit 0; the operator does it.
    requested = await plugin(env, "switch", "acme", "--to", "main", "-n", ns.name)
    assert requested.code == 0 and "switch requested: next → main" in requested.out
    await ns.wait_org("acme", "main")
    same, typo, no_to = await asyncio.gather(
        plugin(env, "switch", "acme", "--to", "main", "-n", ns.name),
        plugin(env, "switch", "acme", "--to", "mian", "-n", ns.name),
        plugin(env, "switch", "acme", "-n", ns.name),
    )
    assert same.code == 0 and "already uses main" in same.out
    assert typo.code == 2 and "mian" in typo.err
    assert no_to.code == 2 and "--to" in no_to.err
    assert (await ns.get_org("acme"))["spec"]["backend"]["connectionRef"]["name"] == "main"


async def test_failed_switch_exits_1_with_the_reason_then_retry(env: LocalEnvironment) -> None:
    ns = Ns(env, "p-fail")

    async def bad() -> None:
        await ns.secret("bad-creds", {"deployKey": "dev:wrong|nope"})
        await ns.connection("bad", "convex")
        await ns.wait_conn("bad", "False")

    async def orgs() -> None:
        await ns.good("good", "convex")
        await asyncio.gather(ns.org("org", "good"), ns.org("calm", "good"))

    await asyncio.gather(bad(), orgs(), ns.good("other", "supabase"))

    failed = await plugin(env, "switch", "org", "--to", "bad", "--wait", "-n", ns.name)
    assert failed.code == 1, failed
    assert "RolledBack" in failed.err and "ConnectionNotReady" in failed.err and "good stays active" in failed.err
    assert "WARNING: BackendConnection bad is not Ready" in failed.err
    assert "good → bad: RolledBack" in failed.out
    assert [line.split()[:2] for line in failed.out.splitlines() if line.split()[:1] == ["resolve"]][-1] == \
        ["resolve", "Failed"]
    again, as_json, calm = await asyncio.gather(
        plugin(env, "switch", "org", "--to", "bad", "--wait", "-n", ns.name),
        plugin(env, "status", "org", "-n", ns.name, "-o", "json"),
        plugin(env, "retry", "calm", "-n", ns.name),
    )
    assert again.code == 1 and "kubectl oneie retry org" in again.err
    assert as_json.code == 1 and as_json.json()["lastSwitch"]["result"] == "RolledBack"
    assert calm.code == 2 and "no failed switch to retry" in calm.err  # nothing failed: nothing to retry

    # A health gate that fails is not retried by the operator on its own; `retry` does it.
    supabase = env.providers["supabase"]
    supabase.fault, supabase.fault_path = "503", "/auth/v1/health"
    try:
        gate = await plugin(env, "switch", "org", "--to", "other", "--wait", "-n", ns.name)
        assert gate.code == 1 and "healthGate" in gate.out and "RolledBack" in gate.err, gate
    finally:
        supabase.fault, supabase.fault_path = "ok", None
    dry = await plugin(env, "retry", "org", "--dry-run", "-n", ns.name)
    assert dry.code == 0 and "one.ie/retry" in dry.out
    assert "one.ie/retry" not in ((await ns.get_org("org"))["metadata"].get("annotations") or {})
    retried = await plugin(env, "retry", "org", "--wait", "-n", ns.name)
    assert retried.code == 0, retried
    assert live_steps(retried.out) == LIVE_STEPS and "good → other: Succeeded" in retried.out
    assert "one.ie/retry" in (await ns.get_org("org"))["metadata"]["annotations"]


# -- rollback and GitOps ------------------------------------------------------------------------------


ARGO = {"annotations": {"argocd.argoproj.io/tracking-id": "tenants:one.ie/Organization:p-rollback/argo"},
        "labels": {"app.kubernetes.io/instance": "tenants"}}
FLUX = {"labels": {"kustomize.toolkit.fluxcd.io/name": "tenants",
                   "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}
MANAGED = {"managedFields": [{"manager": "kustomize-controller", "operation": "Apply", "apiVersion": API,
                              "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:backend": {}}}}]}


async def test_rollback_warns_under_gitops(env: LocalEnvironment) -> None:
    ns = Ns(env, "p-rollback")
    await asyncio.gather(ns.good("a", "notion"), ns.good("b", "wordpress"))
    kinds = {"plain": {}, "argo": ARGO, "flux": FLUX, "managed": MANAGED}

    async def on_b(name: str, metadata: dict[str, Any]) -> None:
        await ns.org(name, "a", metadata)
        await env.api.patch(*ORG, ns.name, name, {"spec": {"backend": {"connectionRef": {"name": "b"}}}})
        await ns.wait_org(name, "b")

    await asyncio.gather(ns.org("fresh", "a"), *(on_b(name, meta) for name, meta in kinds.items()))
    calls = {
        "fresh": plugin(env, "rollback", "fresh", "-n", ns.name),
        "plain": plugin(env, "rollback", "plain", "--wait", "-n", ns.name),
        **{name: plugin(env, "rollback", name, "--dry-run", "-n", ns.name) for name in ("argo", "flux", "managed")},
    }
    r = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))

    # No previous connection: exit 2.
    assert r["fresh"].code == 2 and "no previous connection" in r["fresh"].err

    # A plain object: no warning; the rollback switches back and marks itself.
    back = r["plain"]
    assert back.code == 0, back
    assert "WARNING" not in back.err
    # Back to the connection that served it, with the same encrypted credentials: verified
    # already, so no test (Skipped), straight to activation.
    assert back.out.splitlines()[0] == "Rollback p-rollback/plain: b → a"
    assert live_steps(back.out) == ["resolve", "healthGate"]
    obj = await ns.get_org("plain")
    steps = {step["name"]: step["result"] for step in obj["status"]["lastSwitch"]["steps"]}
    assert steps == {"resolve": "Succeeded", "test": "Skipped", "activate": "Succeeded", "healthGate": "Succeeded"}
    assert obj["status"]["activeConnection"] == "a" and obj["status"]["previousConnection"] == "b"
    assert obj["metadata"]["annotations"]["one.ie/rollback"].endswith("Z")
    assert obj["status"].get("lastRollback") == obj["metadata"]["annotations"]["one.ie/rollback"]

    # Argo CD / Flux / their controllers in managedFields: a warning, and --dry-run changes nothing.
    for name, tool in (("argo", "Argo CD"), ("flux", "Flux"), ("managed", "Flux")):
        dry = r[name]
        assert dry.code == 0, dry
        assert f"managed by {tool}" in dry.err and "next sync will revert" in dry.err and "Git" in dry.err, dry.err
        assert "would patch organization p-rollback/" + name in dry.out and "b → a" in dry.out
        after = await ns.get_org(name)
        assert after["spec"]["backend"]["connectionRef"]["name"] == "b"
        assert "one.ie/rollback" not in (after["metadata"].get("annotations") or {})
    assert "Application tenants" in r["argo"].err and "Kustomization flux-system/tenants" in r["flux"].err
    assert "managedFields manager kustomize-controller" in r["managed"].err

    # The user asked for it: warned, and done.
    done = await plugin(env, "rollback", "argo", "--wait", "-n", ns.name)
    assert done.code == 0 and "managed by Argo CD" in done.err, done
    assert (await ns.get_org("argo"))["status"]["activeConnection"] == "a"


# -- probe ----------------------------------------------------------------------------------------------


async def test_probe_sets_the_annotation_and_waits_for_a_new_probe(env: LocalEnvironment) -> None:
    ns = Ns(env, "p-probe")
    await ns.good("db", "supabase")
    first = await plugin(env, "probe", "db", "-n", ns.name)
    assert first.code == 0 and "probe requested" in first.out
    obj = await env.api.get(*BC, ns.name, "db")
    stamp = obj["metadata"]["annotations"]["one.ie/probe"]
    assert stamp.endswith("Z")

    # --wait returns once status.health.lastProbeTime changes (written here if the engine did not).
    waiting = asyncio.create_task(plugin(env, "probe", "db", "--wait", "--timeout", "30", "-o", "json", "-n", ns.name))

    async def new_request() -> bool:
        current = await env.api.get(*BC, ns.name, "db")
        return current["metadata"]["annotations"]["one.ie/probe"] != stamp
    await wait_for(new_request, timeout=20, what="a new one.ie/probe annotation")
    await env.api.patch(*BC, ns.name, "db", {"status": {"health": {"lastProbeTime": "2999-01-01T00:00:00Z"}}},
                        subresource="status")
    result = await waiting
    assert result.code == 0, result
    doc = result.json()
    assert doc["kind"] == "ProbeResult" and doc["health"]["lastProbeTime"]
    assert (await plugin(env, "probe", "missing", "-n", ns.name)).code == 2


# -- keys -----------------------------------------------------------------------------------------------


async def test_keygen_and_offline_rotate_key(env: LocalEnvironment, tmp_path: Path) -> None:
    old, new, other = generate_key(), generate_key(), generate_key()
    old_id, new_id, other_id = (EncryptionKey.from_hex(k).id for k in (old, new, other))
    key_file = tmp_path / "new.key"
    key_file.write_text(new + "\n")
    out_file = tmp_path / "keyring.json"
    current_ring = json.dumps({"primary": other_id, "keys": {other_id: other, old_id: old}})
    calls = {
        "keygen": plugin(env, "keygen"),
        "keygen-json": plugin(env, "keygen", "-o", "json"),
        "keygen-yaml": plugin(env, "keygen", "-o", "yaml"),
        "to-file": plugin(env, "rotate-key", "--new-key-file", str(key_file), "--output-file", str(out_file),
                          ENCRYPTION_KEY=old),
        "from-ring": plugin(env, "rotate-key", "--generate", ENCRYPTION_KEYRING=current_ring),
        "no-key": plugin(env, "rotate-key", "--generate"),
        "same": plugin(env, "rotate-key", "--new-key-file", str(key_file), "--output-file", "-", ENCRYPTION_KEY=new),
        "both": plugin(env, "rotate-key", "--generate", "--new-key-file", str(key_file), ENCRYPTION_KEY=old),
    }
    r = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))

    # keygen: a table, JSON or YAML; the key on stdout only.
    assert r["keygen"].code == 0 and r["keygen"].err == ""
    header, row = r["keygen"].out.splitlines()
    assert header.split() == ["KEY-ID", "KEY"]
    key_id, key = row.split()
    assert len(key) == 64 and int(key, 16) >= 0 and EncryptionKey.from_hex(key).id == key_id
    doc = r["keygen-json"].json()
    assert set(doc) == {"key", "id"} and EncryptionKey.from_hex(doc["key"]).id == doc["id"] and doc["key"] != key
    as_yaml = yaml.safe_load(r["keygen-yaml"].out)
    assert EncryptionKey.from_hex(as_yaml["key"]).id == as_yaml["id"]

    # From ENCRYPTION_KEY to a 0600 file: the old key kept, the new one primary; messages show ids only.
    result = r["to-file"]
    assert result.code == 0, result
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert json.loads(out_file.read_text()) == {"primary": new_id, "keys": {old_id: old, new_id: new}}
    assert old not in result.out + result.err and new not in result.out + result.err
    assert new_id in result.out and old_id in result.out

    # From a keyring: every key kept, the new one primary; stdout (redirected) is the keyring itself.
    third = r["from-ring"]
    assert third.code == 0 and old not in third.err and other not in third.err
    next_ring = third.json()
    assert list(next_ring["keys"])[:2] == [other_id, old_id] and len(next_ring["keys"]) == 3
    assert Keyring.from_env(None, third.out).primary_id == next_ring["primary"] not in (other_id, old_id)

    # Usage errors: no current key anywhere, the new key already in the keyring, two sources.
    assert r["no-key"].code == 2 and "ENCRYPTION_KEY" in r["no-key"].err
    assert r["same"].code == 2 and "already in the keyring" in r["same"].err and new not in r["same"].err
    assert r["both"].code == 2 and old not in r["both"].err


# -- through kubectl --------------------------------------------------------------------------------------


async def test_real_kubectl_finds_the_plugin(env: LocalEnvironment, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    script = Path(sys.executable).parent / "kubectl-oneie"
    if kubectl is None or not script.exists():
        pytest.skip("needs kubectl and the installed kubectl-oneie console script")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl-oneie").symlink_to(script)
    ns = Ns(env, "p-kubectl")
    await ns.good("db", "wordpress")
    await ns.org("site", "db")
    environ = _environ(PATH=f"{bin_dir}{os.pathsep}{Path(kubectl).parent}")
    listed = await asyncio.create_subprocess_exec(kubectl, "plugin", "list", env=environ,
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(listed.communicate(), 60)
    assert str(bin_dir / "kubectl-oneie") in out.decode()
    proc = await asyncio.create_subprocess_exec(
        kubectl, "oneie", "status", "--kubeconfig", str(env.kubeconfig), "-n", ns.name, env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "site" in text and "wordpress" in text and "CredentialsVerified" in text


async def test_rotate_key_into_the_secret_then_progress(env: LocalEnvironment) -> None:
    """Runs last: it restarts the operator with the new keyring."""
    ns = Ns(env, "p-rotate")
    await asyncio.gather(ns.good("one", "convex"), ns.good("two", "notion"))
    old = env.services.config.encryption_key
    assert old is not None
    old_id = EncryptionKey.from_hex(old).id
    secret = ["--secret", "oneie-operator", "--secret-namespace", "oneie-system"]
    await env.api.apply({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "oneie-operator", "namespace": "oneie-system"},
                         "data": {"ENCRYPTION_KEY": base64.b64encode(old.encode()).decode(),
                                  "METRICS_PORT": base64.b64encode(b"8080").decode()}})

    # A Secret loaded whole with envFrom: there ENCRYPTION_KEY must go (the operator refuses both).
    await env.api.apply({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "oneie-envfrom", "namespace": "oneie-system"},
                         "data": {"ENCRYPTION_KEY": base64.b64encode(old.encode()).decode()}})
    before, dry, dropped = await asyncio.gather(
        plugin(env, "rotate-key", "--status", "-n", ns.name, *secret),
        plugin(env, "rotate-key", "--generate", "--dry-run", *secret),
        plugin(env, "rotate-key", "--generate", "--drop-encryption-key", "--secret", "oneie-envfrom",
               "--secret-namespace", "oneie-system"),
    )
    assert before.code == 0 and f"primary {old_id}: 2/2" in before.out and "rotation complete" in before.out
    assert dry.code == 0 and "would write a keyring" in dry.out
    assert dropped.code == 0 and "ENCRYPTION_KEY removed" in dropped.out, dropped
    envfrom = await env.api.get("v1", "Secret", "oneie-system", "oneie-envfrom")
    assert set(envfrom["data"]) == {"ENCRYPTION_KEYRING"}

    rotated = await plugin(env, "rotate-key", "--generate", *secret)
    assert rotated.code == 0, rotated
    assert old not in rotated.out + rotated.err and "ENCRYPTION_KEY kept as a fallback" in rotated.out
    assert "encryption.existingSecretKey=ENCRYPTION_KEYRING" in rotated.out
    stored = await env.api.get("v1", "Secret", "oneie-system", "oneie-operator")
    data = {k: base64.b64decode(v).decode() for k, v in stored["data"].items()}
    assert data["ENCRYPTION_KEY"] == old and data["METRICS_PORT"] == "8080"  # the chart maps one key by name
    ring = json.loads(data["ENCRYPTION_KEYRING"])
    new_id = ring["primary"]
    assert new_id != old_id and ring["keys"][old_id] == old and set(ring["keys"]) == {old_id, new_id}
    assert Keyring.from_env(None, data["ENCRYPTION_KEYRING"]).primary_id == new_id

    pending = await plugin(env, "rotate-key", "--status", "-n", ns.name, "-o", "json", *secret)
    assert pending.code == 1
    assert pending.json()["primary"] == new_id and pending.json()["pending"] == 2

    # The operator started with the new keyring re-encrypts everything under the new primary.
    await restart_operator(env, {"ENCRYPTION_KEY": "", "ENCRYPTION_KEYRING": data["ENCRYPTION_KEYRING"]})

    async def moved() -> bool:
        conns = await env.api.items(*BC, ns.name)
        return all((c.get("status") or {}).get("credentials", {}).get("keyIds") == [new_id] for c in conns)
    await wait_for(moved, timeout=30, what="credentials re-encrypted under the new primary")
    after = await plugin(env, "rotate-key", "--status", "-n", ns.name, *secret)
    assert after.code == 0, after
    assert f"primary {new_id}: 2/2 connections re-encrypted, 0 pending; rotation complete" in after.out
    rows = {line.split()[1]: line.split() for line in after.out.splitlines()[1:3]}
    assert rows["one"][2:] == [new_id, new_id, "Done"] and rows["two"][4] == "Done"
    everywhere = await plugin(env, "rotate-key", "--status", "-A", "--primary", new_id, "-o", "json")
    assert everywhere.json()["primary"] == new_id
