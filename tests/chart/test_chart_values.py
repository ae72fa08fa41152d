"""values.yaml and values.schema.json: every value documented and typed, bad values refused with
a message that names the value and what is wrong (helm's schema check, or the templates' `fail`
for rules the schema cannot say readably)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from chart_support import CHART, iter_leaves, render, render_fails

SCHEMA_ERROR = "values don't meet the specifications of the schema"

VALUES_TEXT = (CHART / "values.yaml").read_text(encoding="utf-8")
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))


def schema_at(path: tuple[str, ...]) -> dict[str, Any]:
    node = SCHEMA
    for key in path:
        assert node.get("type") == "object", f"{'.'.join(path)}: parent is not an object in the schema"
        properties = node.get("properties", {})
        if key in properties:
            node = properties[key]
        else:
            extra = node.get("additionalProperties")
            assert isinstance(extra, dict), f"{'.'.join(path)}: not in values.schema.json"
            node = extra
    return node


@pytest.mark.parametrize("path", [".".join(p) for p, _ in iter_leaves(VALUES)])
def test_every_value_is_typed_in_the_schema(path: str) -> None:
    node = schema_at(tuple(path.split(".")))
    assert "type" in node or "oneOf" in node or "enum" in node, f"{path}: no type"
    assert node.get("description"), f"{path}: no description in the schema"


def test_schema_refuses_unknown_keys_everywhere() -> None:
    def walk(node: dict[str, Any], where: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, f"{where or '<root>'}: typos would pass"
            for key, child in node["properties"].items():
                if key not in ("global", "kopf-peering"):
                    walk(child, f"{where}.{key}")

    walk(SCHEMA, "")


def test_every_value_has_a_comment() -> None:
    """Each leaf key in values.yaml has a comment right above it (its own or its block's)."""
    lines = VALUES_TEXT.splitlines()
    leaf_keys = {p[-1] for p, _ in iter_leaves(VALUES)}
    missing = []
    for number, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z][\w-]*):\s*(.*)$", line)
        if not match or match.group(2) not in leaf_keys:
            continue
        value = match.group(3)
        if value == "" and number + 1 < len(lines) and lines[number + 1].strip().startswith("-"):
            pass  # a block list: a leaf too
        elif value == "":
            continue  # a mapping: its keys carry the comments
        previous = next((lines[i].strip() for i in range(number - 1, -1, -1) if lines[i].strip()), "")
        if not previous.startswith("#"):
            missing.append(f"line {number + 1}: {line.strip()}")
    assert missing == []


def test_defaults_pass_their_own_schema() -> None:
    assert render()  # helm validates the defaults against the schema on every render


# (--set values, what the message must contain)
BAD_VALUES: list[tuple[dict[str, str], list[str]]] = [
    ({"replicas": "-1"}, ["/replicas", "minimum: got -1, want 0"]),
    ({"replicas": "two"}, ["/replicas", "want integer"]),
    (
        {"webhook.failurePolicy.organizations": "Never"},
        ["/webhook/failurePolicy/organizations", "value must be one of 'Fail', 'Ignore'"],
    ),
    (
        {"webhook.failurePolicy.backendConnections": "fail"},
        ["/webhook/failurePolicy/backendConnections", "'Fail', 'Ignore'"],
    ),
    ({"encryption.key": "not-a-hex-key"}, ["/encryption/key", "does not match pattern '^([0-9a-fA-F]{64})?$'"]),
    ({"encryption.key": "ab" * 31}, ["/encryption/key", "[0-9a-fA-F]{64}"]),
    (
        {"encryption.existingSecret": "k", "encryption.existingSecretKey": "KEY"},
        ["/encryption/existingSecretKey", "value must be one of 'ENCRYPTION_KEY', 'ENCRYPTION_KEYRING'"],
    ),
    ({"encryption.existingSecret": "Bad_Name"}, ["/encryption/existingSecret", "does not match pattern"]),
    ({"watch.namespaces": "{Tenant-*}"}, ["/watch/namespaces/0", "'Tenant-*' does not match pattern"]),
    ({"config.metricsPort": "80"}, ["/config/metricsPort", "minimum: got 80, want 1,024"]),
    ({"config.providerTimeoutSeconds": "0"}, ["/config/providerTimeoutSeconds"]),
    ({"platformDefault.provider": "Convex"}, ["/platformDefault/provider", "'Convex' does not match pattern"]),
    ({"image.digest": "sha256:abc"}, ["/image/digest", "does not match pattern"]),
    ({"image.pullPolicy": "Sometimes"}, ["/image/pullPolicy", "value must be one of"]),
    ({"updateStrategy": "BlueGreen"}, ["/updateStrategy", "value must be one of"]),
    ({"replica": "2"}, ["additional properties 'replica' not allowed"]),
    ({"config.metricPort": "9000"}, ["/config", "additional properties 'metricPort' not allowed"]),
]


@pytest.mark.parametrize(("sets", "expected"), BAD_VALUES, ids=[",".join(s) for s, _ in BAD_VALUES])
def test_schema_refuses_bad_values(sets: dict[str, str], expected: list[str]) -> None:
    message = render_fails(sets)
    assert SCHEMA_ERROR in message
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"


# Rules across values, or whose schema message would be unreadable: the templates `fail`.
TEMPLATE_FAILURES: list[tuple[dict[str, str], str]] = [
    ({"image.tag": "latest"}, "image.tag: `latest` is not allowed"),
    ({"config.bindAddress": "127.0.0.1"}, "config.bindAddress: a loopback address"),
    (
        {"encryption.existingSecret": "keys", "encryption.key": "ab" * 32},
        "set either encryption.existingSecret or encryption.key, not both",
    ),
    ({"encryption.existingSecretKey": "ENCRYPTION_KEYRING"}, "encryption.existingSecretKey applies only with"),
    ({"platformDefault.existingSecret": "creds"}, "platformDefault.provider is empty"),
    ({"config.healthPort": "8080"}, "config.metricsPort and config.healthPort must differ"),
    ({"webhook.enabled": "true", "webhook.port": "8081"}, "webhook.port must differ"),
    (
        {"replicas": "2", "peering.crds.install": "true", "updateStrategy": "Recreate"},
        "updateStrategy Recreate with replicas >= 2",
    ),
    ({"replicas": "3"}, "replicas >= 2 needs Kopf's peering CRDs"),
    ({"serviceMonitor.enabled": "true", "metrics.service.enabled": "false"}, "serviceMonitor.enabled needs"),
    ({"rbac.tenantRoles.create": "false", "rbac.platformOwner.groups": "{admins}"}, "rbac.platformOwner binds"),
    ({"serviceAccount.create": "false"}, "serviceAccount.name is required"),
]


@pytest.mark.parametrize(("sets", "expected"), TEMPLATE_FAILURES, ids=[",".join(s) for s, _ in TEMPLATE_FAILURES])
def test_templates_refuse_inconsistent_values(sets: dict[str, str], expected: str) -> None:
    message = render_fails(sets)
    assert expected in message, message


def test_good_variants_are_accepted() -> None:
    render(sets={"encryption.existingSecret": "keys", "encryption.existingSecretKey": "ENCRYPTION_KEYRING"})
    render(sets={"encryption.key": "AB" * 32, "image.tag": "0.1.1", "config.bindAddress": "::"})
    render(sets={"replicas": "0"})  # scaled to zero (maintenance), still valid
