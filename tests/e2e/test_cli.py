"""The console scripts as a user runs them: `oneie-operator run` in its own process, `kubectl oneie`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from oneie_operator.demo.environment import repository_root
from oneie_operator.testing.cluster import serve_emulator_in_thread, write_kubeconfig
from oneie_operator.testing.kubeapi import KubeAPI, condition, wait_for
from oneie_operator.testing.provider_servers import ProviderServers
from oneie_operator.vault import generate_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ENCRYPTION_KEY", "ENCRYPTION_KEYRING")}
    env.update(extra)
    return env


def test_invalid_configuration_stops_with_the_variable_named(tmp_path: Path) -> None:
    secret_looking = "f" * 63 + "Z"  # not valid hex; must not be echoed
    result = subprocess.run(
        [sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(tmp_path / "none")],
        env=_env(METRICS_PORT="lots", ENCRYPTION_KEY=secret_looking),
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "METRICS_PORT" in result.stderr and "0-65535" in result.stderr
    assert secret_looking not in result.stderr + result.stdout

    result = subprocess.run(
        [sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(tmp_path / "none")],
        env=_env(ENCRYPTION_KEY=secret_looking), capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "ENCRYPTION_KEY" in result.stderr and "64 hex" in result.stderr
    assert secret_looking not in result.stderr + result.stdout


@pytest.mark.parametrize("variable", ["METRICS_PORT", "HEALTH_PORT"])
def test_a_taken_port_is_one_line_naming_the_variable(tmp_path: Path, variable: str) -> None:
    """Another process listens on the port: the operator says which variable and port, in one line,
    and exits 2 (a configuration error), instead of a traceback from the HTTP server or Kopf."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")  # never reached
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"METRICS_PORT": str(_free_port()), "HEALTH_PORT": str(_free_port()), variable: str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(kubeconfig)],
            env=_env(ENCRYPTION_KEY=generate_key(), BIND_ADDRESS="127.0.0.1", **ports),
            capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{variable}={port}: cannot listen on 127.0.0.1:{port}" in lines[0]


def test_keygen_prints_a_key() -> None:
    out = subprocess.run([sys.executable, "-m", "oneie_operator", "keygen"], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert len(out) == 64 and int(out, 16) >= 0


@pytest.mark.asyncio
async def test_run_reconciles_against_the_emulator_and_serves_metrics(tmp_path: Path) -> None:
    crds = sorted((repository_root() / "crds").glob("*.yaml"))
    metrics_port, health_port = _free_port(), _free_port()
    with serve_emulator_in_thread(crds) as (_, url):
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", url)
        async with ProviderServers(providers=("supabase",)) as servers:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "oneie_operator", "run", "--kubeconfig", str(kubeconfig),
                env=_env(ENCRYPTION_KEY=generate_key(), ALLOW_LOOPBACK="true", ALLOW_PLAIN_HTTP="true",
                         BIND_ADDRESS="127.0.0.1", METRICS_PORT=str(metrics_port), HEALTH_PORT=str(health_port)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )
            api = KubeAPI(url)
            try:
                creds = servers.credentials["supabase"]
                await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t1"}})
                opted_in = {"one.ie/credentials": "true"}
                await api.create({"apiVersion": "v1", "kind": "Secret",
                                  "metadata": {"name": "s", "namespace": "t1", "labels": opted_in},
                                  "stringData": creds})
                await api.create({"apiVersion": "one.ie/v1alpha1", "kind": "BackendConnection",
                                  "metadata": {"name": "db", "namespace": "t1"},
                                  "spec": {"provider": "supabase", "supabase": servers.settings("supabase"),
                                           "credentialsSecretRef": {"name": "s"}}})

                async def ready() -> bool:
                    obj = await api.get("one.ie/v1alpha1", "BackendConnection", "t1", "db")
                    return condition(obj, "Ready").get("status") == "True"
                await wait_for(ready, timeout=60, what="db Ready (operator in its own process)")

                async with httpx.AsyncClient() as client:
                    health = await client.get(f"http://127.0.0.1:{health_port}/healthz")
                    assert health.status_code == 200
                    metrics = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
                assert 'oneie_connection_ready{connection="db",namespace="t1",provider="supabase"} 1.0' in metrics
                assert ('oneie_provider_calls_total{call="test_credentials",namespace="t1",outcome="Success",'
                        'provider="supabase"}') in metrics

                plugin = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "oneie_operator.cli.kubectl_plugin", "--kubeconfig", str(kubeconfig),
                    "status", "-n", "t1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                out, err = await asyncio.wait_for(plugin.communicate(), 60)
                assert plugin.returncode == 0, err.decode()
                assert "db" in out.decode() and "CredentialsVerified" in out.decode()
            finally:
                await api.aclose()
                proc.terminate()
                output, _ = await asyncio.wait_for(proc.communicate(), 30)
            text = output.decode()
            assert "Handler 'reconcile' succeeded" in text  # the log is really captured
            for value in creds.values():
                assert value not in text
