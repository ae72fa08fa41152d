"""`oneie-operator up` as a user runs it (issue 12 item 10).

* An API server answering in the current kube context (an emulator here) gets the operator: a
  connection becomes Ready. (On main, `up` crashed there: ``'Namespace' object has no attribute
  'loop'``; and the emulator's 404 to the kubernetes client's ``/version/`` made it a "no cluster".)
* While a demo runs, `up` says so and how to reach it, starts nothing and leaves the demo's
  kubeconfig alone — whether the current context is no cluster or the demo itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from test_cli import _env, _free_port

from oneie_operator.demo.environment import repository_root
from oneie_operator.testing.cluster import serve_emulator_in_thread, write_kubeconfig
from oneie_operator.testing.kubeapi import KubeAPI, condition, wait_for
from oneie_operator.testing.provider_servers import ProviderServers
from oneie_operator.vault import generate_key


async def _run_up(cwd: Path, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oneie_operator", "up", cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return int(proc.returncode or 0), out.decode()


def _operator_env(kubeconfig: Path | str) -> dict[str, str]:
    return _env(KUBECONFIG=str(kubeconfig), ENCRYPTION_KEY=generate_key(), ALLOW_LOOPBACK="true",
                ALLOW_PLAIN_HTTP="true", BIND_ADDRESS="127.0.0.1", METRICS_PORT=str(_free_port()),
                HEALTH_PORT=str(_free_port()), PYTHONPATH=os.pathsep.join(sys.path))


@pytest.mark.asyncio
async def test_up_runs_the_operator_on_the_cluster_of_the_current_context(tmp_path: Path) -> None:
    crds = sorted((repository_root() / "crds").glob("*.yaml"))
    with serve_emulator_in_thread(crds) as (_, url):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
        async with ProviderServers(providers=("supabase",)) as servers:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "oneie_operator", "up", cwd=tmp_path, env=_operator_env(kubeconfig),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            api = KubeAPI(url)
            try:
                await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t1"}})
                opted_in = {"one.ie/credentials": "true"}  # the operator reads only opted-in Secrets
                await api.create({"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": "s", "namespace": "t1", "labels": opted_in},
                                  "stringData": servers.credentials["supabase"]})
                await api.create({"apiVersion": "one.ie/v1alpha1", "kind": "BackendConnection",
                                  "metadata": {"name": "db", "namespace": "t1"},
                                  "spec": {"provider": "supabase", "supabase": servers.settings("supabase"),
                                           "credentialsSecretRef": {"name": "s"}}})

                async def ready() -> bool:
                    assert proc.returncode is None, "up exited instead of running the operator"
                    obj = await api.get("one.ie/v1alpha1", "BackendConnection", "t1", "db")
                    return condition(obj, "Ready").get("status") == "True"
                await wait_for(ready, timeout=60, what="db Ready (the operator started by `up`)")
            finally:
                await api.aclose()
                if proc.returncode is None:
                    proc.terminate()
                output, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = output.decode()
    assert f"the API server at {url} answers; running the operator there" in text, text[-2000:]
    assert not (tmp_path / ".oneie-demo").exists(), "no demo was started"


@pytest.mark.asyncio
async def test_up_while_a_demo_runs_points_at_it_and_starts_nothing(tmp_path: Path) -> None:
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "oneie_operator", "demo", cwd=tmp_path,
        env=_env(PYTHONPATH=os.pathsep.join(sys.path)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    demo_kubeconfig = tmp_path / ".oneie-demo" / "kubeconfig"
    try:
        async def demo_serving() -> bool:
            assert demo.returncode is None, "the demo stopped"
            if not demo_kubeconfig.is_file():
                return False
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; from oneie_operator.cli.up import api_server as a;"
                " sys.exit(0 if a(sys.argv[1]) else 1)",
                str(demo_kubeconfig), env=_env(PYTHONPATH=os.pathsep.join(sys.path)),
            )
            return await proc.wait() == 0
        await wait_for(demo_serving, timeout=90, interval=0.5, what="the demo's emulator answering")
        before = demo_kubeconfig.read_bytes(), demo_kubeconfig.stat().st_mtime_ns

        # No cluster in the current context (that is what started the demo), then the demo's own.
        for current in (tmp_path / "no-such-kubeconfig", demo_kubeconfig):
            code, out = await _run_up(tmp_path, _operator_env(current))
            assert code == 0, out
            assert "a local demo is already running" in out, out
            assert f"export KUBECONFIG={demo_kubeconfig.resolve()}" in out, out
            assert "running the operator there" not in out and "running the local demo" not in out
            assert (demo_kubeconfig.read_bytes(), demo_kubeconfig.stat().st_mtime_ns) == before, \
                "the demo's kubeconfig is left alone"
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(demo.wait(), 30)
            except TimeoutError:
                demo.kill()
                await demo.wait()
