"""Helpers of the observability tests: the tools, the rules and dashboard, PromQL, the operator's metrics.

No PromQL parser exists for Python, so parsing is left to ``promtool`` (each expression becomes a
recording rule of a temporary rule file: ``promtool check rules`` parses it) and a small tokenizer
here only finds which metric and label names an expression mentions.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from oneie_operator.observability.metrics import ConnectionSeries
from oneie_operator.testing.kubeapi import wait_for

REPO = Path(__file__).resolve().parents[2]
CHART_FILES = REPO / "charts" / "oneie-operator" / "files"
RULES_FILE = CHART_FILES / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART_FILES / "grafana-dashboard.json"
RULES_TEST_FILE = Path(__file__).resolve().parent / "rules_test.yaml"
RUNBOOKS = REPO / "docs" / "runbooks"
RUNBOOK_URL_BASE = "https://github.com/one-ie/oneie-operator/blob/main/docs/runbooks/"

#: Series Prometheus itself makes for every target, which the rules and dashboard may use.
PROMETHEUS_BUILTINS: dict[str, set[str]] = {"up": {"job", "instance"}}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_tool(name: str) -> str:
    """The path of ``name``; missing: fail under CI, skip elsewhere (with how to get it)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed: run `bash .ci/prometheus.sh` (Debian's prometheus package)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_tool(*args: str, cwd: Path | None = None, stdin: str | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), input=stdin, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          check=False)


# --- the rules and the dashboard ------------------------------------------------------------------


def load_rules() -> dict[str, Any]:
    return dict(yaml.safe_load(RULES_FILE.read_text(encoding="utf-8")))


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule]


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text(encoding="utf-8")))


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


@dataclass(frozen=True)
class Expression:
    where: str  # "rule OneieBackendOffline", "panel 'Switch latency' A", "variable namespace"
    expr: str


def rule_expressions() -> list[Expression]:
    return [
        Expression(f"rule {rule.get('alert') or rule.get('record')}", str(rule["expr"]))
        for group in load_rules()["groups"]
        for rule in group["rules"]
    ]


LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?P<selector>.+?)\s*,\s*(?P<label>[a-zA-Z_]\w*)\s*\)\s*$", re.S)


def dashboard_expressions(dashboard: dict[str, Any] | None = None) -> list[Expression]:
    """Every target expression, and the selector of every ``label_values`` variable query."""
    dashboard = dashboard or load_dashboard()
    found = [
        Expression(f"panel {panel.get('title')!r} {target.get('refId')}", str(target["expr"]))
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        match = LABEL_VALUES.match(str(text))
        assert match, f"variable {variable['name']}: expected label_values(selector, label), got {text!r}"
        found.append(Expression(f"variable {variable['name']}", match["selector"]))
    return found


GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def grafana_to_promql(expr: str, values: dict[str, str] | None = None, interval: str = "5m") -> str:
    """Replace Grafana's variables: ``$__rate_interval``/``$__interval``/``$__range`` by
    ``interval``, others by ``values`` (default ``.*``, as "All" does)."""
    values = values or {}

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2] or match[3]
        if name in ("__rate_interval", "__interval", "__range", "__auto_interval"):
            return interval
        return values.get(name, ".*")

    return GRAFANA_VARIABLE.sub(replace, expr)


# --- PromQL: parse with promtool, find names with a tokenizer --------------------------------------


def promtool_parse(expressions: list[Expression]) -> list[str]:
    """Parse every expression with ``promtool check rules`` (as recording rules); return the
    problems, each naming the expression (empty: everything parsed)."""
    promtool = require_tool("promtool")
    rules = [{"record": f"oneie_check:expression_{i}", "expr": e.expr} for i, e in enumerate(expressions)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "expressions.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}), encoding="utf-8")
        result = run_tool(promtool, "check", "rules", str(path))
    if result.returncode == 0:
        return []
    output = result.stdout + result.stderr
    problems = []
    for i, e in enumerate(expressions):
        # promtool names the failing rule by its 1-based index: "group "expressions", rule 3, ..."
        if re.search(rf"\brule {i + 1}\b", output):
            problems.append(f"{e.where}: {e.expr!r}")
    return problems or [output]


TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^=<>(){}\[\],@:])
    """,
    re.X,
)
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
MATCH_OPS = {"=", "!=", "=~", "!~"}


@dataclass
class Names:
    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)
    #: label names matched in each metric's own selector: metric -> labels
    selectors: dict[str, set[str]] = field(default_factory=dict)


def tokenize(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot tokenize {expr[pos:pos + 20]!r} in {expr!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append((kind, match.group()))
    return tokens


def names_in(expr: str) -> Names:
    """Metric names (selectors) and label names (matchers, grouping lists) an expression uses."""
    tokens = tokenize(expr)
    names = Names()
    braces = 0
    label_parens: list[bool] = []  # for each open paren: is it a label list?
    current_metric: str | None = None
    for i, (kind, text) in enumerate(tokens):
        following = tokens[i + 1][1] if i + 1 < len(tokens) else ""
        if kind == "op":
            if text == "{":
                braces += 1
            elif text == "}":
                braces -= 1
                current_metric = None
            elif text == "(":
                previous = tokens[i - 1][1] if i else ""
                label_parens.append(previous in LABEL_LIST_KEYWORDS)
            elif text == ")":
                label_parens.pop()
            continue
        if kind != "ident":
            continue
        if braces:
            if following in MATCH_OPS:
                names.labels.add(text)
                if current_metric is not None:
                    names.selectors.setdefault(current_metric, set()).add(text)
            continue
        if label_parens and label_parens[-1]:
            names.labels.add(text)
            continue
        if text in LABEL_LIST_KEYWORDS or text.lower() in KEYWORDS or text in AGGREGATIONS or following == "(":
            continue
        names.metrics.add(text)
        names.selectors.setdefault(text, set())
        current_metric = text if following == "{" else None
    return names


# --- what the operator exports ----------------------------------------------------------------------


@dataclass
class Exported:
    """Series names and label names from the operator's real /metrics text."""

    families: dict[str, str]  # family name -> type
    family_of: dict[str, str]  # series name (with _total, _bucket...) -> family name
    labels: dict[str, set[str]]  # family name -> label names seen on its samples (without "le")
    sampled: set[str]  # families with at least one sample
    text: str

    SUFFIXES = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "summary": ("", "_sum", "_count", "_created"),
    }

    @classmethod
    def from_registry(cls, registry: Any, declared: Any = None) -> Exported:
        """The registry's exposition; a family without samples yet takes its label names from its
        declaration (``declared``: an object whose attributes are the prometheus_client metrics)."""
        exported = cls.parse(generate_latest(registry).decode())
        declarations: dict[str, set[str]] = {}
        for metric in vars(declared or object()).values():
            if isinstance(metric, MetricWrapperBase):
                declarations[metric._name] = set(metric._labelnames)  # the family name (counters without _total)
            elif isinstance(metric, ConnectionSeries):
                declarations.update({name: set(labels) for name, labels in metric.label_names().items()})
        for name, labelnames in declarations.items():
            if name in exported.labels and not exported.labels[name]:
                exported.labels[name] = labelnames
        return exported

    @classmethod
    def parse(cls, text: str) -> Exported:
        families: dict[str, str] = {}
        family_of: dict[str, str] = {}
        labels: dict[str, set[str]] = {}
        sampled: set[str] = set()
        for family in text_string_to_metric_families(text):
            base = family.name.removesuffix("_created")
            if family.name != base and families.get(base) in ("counter", "histogram", "summary"):
                continue  # the text format gives a counter's/histogram's _created series its own gauge family
            families[family.name] = family.type
            labels[family.name] = set()
            for suffix in cls.SUFFIXES.get(family.type, ("",)):
                family_of[family.name + suffix] = family.name
            for sample in family.samples:
                assert family_of.get(sample.name) == family.name, f"unexpected series {sample.name} ({family.type})"
                labels[family.name].update(set(sample.labels) - {"le"})
                sampled.add(family.name)
        return cls(families, family_of, labels, sampled, text)

    @property
    def series(self) -> set[str]:
        return set(self.family_of)

    def labels_of(self, series_name: str) -> set[str]:
        labels = set(self.labels[self.family_of[series_name]])
        return labels | {"le"} if series_name.endswith("_bucket") else labels


def unknown_names(expression: Expression, exported: Exported) -> list[str]:
    """Names in the expression the operator (or Prometheus, for ``up``) does not export."""
    names = names_in(expression.expr)
    problems = []
    available_labels = set(TARGET_LABELS)
    for metric in sorted(names.metrics):
        if metric in PROMETHEUS_BUILTINS:
            labels = PROMETHEUS_BUILTINS[metric]
        elif metric in exported.family_of:
            labels = exported.labels_of(metric) | TARGET_LABELS
        else:
            problems.append(f"{expression.where}: metric {metric!r} is not exported by the operator")
            continue
        available_labels |= labels
        for label in sorted(names.selectors.get(metric, set()) - labels - {"__name__"}):
            problems.append(f"{expression.where}: {metric} has no label {label!r} (it has {sorted(labels)})")
            available_labels.add(label)  # reported once
    for label in sorted(names.labels - available_labels - {"__name__"}):
        problems.append(f"{expression.where}: label {label!r} is on none of {sorted(names.metrics)}")
    if not names.metrics:
        problems.append(f"{expression.where}: no metric found in {expression.expr!r}")
    return problems


# --- a real Prometheus ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """A real ``prometheus`` on 127.0.0.1 scraping ``target`` every second under job ``job``."""

    def __init__(self, binary: str, workdir: Path, target: str, *, job: str = "oneie-operator",
                 rule_files: tuple[Path, ...] = (), target_labels: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.job = job
        self.log = workdir / "prometheus.log"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [{
                "job_name": job,
                # As the chart's ServiceMonitor must (honorLabels: true): the operator's own
                # `namespace` label (the tenant's) wins over the target's namespace label.
                "honor_labels": True,
                "static_configs": [{"targets": [target], "labels": dict(target_labels or {})}],
            }],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.args = [
            binary, f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]
        self.process: asyncio.subprocess.Process | None = None
        self.client = httpx.AsyncClient(base_url=self.url, timeout=5)

    async def start(self, timeout: float = 30) -> None:
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

        async def ready() -> bool:
            assert self.process is not None
            if self.process.returncode is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}: {self.log_tail()}")
            try:
                return (await self.client.get("/-/ready")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(ready, timeout=timeout, interval=0.1, what=f"prometheus ready at {self.url}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> None:
        await self.client.aclose()
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), 5)

    async def api(self, path: str, **params: str) -> Any:
        response = await self.client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PromQLError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result as a list of {metric, value}."""
        data = await self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    async def wait_query(self, expr: str, predicate: Callable[[list[dict[str, Any]]], bool] | None = None,
                         timeout: float = 20) -> list[dict[str, Any]]:
        """Poll ``expr`` until its result is non-empty with finite values (and ``predicate`` holds)."""
        last: list[dict[str, Any]] = []

        async def probe() -> list[dict[str, Any]] | None:
            nonlocal last
            last = await self.query(expr)
            ok = bool(last) and all(math.isfinite(float(r["value"][1])) for r in last)
            return last if ok and (predicate is None or predicate(last)) else None

        try:
            return await wait_for(probe, timeout=timeout, interval=0.2, what=f"data for {expr!r}")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; last result: {last}") from None


class PromQLError(Exception):
    pass


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]
