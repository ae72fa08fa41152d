"""An operator killed (SIGKILL, its own process) at any step of a switch converges when restarted.

The operator runs as `python -m oneie_operator run` in a subprocess, so the kill is real: no
clean-up code of ours runs. The emulator (in a thread) and the fake providers (in this loop) stay.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from oneie_operator.demo.environment import repository_root
from oneie_operator.testing.cluster import serve_emulator_in_thread, write_kubeconfig
from oneie_operator.testing.kubeapi import KubeAPI, condition, wait_for
from oneie_operator.testing.provider_servers import ProviderServers
from oneie_operator.vault import generate_key

ORG = ("one.ie/v1alpha1", "Organization")
BC = ("one.ie/v1alpha1", "BackendConnection")
NS = "t-crash"


class Operator:
    def __init__(self, kubeconfig: Path, key: str) -> None:
        self.kubeconfig, self.key = kubeconfig, key
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCRYPTION_")}
        env.update(ENCRYPTION_KEY=self.key, ALLOW_LOOPBACK="true", ALLOW_PLAIN_HTTP="true", METRICS_PORT="0",
                   HEALTH_PORT="0", BIND_ADDRESS="127.0.0.1")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(self.kubeconfig),
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[tuple[KubeAPI, ProviderServers, Operator]]:
    with serve_emulator_in_thread(sorted((repository_root() / "crds").glob("*.yaml"))) as (_, url):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
        async with ProviderServers(providers=("convex", "supabase")) as servers:
            api = KubeAPI(url)
            operator = Operator(kubeconfig, generate_key())
            try:
                yield api, servers, operator
            finally:
                if operator.proc is not None and operator.proc.returncode is None:
                    await operator.kill()
                await api.aclose()


async def _setup(api: KubeAPI, servers: ProviderServers) -> None:
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    for name, provider in (("old", "convex"), ("new", "supabase")):
        opted_in = {"one.ie/credentials": "true"}
        await api.create({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": f"{name}-creds", "namespace": NS, "labels": opted_in},
                          "stringData": servers.credentials[provider]})
        await api.create({"apiVersion": BC[0], "kind": BC[1], "metadata": {"name": name, "namespace": NS},
                          "spec": {"provider": provider, provider: servers.settings(provider),
                                   "credentialsSecretRef": {"name": f"{name}-creds"}}})
    await api.create({"apiVersion": ORG[0], "kind": ORG[1], "metadata": {"name": "org", "namespace": NS},
                      "spec": {"backend": {"connectionRef": {"name": "old"}}}})


async def _org(api: KubeAPI) -> dict[str, Any]:
    obj = await api.get(*ORG, NS, "org")
    assert obj is not None
    return obj


async def _binding_connection(api: KubeAPI) -> str | None:
    secret = await api.get("v1", "Secret", NS, "org-backend")
    if secret is None:
        return None
    return base64.b64decode(secret["data"]["connection"]).decode()


async def _settled(api: KubeAPI, active: str, result: str) -> dict[str, Any] | None:
    obj = await _org(api)
    status = obj.get("status") or {}
    ok = (status.get("activeConnection") == active and not status.get("switching")
          and (status.get("lastSwitch") or {}).get("result") == result
          and status.get("observedGeneration") == obj["metadata"]["generation"])
    return obj if ok else None


@pytest.mark.parametrize("kill_at", ["resolve", "test", "activated", "healthGate"])
async def test_killed_mid_switch_converges(world: tuple[KubeAPI, ProviderServers, Operator], kill_at: str) -> None:
    api, servers, operator = world
    await _setup(api, servers)
    await operator.start()
    # The organization is created with its connections, so its first switch usually finds "old"
    # not Ready yet and fails; "old" becoming Ready must retry it at once. (This operator runs with
    # the default probe jitter of up to 60 s: a retry that waited for the first health probe, as
    # one racing the connection's status write did, misses this deadline.)
    await wait_for(lambda: _settled(api, "old", "Succeeded"), timeout=15, what="org on old")

    servers["supabase"].fault = "slow:1.5"  # every step that calls the provider takes 1.5 s
    await api.patch(*ORG, NS, "org", {"spec": {"backend": {"connectionRef": {"name": "new"}}}})

    order = ["resolve", "test", "activate", "healthGate"]

    async def reached() -> bool:
        if kill_at == "activated":  # the commit point passed, status not yet written
            return await _binding_connection(api) == "new"
        # At the named step or later (fast steps can pass between two polls).
        step = (((await _org(api)).get("status") or {}).get("switching") or {}).get("step")
        return step in order and order.index(step) >= order.index(kill_at)
    await wait_for(reached, timeout=30, interval=0.01, what=f"the switch at {kill_at}")
    await operator.kill()
    killed_status = (await _org(api)).get("status") or {}
    assert killed_status.get("activeConnection") == "old"  # killed before the status was written

    servers["supabase"].fault = "ok"
    await operator.start()
    obj = await wait_for(lambda: _settled(api, "new", "Succeeded"), timeout=60, what="switch completed")
    assert await _binding_connection(api) == "new"
    assert obj["status"]["previousConnection"] == "old"
    assert condition(obj, "Ready")["status"] == "True"
    events = [e for e in await api.events(NS, "org") if e["reason"] == "ProviderSwitched"]
    assert any("to new" in e["message"] for e in events)


async def test_killed_after_activation_then_target_fails_rolls_back(
    world: tuple[KubeAPI, ProviderServers, Operator],
) -> None:
    api, servers, operator = world
    await _setup(api, servers)
    await operator.start()
    await wait_for(lambda: _settled(api, "old", "Succeeded"), timeout=60, what="org on old")
    server = servers["supabase"]
    server.fault, server.fault_path = "slow:3", "/auth/v1/health"  # the health gate is slow
    await api.patch(*ORG, NS, "org", {"spec": {"backend": {"connectionRef": {"name": "new"}}}})

    async def activated() -> bool:
        return await _binding_connection(api) == "new"
    await wait_for(activated, timeout=30, interval=0.01, what="activation")
    await operator.kill()

    server.fault = "500"  # and now the new backend's health fails
    await operator.start()
    obj = await wait_for(lambda: _settled(api, "old", "RolledBack"), timeout=60, what="rolled back")
    assert await _binding_connection(api) == "old", "the binding was restored to the previous backend"
    assert condition(obj, "Stalled")["status"] == "True"
