"""OpenAPI v3 documents for the emulator, as ``kubectl`` reads them from a real API server.

A real API server publishes ``/openapi/v3`` (an index of group versions, each with a
``serverRelativeURL`` carrying a content ``hash``) and one document per group version at
``/openapi/v3/apis/<group>/<version>`` (``/openapi/v3/api/v1`` for the core group), see
https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3. ``kubectl`` uses them
for three things this module serves:

* **Validation** (``kubectl apply/create/replace`` with the default ``--validate=strict``):
  kubectl looks in the group version's document for the ``PATCH`` operation of the object's
  kind (``x-kubernetes-group-version-kind``) and, if it takes a ``fieldValidation`` query
  parameter, leaves validation to the server (``?fieldValidation=Strict``). Without the
  document it falls back to client-side validation with OpenAPI v2 -- which it can only read
  as protobuf; this emulator does not serve v2 (404), so the v3 documents must be there.
* **``kubectl explain``**: the schema of the kind (``components.schemas`` entry with the
  ``x-kubernetes-group-version-kind`` extension), with its descriptions.
* **Client-side apply** of built-in kinds: the strategic-merge-patch metadata
  (``x-kubernetes-patch-strategy``...) of the schemas.

Schemas come from each CRD's ``openAPIV3Schema`` (``metadata`` replaced by a reference to
``ObjectMeta``, as the real server does) and, for built-in kinds, from the Kubernetes schemas
bundled by the ``kubernetes-validate`` package (JSON Schema of Kubernetes :data:`KUBERNETES_VERSION`,
converted back to OpenAPI: ``type: [T, "null"]`` becomes ``type: T``, ``#/$defs/`` references
become ``#/components/schemas/``; an optional dependency, the ``demo`` extra). A built-in
kind missing from that bundle (or all of them, without the package) gets an open schema
(``x-kubernetes-preserve-unknown-fields``). Operations carry only what kubectl reads
(operation ids, actions, kinds, query parameters, a response schema); not emulated: OpenAPI v2
(``/openapi/v2``, protobuf), the protobuf form of v3, ``ETag``/``304`` answers.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.resources
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ['KUBERNETES_VERSION', 'ApiResource', 'OpenApiV3', 'builtin_definitions', 'crd_schema_name',
           'version_info']

JsonDict = dict[str, Any]

#: The Kubernetes release whose built-in schemas are served (bundled by ``kubernetes-validate``).
KUBERNETES_VERSION = '1.32.0'

_META = 'io.k8s.apimachinery.pkg.apis.meta.v1.'
_REF_PREFIX = '#/components/schemas/'


@attrs.frozen
class ApiResource:
    """One served resource (a plural of a group version) as the OpenAPI documents describe it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()

    @property
    def group_version_path(self) -> str:
        return f'apis/{self.group}/{self.version}' if self.group else f'api/{self.version}'

    @property
    def gvk(self) -> JsonDict:
        return {'group': self.group, 'version': self.version, 'kind': self.kind}


def version_info() -> JsonDict:
    """The ``/version`` answer: the Kubernetes release whose schemas are served."""
    major, minor, _ = KUBERNETES_VERSION.split('.')
    return {'major': major, 'minor': minor, 'gitVersion': f'v{KUBERNETES_VERSION}', 'gitCommit': '',
            'gitTreeState': 'clean', 'buildDate': '', 'goVersion': '', 'compiler': 'gc',
            'platform': 'linux/amd64'}


def _to_openapi(schema: Any) -> Any:
    """Convert one of kubernetes-validate's JSON Schemas back to the OpenAPI v3 form."""
    if isinstance(schema, list):
        return [_to_openapi(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if (one_of := schema.get('oneOf')) and all(set(s) == {'type'} for s in one_of):
        alternatives = {t for s in one_of for t in (s['type'] if isinstance(s['type'], list) else [s['type']])}
        if alternatives - {'null'} == {'string', 'integer'}:  # IntOrString
            return {'type': 'string', 'format': 'int-or-string', 'x-kubernetes-int-or-string': True}
        if alternatives - {'null'} == {'string', 'number'}:  # Quantity
            return {'type': 'string', 'format': 'quantity', 'x-kubernetes-int-or-string': True}
    result: JsonDict = {}
    for key, value in schema.items():
        if key == 'type' and isinstance(value, list):
            types = [t for t in value if t != 'null']
            if len(types) == 1:
                result['type'] = types[0]
        elif key == '$ref':
            result['$ref'] = _REF_PREFIX + str(value).rsplit('/', 1)[-1]
        elif key in {'properties', 'patternProperties'}:
            result[key] = {name: _to_openapi(sub) for name, sub in value.items()}
        else:
            result[key] = _to_openapi(value)
    if '$ref' in result and len(result) > 1:  # OpenAPI 3.0 ignores siblings of $ref: wrap it
        result = {'allOf': [{'$ref': result.pop('$ref')}], **result}
    return result


@functools.cache
def builtin_definitions(version: str = KUBERNETES_VERSION) -> Mapping[str, JsonDict]:
    """The OpenAPI schemas of the built-in Kubernetes types, by definition name (loaded once).

    Without the optional ``kubernetes-validate`` package (the ``demo`` extra, 100 MB of
    schemas) only ``ObjectMeta`` is known, as an open object: built-in kinds then get open
    schemas, which still lets kubectl validate on the server side, but explains nothing.
    """
    try:
        folder = importlib.resources.files('kubernetes_validate') / 'kubernetes-json-schema' / f'v{version}-local'
    except ModuleNotFoundError:
        return {f'{_META}ObjectMeta': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True,
                                       'description': 'Standard object metadata.'}}
    defs = json.loads((folder / '_definitions.json').read_text(encoding='utf-8'))['$defs']
    return {name: _to_openapi(schema) for name, schema in defs.items()}


@functools.cache
def _builtin_kinds(version: str = KUBERNETES_VERSION) -> Mapping[tuple[str, str, str], str]:
    """Definition names by (group, version, kind)."""
    kinds: dict[tuple[str, str, str], str] = {}
    for name, schema in builtin_definitions(version).items():
        for gvk in schema.get('x-kubernetes-group-version-kind') or []:
            kinds.setdefault((gvk.get('group', ''), gvk['version'], gvk['kind']), name)
    return kinds


def crd_schema_name(group: str, version: str, kind: str) -> str:
    """The component name of a custom kind, as the real server names it (``ie.one.v1alpha1.Kind``)."""
    return '.'.join([*reversed(group.split('.')), version, kind])


def _refs(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == '$ref' and isinstance(value, str):
                yield value.removeprefix(_REF_PREFIX)
            else:
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _with_dependencies(schemas: dict[str, JsonDict]) -> dict[str, JsonDict]:
    """Add the built-in definitions that the given schemas refer to, transitively."""
    builtins = builtin_definitions()
    pending = [ref for schema in schemas.values() for ref in _refs(schema)]
    while pending:
        name = pending.pop()
        if name not in schemas and name in builtins:
            schemas[name] = builtins[name]
            pending.extend(_refs(builtins[name]))
    return schemas


def _custom_schema(crd_version: Mapping[str, Any], resource: ApiResource) -> JsonDict:
    """A CRD version's ``openAPIV3Schema`` as the real server publishes it."""
    schema = copy.deepcopy((crd_version.get('schema') or {}).get('openAPIV3Schema') or {
        'type': 'object', 'x-kubernetes-preserve-unknown-fields': True})
    properties = schema.setdefault('properties', {})
    properties['metadata'] = {'allOf': [{'$ref': f'{_REF_PREFIX}{_META}ObjectMeta'}],
                              'description': "Standard object's metadata. More info: https://git.k8s.io/"
                                             'community/contributors/devel/sig-architecture/'
                                             'api-conventions.md#metadata'}
    for field, text in (('apiVersion', 'APIVersion defines the versioned schema of this representation '
                                       'of an object.'),
                        ('kind', 'Kind is a string value representing the REST resource this object '
                                 'represents.')):
        properties.setdefault(field, {'type': 'string', 'description': text})
    schema['x-kubernetes-group-version-kind'] = [resource.gvk]
    return schema


def _parameter(name: str, where: str = 'query', description: str = '') -> JsonDict:
    param: JsonDict = {'name': name, 'in': where, 'schema': {'type': 'string'}, 'uniqueItems': True}
    if where == 'path':
        param['required'] = True
    if description:
        param['description'] = description
    return param


_WRITE_PARAMS = (
    _parameter('dryRun', description='When present, indicates that modifications should not be persisted.'),
    _parameter('fieldManager', description='fieldManager is a name associated with the actor or entity '
                                           'that is making these changes.'),
    _parameter('fieldValidation', description='fieldValidation instructs the server on how to handle '
                                              'objects in the request containing unknown or duplicate '
                                              'fields: Ignore, Warn or Strict.'),
)
_PATCH_TYPES = ('application/json-patch+json', 'application/merge-patch+json',
                'application/strategic-merge-patch+json', 'application/apply-patch+yaml')


def _operation(action: str, resource: ApiResource, schema_ref: str, verb: str, *, list_: bool = False,
               subresource: str = '') -> JsonDict:
    scope = 'Namespaced' if resource.namespaced else ''
    suffix = (''.join(part.capitalize() for part in subresource.split('/')) if subresource else '')
    kind_part = resource.kind + suffix
    group_part = (resource.group.split('.')[0] or 'core').capitalize() + resource.version.capitalize()
    op_name = {'get': 'read', 'put': 'replace'}.get(action, action) if not list_ else action
    op: JsonDict = {
        'operationId': f'{op_name}{group_part}{scope}{kind_part}',
        'x-kubernetes-action': verb,
        'x-kubernetes-group-version-kind': resource.gvk,
        'responses': {'200': {'description': 'OK', 'content': {'application/json': {
            'schema': {'$ref': schema_ref}}}}},
    }
    params: list[JsonDict] = []
    if action in {'post', 'put', 'patch'}:
        params.extend(_WRITE_PARAMS)
    if action == 'patch':
        params.append(_parameter('force', description='Force is going to "force" Apply requests.'))
        op['requestBody'] = {'content': {t: {'schema': {'type': 'object'}} for t in _PATCH_TYPES},
                             'required': True}
    elif action in {'post', 'put'}:
        op['requestBody'] = {'content': {'application/json': {'schema': {'$ref': schema_ref}}}, 'required': True}
    if action == 'get' and list_:
        params.extend(_parameter(name) for name in ('labelSelector', 'fieldSelector', 'resourceVersion',
                                                     'timeoutSeconds', 'watch'))
    if params:
        op['parameters'] = params
    return op


def _paths(resource: ApiResource, schema_ref: str) -> JsonDict:
    base = '/' + resource.group_version_path
    collection = f'{base}/namespaces/{{namespace}}/{resource.plural}' if resource.namespaced else \
        f'{base}/{resource.plural}'
    item = collection + '/{name}'
    common: list[JsonDict] = [_parameter('pretty')]
    if resource.namespaced:
        common.append(_parameter('namespace', 'path', 'object name and auth scope, such as for teams and '
                                                      'projects'))
    paths: JsonDict = {
        collection: {
            'get': _operation('list', resource, schema_ref, 'list', list_=True),
            'post': _operation('create', resource, schema_ref, 'post'),
            'delete': _operation('deletecollection', resource, schema_ref, 'deletecollection', list_=True),
            'parameters': common,
        },
        item: {
            'get': _operation('get', resource, schema_ref, 'get'),
            'put': _operation('put', resource, schema_ref, 'put'),
            'patch': _operation('patch', resource, schema_ref, 'patch'),
            'delete': _operation('delete', resource, schema_ref, 'delete'),
            'parameters': [*common, _parameter('name', 'path', 'name of the ' + resource.kind)],
        },
    }
    for subresource in sorted(resource.subresources):
        paths[f'{item}/{subresource}'] = {
            'get': _operation('get', resource, schema_ref, 'get', subresource=subresource),
            'put': _operation('put', resource, schema_ref, 'put', subresource=subresource),
            'patch': _operation('patch', resource, schema_ref, 'patch', subresource=subresource),
            'parameters': [*common, _parameter('name', 'path', 'name of the ' + resource.kind)],
        }
    return paths


@attrs.define
class OpenApiV3:
    """The OpenAPI v3 index and per-group-version documents of a set of resources and CRDs."""

    documents: dict[str, JsonDict] = attrs.field(factory=dict)  # by 'apis/<g>/<v>' or 'api/v1'
    hashes: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    def build(cls, resources: Iterable[ApiResource], crds: Iterable[Mapping[str, Any]]) -> OpenApiV3:
        crd_versions: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        for crd in crds:
            spec = crd.get('spec') or {}
            for version in spec.get('versions') or []:
                crd_versions[(spec.get('group', ''), version.get('name', ''), (spec.get('names') or {})
                              .get('kind', ''))] = version
        builtins, builtin_kinds = builtin_definitions(), _builtin_kinds()
        by_gv: dict[str, tuple[dict[str, JsonDict], JsonDict]] = {}
        for resource in sorted(resources, key=lambda r: (r.group, r.version, r.plural)):
            schemas, paths = by_gv.setdefault(resource.group_version_path, ({}, {}))
            key = (resource.group, resource.version, resource.kind)
            if key in crd_versions:
                name = crd_schema_name(*key)
                schemas[name] = _custom_schema(crd_versions[key], resource)
            elif key in builtin_kinds:
                name = builtin_kinds[key]
                schemas[name] = builtins[name]
            else:
                name = crd_schema_name(*key)
                schemas[name] = {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True,
                                 'x-kubernetes-group-version-kind': [resource.gvk]}
            paths.update(_paths(resource, _REF_PREFIX + name))
        api = cls()
        for gv, (schemas, paths) in by_gv.items():
            document = {
                'openapi': '3.0.0',
                'info': {'title': 'Kubernetes', 'version': f'v{KUBERNETES_VERSION}'},
                'paths': paths,
                'components': {'schemas': _with_dependencies(schemas)},
            }
            raw = json.dumps(document, sort_keys=True).encode()
            api.documents[gv] = document
            api.hashes[gv] = hashlib.sha512(raw).hexdigest().upper()
        return api

    def index(self) -> JsonDict:
        """The ``/openapi/v3`` discovery document."""
        return {'paths': {gv: {'serverRelativeURL': f'/openapi/v3/{gv}?hash={self.hashes[gv]}'}
                          for gv in sorted(self.documents)}}
