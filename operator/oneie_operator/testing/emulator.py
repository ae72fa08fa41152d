"""A Kubernetes API emulator good enough for a real Kopf operator, ``kubectl`` and ``kubernetes``.

:class:`FixedKubernetesEmulator` is a thin subclass of kmock 0.8's ``KubernetesEmulator``.
It keeps kmock's scaffold for everything that is not a resource request (API discovery
``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``, ``/version``; 404 for
``/openapi/v2``), serves OpenAPI v3 (``/openapi/v3``, built by :mod:`.openapi` from the CRDs
and the published Kubernetes schemas: kubectl's default validation and ``kubectl explain``
need it) and serves every request on a declared resource from its own dict-based store. Each fix below
reproduces the behaviour of a real API server (see ``/work/shared/EMULATOR-NOTES.md`` for
what stock kmock 0.8 does instead):

* **Object metadata.** Creation assigns ``metadata.uid``, ``creationTimestamp``,
  ``resourceVersion`` (one cluster-wide, monotonically increasing counter, as a string, as
  etcd's revision) and ``generation`` (1, then +1 only when something other than
  ``metadata`` -- and ``status`` for resources with a status subresource -- changes, as for
  CRDs). ``generateName`` gets a random 5-character suffix. ``metadata.namespace`` comes
  from the URL (a different one in the body is a 400, as in Kubernetes). Server-managed
  fields (uid, name, namespace, creationTimestamp, deletionTimestamp, generation) cannot
  be changed by writes. An update that changes nothing is a no-op: no new
  resourceVersion, no watch event.
* **Status subresource.** For resources declared with the ``status`` subresource, a
  PUT/PATCH on ``.../status`` changes only ``.status``, while creation and writes to the main
  object ignore ``.status``. For other resources ``status`` is an ordinary field.
* **Patches.** JSON merge patch (``application/merge-patch+json``, used by Kopf), JSON patch
  (``application/json-patch+json``, RFC 6902, used by Kopf for finalizers with a ``test`` op
  on ``resourceVersion``; a failed op is a 422, as Kopf expects), strategic merge patch
  treated as a merge patch (``$``-directives dropped: lists are replaced, not merged), and
  server-side apply (``application/apply-patch+yaml`` with ``fieldManager``; creates the object
  when missing) with field ownership in ``managedFields``, 409 conflicts, ``force=true`` and
  removal of dropped fields, as :mod:`.apply` describes (lists are replaced whole, not merged
  by key; Update entries are recorded only on objects that were server-side applied).
* **Optimistic concurrency.** A ``metadata.resourceVersion`` in a PUT/PATCH body (or produced
  by a JSON patch) that differs from the current one is a 409 Conflict; so is a failed
  ``preconditions`` of a DELETE.
* **Status codes and errors.** Create is 201; an existing name is 409 ``AlreadyExists``; a
  missing object or an unknown resource is 404 ``NotFound``; errors carry a ``Status`` body
  with ``reason``, ``message``, ``code`` and ``details``, as the clients expect.
* **Verbs.** GET, LIST, WATCH, POST, PUT (replace), PATCH, DELETE, delete-collection, and
  ``dryRun=All`` (validated, answered, nothing stored). DELETE of an object with finalizers
  sets ``deletionTimestamp`` and the object stays until a write removes the last finalizer;
  without finalizers it is gone at once.
* **Lists** have ``kind`` (``<Kind>List``), ``apiVersion`` and ``metadata.resourceVersion``.
  Label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and field
  selectors (``=``, ``==``, ``!=`` on any dotted path: ``metadata.name``,
  ``metadata.namespace``, ``type`` of secrets, ...) apply to lists, watches and
  delete-collection. Pagination (``limit``/``continue``) is ignored: everything in one page.
* **Watches** stream JSON lines. Without ``resourceVersion`` (or with ``"0"``) the existing
  objects come first as ``ADDED``; with one, only newer events are sent, replayed from a
  bounded ring of the last ``watch_history`` events per resource; an older one gets an
  ``ERROR`` event with a 410 ``Expired`` Status, as Kubernetes does when etcd compacted it.
  ``timeoutSeconds`` closes the stream. With selectors, an object that starts or stops
  matching is seen as ``ADDED``/``DELETED``, as in Kubernetes.
* **Garbage collection.** When an object is really gone, the objects whose
  ``ownerReferences`` name its uid (and no other live owner) are deleted too -- at once, not
  by a background controller; ``propagationPolicy=Orphan`` skips it; ``Foreground`` is treated
  as ``Background``.
* **Secrets.** ``stringData`` is merged into base64 ``data`` on every write; ``type``
  defaults to ``Opaque``.
* **Namespaces** are a cluster-scoped resource served at ``/api/v1/namespaces[/NAME]``.
  ``default`` exists from the start; creating an object in a missing namespace creates
  the namespace implicitly (a real server answers 404); deleting a namespace deletes its
  objects (honouring their finalizers) and the namespace itself at once (no
  ``Terminating`` phase).
* **CustomResourceDefinitions** created or updated through the API (or :meth:`declare_crd`)
  declare their resources for serving and discovery, as the real server does.
* **Discovery for kubectl**: kmock's answers, fixed where kubectl chokes: ``groupVersion: v1``
  (not ``/v1``) for the core group, and no short names or categories on subresources.
  ``kubectl apply`` (client- and server-side, default validation), ``explain``, ``get``
  (``-A``, ``-l``, ``-o json``, ``-w``), ``replace``, ``patch``, ``delete`` work.
* **Validation of custom resources** (``schema_validation=True``, the default; benchmarks turn it
  off; it needs jsonschema and cel-python, the ``demo`` extra -- without them a warning is
  logged and nothing is validated): every create, update and patch of a custom resource -- main object and ``status`` --
  is pruned, defaulted and validated against its CRD's schema and CEL rules with
  :mod:`.schema` (the offline CRD tests use the same code); refusals are 422 ``Invalid`` (or a
  400 strict decoding error with ``fieldValidation=Strict``) in the API server's format, and
  pruned fields are reported in ``Warning`` headers with ``Warn`` (see :mod:`.validation`).
* **``/version``** (and ``/version/``) answers the Kubernetes version whose schemas are served.
* **Protobuf requests**: ``kubectl create secret|configmap|namespace`` send
  ``application/vnd.kubernetes.protobuf``; :mod:`.protobuf` decodes those three kinds.
* **Tables for kubectl get**: a request whose ``Accept`` asks for a ``meta.k8s.io`` Table (list,
  single object, watch) gets one, built by :mod:`.tables` from the CRD's
  ``additionalPrinterColumns`` or Kubernetes' columns for Secrets, ConfigMaps, Namespaces and
  Events; ``includeObject`` is honoured.
* **Events** work in both ``v1`` and ``events.k8s.io/v1``, but as two separate stores
  (the real server shows one set of objects through both APIs).
* **Cost and memory.** Each request costs O(1) (O(objects of the resource) for lists and
  new watches; deletions look dependents up in an owner-uid index); only the current version
  of each object is kept, plus the bounded event ring per resource; a watcher that falls
  ``watch_queue_limit`` events behind is disconnected (it resumes from its resourceVersion);
  requests are not recorded (kmock's ``RawHandler`` keeps and re-scans every request).

* **Authentication and RBAC**, off by default (any token, or none, works):
  :func:`oneie_operator.testing.rbac.enable_access_control` turns on bearer-token
  authentication (:mod:`~oneie_operator.testing.authn`: users, groups, service accounts,
  rotation, 401) and RBAC authorization from the emulator's own Role/ClusterRole/binding
  objects (:mod:`~oneie_operator.testing.rbac`: 403 in the real wording, aggregation,
  access reviews for ``kubectl auth can-i``, impersonation, bootstrap roles).


Not emulated: validation of built-in kinds (any Secret or Event body is accepted), CEL cost
limits, ``messageExpression`` and ratcheting (see :mod:`.schema`), the RBAC escalation checks
and authentication other than bearer tokens (see ``testing.rbac``), admission webhooks,
conversion webhooks (all versions of a CRD share the objects, only ``apiVersion`` is
rewritten), removing a CRD's resource when
the CRD is deleted, the parts of server-side apply that :mod:`.apply` lists, watch bookmarks
(except the "initial events end" bookmark when ``sendInitialEvents=true``), pagination,
the printers of built-in kinds other than those :mod:`.tables` lists, protobuf bodies of
kinds other than Secret, ConfigMap and Namespace (415 saying to send JSON; protobuf and CBOR
answers are never sent: clients accept JSON), subresources other than ``status`` (``scale``, ``finalize``...),
and kmock's own state (``emulator.objects`` stays empty; kmock's reaction DSL
``emulator[...] << ...`` only applies to non-resource paths). Inspect the state from tests
with :meth:`FixedKubernetesEmulator.get_object` and :meth:`~FixedKubernetesEmulator.list_objects`;
``emulator.errors`` lists the exceptions of requests the emulator failed to serve (bugs).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import datetime
import functools
import json
import logging
import re
import secrets
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import aiohttp.web
import attrs
import kmock
import yaml

from oneie_operator.testing import apply, openapi, protobuf, tables, validation

__all__ = ['FixedKubernetesEmulator', 'KubernetesApiError']

JsonDict = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace or '', name) inside one resource's store
StoreKey = tuple[str, str]  # (group, plural): all versions of a resource share one store

logger = logging.getLogger(__name__)

_VERBS = ('create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch')
_SERVER_FIELDS = ('uid', 'name', 'namespace', 'creationTimestamp', 'deletionTimestamp',
                  'deletionGracePeriodSeconds', 'generation')
_NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789'  # the alphabet of Kubernetes' generateName
_NAMESPACES: StoreKey = ('', 'namespaces')
_CRDS: StoreKey = ('apiextensions.k8s.io', 'customresourcedefinitions')


class AccessHook(Protocol):
    """Authentication and authorization in front of the emulator (``testing.rbac.AccessControl``)."""

    async def __call__(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None: ...


class KubernetesApiError(Exception):
    """An API error, answered as a Kubernetes ``Status`` object with its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: JsonDict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> JsonDict:
        """The ``Status`` object as the real API server sends it."""
        return {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                'message': self.message, 'reason': self.reason, 'details': self.details,
                'code': self.code}


def _bad_request(message: str) -> KubernetesApiError:
    return KubernetesApiError(400, 'BadRequest', message)


def _invalid(message: str) -> KubernetesApiError:
    return KubernetesApiError(422, 'Invalid', message)


@attrs.frozen
class _Kind:
    """A resource as addressed by one request: group, version, plural and its declaration."""

    group: str
    version: str
    plural: str
    info: kmock.ResourceInfo

    @property
    def store_key(self) -> StoreKey:
        return self.group, self.plural

    @property
    def api_version(self) -> str:
        return f'{self.group}/{self.version}' if self.group else self.version

    @property
    def kind(self) -> str:
        return self.info.kind or self.plural.capitalize()

    @property
    def namespaced(self) -> bool:
        return self.info.namespaced is not False

    @property
    def has_status(self) -> bool:
        return 'status' in self.info.subresources

    def not_found(self, name: str) -> KubernetesApiError:
        resource = f'{self.plural}.{self.group}' if self.group else self.plural
        return KubernetesApiError(404, 'NotFound', f'{resource} "{name}" not found',
                                  {'name': name, 'group': self.group, 'kind': self.plural})


@attrs.frozen
class _Event:
    """A change of one object: ``old`` is None for ADDED; for DELETED, ``new`` is the last state."""

    rv: int
    type: str
    old: JsonDict | None
    new: JsonDict


@attrs.define(eq=False)
class _Watcher:
    queue: asyncio.Queue[_Event | None] = attrs.field(factory=asyncio.Queue)


@attrs.define(eq=False)
class _Store:
    """The current objects of one resource, its recent events and its live watchers."""

    history: int
    objects: dict[ObjectKey, JsonDict] = attrs.field(factory=dict)
    events: collections.deque[_Event] = attrs.field(init=False)
    expired_rv: int = 0  # the newest resourceVersion dropped from the ring: older watches get 410
    watchers: set[_Watcher] = attrs.field(factory=set)

    def __attrs_post_init__(self) -> None:
        self.events = collections.deque(maxlen=self.history)


@attrs.frozen
class _Target:
    """What a resource URL addresses (parsed here: kmock's parser fails on ``/api/v1/namespaces``)."""

    group: str
    version: str
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    watch: bool  # the deprecated ``/watch/`` path prefix


def _parse_path(path: str) -> _Target | None:
    parts = [part for part in path.split('/') if part]
    if len(parts) >= 2 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch = bool(rest) and rest[0] == 'watch'
    rest = rest[1:] if watch else rest
    namespace: str | None = None
    namespace_subresource = group == '' and len(rest) == 3 and rest[2] in {'status', 'finalize'}
    if len(rest) >= 3 and rest[0] == 'namespaces' and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    rest += [None] * (3 - len(rest))  # type: ignore[list-item]
    return _Target(group, version, rest[0], namespace, rest[1], rest[2], watch)


# --- Patches ------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge patch (RFC 7386); the stored ``target`` is never mutated."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strip_directives(patch: Any) -> Any:
    """Drop the ``$patch``/``$setElementOrder`` directives of a strategic merge patch."""
    if isinstance(patch, dict):
        return {k: _strip_directives(v) for k, v in patch.items() if not k.startswith('$')}
    return patch


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith('/')):
        raise _invalid(f'invalid JSON pointer: {path!r}')
    return [token.replace('~1', '/').replace('~0', '~') for token in path.split('/')[1:]]


def _walk(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            raise _invalid(f'path /{"/".join(tokens)} does not exist')
    return doc


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _walk(doc, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == '-' or (last.isdigit() and int(last) <= len(parent))):
        parent.insert(len(parent) if last == '-' else int(last), value)
    else:
        raise _invalid(f'cannot add at /{"/".join(tokens)}')
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    _walk(doc, tokens)  # must exist
    if not tokens:
        return None
    parent, last = _walk(doc, tokens[:-1]), tokens[-1]
    del parent[int(last) if isinstance(parent, list) else last]
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """Apply a JSON patch (RFC 6902) to a copy of ``target``; a failed op raises a 422."""
    if not isinstance(ops, list) or not all(isinstance(op, dict) and 'op' in op for op in ops):
        raise _bad_request('a JSON patch must be a list of operations')
    doc = copy.deepcopy(target)
    for op in ops:
        path = _pointer(op.get('path'))
        match op['op']:
            case 'test':
                if _walk(doc, path) != op.get('value'):
                    raise _invalid(f'testing value {op.get("path")} failed')
            case 'add':
                doc = _add(doc, path, copy.deepcopy(op.get('value')))
            case 'remove':
                doc = _remove(doc, path)
            case 'replace':
                doc = _add(_remove(doc, path), path, copy.deepcopy(op.get('value')))
            case 'move':
                source = _pointer(op.get('from'))
                value = _walk(doc, source)
                doc = _add(_remove(doc, source), path, value)
            case 'copy':
                doc = _add(doc, path, copy.deepcopy(_walk(doc, _pointer(op.get('from')))))
            case other:
                raise _bad_request(f'unknown JSON patch operation: {other!r}')
    return doc


# --- Selectors ----------------------------------------------------------------------------------

Matcher = Callable[[JsonDict], bool]


def _split_requirements(selector: str) -> list[str]:
    """Split a selector on the commas that are not inside ``in (...)`` value sets."""
    parts: list[str] = []
    depth, current = 0, ''
    for char in selector:
        depth += {'(': 1, ')': -1}.get(char, 0)
        if char == ',' and depth == 0:
            parts.append(current)
            current = ''
        else:
            current += char
    return [part.strip() for part in [*parts, current] if part.strip()]


_KEY = r'[A-Za-z0-9_./-]+'
_Requirement = tuple[str, str, frozenset[str]]  # (key or field path, 'in'|'notin'|'exists'|'!', values)


@functools.lru_cache(maxsize=256)
def _parse_labels(selector: str) -> tuple[_Requirement, ...]:
    reqs: list[_Requirement] = []
    for req in _split_requirements(selector):
        if m := re.fullmatch(rf'!\s*({_KEY})', req):
            reqs.append((m[1], '!', frozenset()))
        elif m := re.fullmatch(rf'({_KEY})\s+(in|notin)\s*\(([^)]*)\)', req):
            reqs.append((m[1], m[2], frozenset(v.strip() for v in m[3].split(','))))
        elif m := re.fullmatch(rf'({_KEY})\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)', req):
            reqs.append((m[1], 'notin' if m[2] == '!=' else 'in', frozenset([m[3]])))
        elif re.fullmatch(_KEY, req):
            reqs.append((req, 'exists', frozenset()))
        else:
            raise _bad_request(f'unable to parse requirement: {req!r} in label selector {selector!r}')
    return tuple(reqs)


@functools.lru_cache(maxsize=256)
def _parse_fields(selector: str) -> tuple[_Requirement, ...]:
    reqs: list[_Requirement] = []
    for req in _split_requirements(selector):
        m = re.fullmatch(r'([A-Za-z0-9_.-]+)\s*(==|=|!=)\s*(.*)', req)
        if m is None:
            raise _bad_request(f'invalid field selector: {selector!r}')
        reqs.append((m[1], 'notin' if m[2] == '!=' else 'in', frozenset([m[3]])))
    return tuple(reqs)


def _satisfied(reqs: tuple[_Requirement, ...], values: Mapping[str, str]) -> bool:
    """Whether the labels (or the fields) satisfy all requirements; a missing key is not ``in``."""
    for key, op, allowed in reqs:
        if not (key in values if op == 'exists' else key not in values if op == '!' else
                (values.get(key) in allowed) == (op == 'in')):
            return False
    return True


class _Fields(Mapping[str, str]):
    """An object's fields by dotted path (``metadata.name``, ``type``...) for field selectors."""

    def __init__(self, obj: JsonDict) -> None:
        self.obj = obj

    def __getitem__(self, path: str) -> str:
        value: Any = self.obj
        for part in path.split('.'):
            value = value.get(part) if isinstance(value, dict) else None
        return '' if value is None else str(value)  # a missing field is "" for field selectors

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


# --- The emulator -------------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _meta(obj: JsonDict) -> JsonDict:
    meta = obj.get('metadata')
    return meta if isinstance(meta, dict) else {}


def _key(obj: JsonDict) -> ObjectKey:
    return _meta(obj).get('namespace') or '', _meta(obj)['name']


_TableMaker = Callable[[list[JsonDict], str | None], JsonDict]  # (objects, resourceVersion) -> Table


def _encode_event(event: JsonDict, table: _TableMaker | None) -> bytes:
    """A watch event as a JSON line; its object as a one-row Table if the watcher asked for tables."""
    if table is not None and event['type'] in {'ADDED', 'MODIFIED', 'DELETED'}:
        rv = _meta(event['object']).get('resourceVersion')
        event = {**event, 'object': table([event['object']], rv)}
    return json.dumps(event).encode() + b'\n'


def _owner_uids(obj: JsonDict | None) -> set[str]:
    refs = _meta(obj or {}).get('ownerReferences') or []
    return {ref['uid'] for ref in refs if isinstance(ref, dict) and ref.get('uid')}


@attrs.define(kw_only=True)
class FixedKubernetesEmulator(kmock.KubernetesEmulator):
    """kmock's ``KubernetesEmulator`` fixed for real clients: see the module docstring.

    Run it with :func:`oneie_operator.testing.cluster.serve_emulator`, or as any kmock
    handler: ``async with emulator, kmock.Server(emulator, host='127.0.0.1') as server``.
    Built-in resources (``load_bundled()``) are declared from the start; declare custom
    resources with :meth:`declare_crd` or :func:`oneie_operator.testing.cluster.load_crds`.
    """

    watch_history: int = 1000  # events kept per resource for watches resuming from a resourceVersion
    watch_queue_limit: int = 10_000  # events queued for one slow watcher before its stream is closed
    kept_requests: int = 100  # requests kept by kmock's reactions (discovery only)
    #: Called before every request (authentication, RBAC: ``testing.rbac.enable_access_control``);
    #: it answers (401, 403, an access review) or returns None to let the request be served.
    access: AccessHook | None = None
    schema_validation: bool = True  # validate, prune, default custom resources (.validation); off: benchmarks

    _stores: dict[StoreKey, _Store] = attrs.field(factory=dict, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _uids: set[str] = attrs.field(factory=set, init=False)
    _dependents: dict[str, set[tuple[StoreKey, ObjectKey]]] = attrs.field(factory=dict, init=False)
    _openapi: openapi.OpenApiV3 | None = attrs.field(default=None, init=False)  # built when first asked
    _validator: validation.Validator = attrs.field(factory=validation.Validator, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.schema_validation and not validation.available():
            logger.warning('The emulator does NOT validate custom resources: jsonschema and cel-python are '
                           "missing (pip install 'oneie-operator[demo]')")
            self.schema_validation = False
        self.resources.load_bundled()
        self.create_object('v1/namespaces', {'metadata': {'name': 'default'}})

    # --- Public API for tests, benchmarks and the demo --------------------------------------------

    def declare_crd(self, crd: Mapping[str, Any]) -> None:
        """Declare the served versions of a ``CustomResourceDefinition`` for serving and discovery."""
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        self._openapi = None
        for version in spec.get('versions') or [{'name': spec.get('version')}]:
            if not version.get('served', True):
                continue
            subresources = version.get('subresources') or spec.get('subresources') or {}
            self.resources[kmock.resource(spec['group'], version['name'], names['plural'])] = (
                kmock.ResourceInfo(
                    kind=names['kind'],
                    singular=names.get('singular') or names['kind'].lower(),
                    namespaced=spec.get('scope', 'Namespaced') == 'Namespaced',
                    shortnames=names.get('shortNames') or [],
                    categories=names.get('categories') or [],
                    subresources=set(subresources),
                    verbs=_VERBS,
                )
            )

    def create_object(self, resource: str, body: JsonDict, namespace: str | None = None) -> JsonDict:
        """Create an object directly (no HTTP), e.g. ``create_object('v1/secrets', {...}, 'ns')``."""
        kind = self._resolve_str(resource)
        return self._create(kind, namespace or _meta(body).get('namespace'), body, dry_run=False)

    def replace_object(self, resource: str, body: JsonDict) -> JsonDict:
        """Replace an object directly (no HTTP), as a PUT of ``body`` would (a no-op if unchanged)."""
        kind = self._resolve_str(resource)
        namespace, name = _meta(body).get('namespace'), _meta(body)['name']
        return self._update(kind, namespace, name, None, lambda old: body, dry_run=False)

    def get_object(self, resource: str, namespace: str | None, name: str) -> JsonDict | None:
        """The current state of an object, e.g. ``get_object('test.example.com/v1/widgets', 'ns', 'w')``."""
        kind = self._resolve_str(resource)
        return self._store(kind).objects.get((namespace or '', name))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[JsonDict]:
        """The current objects of a resource, in one namespace or in all of them."""
        kind = self._resolve_str(resource)
        objects = list(self._store(kind).objects.items())  # atomic: safe from another thread
        return [obj for (ns, _), obj in sorted(objects) if namespace is None or ns == namespace]

    def close_watches(self) -> None:
        """End all watch streams (before stopping the server, so that it does not wait for them)."""
        for store in self._stores.values():
            for watcher in store.watchers:
                watcher.queue.put_nowait(None)
            store.watchers.clear()

    # --- HTTP entry point -------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve one request; unlike kmock's ``RawHandler.__call__``, record nothing."""
        try:
            if self.access is not None and (answer := await self.access(raw_request)) is not None:
                return answer
            target = _parse_path(raw_request.path)
            if raw_request.path.startswith('/openapi/'):
                return self._serve_openapi(raw_request.path)
            if raw_request.path in {'/version', '/version/'}:
                return aiohttp.web.json_response(openapi.version_info())
            if target is None or target.plural is None:
                return await self._delegate(raw_request)
            return await self._serve(raw_request, target)
        except KubernetesApiError as e:
            return aiohttp.web.json_response(e.status(), status=e.code)
        except kmock.KubernetesError as e:  # from kmock's scaffold, e.g. 404 for /openapi/v2
            reason = 'NotFound' if e.status == 404 else str(e.reason)
            error = KubernetesApiError(e.status, reason, str(e.message))
            return aiohttp.web.json_response(error.status(), status=e.status)
        except Exception as e:  # a bug in the emulator: tell the client and the test (emulator.errors)
            logger.exception('The emulator failed to serve %s %s', raw_request.method, raw_request.path)
            if self._errors:
                self._errors[-1].append(e)
            response: aiohttp.web.StreamResponse = await self._render_error(e)
            return response

    async def _delegate(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve discovery and other non-resource paths with kmock's scaffold (and its DSL)."""
        request = await kmock.Request._parse(raw_request)
        self._requests.append(request)  # kmock's filters match only the requests of the history
        try:
            response: aiohttp.web.StreamResponse = await kmock.KubernetesScaffold._handle(self, request)
            return response
        finally:
            self._requests.remove(request)  # keep the history empty: matching scans all of it
            for payload in self._payloads:  # kmock's reactions record their requests: keep a few
                del payload._requests[:-self.kept_requests]

    def _serve_openapi(self, path: str) -> aiohttp.web.StreamResponse:
        """``/openapi/v3`` and its group-version documents (see :mod:`.openapi`); v2 is a 404."""
        if self._openapi is None:
            resources = [openapi.ApiResource(r.group or '', r.version or '', r.plural or '', info.kind or '',
                                             info.namespaced is not False, frozenset(info.subresources))
                         for r, info in ((r, self.resources[r]) for r in self.resources) if info.kind]
            crds = list(self._stores[_CRDS].objects.values()) if _CRDS in self._stores else []
            self._openapi = openapi.OpenApiV3.build(resources, crds)
        if path.rstrip('/') == '/openapi/v3':
            return aiohttp.web.json_response(self._openapi.index())
        document = self._openapi.documents.get(path.removeprefix('/openapi/v3/').strip('/'))
        if document is None or not path.startswith('/openapi/v3/'):
            raise KubernetesApiError(404, 'NotFound', 'the server could not find the requested resource')
        return aiohttp.web.json_response(document)

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        """kmock's discovery of a group version, with ``groupVersion: v1`` (not ``/v1``) for core."""
        result = await super()._serve_version(request)
        if isinstance(result, dict):
            result['groupVersion'] = str(result.get('groupVersion', '')).lstrip('/')
            for resource in result.get('resources', []):
                if '/' in resource['name']:  # subresources have no short names, categories, singular
                    resource.update(shortNames=[], categories=[], singularName='')
        return result

    async def _serve(self, raw_request: aiohttp.web.BaseRequest,
                     target: _Target) -> aiohttp.web.StreamResponse:
        """Serve a resource request with its ``fieldValidation``; answer its warnings as headers."""
        validation.FIELD_VALIDATION.set(raw_request.query.get('fieldValidation') or 'Warn')
        apply.MANAGER.set(raw_request.query.get('fieldManager')
                          or raw_request.headers.get('User-Agent', 'unknown').split('/')[0])
        warnings: list[str] = []
        validation.WARNINGS.set(warnings)
        response = await self._serve_resource(raw_request, target)
        for warning in warnings:
            response.headers.add('Warning', f'299 - {json.dumps(warning)}')
        return response

    async def _serve_resource(self, raw_request: aiohttp.web.BaseRequest,
                              target: _Target) -> aiohttp.web.StreamResponse:
        kind = self._resolve(target.group, target.version, target.plural or '')
        query = raw_request.query
        namespace = target.namespace
        if kind.namespaced != (namespace is not None) and (namespace is not None or target.name is not None
                                                           or raw_request.method == 'POST'):
            raise KubernetesApiError(404, 'NotFound', 'the server could not find the requested resource')
        if target.subresource is not None and (target.subresource != 'status' or not kind.has_status):
            raise KubernetesApiError(404, 'NotFound', 'the server could not find the requested resource')
        dry_run = 'All' in query.getall('dryRun', [])
        method, name = raw_request.method, target.name

        if method == 'GET':
            table = self._table_maker(kind, raw_request)  # None unless a Table is asked for
            if target.watch or query.get('watch') in {'true', '1'}:
                return await self._watch(raw_request, kind, namespace, name, table)
            if name is None:
                listed = self._list(kind, namespace, query)
                return aiohttp.web.json_response(
                    listed if table is None else table(listed['items'], listed['metadata']['resourceVersion']))
            obj = self._out(self._lookup(kind, namespace, name), kind)
            return aiohttp.web.json_response(obj if table is None else table([obj], None))

        body = await self._decode(raw_request)
        if method == 'POST' and name is None:
            return aiohttp.web.json_response(self._out(self._create(kind, namespace, body, dry_run), kind),
                                             status=201)
        if method == 'PUT' and name is not None:
            if not isinstance(body, dict):
                raise _bad_request('the body must be an object')
            result = self._update(kind, namespace, name, target.subresource,
                                  self._recording(kind, target.subresource, lambda old: body), dry_run)
            return aiohttp.web.json_response(self._out(result, kind))
        if method == 'PATCH' and name is not None:
            content_type = raw_request.content_type
            make: Callable[[JsonDict], Any]
            if content_type == 'application/apply-patch+yaml' and target.subresource is None:
                if not isinstance(body, dict) or _meta(body).get('name') not in {None, name}:
                    raise _bad_request('the applied object must have the name of the URL')
                if not query.get('fieldManager'):
                    raise _invalid('PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                                   'required for apply patch')
                make = functools.partial(self._apply, body=merge_patch(body, {'metadata': {'name': name}}),
                                         manager=query['fieldManager'], force=query.get('force') == 'true',
                                         api_version=kind.api_version)
                if self._find(kind, namespace, name) is None:
                    created = self._create(kind, namespace, make(None), dry_run)
                    return aiohttp.web.json_response(self._out(created, kind), status=201)
                result = self._update(kind, namespace, name, None, make, dry_run)
                return aiohttp.web.json_response(self._out(result, kind))
            if content_type == 'application/json-patch+json':
                make = functools.partial(json_patch, ops=body)
            elif content_type == 'application/strategic-merge-patch+json':
                make = functools.partial(merge_patch, patch=_strip_directives(body))
            elif content_type in {'application/merge-patch+json', 'application/apply-patch+yaml'}:
                make = functools.partial(merge_patch, patch=body)
            else:
                raise KubernetesApiError(415, 'UnsupportedMediaType',
                                         f'the body of the request was in an unknown format: {content_type}')
            result = self._update(kind, namespace, name, target.subresource,
                                  self._recording(kind, target.subresource, make), dry_run)
            return aiohttp.web.json_response(self._out(result, kind))
        if method == 'DELETE':
            options = body if isinstance(body, dict) else {}
            orphan = (options.get('propagationPolicy') or query.get('propagationPolicy')) == 'Orphan'
            if name is not None:
                self._lookup(kind, namespace, name)
                deleted = self._delete(kind.store_key, (namespace or '', name), options, dry_run, orphan)
                return aiohttp.web.json_response(self._out(deleted, kind))
            listed = self._list(kind, namespace, query)
            listed['items'] = [
                self._out(self._delete(kind.store_key, _key(obj), options, dry_run, orphan), kind)
                for obj in listed['items']]
            return aiohttp.web.json_response(listed)
        raise KubernetesApiError(405, 'MethodNotAllowed', f'{method} is not supported on {raw_request.path}')

    @staticmethod
    async def _decode(raw_request: aiohttp.web.BaseRequest) -> Any:
        raw = await raw_request.read()
        if not raw:
            return None
        if raw_request.content_type == 'application/vnd.kubernetes.protobuf':
            try:
                return protobuf.decode(raw)
            except protobuf.UnsupportedKind as e:
                raise KubernetesApiError(415, 'UnsupportedMediaType', str(e)) from e
            except protobuf.ProtobufError as e:
                raise _bad_request(f'the body could not be decoded: {e}') from e
        if raw_request.content_type == 'application/cbor':
            raise KubernetesApiError(415, 'UnsupportedMediaType', 'the body of the request was in an '
                                     f'unknown format: {raw_request.content_type}')
        try:
            if raw_request.content_type.endswith('yaml'):
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as e:
            raise _bad_request(f'the body could not be decoded: {e}') from e

    # --- Resources and the store ------------------------------------------------------------------

    def _resolve(self, group: str, version: str, plural: str) -> _Kind:
        resource = kmock.resource(group, version, plural)
        if resource not in self.resources:
            raise KubernetesApiError(404, 'NotFound', 'the server could not find the requested resource')
        return _Kind(group, version, plural, self.resources[resource])

    def _resolve_str(self, resource: str) -> _Kind:
        parsed = kmock.resource(resource)
        return self._resolve(parsed.group or '', parsed.version or 'v1', parsed.plural or '')

    def _store(self, kind: _Kind) -> _Store:
        store = self._stores.get(kind.store_key)
        if store is None:
            store = self._stores[kind.store_key] = _Store(history=self.watch_history)
        return store

    def _find(self, kind: _Kind, namespace: str | None, name: str) -> JsonDict | None:
        return self._store(kind).objects.get((namespace or '', name))

    def _lookup(self, kind: _Kind, namespace: str | None, name: str) -> JsonDict:
        obj = self._find(kind, namespace, name)
        if obj is None:
            raise kind.not_found(name)
        return obj

    @staticmethod
    def _out(obj: JsonDict, kind: _Kind) -> JsonDict:
        """The object as seen through the requested version (all versions share the objects)."""
        return obj if obj.get('apiVersion') == kind.api_version else {**obj, 'apiVersion': kind.api_version}

    def _commit(self, store_key: StoreKey, old: JsonDict | None, new: JsonDict) -> JsonDict:
        """Store a new state of an object with a new resourceVersion and tell the watchers."""
        self._rv += 1
        new = {**new, 'metadata': {**_meta(new), 'resourceVersion': str(self._rv)}}
        key = _key(new)
        self._stores[store_key].objects[key] = new
        self._uids.add(_meta(new)['uid'])
        for uid in _owner_uids(new) - _owner_uids(old):
            self._dependents.setdefault(uid, set()).add((store_key, key))
        for uid in _owner_uids(old) - _owner_uids(new):
            self._dependents.get(uid, set()).discard((store_key, key))
        self._emit(store_key, 'MODIFIED' if old is not None else 'ADDED', old, new)
        return new

    def _emit(self, store_key: StoreKey, type_: str, old: JsonDict | None, new: JsonDict) -> None:
        store = self._stores[store_key]
        if len(store.events) == store.events.maxlen:
            store.expired_rv = store.events[0].rv
        event = _Event(self._rv, type_, old, new)
        store.events.append(event)
        for watcher in list(store.watchers):
            if watcher.queue.qsize() >= self.watch_queue_limit:  # too slow: close, it will resume
                watcher.queue.put_nowait(None)
                store.watchers.discard(watcher)
            else:
                watcher.queue.put_nowait(event)

    def _ensure_namespace(self, namespace: str) -> None:
        if ('', namespace) not in self._stores[_NAMESPACES].objects:
            self.create_object('v1/namespaces', {'metadata': {'name': namespace}})

    def _normalize(self, kind: _Kind, obj: JsonDict) -> JsonDict:
        """Apply the server-side conversions of one written object (a fresh top-level dict)."""
        obj['apiVersion'], obj['kind'] = kind.api_version, kind.kind
        if kind.store_key == ('', 'secrets'):
            string_data = obj.pop('stringData', None) or {}
            encoded = {k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()}
            if encoded:
                obj['data'] = {**(obj.get('data') or {}), **encoded}
            obj.setdefault('type', 'Opaque')
        elif kind.store_key == _NAMESPACES:
            obj['status'] = {'phase': 'Active'}
        return obj

    @staticmethod
    def _apply(old: JsonDict | None, body: JsonDict, manager: str, force: bool, api_version: str) -> JsonDict:
        """Server-side apply of ``body`` by ``manager`` (see :mod:`.apply`); conflicts are a 409."""
        try:
            return apply.apply(old, body, manager, force, api_version)
        except apply.ApplyConflict as e:
            raise KubernetesApiError(409, 'Conflict', e.message, {'causes': e.causes}) from None

    @staticmethod
    def _recording(kind: _Kind, subresource: str | None,
                   make: Callable[[JsonDict], Any]) -> Callable[[JsonDict], Any]:
        """``make``, then the Update of the request's field manager recorded in managedFields."""
        if subresource is not None:
            return make

        def made(old: JsonDict) -> Any:
            new = make(old)
            return apply.record_update(old, new, apply.MANAGER.get(), kind.api_version) \
                if isinstance(new, dict) else new
        return made

    def _admit(self, kind: _Kind, obj: JsonDict, old: JsonDict | None) -> JsonDict:
        """Validate, prune and default a custom resource against its CRD (see :mod:`.validation`)."""
        crd = self._stores[_CRDS].objects.get(('', f'{kind.plural}.{kind.group}')) if kind.group else None
        if not self.schema_validation or crd is None:
            return obj
        try:
            return self._validator.admit(crd, kind.version, obj, old)
        except validation.Refusal as e:
            raise KubernetesApiError(e.code, e.reason, e.message, e.details) from None

    # --- Verbs ------------------------------------------------------------------------------------

    def _create(self, kind: _Kind, namespace: str | None, body: Any, dry_run: bool) -> JsonDict:
        if not isinstance(body, dict):
            raise _bad_request('the body must be an object')
        meta = dict(_meta(body))
        if kind.namespaced:
            if meta.get('namespace') not in {None, '', namespace}:
                raise _bad_request('the namespace of the provided object does not match the namespace '
                                   'sent on the request')
            if not namespace:
                raise _invalid('metadata.namespace: Required value')
            meta['namespace'] = namespace
        else:
            meta.pop('namespace', None)
        objects, ns_key = self._store(kind).objects, meta.get('namespace', '')
        if not meta.get('name'):
            if not meta.get('generateName'):
                raise _invalid('metadata.name: Required value: name or generateName is required')
            while not meta.get('name') or (ns_key, meta['name']) in objects:
                suffix = ''.join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
                meta['name'] = meta['generateName'] + suffix
        if (ns_key, meta['name']) in objects:
            resource = f'{kind.plural}.{kind.group}' if kind.group else kind.plural
            raise KubernetesApiError(409, 'AlreadyExists', f'{resource} "{meta["name"]}" already exists',
                                     {'name': meta['name'], 'group': kind.group, 'kind': kind.plural})
        for field in ('resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds'):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        obj = {**body, 'metadata': meta}
        if kind.has_status:
            obj.pop('status', None)
        obj = self._admit(kind, self._normalize(kind, obj), None)
        if dry_run:
            return obj
        if kind.namespaced and namespace:
            self._ensure_namespace(namespace)
        obj = self._commit(kind.store_key, None, obj)
        if kind.store_key == _CRDS:
            self.declare_crd(obj)
        return obj

    def _update(self, kind: _Kind, namespace: str | None, name: str, subresource: str | None,
                make: Callable[[JsonDict], Any], dry_run: bool) -> JsonDict:
        old = self._lookup(kind, namespace, name)
        candidate = make(old)
        if not isinstance(candidate, dict) or not isinstance(candidate.get('metadata', {}), dict):
            raise _invalid('the result must be an object with metadata')
        old_meta, cand_meta = _meta(old), _meta(candidate)
        if cand_meta.get('resourceVersion') not in {None, '', old_meta['resourceVersion']}:
            resource = f'{kind.plural}.{kind.group}' if kind.group else kind.plural
            raise KubernetesApiError(
                409, 'Conflict', f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                'modified; please apply your changes to the latest version and try again',
                {'name': name, 'group': kind.group, 'kind': kind.plural})
        if cand_meta.get('name') not in {None, name}:
            raise _bad_request(f'the name of the object ({cand_meta.get("name")}) does not match the name '
                               f'on the URL ({name})')
        if subresource == 'status':  # only the status changes
            new = {k: v for k, v in old.items() if k != 'status'}
            if 'status' in candidate:
                new['status'] = candidate['status']
            new = self._admit(kind, new, old)
        else:
            new = dict(candidate)
            meta = {k: v for k, v in cand_meta.items() if k not in _SERVER_FIELDS}
            meta.update({k: old_meta[k] for k in _SERVER_FIELDS if k in old_meta})
            new['metadata'] = meta
            new.pop('status', None)
            if 'status' in (old if kind.has_status else candidate):
                new['status'] = (old if kind.has_status else candidate)['status']
            new = self._admit(kind, self._normalize(kind, new), old)
            ignored = {'apiVersion', 'kind', 'metadata', 'status' if kind.has_status else 'metadata'}
            if {k: v for k, v in new.items() if k not in ignored} != \
                    {k: v for k, v in old.items() if k not in ignored}:
                _meta(new)['generation'] = old_meta.get('generation', 0) + 1
        new['metadata'] = {**_meta(new), 'resourceVersion': old_meta['resourceVersion']}
        if new == old or dry_run:  # a no-op: no new resourceVersion, no event
            return new
        if _meta(new).get('deletionTimestamp') and not _meta(new).get('finalizers'):
            return self._remove(kind.store_key, new)
        if kind.store_key == _CRDS:
            self.declare_crd(new)
        return self._commit(kind.store_key, old, new)

    def _delete(self, store_key: StoreKey, key: ObjectKey, options: JsonDict, dry_run: bool,
                orphan: bool = False) -> JsonDict:
        obj = self._stores[store_key].objects[key]
        meta = _meta(obj)
        preconditions = options.get('preconditions') or {}
        for field in ('uid', 'resourceVersion'):
            if preconditions.get(field) not in {None, meta.get(field)}:
                raise KubernetesApiError(409, 'Conflict', f'Precondition failed: {field} in precondition: '
                                         f'{preconditions[field]}, {field} in object meta: {meta.get(field)}')
        if dry_run or meta.get('deletionTimestamp'):
            return obj
        if meta.get('finalizers'):
            return self._commit(store_key, obj, {
                **obj, 'metadata': {**meta, 'deletionTimestamp': _now(), 'deletionGracePeriodSeconds': 0}})
        return self._remove(store_key, obj, orphan)

    def _remove(self, store_key: StoreKey, obj: JsonDict, orphan: bool = False) -> JsonDict:
        """Make an object really gone; then collect its dependents (and a namespace's objects)."""
        key = _key(obj)
        old = self._stores[store_key].objects.pop(key)
        self._rv += 1
        final = {**obj, 'metadata': {**_meta(obj), 'resourceVersion': str(self._rv)}}
        self._emit(store_key, 'DELETED', old, final)
        uid = _meta(obj)['uid']
        self._uids.discard(uid)
        for owner in _owner_uids(old):
            self._dependents.get(owner, set()).discard((store_key, key))
        dependents = sorted(self._dependents.pop(uid, set()))
        for dep_store, dep_key in dependents if not orphan else []:
            dependent = self._stores[dep_store].objects.get(dep_key)
            if dependent is not None and not (_owner_uids(dependent) & self._uids):  # no live owner left
                self._delete(dep_store, dep_key, {}, dry_run=False)
        if store_key == _NAMESPACES:
            contents = [(sk, ok) for sk, store in self._stores.items()
                        for ok in store.objects if ok[0] == key[1]]
            for dep_store, dep_key in contents:
                if dep_key in self._stores[dep_store].objects:
                    self._delete(dep_store, dep_key, {}, dry_run=False)
        return final

    def _matcher(self, namespace: str | None, name: str | None, query: Mapping[str, str]) -> Matcher:
        labels = _parse_labels(query.get('labelSelector', ''))
        fields = _parse_fields(query.get('fieldSelector', ''))
        return lambda obj: (
            (namespace is None or _meta(obj).get('namespace') == namespace)
            and (name is None or _meta(obj).get('name') == name)
            and _satisfied(labels, _meta(obj).get('labels') or {}) and _satisfied(fields, _Fields(obj))
        )

    def _list(self, kind: _Kind, namespace: str | None, query: Mapping[str, str]) -> JsonDict:
        match = self._matcher(namespace, None, query)
        objects = self._store(kind).objects
        return {
            'apiVersion': kind.api_version,
            'kind': f'{kind.kind}List',
            'metadata': {'resourceVersion': str(self._rv)},
            'items': [self._out(obj, kind) for _, obj in sorted(objects.items()) if match(obj)],
        }

    def _table_maker(self, kind: _Kind, raw_request: aiohttp.web.BaseRequest) -> _TableMaker | None:
        """How to answer as a ``Table`` (see :mod:`.tables`) if the request's ``Accept`` asks for one."""
        version = tables.requested_table_version(raw_request.headers.get('Accept', ''))
        if version is None:
            return None
        columns: list[JsonDict] | None = None
        crd = self._stores[_CRDS].objects.get(('', f'{kind.plural}.{kind.group}')) if kind.group else None
        if crd is not None:
            spec = crd.get('spec') or {}
            served = [v for v in spec.get('versions') or [] if v.get('name') == kind.version]
            columns = (served[0] if served else {}).get('additionalPrinterColumns') or \
                spec.get('additionalPrinterColumns') or []
        renderer = tables.TableRenderer(kind.group, kind.plural, columns)
        include = raw_request.query.get('includeObject', 'Metadata')
        return lambda objects, rv: renderer.table(objects, version=version, include=include, resource_version=rv)

    async def _watch(self, raw_request: aiohttp.web.BaseRequest, kind: _Kind, namespace: str | None,
                     name: str | None, table: _TableMaker | None = None) -> aiohttp.web.StreamResponse:
        query = raw_request.query
        match = self._matcher(namespace, name, query)
        store = self._store(kind)
        since = query.get('resourceVersion', '')
        timeout = float(query['timeoutSeconds']) if query.get('timeoutSeconds') else None
        watcher: _Watcher | None = _Watcher()
        backlog: list[JsonDict] = []
        if since not in {'', '0'}:
            if not since.isdigit():
                raise _bad_request(f'invalid resource version: {since!r}')
            if int(since) < store.expired_rv:
                watcher = None
                backlog.append({'type': 'ERROR', 'object': KubernetesApiError(
                    410, 'Expired', f'too old resource version: {since} ({store.expired_rv})').status()})
            else:
                backlog += filter(None, (self._watch_event(e, match, kind) for e in store.events
                                         if e.rv > int(since)))
        else:
            backlog += ({'type': 'ADDED', 'object': self._out(obj, kind)}
                        for _, obj in sorted(store.objects.items()) if match(obj))
            if query.get('sendInitialEvents') == 'true':
                backlog.append({'type': 'BOOKMARK', 'object': {
                    'kind': kind.kind, 'apiVersion': kind.api_version, 'metadata': {
                        'resourceVersion': str(self._rv),
                        'annotations': {'k8s.io/initial-events-end': 'true'}}}})
        if watcher is not None:  # registered with no await since the backlog: no event is missed
            store.watchers.add(watcher)
        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        try:
            await response.prepare(raw_request)
            for event in backlog:
                await response.write(_encode_event(event, table))
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            while watcher is not None:
                remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if item is None:
                    break
                if (seen := self._watch_event(item, match, kind)) is not None:
                    await response.write(_encode_event(seen, table))
            await response.write_eof()
        except ConnectionError:
            pass  # the client has gone
        finally:
            if watcher is not None:
                store.watchers.discard(watcher)
        return response

    def _watch_event(self, event: _Event, match: Matcher, kind: _Kind) -> JsonDict | None:
        """The event as a watcher with selectors sees it: entering/leaving the selection is ADDED/DELETED."""
        now = match(event.new)
        was = now if event.type != 'MODIFIED' else (event.old is not None and match(event.old))
        type_ = event.type if was == now else 'ADDED' if now else 'DELETED'
        return {'type': type_, 'object': self._out(event.new, kind)} if was or now else None
