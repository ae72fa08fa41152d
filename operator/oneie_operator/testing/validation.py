"""Server-side validation of custom resources in the emulator, as the API server answers it.

On every create, update and patch of a custom resource (main object and ``status``) the
emulator runs the steps of :mod:`.schema` -- the same code the offline CRD tests use --
against the CRD stored in the emulator:

* unknown fields: with ``?fieldValidation=Strict`` (kubectl's default) a 400 ``BadRequest``
  ``<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown field
  "spec.x"``; with ``Warn`` (the default when a client does not say, e.g. Kopf) the field is
  pruned and a ``Warning: 299 - "unknown field \\"spec.x\\""`` header is answered; with
  ``Ignore`` it is pruned silently
  (https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation);
* defaults from the schema are applied, nulls in non-nullable fields dropped
  (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting);
* OpenAPI and CEL (``x-kubernetes-validations``) failures are a 422 ``Invalid`` whose message
  is ``<Kind>.<group> "<name>" is invalid: <field>: <detail>`` (several causes in brackets)
  and whose ``details.causes`` list ``{reason, message, field}``, as the API server sends them.

What :mod:`.schema` does not reproduce is not checked here either (CEL cost budgets,
``messageExpression``, ratcheting of unchanged invalid values on update). Built-in kinds are not
validated.
"""

from __future__ import annotations

import contextvars
import importlib.util
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from oneie_operator.testing.schema import CRD, Result

__all__ = ['FIELD_VALIDATION', 'WARNINGS', 'Refusal', 'Validator', 'available']

JsonDict = dict[str, Any]

#: The ``fieldValidation`` of the request being served (the API server's default is Warn).
FIELD_VALIDATION: contextvars.ContextVar[str] = contextvars.ContextVar('field_validation', default='Warn')
#: Warnings for the request being served, answered as ``Warning`` headers.
WARNINGS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar('warnings', default=None)


def available() -> bool:
    """Whether the libraries of :mod:`.schema` (the ``demo`` extra) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ('jsonschema', 'celpy'))


@attrs.frozen
class Refusal(Exception):
    """The API server's refusal of an object: HTTP code, reason, message and details."""

    code: int
    reason: str
    message: str
    details: JsonDict


@attrs.define
class Validator:
    """Validates objects against their CRD; the compiled CRDs are cached by resourceVersion."""

    _compiled: dict[tuple[str, str], tuple[str, CRD | None]] = attrs.field(factory=dict)

    def _crd(self, crd_doc: Mapping[str, Any], version: str) -> CRD | None:
        """The compiled schema of one version of a CRD (None: the version has no schema)."""
        meta = crd_doc.get('metadata') or {}
        key, resource_version = (str(meta.get('name', '')), version), str(meta.get('resourceVersion', ''))
        cached = self._compiled.get(key)
        if cached is None or cached[0] != resource_version:
            spec = crd_doc.get('spec') or {}
            versions = [v for v in spec.get('versions') or [] if v.get('name') == version]
            from oneie_operator.testing.schema import CRD  # jsonschema and cel-python: the demo extra

            crd = None
            if versions and ((versions[0].get('schema') or {}).get('openAPIV3Schema')):
                crd = CRD({**crd_doc, 'spec': {**spec, 'versions': [{**versions[0], 'storage': True}]}})
            cached = self._compiled[key] = (resource_version, crd)
        return cached[1]

    def admit(self, crd_doc: Mapping[str, Any], version: str, obj: JsonDict, old: JsonDict | None) -> JsonDict:
        """The object as it would be stored (pruned, defaulted), or :class:`Refusal`."""
        crd = self._crd(crd_doc, version)
        if crd is None:
            return obj
        field_validation = FIELD_VALIDATION.get()
        if field_validation not in {'Strict', 'Warn', 'Ignore'}:
            raise Refusal(400, 'BadRequest', f'fieldValidation: Unsupported value: "{field_validation}": '
                          'supported values: "Ignore", "Strict", "Warn"', {})
        typed = {**obj, 'apiVersion': crd.api_version}
        result: Result = crd.validate(typed, old, field_validation=field_validation)
        meta = obj.get('metadata') or {}
        name = str(meta.get('name') or meta.get('generateName') or '')
        unknown = [v for v in result.violations if v.source == 'unknown-field']
        if unknown:
            fields = ', '.join(v.message.removeprefix('strict decoding error: ') for v in unknown)
            raise Refusal(400, 'BadRequest', f'{crd.kind} in version "{crd.version}" cannot be handled as a '
                          f'{crd.kind}: strict decoding error: {fields}', {})
        if result.violations:
            causes = [v.cause for v in result.violations]
            texts = [f'{c["field"]}: {c["message"]}' for c in causes]
            summary = texts[0] if len(texts) == 1 else f'[{", ".join(texts)}]'
            raise Refusal(422, 'Invalid', f'{crd.kind}.{crd.group} "{name}" is invalid: {summary}',
                          {'name': name, 'group': crd.group, 'kind': crd.kind, 'causes': causes})
        warnings = WARNINGS.get()
        if warnings is not None:
            warnings.extend(result.warnings)
        stored = result.object
        stored['apiVersion'] = obj.get('apiVersion', stored.get('apiVersion'))
        return stored
