"""The alerting rules (charts/oneie-operator/files/prometheus-rules.yaml) and the Grafana dashboard,
checked offline: promtool parses and unit-tests the rules, every expression parses, every alert is
documented and linked to its runbook. Which metrics the expressions may name is checked against the
real operator's output in test_observability_operator.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from obs_support import (
    REPO,
    RULES_FILE,
    RULES_TEST_FILE,
    RUNBOOK_URL_BASE,
    RUNBOOKS,
    Expression,
    alerting_rules,
    all_panels,
    dashboard_expressions,
    grafana_to_promql,
    load_dashboard,
    load_rules,
    names_in,
    promtool_parse,
    require_tool,
    rule_expressions,
    run_tool,
)

ALERT_NAME = re.compile(r"^Oneie[A-Z][A-Za-z]+$")
SEVERITIES = {"critical", "warning", "info"}
#: Labels an alert may keep from its series: all bounded (live objects, fixed words).
BOUNDED_LABELS = {"namespace", "connection", "provider", "state", "result", "kind", "reason", "step", "call",
                  "outcome", "key_id", "job"}


# --- promtool ---------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool")
    result = run_tool(promtool, "check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in load_rules()['groups'])} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    """tests/observability/rules_test.yaml: every alert fires when it should and only then."""
    promtool = require_tool("promtool")
    result = run_tool(promtool, "test", "rules", RULES_TEST_FILE.name, cwd=RULES_TEST_FILE.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_firing_and_silent_unit_tests() -> None:
    tests = yaml.safe_load(RULES_TEST_FILE.read_text(encoding="utf-8"))
    assert tests["rule_files"] == ["../../charts/oneie-operator/files/prometheus-rules.yaml"]
    fires: set[str] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
            for alert in check.get("exp_alerts") or []:
                # The rendered annotations are compared too: templates are tested, not just labels.
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, case["name"]
    alerts = {rule["alert"] for rule in alerting_rules()}
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - silent == set(), "alerts never tested staying silent"
    assert (fires | silent) - alerts == set(), "tests of alerts that do not exist"


def test_every_expression_parses() -> None:
    """Rules and dashboard (with Grafana's variables filled in) parse as PromQL (promtool)."""
    expressions = rule_expressions() + [
        Expression(e.where, grafana_to_promql(e.expr)) for e in dashboard_expressions()
    ]
    assert len(expressions) > 40
    assert promtool_parse(expressions) == []


def test_the_parse_check_catches_a_bad_expression() -> None:
    bad = [Expression("good", "sum(up)"), Expression("bad", "sum by (le (rate(x[5m]))")]
    assert promtool_parse(bad) == ["bad: 'sum by (le (rate(x[5m]))'"]


# --- the rules' shape ------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda r: r["alert"])
def test_alert_labels_annotations_and_runbook(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert ALERT_NAME.match(name)
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert annotations["runbook_url"] == f"{RUNBOOK_URL_BASE}{name}.md"
    runbook = RUNBOOKS / f"{name}.md"
    assert runbook.is_file(), f"missing runbook {runbook.relative_to(REPO)}"
    text = runbook.read_text(encoding="utf-8")
    assert text.startswith(f"# {name}\n"), "a runbook starts with its alert's name"
    assert "kubectl" in text
    for section in ("## Meaning", "## Impact", "## Diagnosis", "## Causes and fixes"):
        assert section in text, f"{runbook.name} lacks {section}"
    expr = str(rule["expr"])
    assert "oneie_" in expr or "up{" in expr
    # Templated labels in the annotations exist on the alert: its expression keeps them.
    used = set(re.findall(r"\$labels\.(\w+)", annotations["summary"] + annotations["description"]))
    kept = set(re.findall(r"\bby \(([^)]*)\)", expr))
    kept_labels = {label.strip() for group in kept for label in group.split(",")}
    assert used <= kept_labels, f"{name} templates {used - kept_labels} its expression drops"
    # Bounded label sets: only known, bounded labels survive into alerts.
    assert kept_labels <= BOUNDED_LABELS, kept_labels - BOUNDED_LABELS
    assert "le" not in names_in(expr).labels


def test_required_alerts_exist() -> None:
    alerts = {rule["alert"]: rule for rule in alerting_rules()}
    offline = alerts["OneieBackendOffline"]
    assert offline["for"] == "5m" and 'oneie_connection_health{state="offline"}' in offline["expr"]
    degraded = alerts["OneieBackendDegraded"]
    assert degraded["for"] not in ("0s", "5m") and 'state="degraded"' in degraded["expr"]
    assert "oneie_rollbacks_total{kind=\"automatic\"}" in alerts["OneieSwitchRolledBack"]["expr"]
    assert 'oneie_switches_total{result=~"RolledBack|Failed"}' in alerts["OneieSwitchFailureRatioHigh"]["expr"]
    assert "increase(oneie_decryption_failures_total" in alerts["OneieDecryptionFailures"]["expr"]
    assert alerts["OneieOperatorDown"]["expr"] == 'absent(up{job=~".*oneie.*"} == 1)'
    assert "oneie_reconcile_errors_total" in alerts["OneieReconcileErrorsHigh"]["expr"]
    assert "oneie_probe_failures_total" in alerts["OneieProbeFailuresHigh"]["expr"]


def test_observability_doc_lists_every_alert() -> None:
    doc = (REPO / "docs" / "observability.md").read_text(encoding="utf-8")
    for rule in alerting_rules():
        name = rule["alert"]
        assert f"[{name}](runbooks/{name}.md)" in doc, name
        row = next(line for line in doc.splitlines() if line.startswith(f"| [{name}]"))
        assert f"| {rule['labels']['severity']} |" in row and row.endswith(f"| {rule.get('for', '–')} |"), row


# --- the dashboard's shape -------------------------------------------------------------------------


def test_dashboard_structure() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 38
    assert dashboard["uid"] == "oneie-operator"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "connection"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert variable["definition"] == variable["query"]["query"]
        definition = variable["definition"]
        assert definition.startswith("label_values(oneie_") and definition.endswith(f", {name})")
        assert variable["includeAll"] and variable["allValue"] == ".*"
    assert "$namespace" in variables["connection"]["definition"], "connection choices follow the namespace"
    ids = []
    for panel in all_panels(dashboard):
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and panel.get("description"), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
    assert len(ids) == len(set(ids)), "panel ids are unique"


def test_dashboard_covers_what_it_must() -> None:
    dashboard = load_dashboard()
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Fleet health", "Tenant: $namespace / $connection", "Backend switches", "Health probes",
                    "Provider calls", "Reconciles"]
    exprs = "\n".join(e.expr for e in dashboard_expressions(dashboard))
    for quantile in ("0.5", "0.95", "0.99"):
        assert (f"histogram_quantile({quantile}, sum by (le) (rate(oneie_switch_duration_seconds_bucket"
                "[$__rate_interval])))") in exprs
    for needle in ("sum by (state) (oneie_connection_health == 1)", "sum by (provider, state)",
                   "oneie_switch_step_duration_seconds_bucket", "oneie_switches_total", "oneie_rollbacks_total",
                   "oneie_probe_duration_seconds_bucket", "oneie_probe_failures_total",
                   "oneie_provider_calls_total", "oneie_reconcile_errors_total",
                   "sum by (namespace, provider) (rate(oneie_provider_calls_total{namespace=~\"$namespace\"}",
                   'oneie_connection_response_seconds{namespace=~"$namespace", connection=~"$connection"}',
                   'oneie_connection_error_rate{namespace=~"$namespace", connection=~"$connection"}'):
        assert needle in exprs, needle
    kinds = {p["type"] for p in all_panels(dashboard)}
    assert {"state-timeline", "timeseries", "stat", "table", "row"} <= kinds


# --- the tokenizer that finds names ------------------------------------------------------------------


def test_names_in_finds_metrics_and_labels() -> None:
    names = names_in(
        'histogram_quantile(0.99, sum by (le, step) (rate(oneie_switch_step_duration_seconds_bucket[5m])))'
        ' / on (step) group_left(kind) max without (instance) (foo:bar{a="x", b!~"y,z"} offset 1h30m)'
        ' or vector(0) and absent(up{job=~".*oneie.*"} == 1) unless count_values("v", baz) > bool 1e3'
    )
    assert names.metrics == {"oneie_switch_step_duration_seconds_bucket", "foo:bar", "up", "baz"}
    assert names.labels == {"le", "step", "kind", "instance", "a", "b", "job"}
    assert names.selectors["foo:bar"] == {"a", "b"} and names.selectors["up"] == {"job"}
