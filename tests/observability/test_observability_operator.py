"""The operator's real metrics against the rules, the dashboard and a real Prometheus.

One operator environment for the module (Kubernetes emulator, fake providers, the real operator in
this loop), its registry served over HTTP on 127.0.0.1, and a real ``prometheus`` scraping it every
second (job ``oneie-operator``) with the chart's rule file loaded. A scenario creates connections
and an organization, switches (succeeded and rolled back), and probes a healthy and a failing
backend, waiting for scrapes where ``rate()`` needs two samples. Then:

* ``promtool check metrics`` on the operator's exposition is clean;
* every expression of the rules and the dashboard names only series and labels that the operator
  exports (or Prometheus' own ``up``);
* Prometheus answers the dashboard's queries with data (switch latency P99, health by state, ...),
  loads every rule with health "ok", and fires the alerts the scenario provokes, with the tenant's
  namespace label intact (honor_labels, as the chart's ServiceMonitor must set).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml
from obs_support import (
    REPO,
    RULES_FILE,
    Exported,
    Expression,
    Prometheus,
    dashboard_expressions,
    grafana_to_promql,
    in_ci,
    require_tool,
    rule_expressions,
    run_tool,
    unknown_names,
    values,
)
from prometheus_client import generate_latest, start_http_server

from oneie_operator.demo.environment import LocalEnvironment, local_environment
from oneie_operator.testing.kubeapi import condition, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

NS = "obs-e2e"
OPERATOR_NAMESPACE = "oneie-system"  # the target label a ServiceMonitor scrape would add
BC = ("one.ie/v1alpha1", "BackendConnection")
ORG = ("one.ie/v1alpha1", "Organization")
SWITCH_P99 = "histogram_quantile(0.99, sum by (le) (rate(oneie_switch_duration_seconds_bucket[1m])))"
HEALTH_BY_STATE = "sum by (state) (oneie_connection_health == 1)"


@dataclass
class Stack:
    env: LocalEnvironment
    metrics_url: str
    prometheus: Prometheus | None
    exposition: str = ""
    exported: Exported | None = None
    #: what the scenario saw happen in Prometheus while it ran (checked by the tests)
    observed: dict[str, Any] = field(default_factory=dict)

    def require_prometheus(self) -> Prometheus:
        if self.prometheus is None:
            pytest.skip("prometheus is not installed: run `bash .ci/prometheus.sh`")
        return self.prometheus


# --- the scenario -------------------------------------------------------------------------------


async def _secret_and_connection(env: LocalEnvironment, name: str, provider: str, *, secret: bool = True) -> None:
    if secret:
        await env.api.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                             "metadata": {"name": f"{name}-creds", "namespace": NS,
                                          "labels": {"one.ie/credentials": "true"}},
                             "stringData": dict(env.providers.credentials[provider])})
    await env.api.apply({"apiVersion": BC[0], "kind": BC[1], "metadata": {"name": name, "namespace": NS},
                         "spec": {"provider": provider, provider: env.providers.settings(provider),
                                  "credentialsSecretRef": {"name": f"{name}-creds"}}})


async def _ready(env: LocalEnvironment, name: str, status: str = "True") -> None:
    async def probe() -> bool:
        return condition(await env.api.get(*BC, NS, name), "Ready").get("status") == status
    await wait_for(probe, timeout=20, what=f"{name} Ready={status}")


async def _health(env: LocalEnvironment, name: str, accept: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        health = ((await env.api.get(*BC, NS, name)) or {}).get("status", {}).get("health") or {}
        return health if accept(health) else None
    return await wait_for(probe, timeout=20, what=f"{name} health")


async def _switch(env: LocalEnvironment, org: str, to: str, result: str) -> dict[str, Any]:
    await env.api.apply({"apiVersion": ORG[0], "kind": ORG[1], "metadata": {"name": org, "namespace": NS},
                         "spec": {"backend": {"connectionRef": {"name": to}}}})

    async def probe() -> dict[str, Any] | None:
        obj = await env.api.get(*ORG, NS, org)
        status = (obj or {}).get("status") or {}
        last = status.get("lastSwitch") or {}
        done = obj and status.get("observedGeneration") == obj["metadata"]["generation"]
        return obj if done and last.get("to") == to and last.get("result") == result else None
    return await wait_for(probe, timeout=20, what=f"{org} switch to {to}: {result}")


async def _probe(env: LocalEnvironment, name: str, token: str) -> None:
    await env.api.patch(*BC, NS, name, {"metadata": {"annotations": {"one.ie/probe": token}}})


async def run_scenario(stack: Stack) -> None:
    env, prom = stack.env, stack.prometheus

    async def scraped(expr: str, minimum: float) -> None:
        """Wait until Prometheus has scraped the effect (rate() needs a sample before the next change)."""
        if prom is not None:
            await prom.wait_query(expr, lambda r: sum(values(r)) >= minimum)

    await _secret_and_connection(env, "primary", "convex")
    await _secret_and_connection(env, "secondary", "notion")
    await _secret_and_connection(env, "broken", "supabase", secret=False)  # SecretNotFound: a reconcile error
    await _ready(env, "primary")
    await _ready(env, "secondary")
    await _ready(env, "broken", "False")
    await _health(env, "primary", lambda h: h.get("status") == "online")
    await scraped('sum(oneie_probes_total{provider="convex"})', 1)

    # Switches: two that succeed with a scrape between them (so rate() sees an increase), then one
    # that fails validation and rolls back: the first rollback since the start creates its series
    # (born at 1, which increase() alone cannot see); the alert must fire all the same.
    await _switch(env, "acme", "primary", "Succeeded")
    await scraped('sum(oneie_switches_total{result="Succeeded"})', 1)
    await _switch(env, "acme", "secondary", "Succeeded")
    await _switch(env, "acme", "missing", "RolledBack")
    if prom is not None:
        stack.observed["rollback alert"] = await _wait_alert(prom, "OneieSwitchRolledBack", "firing")

    # Probes: the convex backend fails, goes offline (the offline alert goes pending), recovers.
    server = env.providers["convex"]
    server.fault = "500"
    try:
        await _probe(env, "primary", "fail-1")
        await _health(env, "primary", lambda h: h.get("status") == "offline")
        if prom is not None:
            stack.observed["offline alert"] = await _wait_alert(prom, "OneieBackendOffline", "pending")
    finally:
        server.fault = "ok"
    await _probe(env, "primary", "ok-2")
    await _health(env, "primary", lambda h: h.get("status") in ("online", "degraded"))
    await scraped('sum(oneie_probes_total{provider="convex"})', 3)


async def _wait_alert(prom: Prometheus, name: str, state: str) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        alerts = (await prom.api("alerts"))["alerts"]
        found = [a for a in alerts if a["labels"].get("alertname") == name and a["state"] == state]
        return found or None
    try:
        return await wait_for(probe, timeout=20, interval=0.2, what=f"alert {name} {state}")
    except TimeoutError as exc:
        return [{"error": str(exc), "alerts": (await prom.api("alerts"))["alerts"]}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    workdir = Path(tmp_path_factory.mktemp("observability"))
    async with local_environment(workdir / "env") as env:
        server, thread = start_http_server(0, addr="127.0.0.1", registry=env.services.metrics.registry)
        prom: Prometheus | None = None
        try:
            target = f"127.0.0.1:{server.server_port}"
            stack = Stack(env, f"http://{target}/metrics", None)
            if shutil.which("prometheus") or in_ci():
                prom = Prometheus(require_tool("prometheus"), workdir / "prometheus", target,
                                  rule_files=(RULES_FILE,), target_labels={"namespace": OPERATOR_NAMESPACE})
                await prom.start()
                stack.prometheus = prom
                await prom.wait_query('up{job="oneie-operator"} == 1')
            await run_scenario(stack)
            stack.exported = Exported.from_registry(env.services.metrics.registry, env.services.metrics)
            stack.exposition = stack.exported.text
            yield stack
        finally:
            if prom is not None:
                await prom.stop()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


# --- the operator's own output ---------------------------------------------------------------------


async def test_promtool_check_metrics_is_clean(stack: Stack) -> None:
    """What the operator serves on its metrics port passes `promtool check metrics` without a word."""
    promtool = require_tool("promtool")
    async with httpx.AsyncClient() as client:
        response = await client.get(stack.metrics_url)
    assert response.status_code == 200 and "oneie_switches_total" in response.text
    result = await asyncio.to_thread(run_tool, promtool, "check", "metrics", stdin=response.text)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


async def test_the_scenario_produced_every_metric_family(stack: Stack) -> None:
    exported = Exported.parse(stack.exposition)
    assert all(name.startswith("oneie_") for name in exported.families)
    assert len(exported.families) >= 19
    # Every family the operator registers has samples after the scenario, except the decryption
    # counter (see test_decryption_failures_are_counted).
    assert set(exported.families) - exported.sampled == {"oneie_decryption_failures"}


async def test_observability_doc_lists_every_metric(stack: Stack) -> None:
    exported = stack.exported  # label names of families without samples come from their declaration
    assert exported is not None
    doc = (REPO / "docs" / "observability.md").read_text(encoding="utf-8")
    for family, kind in exported.families.items():
        name = f"{family}_total" if kind == "counter" else family
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"docs/observability.md has no row for {name}"
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        assert cells[1] == kind, (name, cells)
        assert set(cells[2].split(", ")) == exported.labels[family], (name, cells, exported.labels[family])


async def test_rules_and_dashboard_name_only_exported_metrics(stack: Stack) -> None:
    exported = stack.exported
    assert exported is not None
    problems = []
    dashboard = [Expression(e.where, grafana_to_promql(e.expr)) for e in dashboard_expressions()]
    for expression in rule_expressions() + dashboard:
        problems += unknown_names(expression, exported)
    assert problems == []


async def test_the_names_check_catches_unknown_names(stack: Stack) -> None:
    exported = Exported.parse(stack.exposition)
    bad = [Expression("a", "rate(oneie_switches[5m])"), Expression("b", 'oneie_connection_health{tenant="x"}'),
           Expression("c", "sum by (le) (oneie_switch_duration_seconds_sum)"), Expression("d", "sum(up)")]
    assert [len(unknown_names(e, exported)) for e in bad] == [1, 1, 1, 0]


async def test_decryption_failures_are_counted(stack: Stack) -> None:
    """Tamper with an operator-owned Secret: the operator emits DecryptionFailed and must count it."""
    env = stack.env
    owned = await env.api.get("v1", "Secret", NS, "oneie-secondary-credentials")
    assert owned is not None
    field_name, value = next(iter(owned["data"].items()))
    raw = base64.b64decode(value)
    tampered = base64.b64encode(raw[:-2] + (b"AA" if raw[-2:] != b"AA" else b"BB")).decode()
    await env.api.patch("v1", "Secret", NS, "oneie-secondary-credentials", {"data": {field_name: tampered}})

    async def event() -> bool:
        return any(e.get("reason") == "DecryptionFailed" for e in await env.api.events(NS, "secondary"))
    await wait_for(event, timeout=20, what="DecryptionFailed Event")
    text = generate_latest(env.services.metrics.registry).decode()
    assert f'oneie_decryption_failures_total{{namespace="{NS}"}}' in text


# --- a real Prometheus -------------------------------------------------------------------------------


async def test_prometheus_answers_the_switch_latency_p99(stack: Stack) -> None:
    prom = stack.require_prometheus()
    result = await prom.wait_query(SWITCH_P99)
    (p99,) = values(result)
    assert 0 < p99 <= 60, p99


async def test_prometheus_answers_health_queries(stack: Stack) -> None:
    prom = stack.require_prometheus()
    by_state = await prom.wait_query(HEALTH_BY_STATE)
    states = {r["metric"]["state"]: float(r["value"][1]) for r in by_state}
    assert set(states) <= {"online", "degraded", "offline", "unknown"} and sum(states.values()) >= 2, states
    # The tenant's own namespace label survives the scrape (honor_labels), not the target's.
    tenant = await prom.wait_query(f'oneie_connection_health{{namespace="{NS}", connection="primary"}}')
    assert {r["metric"]["state"] for r in tenant} == {"online", "degraded", "offline", "unknown"}
    assert all("exported_namespace" not in r["metric"] for r in tenant)
    switches = await prom.wait_query("sum by (namespace) (oneie_switches_total)")
    assert [r["metric"].get("namespace") for r in switches] == [OPERATOR_NAMESPACE]


async def test_every_dashboard_query_runs_in_prometheus(stack: Stack) -> None:
    """Each panel's query (variables filled in for the scenario's tenant) runs without error, and
    all but the ones that need an event the scenario does not cause return data."""
    prom = stack.require_prometheus()
    no_data_expected = {"Decryption failures by namespace"}
    empty = []
    for expression in dashboard_expressions():
        promql = grafana_to_promql(expression.expr, {"namespace": NS, "connection": ".*"}, interval="1m")
        result = await prom.query(promql)
        if not result and not any(f"'{title}'" in expression.where for title in no_data_expected):
            empty.append(expression.where)
    assert empty == []


async def test_prometheus_loads_every_rule_healthy(stack: Stack) -> None:
    prom = stack.require_prometheus()
    expected = {r.get("alert") or r.get("record") for r in _rules(RULES_FILE)}

    async def healthy() -> list[dict[str, Any]] | None:
        groups = (await prom.api("rules"))["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r["health"] == "ok" for r in rules) else None
    try:
        rules = await wait_for(healthy, timeout=20, interval=0.2, what="every rule evaluated with health ok")
    except TimeoutError:
        groups = (await prom.api("rules"))["groups"]
        bad = [(r["name"], r["health"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
        raise AssertionError(f"rules not healthy: {bad}") from None
    assert {r["name"] for r in rules} == expected
    assert all(not r.get("lastError") for r in rules)


def _rules(path: Path) -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for r in g["rules"]]


async def test_alerts_fire_on_the_operators_real_series(stack: Stack) -> None:
    """The scenario's offline backend made OneieBackendOffline pending with the tenant's labels, and
    its first rolled-back switch fired OneieSwitchRolledBack."""
    stack.require_prometheus()
    offline = stack.observed["offline alert"]
    assert "error" not in offline[0], offline
    assert [(a["labels"]["namespace"], a["labels"]["connection"], a["labels"]["provider"]) for a in offline] == [
        (NS, "primary", "convex")]
    assert offline[0]["annotations"]["summary"] == f"Backend {NS}/primary (convex) is offline."
    rollback = stack.observed["rollback alert"]
    assert "error" not in rollback[0], rollback
    assert rollback[0]["labels"] == {"alertname": "OneieSwitchRolledBack", "severity": "warning"}
    assert rollback[0]["annotations"]["description"].startswith("1 backend switch(es) failed")
    assert rollback[0]["annotations"]["runbook_url"].endswith("/docs/runbooks/OneieSwitchRolledBack.md")
