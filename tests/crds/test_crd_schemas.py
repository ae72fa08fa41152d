"""Offline validation of crds/ and examples/ (no API server can run here).

:mod:`crdcheck` reproduces the API server's steps for a custom resource (prune or refuse unknown
fields, default, OpenAPI validation, list uniqueness, CEL rules evaluated with cel-python). Each
bad input below says in ``k8s`` what a real API server answers to ``kubectl apply``; the test
asserts the same field path and message. Nothing here proves anything about the emulator used by
the end-to-end tests: it validates no schema.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest

try:  # tests/crds may or may not become a package; work either way
    from . import crdcheck
except ImportError:
    import crdcheck  # type: ignore[no-redef]

CRD = crdcheck.CRD
CRD_DIR = crdcheck.CRD_DIR
EXAMPLES_DIR = crdcheck.EXAMPLES_DIR
REPO = crdcheck.REPO
CelRuleError = crdcheck.CelRuleError
iter_properties = crdcheck.iter_properties
iter_schema_nodes = crdcheck.iter_schema_nodes
load_crds = crdcheck.load_crds
load_yaml_documents = crdcheck.load_yaml_documents
secret_values = crdcheck.secret_values
structural_problems = crdcheck.structural_problems

CRDS = load_crds()
BC = CRDS["BackendConnection"]
ORG = CRDS["Organization"]
NAMESPACE = "tenant-acme"

#: The keys each built-in provider reads from the credentials Secret (required, optional) and
#: the documented format of each value (checked on the examples' fake placeholders).
SECRET_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "convex": ({"deployKey"}, set()),
    "wordpress": ({"username", "applicationPassword"}, set()),
    "notion": ({"token"}, set()),
    "supabase": ({"serviceRoleKey"}, {"anonKey"}),
}
SECRET_FORMATS: dict[str, str] = {
    # prod:happy-otter-123|eyJ2... (also dev:, preview:team:project, and <instance>|... self-hosted)
    "deployKey": r"^((prod|dev|preview|project):)?[A-Za-z0-9_-]+(:[A-Za-z0-9_-]+)?\|[A-Za-z0-9+/=_-]+$",
    "username": r"^\S.{0,59}$",
    # 24 characters from [A-Za-z0-9], shown by WordPress in six groups of four
    "applicationPassword": r"^([A-Za-z0-9]{4} ){5}[A-Za-z0-9]{4}$|^[A-Za-z0-9]{24}$",
    "token": r"^(ntn|secret)_[A-Za-z0-9]{20,}$",
    "serviceRoleKey": r"^sb_secret_[A-Za-z0-9_-]{10,}$|^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
    "anonKey": r"^sb_publishable_[A-Za-z0-9_-]{10,}$|^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
}
URL_FIELDS = {  # provider -> the URL field of its block, and a valid value
    "convex": ("url", "https://happy-otter-123.convex.cloud"),
    "wordpress": ("url", "https://blog.example.com"),
    "notion": ("apiUrl", "https://api.notion.com"),
    "supabase": ("url", "https://abcdefghijklmnopqrst.supabase.co"),
}


# ---------------------------------------------------------------------------------------------
# Building objects
# ---------------------------------------------------------------------------------------------

DELETE = object()


def edit(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with dotted paths (``spec__convex__url``) set, or removed (DELETE)."""
    out = copy.deepcopy(obj)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return out


def connection(provider: str = "convex", name: str = "acme-convex") -> dict[str, Any]:
    field, url = URL_FIELDS.get(provider, ("url", "https://example.com"))
    return {
        "apiVersion": "one.ie/v1alpha1",
        "kind": "BackendConnection",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "provider": provider,
            provider: {field: url},
            "credentialsSecretRef": {"name": f"{name}-credentials"},
        },
    }


def organization(name: str = "acme") -> dict[str, Any]:
    return {
        "apiVersion": "one.ie/v1alpha1",
        "kind": "Organization",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"backend": {"connectionRef": {"name": "acme-convex"}}},
    }


def condition(type_: str, status: str = "True", reason: str = "Ready", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-31T12:00:00Z",
        "observedGeneration": 1,
    }


CONNECTION_STATUS = {
    "observedGeneration": 1,
    "provider": "convex",
    "conditions": [condition("Ready", reason="CredentialsVerified"), condition("Healthy", reason="Online")],
    "capabilities": ["database", "realtime"],
    "health": {
        "status": "online",
        "responseTimeMilliseconds": 120,
        "errorRate": 0.0,
        "consecutiveFailures": 0,
        "lastProbeTime": "2025-01-31T12:05:00Z",
        "lastError": "",
    },
    "credentials": {
        "secretName": "acme-convex-oneie-credentials",
        "keyId": "k1",
        "fields": ["deployKey"],
        "sourceResourceVersion": "4711",
        "encryptedAt": "2025-01-31T12:00:00.123456+00:00",
    },
    "usedBy": ["acme"],
    "kopf": {"progress": {"anything": {"retries": 0}}},
}
SWITCH = {
    "from": "acme-convex",
    "to": "acme-supabase",
    "result": "Succeeded",
    "totalMilliseconds": 842,
    "steps": [
        {"name": "resolve", "milliseconds": 2, "result": "Succeeded"},
        {"name": "test", "milliseconds": 312, "result": "Succeeded"},
        {"name": "activate", "milliseconds": 8, "result": "Succeeded"},
        {"name": "healthGate", "milliseconds": 500, "result": "Succeeded"},
    ],
    "reason": "Switched",
    "message": "acme now uses acme-supabase",
    "startedAt": "2025-01-31T12:00:00Z",
    "finishedAt": "2025-01-31T12:00:00.842Z",
}
ORGANIZATION_STATUS = {
    "observedGeneration": 2,
    "provider": "supabase",
    "activeConnection": "acme-supabase",
    "previousConnection": "acme-convex",
    "switchedAt": "2025-01-31T12:00:00Z",
    "usingPlatformDefault": False,
    "binding": {"name": "acme-backend-binding"},
    "lastSwitch": SWITCH,
    "history": [SWITCH, {k: v for k, v in SWITCH.items() if k != "steps"}],
    "conditions": [
        condition("Ready", reason="Switched"),
        condition("Switching", status="False", reason="Idle"),
        condition("Healthy", reason="Online"),
        condition("Reconciling", status="False", reason="Reconciled"),
        condition("Stalled", status="False", reason="Reconciled"),
    ],
}


def validate(obj: dict[str, Any], **kwargs: Any):
    return CRDS[obj["kind"]].validate(obj, **kwargs)


# ---------------------------------------------------------------------------------------------
# The examples
# ---------------------------------------------------------------------------------------------


def example_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(EXAMPLES_DIR.rglob("*.yaml")) for doc in load_yaml_documents(path)]


EXAMPLES = example_documents()
OUR_EXAMPLES = [(p, d) for p, d in EXAMPLES if d.get("kind") in CRDS]


def _example_id(item: tuple[Path, dict[str, Any]]) -> str:
    return str(item[0].relative_to(EXAMPLES_DIR))


def test_examples_exist_for_every_builtin_provider() -> None:
    for provider in SECRET_KEYS:
        assert (EXAMPLES_DIR / provider / "secret.yaml").is_file()
        assert (EXAMPLES_DIR / provider / "backendconnection.yaml").is_file()
    assert (EXAMPLES_DIR / "organization.yaml").is_file()
    assert (EXAMPLES_DIR / "namespace.yaml").is_file()
    assert (EXAMPLES_DIR / "README.md").is_file()
    kinds = sorted(d["kind"] for _, d in EXAMPLES)
    assert kinds.count("BackendConnection") == 4 and kinds.count("Secret") == 4
    assert kinds.count("Organization") == 1 and kinds.count("Namespace") == 1


@pytest.mark.parametrize("item", OUR_EXAMPLES, ids=_example_id)
def test_example_is_accepted(item: tuple[Path, dict[str, Any]]) -> None:
    """Real Kubernetes: `kubectl apply` creates it (strict field validation, no warning)."""
    _, doc = item
    assert doc["metadata"]["namespace"] == NAMESPACE
    result = validate(doc, field_validation="Warn")
    assert result.ok, result.explain()
    assert result.warnings == [], "an example carries a field the schema would drop"
    assert result.evaluated, "no CEL rule was evaluated"


@pytest.mark.parametrize("item", [(p, d) for p, d in EXAMPLES if d["kind"] == "Secret"], ids=_example_id)
def test_example_secret_is_well_formed(item: tuple[Path, dict[str, Any]]) -> None:
    path, doc = item
    provider = path.parent.name
    values, problems = secret_values(doc)
    assert problems == []
    assert doc["metadata"]["namespace"] == NAMESPACE
    assert doc.get("type", "Opaque") == "Opaque"
    required, optional = SECRET_KEYS[provider]
    assert required <= set(values), f"{path}: missing keys {required - set(values)}"
    assert set(values) <= required | optional, f"{path}: unexpected keys {set(values) - required - optional}"
    for key, value in values.items():
        assert re.match(SECRET_FORMATS[key], value), f"{path}: {key} does not look like a {provider} {key}"
    text = path.read_text()
    assert "FAKE" in text, "placeholder credentials must say they are fake"


@pytest.mark.parametrize("provider", sorted(SECRET_KEYS))
def test_example_connection_references_its_secret(provider: str) -> None:
    """The BackendConnection names the Secret next to it, in its own namespace."""
    docs = {d["kind"]: d for d in load_yaml_documents(EXAMPLES_DIR / provider / "backendconnection.yaml")}
    secret = load_yaml_documents(EXAMPLES_DIR / provider / "secret.yaml")[0]
    conn = docs["BackendConnection"]
    assert conn["spec"]["provider"] == provider
    assert conn["spec"]["credentialsSecretRef"] == {"name": secret["metadata"]["name"]}
    assert conn["metadata"]["namespace"] == secret["metadata"]["namespace"] == NAMESPACE


def test_example_organization_points_at_the_convex_connection() -> None:
    org = load_yaml_documents(EXAMPLES_DIR / "organization.yaml")[0]
    conn = load_yaml_documents(EXAMPLES_DIR / "convex" / "backendconnection.yaml")[0]
    assert org["spec"]["backend"]["connectionRef"]["name"] == conn["metadata"]["name"]


def test_defaults_are_applied_like_the_api_server() -> None:
    """Real Kubernetes stores the defaulted object: `kubectl get -o yaml` shows these values."""
    notion = load_yaml_documents(EXAMPLES_DIR / "notion" / "backendconnection.yaml")[0]
    stored = validate(notion).object["spec"]
    assert stored["notion"] == {"apiUrl": "https://api.notion.com", "notionVersion": "2026-03-11"}
    assert stored["healthCheck"] == {
        "intervalSeconds": 300,
        "timeoutSeconds": 10,
        "degradedThresholdMilliseconds": 2000,
        "errorRateThreshold": 0.2,
        "window": 10,
        "credentialCheckEvery": 1,
    }
    assert "rateLimits" not in stored
    wordpress = validate(edit(connection("wordpress"))).object["spec"]["wordpress"]
    assert wordpress == {"url": "https://blog.example.com", "restPrefix": "/wp-json", "restRoute": False}
    partial = validate(edit(connection(), spec__healthCheck={"intervalSeconds": 60})).object
    assert partial["spec"]["healthCheck"]["timeoutSeconds"] == 10
    org = validate(edit(organization(), spec=DELETE)).object
    assert org["spec"] == {"switchPolicy": {"timeoutSeconds": 30, "autoRollback": True, "healthGate": True}}
    # A null for a defaulted field is replaced by the default, as the API server does.
    nulled = validate(edit(connection(), spec__healthCheck=None)).object
    assert nulled["spec"]["healthCheck"]["intervalSeconds"] == 300


# ---------------------------------------------------------------------------------------------
# Accepted inputs beyond the examples
# ---------------------------------------------------------------------------------------------

GOOD: list[Any] = [
    pytest.param(connection(name="a" * 63), id="name-of-63-characters"),
    pytest.param(edit(connection(), spec__convex__url="http://convex.tenant-acme.svc:3210"), id="plain-http"),
    pytest.param(edit(connection(), spec__convex__url="http://[::1]:3210"), id="ipv6-literal-with-port"),
    pytest.param(
        edit(connection("wordpress"), spec__wordpress__url="https://example.com/blog"), id="url-with-path"
    ),
    pytest.param(
        edit(connection("airtable"), spec__airtable={"baseId": "appFAKE0000000000", "tables": ["tasks"]}),
        id="plugin-provider-with-its-block",
    ),
    pytest.param(
        edit(connection("wordpress"), spec__wordpress__restRoute=True, spec__wordpress__restPrefix="/api"),
        id="wordpress-rest-route",
    ),
    pytest.param(edit(connection(), spec__rateLimits={"requestsPerDay": 1}), id="rate-limit-per-day-only"),
    pytest.param(
        edit(connection(), spec__healthCheck={"intervalSeconds": 86400, "timeoutSeconds": 120}),
        id="health-check-maxima",
    ),
    pytest.param(edit(connection(), status=CONNECTION_STATUS), id="full-connection-status"),
    pytest.param(edit(organization(), status=ORGANIZATION_STATUS), id="full-organization-status"),
    pytest.param(
        edit(organization(), spec={}, status={"usingPlatformDefault": True, "provider": "convex"}),
        id="organization-on-platform-default",
    ),
    pytest.param(
        edit(organization(), spec__switchPolicy={"timeoutSeconds": 600, "autoRollback": False}),
        id="organization-switch-policy",
    ),
]


@pytest.mark.parametrize("obj", GOOD)
def test_accepted(obj: dict[str, Any]) -> None:
    result = validate(obj)
    assert result.ok, result.explain()


def test_plugin_block_is_preserved_not_pruned() -> None:
    """Real Kubernetes: spec has x-kubernetes-preserve-unknown-fields, so spec.<plug-in> is stored
    as written (and invisible to the CEL rules); the operator validates it with the plug-in's
    model. A plug-in connection without its block is therefore accepted by the API server and
    refused by the operator (Ready=False), which this test cannot show."""
    block = {"baseId": "appFAKE0000000000", "nested": {"deep": [1, 2]}}
    result = validate(edit(connection("airtable"), spec__airtable=block), field_validation="Warn")
    assert result.ok and result.warnings == []
    assert result.object["spec"]["airtable"] == block
    assert validate(edit(connection("airtable"), spec__airtable=DELETE)).ok


def test_kopf_status_bookkeeping_is_preserved() -> None:
    result = validate(edit(connection(), status=CONNECTION_STATUS), field_validation="Warn")
    assert result.warnings == []
    assert result.object["status"]["kopf"] == CONNECTION_STATUS["kopf"]


def test_update_keeping_the_provider_is_accepted() -> None:
    """Real Kubernetes: transition rules (oldSelf) run on update only; same provider passes."""
    old = connection()
    new = edit(old, spec__convex__url="https://clever-fox-456.convex.cloud")
    result = validate(new, old=old)
    assert result.ok, result.explain()
    assert any("oldSelf" in rule and passed for _, rule, passed in result.evaluated)
    create = validate(new)
    assert not any("oldSelf" in rule for _, rule, _ in create.evaluated), "transition rule ran on create"


# ---------------------------------------------------------------------------------------------
# Refused inputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    obj: dict[str, Any]
    expect: tuple[str, ...]  # substrings that must each appear in one "path: message" line
    k8s: str  # what a real API server answers to `kubectl apply` (v1.30+)
    old: dict[str, Any] | None = None
    field_validation: str = "Strict"


LONG = "a" * 64
BAD: list[Bad] = [
    # -- provider and its block --------------------------------------------------------------
    Bad(
        "provider-block-absent",
        edit(connection(), spec__convex=DELETE),
        ("spec.convex: spec.convex is required when spec.provider is 'convex'",),
        "422: spec.convex: Required value: spec.convex is required when spec.provider is 'convex'",
    ),
    Bad(
        "provider-absent",
        edit(connection(), spec__provider=DELETE),
        (
            "spec: 'provider' is a required property",
            "spec.convex: spec.convex is only allowed when spec.provider is 'convex'",
        ),
        "422: spec.provider: Required value (the guarded rules still run and flag spec.convex)",
    ),
    Bad(
        "two-provider-blocks",
        edit(connection(), spec__supabase={"url": "https://abcdefghijklmnopqrst.supabase.co"}),
        ("spec.supabase: spec.supabase is only allowed when spec.provider is 'supabase'",),
        "422: spec.supabase: Forbidden: spec.supabase is only allowed when spec.provider is 'supabase'",
    ),
    Bad(
        "wrong-block-for-provider",
        edit(connection("wordpress"), spec__provider="notion"),
        (
            "spec.notion: spec.notion is required when spec.provider is 'notion'",
            "spec.wordpress: spec.wordpress is only allowed when spec.provider is 'wordpress'",
        ),
        "422 with both errors: spec.notion: Required value, spec.wordpress: Forbidden",
    ),
    Bad(
        "plugin-provider-with-builtin-block",
        edit(connection(), spec__provider="airtable"),
        ("spec.convex: spec.convex is only allowed when spec.provider is 'convex'",),
        "422: spec.convex: Forbidden (the airtable block itself is invisible to the API server)",
    ),
    Bad(
        "provider-name-not-lower-case",
        edit(connection(), spec__provider="Convex"),
        ("spec.provider: 'Convex' does not match",),
        '422: spec.provider: Invalid value: "Convex": spec.provider in body should match '
        "'^[a-z][a-z0-9-]{1,30}$'",
    ),
    Bad(
        "provider-immutable",
        edit(connection("supabase", name="acme-convex")),
        ("spec.provider: spec.provider is immutable",),
        '422 on update: spec.provider: Invalid value: "string": spec.provider is immutable; ...',
        old=connection(),
    ),
    Bad(
        "provider-block-of-wrong-type",
        edit(connection(), spec__convex="https://happy-otter-123.convex.cloud"),
        (
            "spec.convex: 'https://happy-otter-123.convex.cloud' is not of type 'object'",
            "some validation rules were not checked",
        ),
        '422: spec.convex: Invalid value: "string": spec.convex in body must be of type object; '
        "CEL is skipped after a type error and the server says so",
    ),
    # -- URLs (every URL rule of every provider is also covered by URL_CASES below) ------------
    Bad(
        "url-with-whitespace",
        edit(connection(), spec__convex__url="https://happy otter.convex.cloud"),
        ("spec.convex.url: 'https://happy otter.convex.cloud' does not match",),
        "422: spec.convex.url: Invalid value: ...: should match '^\\S+$'",
    ),
    Bad(
        "url-too-long",
        edit(connection(), spec__convex__url="https://" + "a" * 2041 + ".cloud"),
        ("spec.convex.url:", "is too long"),
        "422: spec.convex.url: Too long: may not be more than 2048 bytes",
    ),
    # -- names ---------------------------------------------------------------------------------
    Bad(
        "connection-name-too-long",
        connection(name=LONG),
        ("<root>: metadata.name must be at most 63 characters",),
        '422: <nil>: Invalid value: "object": metadata.name must be at most 63 characters ...',
    ),
    Bad(
        "organization-name-too-long",
        organization(name=LONG),
        ("<root>: metadata.name must be at most 63 characters",),
        '422: <nil>: Invalid value: "object": metadata.name must be at most 63 characters ...',
    ),
    Bad(
        "secret-name-too-long",
        edit(connection(), spec__credentialsSecretRef__name="s" * 254),
        ("spec.credentialsSecretRef.name:", "is too long"),
        "422: spec.credentialsSecretRef.name: Too long: may not be more than 253 bytes",
    ),
    Bad(
        "secret-name-not-dns",
        edit(connection(), spec__credentialsSecretRef__name="Convex_Credentials"),
        ("spec.credentialsSecretRef.name: 'Convex_Credentials' does not match",),
        "422: spec.credentialsSecretRef.name: Invalid value: ...: should match '^[a-z0-9]...'",
    ),
    Bad(
        "secret-name-empty",
        edit(connection(), spec__credentialsSecretRef__name=""),
        ("spec.credentialsSecretRef.name: '' should be non-empty",),
        '422: spec.credentialsSecretRef.name: Invalid value: "": should be at least 1 chars long',
    ),
    Bad(
        "secret-ref-absent",
        edit(connection(), spec__credentialsSecretRef=DELETE),
        ("spec: 'credentialsSecretRef' is a required property",),
        "422: spec.credentialsSecretRef: Required value",
    ),
    Bad(
        "secret-ref-with-namespace",
        edit(connection(), spec__credentialsSecretRef__namespace="tenant-other"),
        (
            "spec.credentialsSecretRef.namespace: strict decoding error: unknown field "
            '"spec.credentialsSecretRef.namespace"',
        ),
        "kubectl apply (fieldValidation=Strict, its default): 400 BadRequest, strict decoding error: "
        'unknown field "spec.credentialsSecretRef.namespace". Clients that do not ask for strict '
        "validation get a warning and the field pruned (see the Warn test): never a cross-namespace read",
    ),
    Bad(
        "field-name-typo",
        edit(connection(), spec__convex={"ulr": "https://happy-otter-123.convex.cloud"}),
        ('unknown field "spec.convex.ulr"', "spec.convex: 'url' is a required property"),
        'kubectl apply: 400 strict decoding error: unknown field "spec.convex.ulr" (with Warn: '
        "pruned, then 422 spec.convex.url: Required value)",
    ),
    # -- health check and rate limits ------------------------------------------------------------
    Bad(
        "timeout-equals-interval",
        edit(connection(), spec__healthCheck={"intervalSeconds": 30, "timeoutSeconds": 30}),
        ("spec.healthCheck.timeoutSeconds: spec.healthCheck.timeoutSeconds must be less than",),
        '422: spec.healthCheck.timeoutSeconds: Invalid value: "object": ... must be less than ...',
    ),
    Bad(
        "timeout-above-defaulted-interval",
        edit(connection(), spec__healthCheck={"intervalSeconds": 10, "timeoutSeconds": 11}),
        ("spec.healthCheck.timeoutSeconds: spec.healthCheck.timeoutSeconds must be less than",),
        "422: the same rule",
    ),
    Bad(
        "interval-defaults-meet-timeout",
        edit(connection(), spec__healthCheck={"intervalSeconds": 10}),
        ("spec.healthCheck.timeoutSeconds: spec.healthCheck.timeoutSeconds must be less than",),
        "422: defaults are applied before validation, so the defaulted timeout (10) meets interval 10",
    ),
    Bad(
        "interval-too-short",
        edit(connection(), spec__healthCheck={"intervalSeconds": 5, "timeoutSeconds": 1}),
        ("spec.healthCheck.intervalSeconds: 5 is less than the minimum of 10",),
        "422: spec.healthCheck.intervalSeconds: Invalid value: 5: should be greater than or equal to 10",
    ),
    Bad(
        "error-rate-above-one",
        edit(connection(), spec__healthCheck={"errorRateThreshold": 1.5}),
        ("spec.healthCheck.errorRateThreshold: 1.5 is greater than the maximum of 1",),
        "422: spec.healthCheck.errorRateThreshold: should be less than or equal to 1",
    ),
    Bad(
        "window-zero",
        edit(connection(), spec__healthCheck={"window": 0}),
        ("spec.healthCheck.window: 0 is less than the minimum of 1",),
        "422: spec.healthCheck.window: should be greater than or equal to 1",
    ),
    Bad(
        "rate-limit-zero",
        edit(connection(), spec__rateLimits={"requestsPerMinute": 0}),
        ("spec.rateLimits.requestsPerMinute: 0 is less than the minimum of 1",),
        "422: spec.rateLimits.requestsPerMinute: should be greater than or equal to 1",
    ),
    # -- provider blocks ---------------------------------------------------------------------------
    Bad(
        "notion-version-format",
        edit(connection("notion"), spec__notion__notionVersion="2022/06/28"),
        ("spec.notion.notionVersion: '2022/06/28' does not match",),
        "422: spec.notion.notionVersion: should match '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'",
    ),
    Bad(
        "wordpress-rest-prefix-without-slash",
        edit(connection("wordpress"), spec__wordpress__restPrefix="wp-json"),
        ("spec.wordpress.restPrefix: 'wp-json' does not match",),
        "422: spec.wordpress.restPrefix: should match '^/[^\\s?#]*$'",
    ),
    Bad(
        "wordpress-rest-route-not-boolean",
        edit(connection("wordpress"), spec__wordpress__restRoute="yes"),
        (
            "spec.wordpress.restRoute: 'yes' is not of type 'boolean'",
            "some validation rules were not checked",
        ),
        '422: spec.wordpress.restRoute: Invalid value: "string": must be of type boolean',
    ),
    Bad(
        "wordpress-url-absent",
        edit(connection("wordpress"), spec__wordpress={"restRoute": True}),
        ("spec.wordpress: 'url' is a required property",),
        "422: spec.wordpress.url: Required value",
    ),
    # -- status (written through the status subresource, validated by the same schema) ----------
    Bad(
        "health-status-enum",
        edit(connection(), status={"health": {"status": "broken"}}),
        ("status.health.status: 'broken' is not one of ['online', 'degraded', 'offline', 'unknown']",),
        '422: status.health.status: Unsupported value: "broken": supported values: "online", ...',
    ),
    Bad(
        "condition-status-enum",
        edit(connection(), status={"conditions": [condition("Ready", status="Yes")]}),
        ("status.conditions[0].status: 'Yes' is not one of",),
        '422: status.conditions[0].status: Unsupported value: "Yes"',
    ),
    Bad(
        "condition-without-reason",
        edit(connection(), status={"conditions": [edit(condition("Ready"), reason=DELETE)]}),
        ("status.conditions[0]: 'reason' is a required property",),
        "422: status.conditions[0].reason: Required value",
    ),
    Bad(
        "condition-reason-not-camel-case",
        edit(connection(), status={"conditions": [condition("Ready", reason="secret not found")]}),
        ("status.conditions[0].reason: 'secret not found' does not match",),
        "422: status.conditions[0].reason: should match '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$'",
    ),
    Bad(
        "condition-type-twice",
        edit(connection(), status={"conditions": [condition("Ready"), condition("Ready", status="False")]}),
        ("status.conditions[1]: Duplicate value: ('Ready',)",),
        '422: status.conditions[1]: Duplicate value: map[string]interface {}{"type":"Ready"}',
    ),
    Bad(
        "condition-bad-timestamp",
        edit(connection(), status={"conditions": [edit(condition("Ready"), lastTransitionTime="yesterday")]}),
        ("status.conditions[0].lastTransitionTime: 'yesterday' is not a 'date-time'",),
        '422: status.conditions[0].lastTransitionTime: Invalid value: "yesterday": '
        "must be of format date-time",
    ),
    Bad(
        "used-by-twice",
        edit(connection(), status={"usedBy": ["acme", "acme"]}),
        ("status.usedBy[1]: Duplicate value",),
        '422: status.usedBy[1]: Duplicate value: "acme"',
    ),
    Bad(
        "error-rate-status-above-one",
        edit(connection(), status={"health": {"errorRate": 2}}),
        ("status.health.errorRate: 2 is greater than the maximum of 1",),
        "422: status.health.errorRate: should be less than or equal to 1",
    ),
    # -- Organization ------------------------------------------------------------------------------
    Bad(
        "organization-connection-ref-without-name",
        edit(organization(), spec__backend={"connectionRef": {}}),
        ("spec.backend.connectionRef: 'name' is a required property",),
        "422: spec.backend.connectionRef.name: Required value",
    ),
    Bad(
        "organization-backend-without-connection-ref",
        edit(organization(), spec__backend={}),
        ("spec.backend: 'connectionRef' is a required property",),
        "422: spec.backend.connectionRef: Required value (omit spec.backend for the platform default)",
    ),
    Bad(
        "organization-connection-name-too-long",
        edit(organization(), spec__backend={"connectionRef": {"name": LONG}}),
        ("spec.backend.connectionRef.name:", "is too long"),
        "422: spec.backend.connectionRef.name: Too long: may not be more than 63 bytes",
    ),
    Bad(
        "organization-connection-ref-with-namespace",
        edit(organization(), spec__backend={"connectionRef": {"name": "x", "namespace": "other"}}),
        ('unknown field "spec.backend.connectionRef.namespace"',),
        "kubectl apply: 400 strict decoding error: unknown field (other clients: pruned with a warning)",
    ),
    Bad(
        "switch-timeout-zero",
        edit(organization(), spec__switchPolicy={"timeoutSeconds": 0}),
        ("spec.switchPolicy.timeoutSeconds: 0 is less than the minimum of 1",),
        "422: spec.switchPolicy.timeoutSeconds: should be greater than or equal to 1",
    ),
    Bad(
        "switch-timeout-too-long",
        edit(organization(), spec__switchPolicy={"timeoutSeconds": 601}),
        ("spec.switchPolicy.timeoutSeconds: 601 is greater than the maximum of 600",),
        "422: spec.switchPolicy.timeoutSeconds: should be less than or equal to 600",
    ),
    Bad(
        "auto-rollback-not-boolean",
        edit(organization(), spec__switchPolicy={"autoRollback": "true"}),
        ("spec.switchPolicy.autoRollback: 'true' is not of type 'boolean'",),
        '422: spec.switchPolicy.autoRollback: Invalid value: "string": must be of type boolean',
    ),
    Bad(
        "last-switch-result-enum",
        edit(organization(), status={"lastSwitch": {"result": "Done"}}),
        ("status.lastSwitch.result: 'Done' is not one of ['Succeeded', 'RolledBack', 'Failed']",),
        '422: status.lastSwitch.result: Unsupported value: "Done"',
    ),
    Bad(
        "history-longer-than-ten",
        edit(organization(), status={"history": [SWITCH] * 11}),
        ("status.history:", "is too long"),
        "422: status.history: Too many: 11: must have at most 10 items",
    ),
]


def _url_cases() -> list[Bad]:
    """Every URL rule of every built-in provider, refused once."""
    cases = []
    for provider, (field, good) in URL_FIELDS.items():
        host = good.split("://", 1)[1]
        where = f"spec.{provider}.{field}"
        for label, url, message in [
            ("ftp", f"ftp://{host}", f"{where} must be an http(s) URL"),
            ("userinfo", f"https://admin:hunter2@{host}", f"{where} must not contain credentials"),
            ("user-only", f"https://admin@{host}/", f"{where} must not contain credentials"),
            ("no-host", "https:///path", f"{where} must name a host"),
            ("query", f"{good}/?token=abc", f"{where} must not contain a query"),
            ("fragment", f"{good}/#top", f"{where} must not contain a query (?) or a fragment"),
        ]:
            obj = connection(provider)
            obj["spec"][provider][field] = url
            cases.append(
                Bad(
                    f"{provider}-url-{label}",
                    obj,
                    (f"{where}: {message}",),
                    f'422: {where}: Invalid value: "string": {message}...',
                )
            )
    return cases


URL_CASES = _url_cases()


def _block_cases() -> list[Bad]:
    """For every built-in provider: its block missing, and its block beside another provider."""
    cases = []
    for provider, (field, good) in URL_FIELDS.items():
        other = "supabase" if provider == "convex" else "convex"
        cases.append(
            Bad(
                f"{provider}-block-absent",
                edit(connection(provider), **{f"spec__{provider}": DELETE}),
                (f"spec.{provider}: spec.{provider} is required when spec.provider is '{provider}'",),
                f"422: spec.{provider}: Required value: spec.{provider} is required when ...",
            )
        )
        cases.append(
            Bad(
                f"{provider}-block-beside-{other}",
                edit(connection(other), **{f"spec__{provider}": {field: good}}),
                (f"spec.{provider}: spec.{provider} is only allowed when spec.provider is '{provider}'",),
                f"422: spec.{provider}: Forbidden: spec.{provider} is only allowed when ...",
            )
        )
    return cases


BLOCK_CASES = _block_cases()


@pytest.mark.parametrize("case", BAD + URL_CASES + BLOCK_CASES, ids=lambda c: c.id)
def test_refused(case: Bad) -> None:
    result = validate(case.obj, old=case.old, field_validation=case.field_validation)
    assert not result.ok, f"accepted, but real Kubernetes answers: {case.k8s}"
    for expected in case.expect:
        assert any(expected in line for line in result.messages), (
            f"expected {expected!r}\nreal Kubernetes: {case.k8s}\ngot:\n{result.explain()}"
        )


def test_secret_ref_namespace_without_strict_validation_is_pruned() -> None:
    """Real Kubernetes, a client that does not ask for strict field validation (the API default
    is Warn): 201 Created, a `Warning: unknown field "spec.credentialsSecretRef.namespace"`
    header, and the stored object has no namespace: the operator can only ever read the Secret
    from the connection's own namespace."""
    obj = edit(connection(), spec__credentialsSecretRef__namespace="tenant-other")
    result = validate(obj, field_validation="Warn")
    assert result.ok, result.explain()
    assert result.warnings == ['unknown field "spec.credentialsSecretRef.namespace"']
    assert result.object["spec"]["credentialsSecretRef"] == {"name": "acme-convex-credentials"}
    assert validate(obj, field_validation="Ignore").warnings == []


# ---------------------------------------------------------------------------------------------
# The rules themselves
# ---------------------------------------------------------------------------------------------


def test_every_rule_is_evaluated_and_both_passes_and_fails() -> None:
    """Each CEL rule of both CRDs is really run by cel-python: it passes on some accepted input
    and fails on some refused one (a rule that could never fail would be dead weight)."""
    outcomes: dict[tuple[str, str, str], set[bool]] = {}
    inputs: list[tuple[dict[str, Any], dict[str, Any] | None]] = [(d, None) for _, d in OUR_EXAMPLES]
    inputs += [(p.values[0], None) for p in GOOD]
    inputs += [(c.obj, c.old) for c in BAD + URL_CASES + BLOCK_CASES]
    inputs.append((connection(), connection()))
    for obj, old in inputs:
        result = validate(obj, old=old)
        for schema_path, rule, passed in result.evaluated:
            outcomes.setdefault((obj["kind"], schema_path, rule), set()).add(passed)
    for crd in CRDS.values():
        for rule in crd.all_rules():
            seen = outcomes.get((crd.kind, rule.schema_path, rule.rule))
            assert seen == {True, False}, (
                f"{crd.kind} {rule.schema_path or '<root>'}: {rule.rule!r} -> {seen}"
            )


def _tiny_crd(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "tinies.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Tiny", "plural": "tinies"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": node}}},
                }
            ],
        },
    }


def _tiny(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Tiny", "metadata": {"name": "t"}, "spec": spec}


INT_PAIR = {"a": {"type": "integer"}, "b": {"type": "integer"}}


def test_checker_reports_failing_rules() -> None:
    crd = CRD(
        _tiny_crd(
            {
                "type": "object",
                "properties": INT_PAIR,
                "x-kubernetes-validations": [{"rule": "self.a < self.b", "message": "a < b"}],
            }
        )
    )
    assert crd.validate(_tiny({"a": 1, "b": 2})).ok
    assert crd.validate(_tiny({"a": 2, "b": 1})).messages == ["spec: a < b"]


@pytest.mark.parametrize(
    ("rule", "spec", "error"),
    [
        ("self.a ==", {"a": 1, "b": 1}, "does not compile"),
        ("self.c == 1", {"a": 1, "b": 1}, "not a declared property"),
        ("self.a / self.b > 0", {"a": 1, "b": 0}, "failed to evaluate"),
        ("self.a", {"a": 1, "b": 1}, "not a boolean"),
        ("self.a < self.b", {"a": 1}, "failed to evaluate"),  # no such key: unguarded optional field
    ],
)
def test_checker_refuses_broken_rules(rule: str, spec: dict[str, Any], error: str) -> None:
    """A rule that errors must fail loudly, never count as a pass."""
    node = {"type": "object", "properties": INT_PAIR, "x-kubernetes-validations": [{"rule": rule}]}
    with pytest.raises(CelRuleError, match=error):
        CRD(_tiny_crd(node)).validate(_tiny(spec))


def test_cel_sees_only_what_the_api_server_shows() -> None:
    """Unknown fields under preserve-unknown-fields and nulls are invisible; numbers are doubles."""
    node = {
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"n": {"type": "number"}, "s": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "!has(self.s)", "message": "s visible"},
            {"rule": "type(self.n) == double", "message": "n not a double"},
        ],
    }
    crd = CRD(_tiny_crd(node))
    result = crd.validate(_tiny({"n": 1, "s": None, "extra": "kept"}))
    assert result.ok, result.explain()
    assert result.object["spec"] == {"n": 1, "extra": "kept"}
    with pytest.raises(CelRuleError, match="not a declared property"):
        CRD(_tiny_crd(edit(node, **{"x-kubernetes-validations": [{"rule": "has(self.extra)"}]})))


def test_cel_matches_is_a_search_like_re2() -> None:
    """CEL's matches() (RE2) is true when the pattern matches any substring; our URL rules
    anchor their patterns, and rely on cel-python doing the same."""
    crd = CRD(
        _tiny_crd(
            {
                "type": "object",
                "properties": {"s": {"type": "string"}},
                "x-kubernetes-validations": [{"rule": "self.s.matches('b')"}],
            }
        )
    )
    assert crd.validate(_tiny({"s": "abc"})).ok
    assert not crd.validate(_tiny({"s": "xyz"})).ok


# ---------------------------------------------------------------------------------------------
# The CRDs themselves
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_crd_is_structural(kind: str) -> None:
    assert structural_problems(CRDS[kind].schema) == []


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_every_property_has_a_description(kind: str) -> None:
    """kubectl explain shows these; metadata is the one exception (the API server forbids
    anything but `type` there)."""
    schema = CRDS[kind].schema
    assert schema.get("description", "").strip()
    missing = [
        path
        for path, node in iter_properties(schema)
        if path != "metadata" and len(node.get("description", "").strip()) < 10
    ]
    assert missing == []


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_spec_strings_and_lists_are_bounded(kind: str) -> None:
    """Strings and lists that users write have a bound (maxLength/enum, maxItems): this keeps
    the API server's CEL cost estimate of the rules low and the objects small."""
    unbounded = [
        path
        for path, node in iter_schema_nodes(CRDS[kind].schema)
        if path.startswith("spec")
        and (
            (node.get("type") == "string" and "maxLength" not in node and "enum" not in node)
            or (node.get("type") == "array" and "maxItems" not in node)
        )
    ]
    assert unbounded == []


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_defaults_are_valid(kind: str) -> None:
    assert CRDS[kind].default_problems() == []


def test_broken_schemas_are_caught_by_the_structural_check() -> None:
    bad = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "description": "not allowed"},
            "a": {"description": "no type"},
            "b": {"type": "array", "description": "no items"},
            "c": {"type": "string", "maxlength": 3, "description": "typo"},
            "d": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                "x-kubernetes-list-map-keys": ["k"],
            },
            "e": {"type": "object", "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".nope"}]},
        },
    }
    text = "\n".join(structural_problems(bad))
    for expected in [
        "metadata: must not specify anything other than name and generateName",
        "a: type is required",
        "b: an array must have items",
        "c: unsupported or misspelled keys ['maxlength']",
        "d: map key 'k' must be required or defaulted",
        "e: fieldPath '.nope' names no declared field",
    ]:
        assert expected in text


def test_names_follow_the_design() -> None:
    bc, org = BC.doc["spec"], ORG.doc["spec"]
    assert BC.doc["metadata"]["name"] == "backendconnections.one.ie"
    assert ORG.doc["metadata"]["name"] == "organizations.one.ie"
    for spec in (bc, org):
        assert spec["group"] == "one.ie" and spec["scope"] == "Namespaced"
        assert spec["names"]["categories"] == ["oneie"]
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
    assert bc["names"]["shortNames"] == ["bconn", "bc"]
    assert org["names"]["shortNames"] == ["org"]


def _json_path_fields(json_path: str) -> list[tuple[str, bool]]:
    """`.status.conditions[?(@.type=="Ready")].status` ->
    [("status", False), ("conditions", True), ("status", False)] (True: indexed into a list)."""
    return [
        (match.group(1), bool(match.group(2)))
        for match in re.finditer(r"\.([A-Za-z0-9_]+)(\[(?:[^\]\[]|\[[^\]]*\])*\])?", json_path)
    ]


@pytest.mark.parametrize("kind", sorted(CRDS))
def test_printer_columns_and_selectable_fields_name_declared_fields(kind: str) -> None:
    crd = CRDS[kind]
    columns = crd.version_doc["additionalPrinterColumns"]
    names = [c["name"] for c in columns if c.get("priority", 0) == 0]
    expected = {
        "BackendConnection": ["Provider", "Ready", "Health", "Used-By", "Age"],
        "Organization": ["Provider", "Active", "Health", "Ready", "Age"],
    }
    assert names == expected[kind]
    paths = [c["jsonPath"] for c in columns] + [f["jsonPath"] for f in crd.version_doc["selectableFields"]]
    for json_path in paths:
        fields = _json_path_fields(json_path)
        if fields == [("metadata", False), ("creationTimestamp", False)]:
            continue
        node = crd.schema
        for name, indexed in fields:
            assert name in node.get("properties", {}), f"{json_path}: {name} is not declared"
            node = node["properties"][name]
            if indexed:
                assert node.get("type") == "array", f"{json_path}: {name} is not a list"
                node = node["items"]
        assert node.get("type") in {"string", "integer", "number", "boolean"}, json_path
    for column in columns:
        assert column["type"] in {"string", "integer", "number", "boolean", "date"}


def test_provider_blocks_match_the_builtin_entry_points() -> None:
    """The CRD types (and the CEL rules guard) exactly the providers the package registers."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    builtins = set(pyproject["project"]["entry-points"]["oneie.providers"])
    spec = BC.schema["properties"]["spec"]
    blocks = set(spec["properties"]) - {"provider", "credentialsSecretRef", "healthCheck", "rateLimits"}
    assert blocks == builtins == set(SECRET_KEYS)
    rules = " ".join(r["rule"] for r in spec["x-kubernetes-validations"])
    for name in builtins:
        assert f"has(self.{name})" in rules and f"''{name}''" not in rules


def _provider_class(provider: str) -> Any:
    module_name = f"oneie_operator.providers.{provider}"
    try:
        found = importlib.util.find_spec(module_name)
    except ModuleNotFoundError:
        found = None
    if found is None:
        pytest.skip(f"{module_name} is not written yet")
    from oneie_operator.providers.base import Provider

    module = importlib.import_module(module_name)
    (cls,) = [
        c
        for c in vars(module).values()
        if isinstance(c, type) and issubclass(c, Provider) and getattr(c, "name", None) == provider
    ]
    return cls


@pytest.mark.parametrize("provider", sorted(SECRET_KEYS))
def test_examples_agree_with_the_provider_module(provider: str) -> None:
    """When the provider module exists: its secret fields are the Secret's keys, its settings
    model accepts the example's (defaulted) block (the field names agree) and it finds nothing
    wrong with the format of the example's placeholder credentials."""
    cls = _provider_class(provider)
    required, optional = SECRET_KEYS[provider]
    assert set(cls.secret_fields) == required
    assert set(cls.optional_secret_fields) == optional
    conn = load_yaml_documents(EXAMPLES_DIR / provider / "backendconnection.yaml")[0]
    cls.settings_model.model_validate(validate(conn).object["spec"][provider])
    values, _ = secret_values(load_yaml_documents(EXAMPLES_DIR / provider / "secret.yaml")[0])
    cls().check_credentials(values)
    # The CRD's defaults are the model's defaults.
    block_schema = BC.schema["properties"]["spec"]["properties"][provider]
    minimal = {k: v for k, v in conn["spec"][provider].items() if k in block_schema.get("required", [])}
    defaulted = validate(edit(conn, **{f"spec__{provider}": minimal})).object["spec"][provider]
    dumped = cls.settings_model.model_validate(minimal).model_dump(by_alias=True)
    assert {k: dumped.get(k) for k in defaulted} == defaulted


@pytest.mark.parametrize("case", URL_CASES, ids=lambda c: c.id)
def test_settings_model_refuses_what_the_crd_refuses(case: Bad) -> None:
    """The emulator used by the end-to-end tests runs no CEL, and a cluster might run an old
    CRD: the operator's own settings model must refuse the same URLs (it does, by design)."""
    provider = case.obj["spec"]["provider"]
    cls = _provider_class(provider)
    field = URL_FIELDS[provider][0]
    with pytest.raises(pydantic.ValidationError) as refused:
        cls.settings_model.model_validate(case.obj["spec"][provider])
    assert [e["loc"] for e in refused.value.errors()] == [(field,)]


def test_kubernetes_validate_accepts_the_crd_documents() -> None:
    """The CRD documents themselves against the CustomResourceDefinition schema of the API
    (strict: a misspelled or misplaced key in the CRD is an error). selectableFields needs an
    API server of 1.30 or later (field selectors are on by default from 1.31)."""
    kv = pytest.importorskip("kubernetes_validate")
    for version in ("1.30", kv.latest_version()):
        for crd in CRDS.values():
            kv.validate(copy.deepcopy(dict(crd.doc)), version, strict=True)
        for _, doc in EXAMPLES:
            if doc["kind"] in {"Namespace", "Secret"}:
                kv.validate(copy.deepcopy(doc), version, strict=True)


def test_kubectl_parses_the_crds_offline() -> None:
    """`kubectl apply/create --dry-run=client` need an API server for discovery; `--local`
    commands parse and re-serialise the manifests without one."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "label", "--local", "--dry-run=client", "-o", "json", "-f", str(REPO / "crds"), "checked=yes"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    decoder, items, position = json.JSONDecoder(), [], 0
    while out[position:].strip():  # one JSON document per object, concatenated
        position = len(out) - len(out[position:].lstrip())
        item, position = decoder.raw_decode(out, position)
        items.append(item)
    names = sorted(d["metadata"]["name"] for d in items)
    assert names == ["backendconnections.one.ie", "organizations.one.ie"]
    for item in items:
        assert item["metadata"]["labels"]["checked"] == "yes"
        schema = item["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert schema == CRDS[item["spec"]["names"]["kind"]].schema
