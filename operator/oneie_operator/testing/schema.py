"""Validation of custom resources against their CRD, reproducing what the API server does.

One implementation, used twice: offline by ``tests/crds`` (every example and a set of bad
inputs against ``crds/``) and on line by the emulator (:mod:`.emulator`, on every create and
update of a custom resource). It needs ``jsonschema`` and ``cel-python`` (the ``demo`` and
``test`` extras): the emulator is test and demo tooling, the operator never imports this.

No Kubernetes API server runs on these machines, so this module reproduces, for the subset of
OpenAPI that our CRDs use, the steps a ``kubectl apply`` of a custom resource goes through on
the server (apiextensions-apiserver), in the same order:

1. **Unknown fields.** Fields that the schema does not declare (outside
   ``x-kubernetes-preserve-unknown-fields`` subtrees) are pruned. With ``fieldValidation=Strict``
   (what ``kubectl apply`` sends by default since 1.27, ``--validate=strict``) the request is
   refused with ``unknown field "spec.x"``; with ``Warn`` (the API default for other clients) it
   is accepted with a warning and the field dropped; with ``Ignore`` silently dropped.
2. **Nulls and defaults.** ``null`` in a non-nullable field is dropped, then ``default`` values
   are applied top-down (a defaulted ``{}`` receives its own children's defaults).
3. **OpenAPI validation** (type, required, enum, pattern, min/max, formats), done here with
   ``jsonschema`` on a conversion of the schema, plus the ``x-kubernetes-list-type`` map/set
   uniqueness checks.
4. **CEL rules** (``x-kubernetes-validations``), evaluated with cel-python at the node that
   declares them (``self`` is that node; ``oldSelf`` the same node of the old object, and rules
   that use ``oldSelf`` only run on updates where the old value exists, as transition rules do).
   The value given to CEL is typed by the schema as the API server types it: only declared
   properties are visible (unknown fields kept by ``x-kubernetes-preserve-unknown-fields`` are
   not), ``number`` is a double, ``date-time`` a timestamp, nulls are absent, and at the root
   only ``apiVersion``, ``kind``, ``metadata.name`` and ``metadata.generateName`` exist. As on
   the server, CEL is skipped when step 3 found a type or enum error.

A rule that does not compile, refers to a field its node does not have, errors at run time or
returns a non-boolean raises :class:`CelRuleError`: that is a bug in the CRD (the API server would
refuse the CRD or answer every such request with an error), never a silent pass.

What this does **not** reproduce: the CEL cost estimator and runtime budget, ``messageExpression``,
ratcheting of unchanged invalid values on update, validation of ``metadata`` beyond the name,
server-side apply merge semantics, and the CRD-level checks that only the real apiextensions
validation performs (the structural checks here are a close approximation).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from oneie_operator.testing.repository import CRD_DIR

#: The checkout (tests/crds reads pyproject.toml there); the CRDs and examples: .repository.
REPO = Path(__file__).resolve().parents[3]

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

#: Values of ``reason`` that the API server accepts in a validation rule.
RULE_REASONS = {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}
RULE_KEYS = {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}

#: Schema keys this checker understands; anything else is reported (a typo such as ``maxlength``
#: would otherwise be ignored by jsonschema and silently validate nothing).
SCHEMA_KEYS = set(
    """
    type description title properties items additionalProperties required enum pattern minLength
    maxLength minimum maximum exclusiveMinimum exclusiveMaximum multipleOf minItems maxItems
    minProperties maxProperties format default nullable example x-kubernetes-preserve-unknown-fields
    x-kubernetes-int-or-string x-kubernetes-embedded-resource x-kubernetes-list-type
    x-kubernetes-list-map-keys x-kubernetes-map-type x-kubernetes-validations
    """.split()
)
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
SCALARS = {"string", "integer", "number", "boolean"}


class CelRuleError(AssertionError):
    """A validation rule is broken: it does not compile, refers to an unknown field, errors or
    returns a non-boolean. A bug in the CRD, reported loudly (it subclasses AssertionError so a
    test that hits it fails rather than errors)."""


@dataclass(frozen=True)
class Violation:
    """One reason the API server would refuse the object."""

    path: str  # e.g. "spec.convex.url" ("" for the root)
    message: str
    source: str  # "unknown-field", "schema", "list", "metadata" or "cel"
    #: As the API server reports it in ``details.causes``: ``reason`` and the text after the path.
    reason: str = "FieldValueInvalid"
    detail: str = ""
    field: str | None = None  # the cause's field when it differs from path (a missing required one)

    @property
    def cause(self) -> dict[str, str]:
        """The ``details.causes[]`` entry of a 422 Invalid answer."""
        return {"reason": self.reason, "message": self.detail or self.message,
                "field": (self.field if self.field is not None else self.path) or "<nil>"}

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


@dataclass
class Result:
    """The outcome of one create or update, as the API server would see it."""

    object: dict[str, Any]  # the object after pruning and defaulting (what would be stored)
    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: (schema path, rule, outcome) of every rule evaluated, outcome True (passed) or False.
    evaluated: list[tuple[str, str, bool]] = field(default_factory=list)
    cel_skipped: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def messages(self) -> list[str]:
        return [str(v) for v in self.violations]

    def explain(self) -> str:
        return "\n".join(self.messages + [f"warning: {w}" for w in self.warnings]) or "(accepted)"


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def load_crds(directory: Path = CRD_DIR) -> dict[str, CRD]:
    """Every CRD in ``directory`` by kind."""
    crds: dict[str, CRD] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            crd = CRD(doc, source=path)
            crds[crd.kind] = crd
    return crds


# --------------------------------------------------------------------------------------------
# Schema walking helpers
# --------------------------------------------------------------------------------------------


def iter_schema_nodes(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, node) for every node of a schema; paths look like ``spec.convex.url``, ``x[]``."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_schema_nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), Mapping):
        yield from iter_schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from iter_schema_nodes(schema["additionalProperties"], f"{path}{{}}")


def iter_properties(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, node) for every declared property (not the root, not list items themselves)."""
    for node_path, node in iter_schema_nodes(schema, path):
        for name, sub in node.get("properties", {}).items():
            yield (f"{node_path}.{name}" if node_path else name), sub


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _preserves_unknown(schema: Mapping[str, Any]) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


# --------------------------------------------------------------------------------------------
# Structural schema checks (an approximation of apiextensions' own CRD validation)
# --------------------------------------------------------------------------------------------


def structural_problems(schema: Mapping[str, Any]) -> list[str]:
    """Why the API server would refuse this openAPIV3Schema as non-structural (empty if fine)."""
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append("<root>: type must be object")
    metadata = schema.get("properties", {}).get("metadata")
    if metadata is not None:
        extra = set(metadata) - {"type", "properties"}
        props = set(metadata.get("properties", {}))
        if metadata.get("type") != "object" or extra or props - {"name", "generateName"}:
            problems.append(
                "metadata: must not specify anything other than name and generateName (found "
                f"{sorted(extra | (props - {'name', 'generateName'}))}; a description is not allowed either)"
            )
    for path, node in iter_schema_nodes(schema):
        where = path or "<root>"
        if path == "metadata":
            continue
        unknown = set(node) - SCHEMA_KEYS
        if unknown:
            problems.append(f"{where}: unsupported or misspelled keys {sorted(unknown)}")
        node_type = node.get("type")
        if node_type is None:
            if not (node.get("x-kubernetes-int-or-string") or _preserves_unknown(node)):
                problems.append(f"{where}: type is required (structural schema)")
        elif node_type not in TYPES:
            problems.append(f"{where}: unknown type {node_type!r}")
        if node.get("x-kubernetes-int-or-string") and _preserves_unknown(node):
            problems.append(f"{where}: int-or-string and preserve-unknown-fields are exclusive")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties are exclusive")
        if node.get("additionalProperties") is False:
            problems.append(f"{where}: additionalProperties: false is not allowed")
        if node.get("uniqueItems"):
            problems.append(f"{where}: uniqueItems: true is not allowed (use x-kubernetes-list-type: set)")
        if node_type == "array" and not isinstance(node.get("items"), Mapping):
            problems.append(f"{where}: an array must have items (one schema)")
        if node_type in SCALARS | {"array"} and ("properties" in node or "additionalProperties" in node):
            problems.append(f"{where}: only objects have properties")
        required = node.get("required", [])
        missing = [r for r in required if r not in node.get("properties", {})]
        if missing and not _preserves_unknown(node):
            problems.append(f"{where}: required names undeclared properties {missing}")
        list_type = node.get("x-kubernetes-list-type")
        if list_type is not None:
            items = node.get("items", {})
            if node_type != "array" or list_type not in {"atomic", "set", "map"}:
                problems.append(f"{where}: bad x-kubernetes-list-type {list_type!r}")
            elif list_type == "set" and items.get("type") not in SCALARS:
                problems.append(f"{where}: a set needs scalar items")
            elif list_type == "map":
                keys = node.get("x-kubernetes-list-map-keys") or []
                if items.get("type") != "object" or not keys:
                    problems.append(f"{where}: a map list needs object items and x-kubernetes-list-map-keys")
                for key in keys:
                    key_schema = items.get("properties", {}).get(key)
                    if key_schema is None or key_schema.get("type") not in SCALARS:
                        problems.append(f"{where}: map key {key!r} must be a declared scalar property")
                    elif key not in items.get("required", []) and "default" not in key_schema:
                        problems.append(f"{where}: map key {key!r} must be required or defaulted")
        if "x-kubernetes-list-map-keys" in node and list_type != "map":
            problems.append(f"{where}: x-kubernetes-list-map-keys needs x-kubernetes-list-type: map")
        for rule in node.get("x-kubernetes-validations", []):
            if not isinstance(rule, Mapping) or not isinstance(rule.get("rule"), str):
                problems.append(f"{where}: a validation needs a rule string")
                continue
            if set(rule) - RULE_KEYS:
                problems.append(f"{where}: unknown validation keys {sorted(set(rule) - RULE_KEYS)}")
            message = rule.get("message", "")
            if "\n" in message or ("\n" in rule["rule"] and not message):
                problems.append(f"{where}: a message must be one line (and is required for multi-line rules)")
            if "reason" in rule and rule["reason"] not in RULE_REASONS:
                problems.append(f"{where}: reason {rule['reason']!r} is not one of {sorted(RULE_REASONS)}")
            if "fieldPath" in rule and _resolve_field_path(node, rule["fieldPath"]) is None:
                problems.append(f"{where}: fieldPath {rule['fieldPath']!r} names no declared field")
    return problems


def _resolve_field_path(node: Mapping[str, Any], field_path: str) -> Mapping[str, Any] | None:
    """The schema that a rule's simple ``fieldPath`` (``.a.b``) names below ``node``, or None."""
    if not field_path.startswith("."):
        return None
    current: Mapping[str, Any] | None = node
    for name in field_path[1:].split("."):
        if current is None:
            return None
        current = current.get("properties", {}).get(name)
    return current


# --------------------------------------------------------------------------------------------
# Conversion to JSON Schema
# --------------------------------------------------------------------------------------------

_DROP = {"description", "title", "default", "nullable", "example"}


def to_jsonschema(node: Mapping[str, Any]) -> dict[str, Any]:
    """A draft-4 JSON Schema equivalent (for validation) of a CRD schema node.

    ``x-kubernetes-*`` keys are dropped (their effects are handled elsewhere: pruning, list
    uniqueness, CEL), ``int-or-string`` becomes ``anyOf`` integer/string, ``nullable`` adds
    ``null`` to the type. Unknown fields are not refused here: pruning handles them first.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key.startswith("x-kubernetes-"):
            continue
        if key == "properties":
            out[key] = {name: to_jsonschema(sub) for name, sub in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, Mapping):
            out[key] = to_jsonschema(value)
        else:
            out[key] = copy.deepcopy(value)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


_FORMATS = jsonschema.FormatChecker(formats=())


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", value):
        raise ValueError("not an RFC 3339 date-time, e.g. 2025-01-31T12:00:00Z")
    dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


_FORMATS.checks("date-time", raises=ValueError)(_is_date_time)


def _valid_date_time(value: str) -> bool:
    try:
        return _is_date_time(value)
    except ValueError:
        return False  # already reported by the format check; CEL sees the plain string


def _is_int32(value: object) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


_FORMATS.checks("int32")(_is_int32)
_FORMATS.checks("int64")(_is_int64)


# --------------------------------------------------------------------------------------------
# Pruning and defaulting
# --------------------------------------------------------------------------------------------


def prune(value: Any, schema: Mapping[str, Any], path: str, unknown: list[str], root: bool = False) -> Any:
    """Drop undeclared fields (recording their paths) and non-nullable nulls; returns the value."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key in list(value):
            sub_path = _join(path, key)
            if root and key in {"apiVersion", "kind", "metadata"}:
                continue  # ObjectMeta and type meta are the API server's own business
            if key in props:
                if value[key] is None and not props[key].get("nullable"):
                    del value[key]
                else:
                    value[key] = prune(value[key], props[key], sub_path, unknown)
            elif isinstance(additional, Mapping):
                value[key] = prune(value[key], additional, sub_path, unknown)
            elif not _preserves_unknown(schema) and additional is not True:
                unknown.append(sub_path)
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            value[i] = prune(item, schema["items"], _join(path, i), unknown)
    return value


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """Structural defaulting as the API server does it: set missing defaulted properties, then
    recurse into every child (including the ones just defaulted)."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, sub in props.items():
            if "default" in sub and (key not in value or (value[key] is None and not sub.get("nullable"))):
                value[key] = copy.deepcopy(sub["default"])
        for key, child in value.items():
            if key in props:
                apply_defaults(child, props[key])
            elif isinstance(schema.get("additionalProperties"), Mapping):
                apply_defaults(child, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            apply_defaults(item, schema["items"])
    return value


# --------------------------------------------------------------------------------------------
# CEL
# --------------------------------------------------------------------------------------------

_STRING_LITERAL = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")
_SELF_CHAIN = re.compile(r"\b(self|oldSelf)((?:\.[A-Za-z_][A-Za-z0-9_]*)+)(\s*\()?")


def to_cel(value: Any, schema: Mapping[str, Any], root: bool = False) -> Any:
    """The CEL value the API server would bind for ``value`` typed by ``schema``."""
    if schema.get("x-kubernetes-int-or-string"):
        return celtypes.IntType(value) if isinstance(value, int) else celtypes.StringType(value)
    node_type = schema.get("type")
    if node_type == "object" and isinstance(value, dict):
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            return celtypes.MapType(
                {celtypes.StringType(k): to_cel(v, additional) for k, v in value.items() if v is not None}
            )
        fields: dict[Any, Any] = {}
        for key, sub in schema.get("properties", {}).items():
            if root and key == "metadata":
                continue
            if key in value and value[key] is not None:
                fields[celtypes.StringType(key)] = to_cel(value[key], sub)
        if root:
            for key in ("apiVersion", "kind"):
                if isinstance(value.get(key), str):
                    fields[celtypes.StringType(key)] = celtypes.StringType(value[key])
            meta = value.get("metadata") or {}
            fields[celtypes.StringType("metadata")] = celtypes.MapType(
                {
                    celtypes.StringType(k): celtypes.StringType(meta[k])
                    for k in ("name", "generateName")
                    if isinstance(meta.get(k), str)
                }
            )
        return celtypes.MapType(fields)
    if node_type == "array" and isinstance(value, list):
        items = schema.get("items", {})
        return celtypes.ListType([to_cel(v, items) for v in value])
    if node_type == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.IntType(value)
    if node_type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    if node_type == "boolean" and isinstance(value, bool):
        return celtypes.BoolType(value)
    if node_type == "string" and isinstance(value, str):
        if schema.get("format") == "date-time" and _valid_date_time(value):
            return celtypes.TimestampType(value)
        return celtypes.StringType(value)
    # Untyped (preserve-unknown-fields) or mistyped values: CEL is skipped on type errors
    # anyway; pass the JSON through so nothing crashes.
    return json_to_cel(value)


@dataclass(frozen=True)
class CompiledRule:
    schema_path: str
    rule: str
    message: str
    field_path: str
    uses_old_self: bool
    program: Any
    reason: str = "FieldValueInvalid"


def _static_field_check(node: Mapping[str, Any], rule: str, schema_path: str, root: bool) -> None:
    """Refuse references to fields the node does not declare, as the API server's type check
    does when the CRD is created (cel-python has no type checker)."""
    code = _STRING_LITERAL.sub("''", rule)
    for match in _SELF_CHAIN.finditer(code):
        names = match.group(2)[1:].split(".")
        if match.group(3):  # the last name is a method call: self.url.startsWith(...)
            names = names[:-1]
        current: Mapping[str, Any] = node
        for depth, name in enumerate(names):
            if root and depth == 0 and name in {"apiVersion", "kind"}:
                break
            if root and depth == 0 and name == "metadata":
                if len(names) > 1 and names[1] not in {"name", "generateName"}:
                    raise CelRuleError(
                        f"{schema_path or '<root>'}: rule {rule!r}: only metadata.name and "
                        "metadata.generateName are visible to validation rules"
                    )
                break
            props = current.get("properties", {})
            if name not in props:
                raise CelRuleError(
                    f"{schema_path or '<root>'}: rule {rule!r} refers to {name!r}, which is not a "
                    f"declared property there (declared: {sorted(props)})"
                )
            current = props[name]


def compile_rules(schema: Mapping[str, Any]) -> dict[str, list[CompiledRule]]:
    """Every rule of a schema, compiled, by schema path. Raises CelRuleError on a bad rule."""
    env = celpy.Environment()
    compiled: dict[str, list[CompiledRule]] = {}
    for path, node in iter_schema_nodes(schema):
        for spec in node.get("x-kubernetes-validations", []):
            rule = spec["rule"]
            _static_field_check(node, rule, path, root=(path == ""))
            try:
                program = env.program(env.compile(rule))
            except Exception as exc:  # celpy raises its own parse errors
                raise CelRuleError(f"{path or '<root>'}: rule {rule!r} does not compile: {exc}") from exc
            compiled.setdefault(path, []).append(
                CompiledRule(
                    schema_path=path,
                    rule=rule,
                    message=spec.get("message") or f"failed rule: {rule}",
                    field_path=spec.get("fieldPath", ""),
                    uses_old_self=bool(re.search(r"\boldSelf\b", _STRING_LITERAL.sub("''", rule))),
                    program=program,
                    reason=spec.get("reason") or "FieldValueInvalid",
                )
            )
    return compiled


_CEL_DETAIL = {
    "FieldValueInvalid": 'Invalid value: "{type}": {message}',
    "FieldValueRequired": "Required value: {message}",
    "FieldValueForbidden": "Forbidden: {message}",
    "FieldValueDuplicate": "Duplicate value: {message}",
}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _go_type(value: Any) -> str:
    """The type name the API server prints for a value (``Invalid value: "object"``)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else "null"


def _k8s_detail(error: Any, path: str) -> tuple[str, str, str]:
    """(reason, detail, field) of a jsonschema error, worded as the API server words it."""
    value, where = error.instance, path or "<root>"
    match error.validator:
        case "required":
            m = re.match(r"^'(.+)' is a required property$", error.message)
            return "FieldValueRequired", "Required value", _join(path, m[1]) if m else path
        case "enum":
            allowed = ", ".join(_json(v) for v in error.validator_value)
            return "FieldValueNotSupported", f"Unsupported value: {_json(value)}: supported values: {allowed}", path
        case "type" | "anyOf":
            expected = error.validator_value if error.validator == "type" else "integer or string"
            return ("FieldValueTypeInvalid", f'Invalid value: "{_go_type(value)}": {where} in body must be of type '
                    f"{expected}: {_json(value)}", path)
        case "pattern":
            return "FieldValueInvalid", f"Invalid value: {_json(value)}: {where} in body should match " \
                f"'{error.validator_value}'", path
        case "maxLength" | "maxItems" | "maxProperties":
            unit = {"maxLength": " bytes", "maxItems": " items", "maxProperties": " properties"}[error.validator]
            return "FieldValueTooLong", f"Too long: may not be more than {error.validator_value}{unit}", path
        case "minLength":
            return "FieldValueInvalid", f"Invalid value: {_json(value)}: {where} in body should be at least " \
                f"{error.validator_value} chars long", path
        case "minimum":
            return "FieldValueInvalid", f"Invalid value: {_json(value)}: {where} in body should be greater than " \
                f"or equal to {error.validator_value}", path
        case "maximum":
            return "FieldValueInvalid", f"Invalid value: {_json(value)}: {where} in body should be less than " \
                f"or equal to {error.validator_value}", path
        case "format":
            return "FieldValueInvalid", f"Invalid value: {_json(value)}: {where} in body must be of type " \
                f"{error.validator_value}: {_json(value)}", path
    return "FieldValueInvalid", f"Invalid value: {_json(value)}: {error.message}", path


def _evaluate(rule: CompiledRule, activation: dict[str, Any], where: str) -> bool:
    try:
        result = rule.program.evaluate(activation)
    except Exception as exc:
        raise CelRuleError(f"{where}: rule {rule.rule!r} failed to evaluate: {exc!r}") from exc
    if isinstance(result, CELEvalError) or not isinstance(result, celtypes.BoolType):
        raise CelRuleError(f"{where}: rule {rule.rule!r} returned {result!r}, not a boolean")
    return bool(result)


# --------------------------------------------------------------------------------------------
# The CRD
# --------------------------------------------------------------------------------------------


class CRD:
    """One CustomResourceDefinition with one served version, and the offline API server steps."""

    def __init__(self, doc: Mapping[str, Any], source: Path | None = None) -> None:
        self.doc = doc
        self.source = source
        spec = doc["spec"]
        self.group: str = spec["group"]
        self.kind: str = spec["names"]["kind"]
        self.scope: str = spec["scope"]
        (version,) = [v for v in spec["versions"] if v.get("storage")]
        self.version_doc: Mapping[str, Any] = version
        self.version: str = version["name"]
        self.api_version = f"{self.group}/{self.version}"
        self.schema: Mapping[str, Any] = version["schema"]["openAPIV3Schema"]
        self.json_schema = to_jsonschema(self.schema)
        jsonschema.Draft4Validator.check_schema(self.json_schema)
        self.validator = jsonschema.Draft4Validator(self.json_schema, format_checker=_FORMATS)
        self.rules = compile_rules(self.schema)
        self._outcomes: dict[tuple[str, str, str, str], bool] = {}

    def all_rules(self) -> list[CompiledRule]:
        return [rule for rules in self.rules.values() for rule in rules]

    def node(self, schema_path: str) -> Mapping[str, Any]:
        return dict(iter_schema_nodes(self.schema))[schema_path]

    # -- the steps of a create/update ----------------------------------------------------------

    def validate(
        self,
        obj: Mapping[str, Any],
        old: Mapping[str, Any] | None = None,
        field_validation: str = "Strict",
    ) -> Result:
        """What the API server would do with a create (``old`` None) or update of ``obj``.

        ``field_validation`` is Strict (kubectl's default), Warn (the API's default) or Ignore.
        """
        assert field_validation in {"Strict", "Warn", "Ignore"}
        work = copy.deepcopy(dict(obj))
        violations: list[Violation] = []
        result = Result(object=work, violations=violations)

        if work.get("apiVersion") != self.api_version or work.get("kind") != self.kind:
            violations.append(
                Violation(
                    "",
                    f"expected {self.api_version} {self.kind}, got {work.get('apiVersion')} "
                    f"{work.get('kind')}",
                    "metadata",
                )
            )
        name = (work.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            violations.append(
                Violation("metadata.name", f"Invalid value: {name!r}: must be a DNS subdomain", "metadata",
                          "FieldValueInvalid",
                          f"Invalid value: {_json(name)}: a lowercase RFC 1123 subdomain must consist of lower "
                          "case alphanumeric characters, '-' or '.', and must start and end with an "
                          "alphanumeric character")
            )

        unknown: list[str] = []
        prune(work, self.schema, "", unknown, root=True)
        for path in unknown:
            text = f'unknown field "{path}"'
            if field_validation == "Strict":
                violations.append(Violation(path, f"strict decoding error: {text}", "unknown-field"))
            elif field_validation == "Warn":
                result.warnings.append(text)
        apply_defaults(work, self.schema)

        blocking = False
        for error in sorted(self.validator.iter_errors(work), key=lambda e: list(map(str, e.absolute_path))):
            path = ""
            for part in error.absolute_path:
                path = _join(path, part)
            reason, detail, cause_field = _k8s_detail(error, path)
            violations.append(Violation(path, error.message, "schema", reason, detail, cause_field))
            if error.validator in {"type", "enum"}:
                blocking = True  # field.ErrorTypeTypeInvalid / ErrorTypeNotSupported
        violations.extend(self._list_violations(work, self.schema, ""))

        if blocking:
            result.cel_skipped = True
            violations.append(
                Violation(
                    "",
                    "some validation rules were not checked because the object was invalid; "
                    "correct the existing errors to complete validation",
                    "cel",
                    "FieldValueInvalid",
                    'Invalid value: "null": some validation rules were not checked because the object was '
                    "invalid; correct the existing errors to complete validation",
                )
            )
        else:
            old_work = None
            if old is not None:
                old_work = copy.deepcopy(dict(old))
                prune(old_work, self.schema, "", [], root=True)
                apply_defaults(old_work, self.schema)
            self._run_rules(work, old_work, self.schema, "", "", result, root=True)
        return result

    def _list_violations(self, value: Any, schema: Mapping[str, Any], path: str) -> list[Violation]:
        out: list[Violation] = []
        if isinstance(value, dict):
            for key, child in value.items():
                sub = schema.get("properties", {}).get(key)
                if sub is None and isinstance(schema.get("additionalProperties"), Mapping):
                    sub = schema["additionalProperties"]
                if sub is not None:
                    out.extend(self._list_violations(child, sub, _join(path, key)))
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            list_type = schema.get("x-kubernetes-list-type")
            seen: set[Any] = set()
            for i, item in enumerate(value):
                if list_type == "map" and isinstance(item, dict):
                    key = tuple(item.get(k) for k in schema.get("x-kubernetes-list-map-keys", []))
                elif list_type == "set":
                    key = repr(item)
                else:
                    key = None
                if key is not None:
                    if key in seen:
                        out.append(Violation(_join(path, i), f"Duplicate value: {key!r}", "list",
                                             "FieldValueDuplicate", f"Duplicate value: {_json(item)}"))
                    seen.add(key)
                out.extend(self._list_violations(item, schema["items"], _join(path, i)))
        return out

    def _run_rules(
        self,
        value: Any,
        old: Any,
        schema: Mapping[str, Any],
        schema_path: str,
        path: str,
        result: Result,
        root: bool = False,
    ) -> None:
        if value is None:
            return
        value_key = ""
        for rule in self.rules.get(schema_path, []):
            if rule.uses_old_self and old is None:
                continue  # a transition rule: only evaluated on updates where the old value exists
            # A rule is a pure function of self (and oldSelf): remember outcomes by value, so a
            # status write does not re-run celpy's slow interpreter over an unchanged spec.
            value_key = value_key or json.dumps(value, sort_keys=True, default=str)
            key = (schema_path, rule.rule, value_key,
                   json.dumps(old, sort_keys=True, default=str) if rule.uses_old_self else "")
            outcome = self._outcomes.get(key)
            if outcome is None:
                activation = {"self": to_cel(value, schema, root=root)}
                if rule.uses_old_self:
                    activation["oldSelf"] = to_cel(old, schema, root=root)
                outcome = _evaluate(rule, activation, path or "<root>")
                if len(self._outcomes) >= 4096:
                    self._outcomes.clear()
                self._outcomes[key] = outcome
            passed = outcome
            result.evaluated.append((schema_path, rule.rule, passed))
            if not passed:
                result.violations.append(Violation(
                    path + rule.field_path, rule.message, "cel", rule.reason,
                    _CEL_DETAIL[rule.reason].format(type=_go_type(value), message=rule.message)))
        if isinstance(value, dict):
            props = schema.get("properties", {})
            for key, child in value.items():
                if root and key == "metadata":
                    continue
                if key in props:
                    old_child = old.get(key) if isinstance(old, dict) else None
                    self._run_rules(
                        child, old_child, props[key], _join(schema_path, key), _join(path, key), result
                    )
        elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
            for i, item in enumerate(value):
                # Only map and set items are correlated with the old list (as transition rules are).
                self._run_rules(item, None, schema["items"], f"{schema_path}[]", _join(path, i), result)

    # -- defaults must be valid themselves -----------------------------------------------------

    def default_problems(self) -> list[str]:
        """Every ``default`` must survive pruning unchanged and validate (schema and CEL) at its
        node once its own nested defaults are applied, as the API server requires."""
        problems: list[str] = []
        for path, node in iter_schema_nodes(self.schema):
            if "default" not in node:
                continue
            value = copy.deepcopy(node["default"])
            unknown: list[str] = []
            value = prune(value, node, path, unknown)
            if unknown:
                problems.append(f"{path}: default has fields that would be pruned: {unknown}")
            apply_defaults(value, node)
            validator = jsonschema.Draft4Validator(to_jsonschema(node), format_checker=_FORMATS)
            problems.extend(f"{path}: default is invalid: {e.message}" for e in validator.iter_errors(value))
            scratch = Result(object={})
            self._run_rules(value, None, node, path, path, scratch)
            problems.extend(f"{path}: default breaks a rule: {v}" for v in scratch.violations)
        return problems


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def secret_values(doc: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The decoded key/value pairs of a Secret (stringData wins over data, as on the server)
    and the problems that would make the API server refuse it."""
    problems: list[str] = []
    values: dict[str, str] = {}
    if doc.get("apiVersion") != "v1" or doc.get("kind") != "Secret":
        problems.append("not a v1 Secret")
    meta = doc.get("metadata") or {}
    if not DNS_SUBDOMAIN.match(str(meta.get("name", ""))) or len(str(meta.get("name", ""))) > 253:
        problems.append(f"metadata.name {meta.get('name')!r} is not a DNS subdomain")
    for key, raw in (doc.get("data") or {}).items():
        if not SECRET_KEY.match(key) or len(key) > 253:
            problems.append(f"data key {key!r} is not a valid Secret key")
        try:
            values[key] = base64.b64decode(str(raw), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            problems.append(f"data[{key!r}] is not base64 of UTF-8 text")
    for key, raw in (doc.get("stringData") or {}).items():
        if not SECRET_KEY.match(key) or len(key) > 253:
            problems.append(f"stringData key {key!r} is not a valid Secret key")
        if not isinstance(raw, str):
            problems.append(f"stringData[{key!r}] must be a string (quote it in YAML)")
        values[key] = str(raw)
    extra = set(doc) - {"apiVersion", "kind", "metadata", "type", "data", "stringData", "immutable"}
    if extra:
        problems.append(f"unknown Secret fields {sorted(extra)}")
    return values, problems
