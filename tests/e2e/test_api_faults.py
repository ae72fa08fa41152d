"""The operator under API server faults converges and loses nothing (issue 12 item 11).

The real operator (``python -m oneie_operator run``, its own process) talks to the emulator through
a fault-injecting front (``oneie_operator.testing.faults``); the test reads and writes through the
emulator's plain entrance. While organizations switch back and forth and connections are probed:

* 15 % of requests answer 429 (Retry-After: 1), 5 % answer 500 and 5 % of writes 503;
* every watch is closed twice, and the watches restarted within 3 s of the first time are
  expired (410 Gone, as an ERROR event: the watcher must list again);
* the API server is unreachable for ``OUTAGE_SECONDS`` (connections refused and dropped), while
  the organizations are switched again — scaled down from the issue's 30 s to keep the test short
  (each second costs a second); the code paths are the same (connection refused, watches broken).

Then the faults stop, and within a deadline: every organization's binding Secret serves what its
status names, which is what its spec wants, its last switch ended (Succeeded, or RolledBack from a
target the spec has left since), no history entry is duplicated, and every connection's ``usedBy``
names exactly the organizations using it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from oneie_operator.demo.environment import repository_root
from oneie_operator.testing.cluster import write_kubeconfig
from oneie_operator.testing.faults import FaultControl, Rule, serve_faulty_emulator_in_thread
from oneie_operator.testing.kubeapi import KubeAPI, condition, wait_for
from oneie_operator.testing.provider_servers import ProviderServers
from oneie_operator.vault import generate_key

ORG = ("one.ie/v1alpha1", "Organization")
BC = ("one.ie/v1alpha1", "BackendConnection")
NS = "t-faults"
CONNECTIONS = {"cx-a": "convex", "sb-a": "supabase", "cx-b": "convex", "sb-b": "supabase"}
NAMES = list(CONNECTIONS)
ORGS = [f"org-{i}" for i in range(8)]
OUTAGE_SECONDS = 10.0


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[tuple[KubeAPI, FaultControl, ProviderServers, Path]]:
    crds = sorted((repository_root() / "crds").glob("*.yaml"))
    with serve_faulty_emulator_in_thread(crds, seed=12) as (_, url, faults):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", faults.url)
        async with ProviderServers(providers=("convex", "supabase")) as servers:
            api = KubeAPI(url)
            try:
                yield api, faults, servers, kubeconfig
            finally:
                await api.aclose()


async def _start_operator(kubeconfig: Path, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCRYPTION_")}
    env.update(ENCRYPTION_KEY=generate_key(), ALLOW_LOOPBACK="true", ALLOW_PLAIN_HTTP="true", METRICS_PORT="0",
               HEALTH_PORT="0", BIND_ADDRESS="127.0.0.1", PROBE_INITIAL_JITTER_SECONDS="1",
               PYTHONPATH=os.pathsep.join(sys.path))
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(kubeconfig),
            env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)


async def _setup(api: KubeAPI, servers: ProviderServers) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for name, provider in CONNECTIONS.items():
        await api.create({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": f"{name}-creds", "namespace": NS,
                                       "labels": {"one.ie/credentials": "true"}},
                          "stringData": servers.credentials[provider]})
        await api.create({"apiVersion": BC[0], "kind": BC[1], "metadata": {"name": name, "namespace": NS},
                          "spec": {"provider": provider, provider: servers.settings(provider),
                                   "credentialsSecretRef": {"name": f"{name}-creds"},
                                   "healthCheck": {"intervalSeconds": 10, "timeoutSeconds": 5}}})
    for i, org in enumerate(ORGS):
        await api.create({"apiVersion": ORG[0], "kind": ORG[1], "metadata": {"name": org, "namespace": NS},
                          "spec": {"backend": {"connectionRef": {"name": NAMES[i % 4]}}}})


async def _switch_all(api: KubeAPI, round_: int) -> None:
    for i, org in enumerate(ORGS):
        target = NAMES[(i + round_) % 4]
        await api.patch(*ORG, NS, org, {"spec": {"backend": {"connectionRef": {"name": target}}}})


async def _probe_all(api: KubeAPI) -> None:
    stamp = str(time.time())
    for name in CONNECTIONS:
        await api.patch(*BC, NS, name, {"metadata": {"annotations": {"one.ie/probe": stamp}}})


async def _served(api: KubeAPI, org: str) -> str | None:
    secret = await api.get("v1", "Secret", NS, f"{org}-backend")
    return base64.b64decode(secret["data"]["connection"]).decode() if secret else None


async def _problems(api: KubeAPI) -> list[str]:
    """Everything that is not (yet) converged; empty when all is well."""
    problems: list[str] = []
    using: dict[str, set[str]] = {name: set() for name in CONNECTIONS}
    for org in ORGS:
        obj = await api.get(*ORG, NS, org)
        assert obj is not None
        status, wanted = obj.get("status") or {}, obj["spec"]["backend"]["connectionRef"]["name"]
        active, served = status.get("activeConnection"), await _served(api, org)
        if served != active:
            problems.append(f"{org}: binding serves {served}, status names {active}")
        if active != wanted or status.get("observedGeneration") != obj["metadata"]["generation"]:
            problems.append(f"{org}: wants {wanted}, has {active} (generation {obj['metadata']['generation']},"
                            f" observed {status.get('observedGeneration')})")
        if status.get("switching"):
            problems.append(f"{org}: still switching {status['switching']}")
        last = status.get("lastSwitch") or {}
        # Ended: Succeeded, or rolled back from a target the spec has left since (superseded).
        if not (last.get("result") == "Succeeded" or (last.get("result") == "RolledBack" and last.get("to") != wanted)):
            problems.append(f"{org}: last switch {last}")
        if condition(obj, "Ready").get("status") != "True":
            problems.append(f"{org}: not Ready: {condition(obj, 'Ready')}; Kopf's state: {status.get('kopf')}")
        history = [(h.get("startedAt"), h.get("to"), h.get("result")) for h in status.get("history") or []]
        if len(history) != len(set(history)):
            problems.append(f"{org}: duplicate history entries {history}")
        if active in using:
            using[active].add(org)
    for name, orgs in using.items():
        obj = await api.get(*BC, NS, name)
        assert obj is not None
        used_by = sorted((obj.get("status") or {}).get("usedBy") or [])
        if used_by != sorted(orgs):
            problems.append(f"{name}: usedBy {used_by}, used by {sorted(orgs)}")
        if condition(obj, "Ready").get("status") != "True":
            problems.append(f"{name}: not Ready: {condition(obj, 'Ready')}")
    return problems


async def _converged(api: KubeAPI) -> bool:
    return not await _problems(api)


@pytest.mark.asyncio
async def test_api_server_faults_converge_without_losing_anything(
    world: tuple[KubeAPI, FaultControl, ProviderServers, Path], tmp_path: Path
) -> None:
    api, faults, servers, kubeconfig = world
    await _setup(api, servers)
    log = tmp_path / "operator.log"
    operator = await _start_operator(kubeconfig, log)
    try:
        await wait_for(lambda: _converged(api), timeout=120, interval=0.5, what="the first convergence")

        faults.add(Rule(429, fraction=0.15, retry_after=1))
        faults.add(Rule(500, fraction=0.05))
        # Writes are fewer than reads: a larger share of them, so that some are refused in every run.
        faults.add(Rule(503, fraction=0.2, writes_only=True, retry_after=1))
        await _switch_all(api, 1)
        await _probe_all(api)
        faults.add(Rule(410, watches=True), seconds=3.0)  # every watch restarted in the next 3 s expires
        faults.close_watches()
        await asyncio.sleep(1.0)  # let the switches run into the faults (the faults are the point)
        await _switch_all(api, 2)
        outage = faults.outage(OUTAGE_SECONDS)  # in the middle of the second round
        await _switch_all(api, 3)  # the operator cannot see these until it is back
        await _probe_all(api)
        await asyncio.wrap_future(outage)
        faults.close_watches()
        await _switch_all(api, 4)
        await asyncio.sleep(2.0)
        injected = dict(faults.injector.injected)
        faults.clear()

        try:
            await wait_for(lambda: _converged(api), timeout=120, interval=0.5, what="convergence after the faults")
        except TimeoutError:
            pytest.fail("not converged:\n" + "\n".join(await _problems(api)))
        assert operator.returncode is None, "the operator kept running"
        assert all(injected.get(code, 0) > 0 for code in (429, 500, 503, 410)), injected
        assert faults.front.outages == 1
        for org in ORGS:  # every organization really switched through the faults
            obj = await api.get(*ORG, NS, org)
            assert obj is not None and len(obj["status"]["history"]) >= 2
    finally:
        if operator.returncode is None:
            operator.terminate()
            await asyncio.wait_for(operator.wait(), 30)
