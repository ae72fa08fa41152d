"""Kubernetes RBAC for the emulator: authorization read from its own Role/Binding objects.

Turn it on with :func:`enable_access_control` (off by default: existing tests and the
benchmarks send no token). Every request is then authenticated
(:mod:`oneie_operator.testing.authn`) and authorized as the real API server's RBAC
authorizer does (https://kubernetes.io/docs/reference/access-authn-authz/rbac/):

* **Request attributes** from the URL, as the API server's ``RequestInfoFactory``: ``get``
  (a named GET), ``list`` (unnamed GET), ``watch`` (``?watch=true`` on a list, or the
  ``/watch/`` path prefix), ``create`` (POST), ``update`` (PUT), ``patch``, ``delete``,
  ``deletecollection`` (unnamed DELETE); namespace, resource, subresource and name (a
  ``fieldSelector=metadata.name=X`` on a list names ``X``; ``/api/v1/namespaces/N`` has the
  namespace ``N``). Paths that are not resources (``/api``, ``/apis/...`` discovery,
  ``/version``, ``/openapi/...``, ``/healthz``) are non-resource requests whose verb is the
  lower-cased HTTP method.
* **Rules**: verbs (``*``), apiGroups (``""`` core, ``*``), resources (``*``, ``res/sub`` and
  ``*/sub``; a plain ``res`` does not cover its subresources), resourceNames (only requests
  that name an object), nonResourceURLs (exact, or a prefix ending in ``*``).
* **Bindings**: ClusterRoleBindings grant a ClusterRole everywhere; a RoleBinding grants a Role
  of its namespace, or a ClusterRole, in its namespace only. Subjects ``User``, ``Group`` and
  ``ServiceAccount`` (namespace defaulting to the binding's). A binding whose role is missing
  grants nothing and the refusal says so (``RBAC: role.rbac.authorization.k8s.io "x" not
  found``), as the real authorizer.
* **Aggregation**: a ClusterRole with ``aggregationRule.clusterRoleSelectors`` gets, as its
  stored ``rules``, the rules of every ClusterRole matching a selector (deduplicated, by name),
  as kube-controller-manager's ClusterRole aggregation controller does -- here before the next
  request is served, so it is never stale.
* **Refusals** are 403 ``Forbidden`` in the API server's wording
  (``backendconnections.one.ie "x" is forbidden: User "alice" cannot get resource
  "backendconnections" in API group "one.ie" in the namespace "tenant-acme"``; ``... at the
  cluster scope``; ``forbidden: User "x" cannot get path "/foo"``) with
  ``details`` {name, group, kind}; an unknown or missing token is a 401 (before any RBAC).
* **Reviews**: ``SubjectAccessReview``, ``LocalSubjectAccessReview``,
  ``SelfSubjectAccessReview``, ``SelfSubjectRulesReview`` (authorization.k8s.io/v1) and
  ``SelfSubjectReview`` (authentication.k8s.io/v1), so ``kubectl auth can-i`` (also
  ``--list``) and ``kubectl auth whoami`` work. **Impersonation** (``Impersonate-User``,
  ``Impersonate-Group``; ``kubectl --as/--as-group``) needs the ``impersonate`` verb on
  ``users``/``groups``/``serviceaccounts``, as on a real server.
* **Bootstrap roles** (created by :func:`enable_access_control`): ``cluster-admin`` (bound
  to ``system:masters``), ``system:discovery`` and ``system:basic-user`` (bound to
  ``system:authenticated``), ``system:public-info-viewer`` (bound to
  ``system:authenticated`` and ``system:unauthenticated``), and the aggregated ``admin``,
  ``edit`` and ``view`` with the labels ``rbac.authorization.k8s.io/aggregate-to-*``, filled
  from ``system:aggregate-to-admin|edit|view``. Those three carry a **subset** of the real
  core rules: view reads configmaps, endpoints, events, pods (and logs), PVCs, services,
  serviceaccounts, resourcequotas, limitranges, namespaces, deployments/replicasets/
  statefulsets/daemonsets, jobs/cronjobs, ingresses, networkpolicies (no Secrets); edit writes
  those and reads/writes Secrets, and may impersonate service accounts; admin adds roles,
  rolebindings and localsubjectaccessreviews.

:attr:`AccessControl.allowed` records the (apiGroup, resource[/subresource], verb) triples
each identity was allowed (a test compares them with what a role grants), and
:attr:`AccessControl.refusals` every 401/403 with its message.

Not emulated: the escalation checks on writing Roles/Bindings (``escalate``, ``bind``:
anyone allowed to write a binding may grant anything), ``extra``/uid impersonation,
webhook/Node/ABAC authorizers, audit, the ``Incomplete`` flag of rules reviews (always false).
"""

from __future__ import annotations

import collections
import copy
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp.web
import attrs

from oneie_operator.testing.authn import AUTHENTICATED, UNAUTHENTICATED, Authenticator, UserInfo
from oneie_operator.testing.emulator import FixedKubernetesEmulator, KubernetesApiError

__all__ = ['AccessControl', 'RequestAttributes', 'enable_access_control', 'request_attributes']

JsonDict = dict[str, Any]
RBAC = 'rbac.authorization.k8s.io'
_V1 = f'{RBAC}/v1'
AUTHZ = 'authorization.k8s.io'
AUTHN = 'authentication.k8s.io'
_REVIEWS = {(AUTHZ, 'subjectaccessreviews'), (AUTHZ, 'localsubjectaccessreviews'),
            (AUTHZ, 'selfsubjectaccessreviews'), (AUTHZ, 'selfsubjectrulesreviews'),
            (AUTHN, 'selfsubjectreviews')}
_NAMESPACE_SUBRESOURCES = {'status', 'finalize'}
_AGGREGATE = 'rbac.authorization.k8s.io/aggregate-to-'


# --- Request attributes -------------------------------------------------------------------------


@attrs.frozen
class RequestAttributes:
    """What the authorizer decides on (``authorizer.Attributes`` of the API server)."""

    user: UserInfo
    verb: str
    resource_request: bool
    path: str = ''
    group: str = ''
    version: str = ''
    resource: str = ''
    subresource: str = ''
    namespace: str = ''
    name: str = ''

    @property
    def qualified_resource(self) -> str:
        """``resource.group`` (``resource`` for the core group), as ``GroupResource.String()``."""
        return f'{self.resource}.{self.group}' if self.group else self.resource

    def forbidden(self, reason: str = '') -> KubernetesApiError:
        """The 403 of ``responsewriters.Forbidden``: ``forbiddenMessage`` wrapped by ``NewForbidden``."""
        who = self.user.name
        if not self.resource_request:
            text = f'User "{who}" cannot {self.verb} path "{self.path}"'
        else:
            resource = f'{self.resource}/{self.subresource}' if self.subresource else self.resource
            scope = f'in the namespace "{self.namespace}"' if self.namespace else 'at the cluster scope'
            text = f'User "{who}" cannot {self.verb} resource "{resource}" in API group "{self.group}" {scope}'
        if reason:
            text = f'{text}: {reason}'
        if not self.resource_request or not self.resource:
            return KubernetesApiError(403, 'Forbidden', f'forbidden: {text}', {})
        head = f'{self.qualified_resource} "{self.name}"' if self.name else self.qualified_resource
        details = {k: v for k, v in (('name', self.name), ('group', self.group), ('kind', self.resource)) if v}
        return KubernetesApiError(403, 'Forbidden', f'{head} is forbidden: {text}', details)


def request_attributes(method: str, path: str, query: Mapping[str, str], user: UserInfo) -> RequestAttributes:
    """The attributes of a request, derived from its URL as the API server's ``RequestInfoFactory``."""
    parts = [p for p in path.split('/') if p]
    if len(parts) >= 3 and parts[0] == 'api':
        group, version, rest = '', parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == 'apis':
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return RequestAttributes(user, method.lower(), False, path=path)
    verb = {'POST': 'create', 'GET': 'get', 'HEAD': 'get', 'PUT': 'update', 'PATCH': 'patch',
            'DELETE': 'delete'}.get(method.upper(), method.lower())
    if rest[0] == 'watch':
        verb, rest = 'watch', rest[1:]
    namespace = ''
    if len(rest) >= 2 and rest[0] == 'namespaces':
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ''
    name = rest[1] if len(rest) > 1 else ''
    subresource = rest[2] if len(rest) > 2 else ''
    if not name and verb == 'get':
        verb = 'watch' if query.get('watch') in {'true', '1'} else 'list'
    if not name and verb in {'list', 'watch'}:
        match = re.fullmatch(r'metadata\.name==?([a-z0-9.-]+)', query.get('fieldSelector', ''))
        name = match[1] if match else ''
    if verb == 'delete' and not name:
        verb = 'deletecollection'
    return RequestAttributes(user, verb, True, path=path, group=group, version=version, resource=resource,
                             subresource=subresource, namespace=namespace, name=name)


# --- Rules --------------------------------------------------------------------------------------


def _has(values: Iterable[str] | None, wanted: str) -> bool:
    values = list(values or [])
    return '*' in values or wanted in values


def rule_allows(rule: Mapping[str, Any], attrs_: RequestAttributes) -> bool:
    """Whether one PolicyRule covers the request (``rbac.RuleAllows``)."""
    if not _has(rule.get('verbs'), attrs_.verb):
        return False
    if not attrs_.resource_request:
        for url in rule.get('nonResourceURLs') or []:
            if url == '*' or url == attrs_.path or (url.endswith('*') and attrs_.path.startswith(url[:-1])):
                return True
        return False
    if not _has(rule.get('apiGroups'), attrs_.group):
        return False
    combined = f'{attrs_.resource}/{attrs_.subresource}' if attrs_.subresource else attrs_.resource
    resources = rule.get('resources') or []
    if not ('*' in resources or combined in resources
            or (attrs_.subresource and f'*/{attrs_.subresource}' in resources)):
        return False
    names = rule.get('resourceNames') or []
    return not names or attrs_.name in names


def _subject_matches(subject: Mapping[str, Any], user: UserInfo, binding_namespace: str) -> bool:
    kind, name = subject.get('kind'), subject.get('name')
    if kind == 'User':
        return bool(name == user.name)
    if kind == 'Group':
        return name in user.groups
    if kind == 'ServiceAccount':
        namespace = subject.get('namespace') or binding_namespace
        return user.name == f'system:serviceaccount:{namespace}:{name}'
    return False


def _describe_subject(subject: Mapping[str, Any], binding_namespace: str) -> str:
    if subject.get('kind') == 'ServiceAccount':
        return f'ServiceAccount "{subject.get("name")}/{subject.get("namespace") or binding_namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def _selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in (selector.get('matchLabels') or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        ok = {'In': key in labels and labels[key] in values,
              'NotIn': key not in labels or labels[key] not in values,
              'Exists': key in labels, 'DoesNotExist': key not in labels}.get(op, False)
        if not ok:
            return False
    return bool(selector.get('matchLabels') or selector.get('matchExpressions'))


@attrs.frozen
class _Grant:
    """The rules one binding gives one subject, and how the API server describes the binding."""

    rules: tuple[Mapping[str, Any], ...]
    described: str
    error: str = ''


class Authorizer:
    """RBAC decisions from the Role/ClusterRole/RoleBinding/ClusterRoleBinding objects stored in the emulator."""

    def __init__(self, emulator: FixedKubernetesEmulator) -> None:
        self.emulator = emulator

    def _objects(self, plural: str, namespace: str | None = None) -> list[JsonDict]:
        return self.emulator.list_objects(f'{_V1}/{plural}', namespace)

    def _role_rules(self, kind: str, name: str, namespace: str) -> tuple[tuple[Mapping[str, Any], ...], str]:
        if kind == 'ClusterRole':
            role = self.emulator.get_object(f'{_V1}/clusterroles', None, name)
            missing = f'clusterrole.{RBAC} "{name}" not found'
        else:
            role = self.emulator.get_object(f'{_V1}/roles', namespace, name)
            missing = f'role.{RBAC} "{name}" not found'
        if role is None:
            return (), missing
        return tuple(r for r in role.get('rules') or [] if isinstance(r, dict)), ''

    def grants(self, user: UserInfo, namespace: str) -> Iterator[_Grant]:
        """The rules that apply to ``user`` in ``namespace`` ('' = cluster scope), binding by binding."""
        for binding in self._objects('clusterrolebindings'):
            ref = binding.get('roleRef') or {}
            for subject in binding.get('subjects') or []:
                if _subject_matches(subject, user, ''):
                    rules, error = self._role_rules('ClusterRole', str(ref.get('name')), '')
                    yield _Grant(rules, f'ClusterRoleBinding "{binding["metadata"]["name"]}" of ClusterRole '
                                        f'"{ref.get("name")}" to {_describe_subject(subject, "")}', error)
                    break
        if not namespace:
            return
        for binding in self._objects('rolebindings', namespace):
            ref = binding.get('roleRef') or {}
            for subject in binding.get('subjects') or []:
                if _subject_matches(subject, user, namespace):
                    rules, error = self._role_rules(str(ref.get('kind')), str(ref.get('name')), namespace)
                    yield _Grant(rules, f'RoleBinding "{binding["metadata"]["name"]}/{namespace}" of '
                                        f'{ref.get("kind")} "{ref.get("name")}" to '
                                        f'{_describe_subject(subject, namespace)}', error)
                    break

    def authorize(self, request: RequestAttributes) -> tuple[bool, str]:
        """(allowed, reason): the reason names the allowing binding, or the errors met when refused."""
        errors: list[str] = []
        namespace = request.namespace if request.resource_request else ''
        for grant in self.grants(request.user, namespace):
            if grant.error:
                errors.append(grant.error)
            if any(rule_allows(rule, request) for rule in grant.rules):
                return True, f'RBAC: allowed by {grant.described}'
        if not errors:
            return False, ''
        return False, 'RBAC: ' + (errors[0] if len(errors) == 1 else '[' + ', '.join(errors) + ']')

    def rules(self, user: UserInfo, namespace: str) -> tuple[list[JsonDict], list[JsonDict]]:
        """(resourceRules, nonResourceRules) of a SelfSubjectRulesReview for ``namespace``."""
        resource_rules: list[JsonDict] = []
        non_resource: list[JsonDict] = []
        for grant in self.grants(user, namespace):
            for rule in grant.rules:
                if rule.get('nonResourceURLs'):
                    if not grant.described.startswith('RoleBinding'):
                        entry = {'verbs': list(rule.get('verbs') or []),
                                 'nonResourceURLs': list(rule['nonResourceURLs'])}
                        if entry not in non_resource:
                            non_resource.append(entry)
                    continue
                entry = {k: list(rule[k]) for k in ('verbs', 'apiGroups', 'resources', 'resourceNames')
                         if rule.get(k)}
                if entry not in resource_rules:
                    resource_rules.append(entry)
        return resource_rules, non_resource

    def aggregate(self) -> None:
        """Fill aggregated ClusterRoles' rules from the ClusterRoles their selectors match (to a fixpoint)."""
        for _ in range(10):
            changed = False
            roles = self._objects('clusterroles')
            for role in roles:
                selectors = (role.get('aggregationRule') or {}).get('clusterRoleSelectors') or []
                if not selectors:
                    continue
                rules: list[Any] = []
                for other in roles:
                    if other['metadata']['name'] == role['metadata']['name']:
                        continue
                    labels = other['metadata'].get('labels') or {}
                    if any(_selector_matches(s, labels) for s in selectors):
                        rules += [r for r in other.get('rules') or [] if r not in rules]
                if rules != (role.get('rules') or []):
                    self.emulator.replace_object(f'{_V1}/clusterroles', {**role, 'rules': rules})
                    changed = True
            if not changed:
                return


# --- Access control: the emulator's hook ---------------------------------------------------------


class AccessControl:
    """Authentication, impersonation, RBAC and the access reviews, called before each request is served."""

    def __init__(self, emulator: FixedKubernetesEmulator, authenticator: Authenticator, *,
                 authorize: bool = True) -> None:
        self.emulator = emulator
        self.authenticator = authenticator
        self.authorizer: Authorizer | None = Authorizer(emulator) if authorize else None
        #: user name -> {(apiGroup, resource[/subresource], verb)} of allowed resource requests.
        self.allowed: dict[str, set[tuple[str, str, str]]] = collections.defaultdict(set)
        #: user name -> {(namespace or '', apiGroup, resource[/subresource], verb)}: where each user went.
        self.allowed_in: dict[str, set[tuple[str, str, str, str]]] = collections.defaultdict(set)
        #: (user name, code, message) of every refused request.
        self.refusals: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()
        self._aggregated_rv: tuple[str, ...] = ()

    async def __call__(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse | None:
        """None to let the emulator serve the request; else the answer (an error or a review)."""
        identity = self.authenticator.authenticate(request.headers.get('Authorization'))
        if identity is None:
            self._refuse('', 401, 'Unauthorized')
            return aiohttp.web.json_response(
                {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                 'message': 'Unauthorized', 'reason': 'Unauthorized', 'code': 401}, status=401)
        try:
            identity = self._impersonate(request, identity)
            attributes = request_attributes(request.method, request.path, request.query, identity)
            self._check(attributes)
            if attributes.resource_request and (attributes.group, attributes.resource) in _REVIEWS \
                    and request.method == 'POST':
                return await self._review(request, attributes)
        except KubernetesApiError as e:
            self._refuse(identity.name, e.code, e.message)
            return aiohttp.web.json_response(e.status(), status=e.code)
        return None

    def _refuse(self, who: str, code: int, message: str) -> None:
        with self._lock:
            self.refusals.append((who, code, message))

    def _check(self, attributes: RequestAttributes) -> None:
        if self.authorizer is None:
            return
        self._aggregate_if_changed()
        allowed, reason = self.authorizer.authorize(attributes)
        if not allowed:
            raise attributes.forbidden(reason)
        if attributes.resource_request:
            resource = (f'{attributes.resource}/{attributes.subresource}' if attributes.subresource
                        else attributes.resource)
            with self._lock:
                self.allowed[attributes.user.name].add((attributes.group, resource, attributes.verb))
                self.allowed_in[attributes.user.name].add(
                    (attributes.namespace, attributes.group, resource, attributes.verb))

    def _aggregate_if_changed(self) -> None:
        assert self.authorizer is not None
        versions = tuple(r['metadata']['resourceVersion'] for r in self.emulator.list_objects(f'{_V1}/clusterroles'))
        if versions != self._aggregated_rv:
            self.authorizer.aggregate()
            self._aggregated_rv = tuple(
                r['metadata']['resourceVersion'] for r in self.emulator.list_objects(f'{_V1}/clusterroles'))

    def _impersonate(self, request: aiohttp.web.BaseRequest, identity: UserInfo) -> UserInfo:
        """Act as ``Impersonate-User``/``-Group`` when allowed to ``impersonate`` them (else 403)."""
        name = request.headers.get('Impersonate-User')
        groups = request.headers.getall('Impersonate-Group', [])
        if not name:
            if groups:
                raise KubernetesApiError(400, 'BadRequest', 'requested impersonation of groups without a user')
            return identity
        sa = UserInfo(name).service_account
        checks = [RequestAttributes(identity, 'impersonate', True, group='', resource='serviceaccounts',
                                    namespace=sa[0], name=sa[1]) if sa else
                  RequestAttributes(identity, 'impersonate', True, group='', resource='users', name=name)]
        checks += [RequestAttributes(identity, 'impersonate', True, group='', resource='groups', name=g)
                   for g in groups]
        for check in checks:
            self._check(check)
        extra: list[str] = []
        if not groups and sa:
            extra = ['system:serviceaccounts', f'system:serviceaccounts:{sa[0]}']
        final = UNAUTHENTICATED if name == 'system:anonymous' else AUTHENTICATED
        return UserInfo(name, tuple(dict.fromkeys([*groups, *extra, final])))

    async def _review(self, request: aiohttp.web.BaseRequest, attributes: RequestAttributes) -> aiohttp.web.Response:
        raw = await request.read()
        try:
            if request.content_type == 'application/vnd.kubernetes.protobuf':
                body = _review_from_protobuf(raw, attributes.resource)
            else:
                body = json.loads(raw or b'{}')
        except ValueError as e:
            raise KubernetesApiError(400, 'BadRequest', f'the body could not be decoded: {e}') from e
        if not isinstance(body, dict) or not isinstance(body.get('spec'), dict):
            raise KubernetesApiError(400, 'BadRequest', 'the body must be an object with a spec')
        spec: JsonDict = body['spec']
        kind = {'subjectaccessreviews': 'SubjectAccessReview',
                'localsubjectaccessreviews': 'LocalSubjectAccessReview',
                'selfsubjectaccessreviews': 'SelfSubjectAccessReview',
                'selfsubjectrulesreviews': 'SelfSubjectRulesReview',
                'selfsubjectreviews': 'SelfSubjectReview'}[attributes.resource]
        user = attributes.user
        if attributes.resource == 'selfsubjectreviews':
            status: JsonDict = {'userInfo': {'username': user.name, 'groups': list(user.groups),
                                             **({'uid': user.uid} if user.uid else {})}}
        elif attributes.resource == 'selfsubjectrulesreviews':
            if self.authorizer is None:
                resource_rules, non_resource = [{'verbs': ['*'], 'apiGroups': ['*'], 'resources': ['*']}], \
                    [{'verbs': ['*'], 'nonResourceURLs': ['*']}]
            else:
                self._aggregate_if_changed()
                resource_rules, non_resource = self.authorizer.rules(user, str(spec.get('namespace') or ''))
            status = {'resourceRules': resource_rules, 'nonResourceRules': non_resource, 'incomplete': False}
        else:
            if attributes.resource in {'subjectaccessreviews', 'localsubjectaccessreviews'}:
                if not spec.get('user') and not spec.get('groups'):
                    raise KubernetesApiError(422, 'Invalid', f'{kind}.authorization.k8s.io "" is invalid: '
                                             'spec.user: Invalid value: "": at least one of user or group must '
                                             'be specified')
                user = UserInfo(str(spec.get('user') or ''), tuple(spec.get('groups') or ()),
                                str(spec.get('uid') or ''))
            status = self._access_review(spec, user, attributes)
        answer = {'kind': kind, 'apiVersion': f'{attributes.group}/{attributes.version}',
                  'metadata': {**(body.get('metadata') or {}), 'creationTimestamp': None},
                  'spec': spec, 'status': status}
        return aiohttp.web.json_response(answer, status=201)

    def _access_review(self, spec: JsonDict, user: UserInfo, attributes: RequestAttributes) -> JsonDict:
        resource = spec.get('resourceAttributes')
        non_resource = spec.get('nonResourceAttributes')
        if isinstance(resource, dict):
            namespace = str(resource.get('namespace') or '')
            if attributes.resource == 'localsubjectaccessreviews' and namespace != attributes.namespace:
                raise KubernetesApiError(400, 'BadRequest', f'spec.resourceAttributes.namespace must match '
                                         f'namespace: {attributes.namespace}')
            asked = RequestAttributes(user, str(resource.get('verb') or ''), True,
                                      group=str(resource.get('group') or ''),
                                      version=str(resource.get('version') or ''),
                                      resource=str(resource.get('resource') or ''),
                                      subresource=str(resource.get('subresource') or ''),
                                      namespace=namespace, name=str(resource.get('name') or ''))
        elif isinstance(non_resource, dict):
            asked = RequestAttributes(user, str(non_resource.get('verb') or ''), False,
                                      path=str(non_resource.get('path') or ''))
        else:
            raise KubernetesApiError(422, 'Invalid', 'spec.resourceAttributes: Invalid value: "null": exactly one '
                                     'of nonResourceAttributes or resourceAttributes must be specified')
        if self.authorizer is None:
            return {'allowed': True}
        self._aggregate_if_changed()
        allowed, reason = self.authorizer.authorize(asked)
        return {'allowed': allowed, **({'reason': reason} if reason else {})}


# --- Protobuf (kubectl's typed clients send the reviews as protobuf) ----------------------------


def _fields(data: bytes) -> dict[int, list[bytes | int]]:
    """The fields of one protobuf message (varints as int, length-delimited as bytes)."""
    out: dict[int, list[bytes | int]] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        result = shift = 0
        while True:
            if pos >= len(data):
                raise ValueError('truncated protobuf')
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        value: bytes | int
        if wire == 0:
            value = varint()
        elif wire == 2:
            size = varint()
            value, pos = data[pos:pos + size], pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        else:
            raise ValueError(f'unsupported protobuf wire type {wire}')
        out.setdefault(number, []).append(value)
    return out


def _text(fields: Mapping[int, list[bytes | int]], number: int) -> str:
    values = fields.get(number) or [b'']
    value = values[-1]
    return value.decode() if isinstance(value, bytes) else str(value)


def _message(fields: Mapping[int, list[bytes | int]], number: int) -> dict[int, list[bytes | int]] | None:
    values = fields.get(number)
    return _fields(values[-1]) if values and isinstance(values[-1], bytes) else None


def _review_from_protobuf(raw: bytes, resource: str) -> JsonDict:
    """Decode an access review sent as ``application/vnd.kubernetes.protobuf`` (the ``k8s\\0``
    envelope, ``runtime.Unknown``, then the review: spec = field 2) into its JSON form."""
    if not raw.startswith(b'k8s\x00'):
        raise ValueError('not a Kubernetes protobuf envelope')
    unknown = _fields(raw[4:])
    review = _message(unknown, 2) or {}
    spec = _message(review, 2) or {}
    out: JsonDict = {}
    if resource == 'selfsubjectrulesreviews':
        return {'spec': {'namespace': _text(spec, 1)}}
    if resource in {'subjectaccessreviews', 'localsubjectaccessreviews'}:
        # SubjectAccessReviewSpec: resourceAttributes 1, nonResourceAttributes 2, user 3, groups 4, uid 6
        out.update(user=_text(spec, 3), groups=[g.decode() for g in spec.get(4) or [] if isinstance(g, bytes)],
                   uid=_text(spec, 6))
    names = ('namespace', 'verb', 'group', 'version', 'resource', 'subresource', 'name')
    if (attributes := _message(spec, 1)) is not None:
        out['resourceAttributes'] = {n: _text(attributes, i) for i, n in enumerate(names, 1) if _text(attributes, i)}
    if (non_resource := _message(spec, 2)) is not None:
        out['nonResourceAttributes'] = {'path': _text(non_resource, 1), 'verb': _text(non_resource, 2)}
    return {'spec': out}


# --- Bootstrap policy ---------------------------------------------------------------------------

_READ = ['get', 'list', 'watch']
_WRITE = ['create', 'delete', 'deletecollection', 'patch', 'update']
_VIEW_CORE = ['configmaps', 'endpoints', 'events', 'limitranges', 'persistentvolumeclaims', 'pods', 'pods/log',
              'pods/status', 'replicationcontrollers', 'resourcequotas', 'serviceaccounts', 'services',
              'namespaces']
_VIEW_APPS = ['daemonsets', 'deployments', 'replicasets', 'statefulsets']


def _rule(groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str]) -> JsonDict:
    return {'apiGroups': list(groups), 'resources': list(resources), 'verbs': list(verbs)}


def _cluster_role(name: str, rules: list[JsonDict] | None = None, labels: Mapping[str, str] | None = None,
                  aggregate: Sequence[str] = ()) -> JsonDict:
    role: JsonDict = {
        'apiVersion': _V1, 'kind': 'ClusterRole',
        'metadata': {'name': name, 'labels': {'kubernetes.io/bootstrapping': 'rbac-defaults', **(labels or {})},
                     'annotations': {'rbac.authorization.kubernetes.io/autoupdate': 'true'}},
        'rules': rules or [],
    }
    if aggregate:
        role['aggregationRule'] = {'clusterRoleSelectors': [
            {'matchLabels': {f'{_AGGREGATE}{a}': 'true'}} for a in aggregate]}
    return role


def _cluster_binding(name: str, role: str, groups: Sequence[str]) -> JsonDict:
    return {'apiVersion': _V1, 'kind': 'ClusterRoleBinding',
            'metadata': {'name': name, 'labels': {'kubernetes.io/bootstrapping': 'rbac-defaults'},
                         'annotations': {'rbac.authorization.kubernetes.io/autoupdate': 'true'}},
            'roleRef': {'apiGroup': RBAC, 'kind': 'ClusterRole', 'name': role},
            'subjects': [{'apiGroup': RBAC, 'kind': 'Group', 'name': g} for g in groups]}


def bootstrap_policy() -> list[JsonDict]:
    """The bootstrap ClusterRoles and ClusterRoleBindings a new cluster has (see the module docstring)."""
    view_rules = [_rule([''], _VIEW_CORE, _READ), _rule(['apps'], _VIEW_APPS, _READ),
                  _rule(['batch'], ['jobs', 'cronjobs'], _READ),
                  _rule(['networking.k8s.io'], ['ingresses', 'networkpolicies'], _READ)]
    edit_rules = [_rule([''], [r for r in _VIEW_CORE if '/' not in r and r != 'namespaces'] + ['secrets'], _WRITE),
                  _rule([''], ['secrets'], _READ),
                  _rule([''], ['serviceaccounts'], ['impersonate']),
                  _rule(['apps'], _VIEW_APPS, _WRITE), _rule(['batch'], ['jobs', 'cronjobs'], _WRITE),
                  _rule(['networking.k8s.io'], ['ingresses', 'networkpolicies'], _WRITE)]
    admin_rules = [_rule([RBAC], ['roles', 'rolebindings'], [*_READ, *_WRITE]),
                   _rule([AUTHZ], ['localsubjectaccessreviews'], ['create'])]
    return [
        _cluster_role('cluster-admin', [_rule(['*'], ['*'], ['*']), {'nonResourceURLs': ['*'], 'verbs': ['*']}]),
        _cluster_binding('cluster-admin', 'cluster-admin', ['system:masters']),
        _cluster_role('system:discovery', [{'nonResourceURLs': [
            '/api', '/api/*', '/apis', '/apis/*', '/healthz', '/livez', '/openapi', '/openapi/*', '/readyz',
            '/version', '/version/'], 'verbs': ['get']}]),
        _cluster_binding('system:discovery', 'system:discovery', [AUTHENTICATED]),
        _cluster_role('system:basic-user', [
            _rule([AUTHZ], ['selfsubjectaccessreviews', 'selfsubjectrulesreviews'], ['create']),
            _rule([AUTHN], ['selfsubjectreviews'], ['create'])]),
        _cluster_binding('system:basic-user', 'system:basic-user', [AUTHENTICATED]),
        _cluster_role('system:public-info-viewer', [{'nonResourceURLs': [
            '/healthz', '/livez', '/readyz', '/version', '/version/'], 'verbs': ['get']}]),
        _cluster_binding('system:public-info-viewer', 'system:public-info-viewer', [AUTHENTICATED, UNAUTHENTICATED]),
        _cluster_role('admin', aggregate=['admin']),
        _cluster_role('edit', labels={f'{_AGGREGATE}admin': 'true'}, aggregate=['edit']),
        _cluster_role('view', labels={f'{_AGGREGATE}edit': 'true'}, aggregate=['view']),
        _cluster_role('system:aggregate-to-admin', admin_rules, {f'{_AGGREGATE}admin': 'true'}),
        _cluster_role('system:aggregate-to-edit', edit_rules, {f'{_AGGREGATE}edit': 'true'}),
        _cluster_role('system:aggregate-to-view', view_rules, {f'{_AGGREGATE}view': 'true'}),
    ]


def enable_access_control(emulator: FixedKubernetesEmulator, authenticator: Authenticator, *,
                          rbac: bool = True) -> AccessControl:
    """Authenticate every request (and authorize it with RBAC unless ``rbac=False``) from now on.

    With RBAC, the bootstrap policy is created (objects that exist already are kept).
    """
    access = AccessControl(emulator, authenticator, authorize=rbac)
    if rbac:
        for obj in bootstrap_policy():
            resource = f'{_V1}/{obj["kind"].lower()}s'
            if emulator.get_object(resource, None, obj['metadata']['name']) is None:
                emulator.create_object(resource, copy.deepcopy(obj))
        assert access.authorizer is not None
        access.authorizer.aggregate()
    emulator.access = access
    return access
