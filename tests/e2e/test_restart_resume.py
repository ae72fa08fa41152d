"""A restarted operator re-tests and rewrites nothing that did not change (issue 14, item 6).

The operator runs as ``python -m oneie_operator run`` in a subprocess and is killed with SIGKILL
(no clean-up code of ours runs), then started again: a real restart. The emulator (in a thread)
records every request it serves (``testing.requestlog``); the fake providers (in this loop) record
every call they receive. 20 connections over 5 namespaces and 5 organizations are Ready, probed
once and quiet before the kill; while the operator is down, one more connection's credentials
Secret is rewritten (the same valid credentials, a new resourceVersion). The resume is over when
the restarted operator's own counter ``oneie_reconciles_total`` says every object's handler ran
(a fresh process counts from 0), plus a few seconds for background writers (``usedBy``).

What it proves: the 20 unchanged connections cost no provider call (their credentials are not
re-tested, and their probes keep their schedule instead of all coming at once after the
restart) and no API write at all (status, Secrets, annotations, Events, Kopf's bookkeeping, the
provider catalog); the changed one *is* re-tested (and re-stored), so the check that skips the
others can fail. What the emulator cannot show: a real API server's own writes (none are made
for reads) and what a cluster's other controllers do meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from oneie_operator.demo.environment import repository_root
from oneie_operator.testing.cluster import serve_emulator_in_thread, write_kubeconfig
from oneie_operator.testing.kubeapi import KubeAPI, condition, wait_for
from oneie_operator.testing.provider_servers import ProviderServers
from oneie_operator.testing.requestlog import RequestLog
from oneie_operator.vault import generate_key

BC = ("one.ie/v1alpha1", "BackendConnection")
ORG = ("one.ie/v1alpha1", "Organization")
NAMESPACES = [f"t-resume-{i}" for i in range(5)]
ROTATED_NS = "t-resume-rotated"
PROVIDERS = ("convex", "supabase", "notion", "wordpress")
RECONCILES = re.compile(r'^oneie_reconciles_total\{kind="(\w+)",result="\w+"\} (\S+)$', re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Operator:
    """``oneie-operator run`` in its own process, with its metrics on a known port."""

    def __init__(self, kubeconfig: Path, log_dir: Path) -> None:
        self.kubeconfig, self.key, self.log_dir = kubeconfig, generate_key(), log_dir
        self.metrics_port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ENCRYPTION_") and k != "KUBECONFIG"}
        env.update(ENCRYPTION_KEY=self.key, ALLOW_LOOPBACK="true", ALLOW_PLAIN_HTTP="true",
                   METRICS_PORT=str(self.metrics_port), HEALTH_PORT="0", BIND_ADDRESS="127.0.0.1",
                   # Never-probed connections are probed within 1 s (the test need not wait 60 s);
                   # on a restart that jitter would also be every connection's next probe, at once.
                   PROBE_INITIAL_JITTER_SECONDS="1")
        self.starts += 1
        with (self.log_dir / f"operator-{self.starts}.log").open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(self.kubeconfig),
                env=env, stdout=log, stderr=log)

    async def kill(self) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def reconciled(self) -> dict[str, float]:
        """Finished reconciles by kind, from the operator's /metrics (empty until it answers)."""
        assert self.proc is not None and self.proc.returncode is None, "the operator exited"
        try:
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{self.metrics_port}/metrics")).text
        except httpx.HTTPError:
            return {}
        counts: dict[str, float] = {}
        for kind, value in RECONCILES.findall(text):
            counts[kind] = counts.get(kind, 0.0) + float(value)
        return counts


@dataclass
class World:
    api: KubeAPI
    log: RequestLog
    servers: ProviderServers  # the unchanged connections' providers
    rotated: ProviderServers  # the provider of the connection whose Secret changes meanwhile
    operator: Operator


@pytest.fixture()
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with serve_emulator_in_thread(sorted((repository_root() / "crds").glob("*.yaml"))) as (emulator, url):
        log = RequestLog.install(emulator)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
        async with ProviderServers() as servers, ProviderServers(providers=("convex",)) as rotated:
            api = KubeAPI(url)
            operator = Operator(kubeconfig, tmp_path)
            try:
                yield World(api, log, servers, rotated, operator)
            finally:
                if operator.proc is not None:
                    await operator.kill()
                await api.aclose()


async def _connection(api: KubeAPI, servers: ProviderServers, namespace: str, name: str, provider: str) -> None:
    await api.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": f"{name}-creds", "namespace": namespace,
                                   "labels": {"one.ie/credentials": "true"}},
                      "stringData": servers.credentials[provider]})
    await api.create({"apiVersion": BC[0], "kind": BC[1], "metadata": {"name": name, "namespace": namespace},
                      "spec": {"provider": provider, provider: servers.settings(provider),
                               "credentialsSecretRef": {"name": f"{name}-creds"},
                               "healthCheck": {"intervalSeconds": 3600}}})


async def _fleet(w: World) -> list[tuple[str, str]]:
    """20 unchanged-to-be connections (5 namespaces, 4 providers), 5 organizations, 1 to rotate."""
    connections: list[tuple[str, str]] = []
    for ns in [*NAMESPACES, ROTATED_NS]:
        await w.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for i in range(20):
        ns, provider = NAMESPACES[i % len(NAMESPACES)], PROVIDERS[i % len(PROVIDERS)]
        await _connection(w.api, w.servers, ns, f"c{i:02d}", provider)
        connections.append((ns, f"c{i:02d}"))
    for i, ns in enumerate(NAMESPACES):  # organization i uses connection i (in namespace i)
        await w.api.create({"apiVersion": ORG[0], "kind": ORG[1], "metadata": {"name": f"org{i}", "namespace": ns},
                            "spec": {"backend": {"connectionRef": {"name": f"c{i:02d}"}},
                                     "switchPolicy": {"healthGate": False}}})
    await _connection(w.api, w.rotated, ROTATED_NS, "rotated", "convex")
    return [*connections, (ROTATED_NS, "rotated")]


async def _settled(w: World, connections: list[tuple[str, str]]) -> None:
    """Every connection Ready and probed once, every organization Ready, usedBy written, and no
    write to the API for 3 s."""
    async def ready_and_probed() -> bool:
        for ns, name in connections:
            obj = await w.api.get(*BC, ns, name)
            if condition(obj, "Ready").get("status") != "True":
                return False
            if not ((obj or {}).get("status", {}).get("health") or {}).get("lastProbeTime"):
                return False
        for i, ns in enumerate(NAMESPACES):
            org = await w.api.get(*ORG, ns, f"org{i}")
            if condition(org, "Ready").get("status") != "True":
                return False
            used = await w.api.get(*BC, ns, f"c{i:02d}")
            if (used or {}).get("status", {}).get("usedBy") != [f"org{i}"]:
                return False
        return True
    await wait_for(ready_and_probed, timeout=90, interval=0.5, what="the fleet Ready, probed and in use")

    async def quiet() -> bool:
        writes = w.log.writes()
        return not writes or time.monotonic() - writes[-1].at >= 3.0
    await wait_for(quiet, timeout=60, interval=0.5, what="3 s without a write to the API")


async def test_a_restart_retests_and_rewrites_only_what_changed(world: World) -> None:
    w = world
    connections = await _fleet(w)
    await w.operator.start()
    await _settled(w, connections)

    await w.operator.kill()
    before = await w.api.get(*BC, ROTATED_NS, "rotated")
    assert before is not None
    seen_version = before["status"]["credentials"]["sourceResourceVersion"]
    # While the operator is down: the same valid credentials written again (a new version).
    await w.api.patch("v1", "Secret", ROTATED_NS, "rotated-creds",
                      {"stringData": {**w.rotated.credentials["convex"], "note": "rotated"}})
    secret = await w.api.get("v1", "Secret", ROTATED_NS, "rotated-creds")
    assert secret is not None and secret["metadata"]["resourceVersion"] != seen_version

    mark = w.log.mark()
    calls = sum(s.request_count for s in w.servers)
    rotated_calls = w.rotated["convex"].request_count
    await w.operator.start()

    async def resumed() -> bool:
        done = await w.operator.reconciled()
        return done.get("BackendConnection", 0) >= len(connections) and done.get("Organization", 0) >= len(NAMESPACES)
    await wait_for(resumed, timeout=60, interval=0.2, what="every object's resume handler")
    # The changed connection is re-tested and stored again.
    async def restored() -> bool:
        obj = await w.api.get(*BC, ROTATED_NS, "rotated")
        creds = (obj or {}).get("status", {}).get("credentials") or {}
        return creds.get("sourceResourceVersion") == secret["metadata"]["resourceVersion"]
    await wait_for(restored, timeout=30, what="the rotated connection verified again")
    await asyncio.sleep(6.0)  # background writers (usedBy: within 5 s) would write by now

    assert sum(s.request_count for s in w.servers) == calls, (
        "unchanged connections called their providers during the resume: "
        + ", ".join(f"{r.method} {r.path}" for s in w.servers for r in s.requests[-5:]))
    assert w.rotated["convex"].request_count > rotated_calls, "the rotated connection was not re-tested"
    assert any(r.path == "/api/check_admin_key" for r in w.rotated["convex"].requests[rotated_calls:]), (
        "the rotated connection's credentials were not tested")
    elsewhere = [str(r) for r in w.log.writes(since=mark) if f"/namespaces/{ROTATED_NS}/" not in r.path]
    assert elsewhere == [], "the resume wrote to the API for unchanged objects"
    assert w.log.writes(since=mark), "the rotated connection's new verification was not written"
    # Nor read: the operator's cache of the watched Secrets (one list at start-up, then the watch)
    # says which Secrets are at the version last verified, and holds the encrypted copies.
    unchanged = {name for ns, name in connections if ns != ROTATED_NS}
    secret_reads = [str(r) for r in w.log.reads(since=mark) if "/secrets" in r.path and any(
        f"{name}-creds" in r.path + r.query or f"oneie-{name}-credentials" in r.path for name in unchanged)]
    assert secret_reads == [], "unchanged connections' Secrets were read during the resume"
    events = [e for e in await w.api.events(ROTATED_NS, "rotated") if e["reason"] == "CredentialsVerified"]
    assert len(events) == 2  # the first start's, and the one after the Secret changed
