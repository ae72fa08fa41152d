"""Writes the API server refused are tried again, not left to an event that may never come.

1. An organization waiting for its connection is woken even when the API server refuses the wake-up.

An organization created before its connection is Ready fails its switch (``ConnectionNotReady``)
and waits: nothing retries it by itself; the connection becoming Ready triggers it (an annotation
written by the connection's watch-event handler). Kopf does not retry watch-event handlers, so a
trigger the API server refused (overloaded: 503) was lost and the organization waited for ever;
at 2,000 connections and 500 organizations created at once (``benchmarks/restart.py``) 15 stayed
so. Here the API server refuses every write to the organization (not its status) for 3 s around
the moment the connection becomes Ready; the organization must still become active.

2. A probe result whose status write was refused is written again soon, not at the next probe (an
interval later, up to a day). At fleet scale 517 of 2,000 first probes' writes were refused and
stayed unwritten, so those connections had no ``lastProbeTime`` to resume their schedule from.
"""

from __future__ import annotations

import asyncio
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
NS = "t-lost-trigger"


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[tuple[KubeAPI, FaultControl, ProviderServers, Path]]:
    crds = sorted((repository_root() / "crds").glob("*.yaml"))
    with serve_faulty_emulator_in_thread(crds, seed=3) as (_, url, faults):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", faults.url)
        async with ProviderServers(providers=("convex",)) as servers:
            api = KubeAPI(url)
            try:
                yield api, faults, servers, kubeconfig
            finally:
                await api.aclose()


async def start_operator(kubeconfig: Path, log: Path, jitter: float = 3600) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCRYPTION_")}
    env.update(ENCRYPTION_KEY=generate_key(), ALLOW_LOOPBACK="true", ALLOW_PLAIN_HTTP="true", METRICS_PORT="0",
               HEALTH_PORT="0", BIND_ADDRESS="127.0.0.1", PYTHONPATH=os.pathsep.join(sys.path),
               # No scheduled probe within the test: its result (a change of the connection's
               # health) would trigger the organization again and hide a lost trigger.
               PROBE_INITIAL_JITTER_SECONDS=str(jitter))
    with log.open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(kubeconfig),
            env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)


async def test_a_refused_trigger_is_tried_again(
    world: tuple[KubeAPI, FaultControl, ProviderServers, Path], tmp_path: Path
) -> None:
    api, faults, servers, kubeconfig = world
    operator = await start_operator(kubeconfig, tmp_path / "operator.log")
    try:
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await api.create({"apiVersion": BC[0], "kind": BC[1], "metadata": {"name": "conn", "namespace": NS},
                          "spec": {"provider": "convex", "convex": servers.settings("convex"),
                                   "credentialsSecretRef": {"name": "conn-creds"},
                                   "healthCheck": {"intervalSeconds": 86400}}})
        await api.create({"apiVersion": ORG[0], "kind": ORG[1], "metadata": {"name": "org", "namespace": NS},
                          "spec": {"backend": {"connectionRef": {"name": "conn"}}}})

        async def waiting() -> bool:
            org = await api.get(*ORG, NS, "org")
            return condition(org, "Ready").get("reason") == "ConnectionNotReady"
        await wait_for(waiting, timeout=30, interval=0.2, what="the organization waiting for its connection")

        # Every write to the organization itself (the trigger annotation; not its status) refused.
        faults.add(Rule(503, writes_only=True, path=rf"/namespaces/{NS}/organizations/org$"), seconds=3.0)
        refused_from = time.monotonic()
        await api.create({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "conn-creds", "namespace": NS,
                                       "labels": {"one.ie/credentials": "true"}},
                          "stringData": servers.credentials["convex"]})

        async def connection_ready() -> bool:
            return condition(await api.get(*BC, NS, "conn"), "Ready").get("status") == "True"
        await wait_for(connection_ready, timeout=2.5, interval=0.05, what="the connection Ready within the fault")
        assert time.monotonic() - refused_from < 3.0, "the connection became Ready after the fault window"

        async def active() -> bool:
            org = await api.get(*ORG, NS, "org")
            return (org or {}).get("status", {}).get("activeConnection") == "conn"
        await wait_for(active, timeout=20, interval=0.2, what="the organization active on its connection")
        assert faults.injector.injected[503] >= 1, "no trigger was refused: the test proved nothing"
    finally:
        if operator.returncode is None:
            operator.kill()
        await operator.wait()


async def test_a_refused_health_write_is_tried_again_soon(
    world: tuple[KubeAPI, FaultControl, ProviderServers, Path], tmp_path: Path
) -> None:
    api, faults, servers, kubeconfig = world
    # The first probe comes within 1.5 s of the connection's registration, its write refused.
    operator = await start_operator(kubeconfig, tmp_path / "operator.log", jitter=1.5)
    try:
        await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        await api.create({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": "conn-creds", "namespace": NS,
                                       "labels": {"one.ie/credentials": "true"}},
                          "stringData": servers.credentials["convex"]})
        # Every status write of the connection refused for 6 s from its creation: the first probe
        # (within 1.5 s of the reconcile) falls in that window. (Kopf's own status write of the
        # reconcile is refused too; Kopf retries it by itself.)
        faults.add(Rule(503, writes_only=True, path=rf"/namespaces/{NS}/backendconnections/conn/status$"),
                   seconds=6.0)
        await api.create({"apiVersion": BC[0], "kind": BC[1], "metadata": {"name": "conn", "namespace": NS},
                          "spec": {"provider": "convex", "convex": servers.settings("convex"),
                                   "credentialsSecretRef": {"name": "conn-creds"},
                                   "healthCheck": {"intervalSeconds": 86400}}})

        async def probed() -> bool:
            obj = await api.get(*BC, NS, "conn")
            return bool(((obj or {}).get("status", {}).get("health") or {}).get("lastProbeTime"))
        await wait_for(probed, timeout=20, interval=0.2, what="the probe's result in status.health")
        assert faults.injector.injected[503] >= 1, "no status write was refused: the test proved nothing"
    finally:
        if operator.returncode is None:
            operator.kill()
        await operator.wait()
