"""Authentication and RBAC of the emulator behave as a real API server's.

Each test states the documented Kubernetes behaviour it reproduces:
authentication https://kubernetes.io/docs/reference/access-authn-authz/authentication/,
RBAC https://kubernetes.io/docs/reference/access-authn-authz/rbac/, access reviews
https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access,
impersonation https://kubernetes.io/docs/reference/access-authn-authz/authentication/#user-impersonation.
The exact 403 wording is the API server's ``forbiddenMessage`` and ``NewForbidden``
(k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go, k8s.io/apimachinery/pkg/api/errors).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from oneie_operator.testing.authn import Authenticator, UserInfo, service_account
from oneie_operator.testing.cluster import TLSFiles, serve_emulator, write_kubeconfig
from oneie_operator.testing.emulator import FixedKubernetesEmulator
from oneie_operator.testing.rbac import AccessControl, enable_access_control

KUBECTL = '/usr/bin/kubectl'
V1 = 'rbac.authorization.k8s.io/v1'
WIDGETS = '/apis/test.example.com/v1/namespaces/{ns}/widgets'
GADGETS = '/apis/test.example.com/v1/gadgets'
TOKENS = {'admin': UserInfo('admin', ('system:masters',)), 'alice': UserInfo('alice'),
          'bob': UserInfo('bob', ('team',)), 'robot': service_account('ns', 'robot')}


_CONTEXT: dict[str, ssl.SSLContext] = {}


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    files = TLSFiles.create(tmp_path / 'tls')
    _CONTEXT['ssl'] = ssl.create_default_context(cafile=str(files.cert))
    return files


@pytest.fixture
async def cluster(crd_path: Path, emulator_factory: Callable[[], FixedKubernetesEmulator],
                  tls: TLSFiles) -> AsyncIterator[tuple[FixedKubernetesEmulator, str]]:
    """The emulator over HTTPS: kubectl sends bearer tokens only over TLS."""
    async with serve_emulator([crd_path], emulator=emulator_factory(), tls=tls) as (emulator, url):
        yield emulator, url
        assert not emulator.errors, 'the emulator crashed on some requests'


@pytest.fixture
def access(emulator: FixedKubernetesEmulator) -> AccessControl:
    authn = Authenticator()
    for token, identity in TOKENS.items():
        authn.add(token, identity)
    return enable_access_control(emulator, authn)


async def call(url: str, token: str | None, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None, **params: str) -> tuple[int, Any]:
    sent = {**({'Authorization': f'Bearer {token}'} if token else {}), **(headers or {})}
    data = None if body is None else json.dumps(body)
    if data is not None:
        sent.setdefault('Content-Type', 'application/json')
    async with aiohttp.ClientSession() as session, session.request(
            method, url + path, data=data, headers=sent, params=params, ssl=_CONTEXT['ssl']) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


def widget(name: str) -> dict[str, Any]:
    return {'apiVersion': 'test.example.com/v1', 'kind': 'Widget', 'metadata': {'name': name}, 'spec': {}}


def role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None,
         labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {'name': name, 'labels': labels or {}}
    if namespace:
        meta['namespace'] = namespace
    return {'apiVersion': V1, 'kind': kind, 'metadata': meta, 'rules': rules}


def binding(kind: str, name: str, role_kind: str, role_name: str, subjects: list[dict[str, Any]],
            namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {'name': name}
    if namespace:
        meta['namespace'] = namespace
    return {'apiVersion': V1, 'kind': kind, 'metadata': meta,
            'roleRef': {'apiGroup': 'rbac.authorization.k8s.io', 'kind': role_kind, 'name': role_name},
            'subjects': subjects}


def grant(emulator: FixedKubernetesEmulator, rules: list[dict[str, Any]], subject: dict[str, Any],
          namespace: str | None = 'ns', name: str = 'r') -> None:
    """Bind a new Role (in ``namespace``) or ClusterRole (``namespace=None``) to one subject."""
    if namespace:
        emulator.create_object(f'{V1}/roles', role('Role', name, rules, namespace))
        emulator.create_object(f'{V1}/rolebindings', binding('RoleBinding', name, 'Role', name, [subject], namespace))
    else:
        emulator.create_object(f'{V1}/clusterroles', role('ClusterRole', name, rules))
        emulator.create_object(f'{V1}/clusterrolebindings',
                               binding('ClusterRoleBinding', name, 'ClusterRole', name, [subject]))


ALICE = {'kind': 'User', 'name': 'alice', 'apiGroup': 'rbac.authorization.k8s.io'}


def rule(resources: list[str], verbs: list[str], groups: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {'apiGroups': ['test.example.com'] if groups is None else groups, 'resources': resources,
            'verbs': verbs, **extra}


# --- authentication -----------------------------------------------------------------------------


async def test_without_access_control_any_client_works(url: str) -> None:
    """Off by default: the existing tests, benchmarks and demo send no token (not a Kubernetes rule)."""
    assert (await call(url, None, 'GET', WIDGETS.format(ns='ns')))[0] == 200


async def test_anonymous_and_unknown_tokens_get_401(url: str, access: AccessControl) -> None:
    """Authentication: a request without credentials (anonymous auth off) or with a token no
    authenticator accepts is answered 401 with a ``Status`` of reason ``Unauthorized``."""
    expected = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                'message': 'Unauthorized', 'reason': 'Unauthorized', 'code': 401}
    assert await call(url, None, 'GET', '/api') == (401, expected)
    assert await call(url, 'nope', 'GET', WIDGETS.format(ns='ns')) == (401, expected)
    assert (await call(url, 'admin', 'GET', WIDGETS.format(ns='ns')))[0] == 200


async def test_identities_as_kubectl_auth_whoami_shows_them(url: str, access: AccessControl,
                                                            tmp_path: Path) -> None:
    """Authentication: users get the group ``system:authenticated``; a service account's token
    is the user ``system:serviceaccount:<ns>:<name>`` in ``system:serviceaccounts``,
    ``system:serviceaccounts:<ns>`` and ``system:authenticated`` (``kubectl auth whoami`` reads
    a SelfSubjectReview)."""
    out = await kubectl(tmp_path, url, 'robot', 'auth', 'whoami', '-o', 'json')
    info = json.loads(out)['status']['userInfo']
    assert info == {'username': 'system:serviceaccount:ns:robot', 'groups': [
        'system:serviceaccounts', 'system:serviceaccounts:ns', 'system:authenticated']}
    _, review = await call(url, 'bob', 'POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews',
                           {'apiVersion': 'authentication.k8s.io/v1', 'kind': 'SelfSubjectReview', 'spec': {}})
    assert review['status']['userInfo'] == {'username': 'bob', 'groups': ['team', 'system:authenticated']}


async def test_a_rotated_token_is_refused_and_its_successor_accepted(url: str, access: AccessControl) -> None:
    """Service-account tokens are rotated: once the old token is invalid the server answers 401
    to it, and the new token authenticates as the same service account."""
    grant(access.emulator, [rule(['widgets'], ['list'])],
          {'kind': 'ServiceAccount', 'name': 'robot', 'namespace': 'ns'})
    assert (await call(url, 'robot', 'GET', WIDGETS.format(ns='ns')))[0] == 200
    access.authenticator.rotate('robot', 'robot-2')
    assert (await call(url, 'robot', 'GET', WIDGETS.format(ns='ns')))[0] == 401
    assert (await call(url, 'robot-2', 'GET', WIDGETS.format(ns='ns')))[0] == 200


async def test_token_file_is_reread_when_it_changes(url: str, emulator: FixedKubernetesEmulator,
                                                    tmp_path: Path) -> None:
    """A static token file (``--token-auth-file``) maps tokens to users and groups; here it is also
    re-read when rewritten, so a test can revoke a token by editing it."""
    path = tmp_path / 'tokens.yaml'
    path.write_text(yaml.safe_dump({'users': [{'token': 't1', 'name': 'root', 'groups': ['system:masters']}]}))
    enable_access_control(emulator, Authenticator.from_file(path))
    assert (await call(url, 't1', 'GET', GADGETS))[0] == 200
    path.write_text(yaml.safe_dump({'users': [{'token': 't2', 'name': 'root', 'groups': ['system:masters']}]}))

    os.utime(path, (1, 1))  # a different mtime even within the file system's time resolution
    assert (await call(url, 't1', 'GET', GADGETS))[0] == 401
    assert (await call(url, 't2', 'GET', GADGETS))[0] == 200


async def test_anonymous_requests_when_enabled_see_only_public_info(url: str, access: AccessControl) -> None:
    """With anonymous authentication on, a request without a token is ``system:anonymous`` in
    ``system:unauthenticated``; the bootstrap role ``system:public-info-viewer`` lets it read
    ``/version`` and ``/healthz``, but not discovery (``system:discovery`` is for authenticated users)."""
    access.authenticator.anonymous = True
    assert (await call(url, None, 'GET', '/version'))[0] == 200
    status, body = await call(url, None, 'GET', '/api')
    assert status == 403
    assert body['message'] == 'forbidden: User "system:anonymous" cannot get path "/api"'


# --- RBAC ---------------------------------------------------------------------------------------


async def test_forbidden_answers_use_the_api_servers_wording(url: str, access: AccessControl) -> None:
    """A refused request is a 403 ``Status`` with reason ``Forbidden``, details {name, group,
    kind} and the message ``<resource>.<group> "<name>" is forbidden: User "<user>" cannot
    <verb> resource "<resource>" in API group "<group>" in the namespace "<ns>"`` (``at the
    cluster scope`` without a namespace; no name for a list; the bare resource in the core group)."""
    status, body = await call(url, 'alice', 'GET', WIDGETS.format(ns='tenant-acme') + '/x')
    assert status == 403
    assert body == {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                    'message': 'widgets.test.example.com "x" is forbidden: User "alice" cannot get resource '
                               '"widgets" in API group "test.example.com" in the namespace "tenant-acme"',
                    'reason': 'Forbidden', 'details': {'name': 'x', 'group': 'test.example.com', 'kind': 'widgets'},
                    'code': 403}
    _, body = await call(url, 'alice', 'GET', GADGETS)
    assert body['message'] == ('gadgets.test.example.com is forbidden: User "alice" cannot list resource "gadgets" '
                               'in API group "test.example.com" at the cluster scope')
    _, body = await call(url, 'alice', 'GET', '/api/v1/secrets')
    assert body['message'] == ('secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" '
                               'at the cluster scope')
    assert body['details'] == {'kind': 'secrets'}
    _, body = await call(url, 'alice', 'PATCH', WIDGETS.format(ns='ns') + '/w/status', {})
    assert body['message'].endswith('cannot patch resource "widgets/status" in API group "test.example.com" in the '
                                    'namespace "ns"')
    _, body = await call(url, 'alice', 'GET', '/metrics')
    assert body['message'] == 'forbidden: User "alice" cannot get path "/metrics"'


async def test_a_rolebinding_grants_in_its_namespace_only(url: str, access: AccessControl) -> None:
    """A RoleBinding grants the permissions of a Role, or of a ClusterRole, within its own
    namespace only."""
    grant(access.emulator, [rule(['widgets'], ['get', 'list', 'create'])], ALICE)
    access.emulator.create_object(f'{V1}/clusterroles', role('ClusterRole', 'gadget-reader', [rule(['widgets'],
                                                                                                   ['list'])]))
    access.emulator.create_object(f'{V1}/rolebindings', binding('RoleBinding', 'b', 'ClusterRole', 'gadget-reader',
                                                                [ALICE], 'other'))
    assert (await call(url, 'alice', 'POST', WIDGETS.format(ns='ns'), widget('w')))[0] == 201
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns') + '/w'))[0] == 200
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='other')))[0] == 200  # ClusterRole, in "other"
    assert (await call(url, 'alice', 'POST', WIDGETS.format(ns='other'), widget('w')))[0] == 403
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='third')))[0] == 403
    assert (await call(url, 'alice', 'GET', '/apis/test.example.com/v1/widgets'))[0] == 403  # all namespaces


async def test_a_clusterrolebinding_grants_everywhere(url: str, access: AccessControl) -> None:
    """A ClusterRoleBinding grants a ClusterRole's permissions across the whole cluster: in every
    namespace, across all namespaces, and on cluster-scoped resources."""
    grant(access.emulator, [rule(['widgets', 'gadgets'], ['list'])], ALICE, namespace=None)
    for path in (WIDGETS.format(ns='a'), WIDGETS.format(ns='b'), '/apis/test.example.com/v1/widgets', GADGETS):
        assert (await call(url, 'alice', 'GET', path))[0] == 200, path


async def test_verbs_from_the_url(url: str, access: AccessControl) -> None:
    """Request verbs: GET of a name is ``get``, of a collection ``list``; ``?watch=true`` and the
    ``/watch/`` prefix are ``watch``; POST ``create``; PUT ``update``; PATCH ``patch``; DELETE of
    a name ``delete``, of a collection ``deletecollection``."""
    emulator = access.emulator
    emulator.create_object('test.example.com/v1/widgets', widget('w'), 'ns')
    ns = WIDGETS.format(ns='ns')
    watch = '/apis/test.example.com/v1/watch/namespaces/ns/widgets'
    requests: list[tuple[str, str, str, dict[str, str]]] = [
        ('get', 'GET', ns + '/w', {}), ('list', 'GET', ns, {}), ('watch', 'GET', ns, {'watch': 'true',
                                                                                      'timeoutSeconds': '1'}),
        ('watch', 'GET', watch, {'timeoutSeconds': '1'}), ('patch', 'PATCH', ns + '/w', {}),
        ('update', 'PUT', ns + '/w', {}), ('delete', 'DELETE', ns + '/w', {}),
        ('deletecollection', 'DELETE', ns, {})]
    for index, (verb, method, path, params) in enumerate(requests):
        body = {'metadata': {}} if method in {'PATCH', 'PUT'} else None
        headers = {'Content-Type': 'application/merge-patch+json'} if method == 'PATCH' else {}
        if index != 3:  # the /watch/ prefix: watch was granted just before
            status, answer = await call(url, 'alice', method, path, body, headers, **params)
            assert status == 403 and f'cannot {verb} resource' in answer['message'], (verb, answer)
            grant(emulator, [rule(['widgets'], [verb])], ALICE, name=f'r{index}')
        status, answer = await call(url, 'alice', method, path, body, headers, **params)
        assert status in {200, 201}, (verb, answer)
        if verb == 'delete':
            emulator.create_object('test.example.com/v1/widgets', widget('w'), 'ns')
    # list alone does not allow watching, nor getting one object
    assert ('test.example.com', 'widgets', 'deletecollection') in access.allowed['alice']


async def test_subresources_are_separate_resources(url: str, access: AccessControl) -> None:
    """Subresources are named ``resource/subresource`` in rules: ``widgets`` does not cover
    ``widgets/status``; ``widgets/status`` covers only the status; ``*/status`` the status of
    every resource."""
    emulator = access.emulator
    emulator.create_object('test.example.com/v1/widgets', widget('w'), 'ns')
    status_path = WIDGETS.format(ns='ns') + '/w/status'
    headers = {'Content-Type': 'application/merge-patch+json'}
    grant(emulator, [rule(['widgets'], ['patch'])], ALICE, name='main')
    assert (await call(url, 'alice', 'PATCH', status_path, {'status': {}}, headers))[0] == 403
    assert (await call(url, 'alice', 'PATCH', WIDGETS.format(ns='ns') + '/w', {}, headers))[0] == 200
    grant(emulator, [rule(['*/status'], ['patch'])], ALICE, name='any-status')
    assert (await call(url, 'alice', 'PATCH', status_path, {'status': {}}, headers))[0] == 200
    grant(emulator, [rule(['widgets/status'], ['get'])], {**ALICE, 'name': 'bob'}, name='bob')
    assert (await call(url, 'bob', 'GET', status_path))[0] == 200
    assert (await call(url, 'bob', 'GET', WIDGETS.format(ns='ns') + '/w'))[0] == 403


async def test_resource_names_restrict_to_named_requests(url: str, access: AccessControl) -> None:
    """``resourceNames`` restricts a rule to those objects; a request without a name (list,
    create, deletecollection) is not covered by it."""
    emulator = access.emulator
    for name in ('mine', 'theirs'):
        emulator.create_object('test.example.com/v1/widgets', widget(name), 'ns')
    grant(emulator, [rule(['widgets'], ['get', 'list'], resourceNames=['mine'])], ALICE)
    ns = WIDGETS.format(ns='ns')
    assert (await call(url, 'alice', 'GET', ns + '/mine'))[0] == 200
    assert (await call(url, 'alice', 'GET', ns + '/theirs'))[0] == 403
    assert (await call(url, 'alice', 'GET', ns))[0] == 403
    # a list restricted to one name by a field selector names it (RequestInfo reads metadata.name)
    assert (await call(url, 'alice', 'GET', ns, fieldSelector='metadata.name=mine'))[0] == 200


async def test_wildcards_and_api_groups(url: str, access: AccessControl) -> None:
    """``*`` in verbs, resources or apiGroups matches anything; ``""`` is the core group only."""
    emulator = access.emulator
    grant(emulator, [rule(['*'], ['*'], groups=[''])], ALICE)
    assert (await call(url, 'alice', 'GET', '/api/v1/namespaces/ns/secrets'))[0] == 200
    assert (await call(url, 'alice', 'DELETE', '/api/v1/namespaces/ns/configmaps'))[0] == 200
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 403
    grant(emulator, [rule(['widgets'], ['list'], groups=['*'])], {**ALICE, 'name': 'bob'}, name='bob')
    assert (await call(url, 'bob', 'GET', WIDGETS.format(ns='ns')))[0] == 200


async def test_non_resource_urls(url: str, access: AccessControl) -> None:
    """``nonResourceURLs`` (in ClusterRoles bound cluster-wide) match a path exactly, or every
    path under a prefix ending in ``*``; their verb is the lower-cased HTTP method."""
    grant(access.emulator, [{'nonResourceURLs': ['/metrics', '/logs/*'], 'verbs': ['get']}], ALICE,
          namespace=None)
    assert (await call(url, 'alice', 'GET', '/metrics'))[0] != 403
    assert (await call(url, 'alice', 'GET', '/logs/x/y'))[0] != 403
    status, body = await call(url, 'alice', 'GET', '/metricsx')
    assert (status, body['message']) == (403, 'forbidden: User "alice" cannot get path "/metricsx"')
    assert (await call(url, 'alice', 'POST', '/metrics', {}))[0] == 403


async def test_subjects_users_groups_and_service_accounts(url: str, access: AccessControl) -> None:
    """Subjects are users, groups, or service accounts (a ServiceAccount subject names its
    namespace; a group ``system:serviceaccounts:<ns>`` covers every service account in it)."""
    emulator = access.emulator
    grant(emulator, [rule(['widgets'], ['list'])], {'kind': 'Group', 'name': 'team',
                                                   'apiGroup': 'rbac.authorization.k8s.io'}, name='team')
    grant(emulator, [rule(['gadgets'], ['list'])], {'kind': 'Group', 'name': 'system:serviceaccounts:ns',
                                                   'apiGroup': 'rbac.authorization.k8s.io'}, namespace=None, name='sa')
    grant(emulator, [rule(['widgets'], ['create'])], {'kind': 'ServiceAccount', 'name': 'robot', 'namespace': 'ns'},
          name='robot')
    assert (await call(url, 'bob', 'GET', WIDGETS.format(ns='ns')))[0] == 200
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 403
    assert (await call(url, 'robot', 'GET', GADGETS))[0] == 200
    assert (await call(url, 'robot', 'POST', WIDGETS.format(ns='ns'), widget('w')))[0] == 201
    assert (await call(url, 'bob', 'POST', WIDGETS.format(ns='ns'), widget('v')))[0] == 403


async def test_binding_to_a_missing_role_grants_nothing_and_says_so(url: str, access: AccessControl) -> None:
    """A binding whose role does not exist grants nothing; the RBAC authorizer adds the lookup
    error to the refusal (``: RBAC: role.rbac.authorization.k8s.io "ghost" not found``)."""
    access.emulator.create_object(f'{V1}/rolebindings', binding('RoleBinding', 'b', 'Role', 'ghost', [ALICE], 'ns'))
    status, body = await call(url, 'alice', 'GET', WIDGETS.format(ns='ns'))
    assert status == 403
    assert body['message'].endswith('in the namespace "ns": RBAC: role.rbac.authorization.k8s.io "ghost" not found')


async def test_rbac_objects_are_served_and_changes_apply_at_once(url: str, access: AccessControl) -> None:
    """rbac.authorization.k8s.io/v1 is served (discovery lists it) and a binding created through
    the API is in force for the next request."""
    _, groups = await call(url, 'admin', 'GET', '/apis')
    assert 'rbac.authorization.k8s.io' in {g['name'] for g in groups['groups']}
    _, resources = await call(url, 'admin', 'GET', '/apis/rbac.authorization.k8s.io/v1')
    assert {'roles', 'rolebindings', 'clusterroles', 'clusterrolebindings'} <= {r['name'] for r in
                                                                              resources['resources']}
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 403
    assert (await call(url, 'admin', 'POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles',
                       role('Role', 'r', [rule(['widgets'], ['list'])])))[0] == 201
    assert (await call(url, 'admin', 'POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings',
                       binding('RoleBinding', 'b', 'Role', 'r', [ALICE])))[0] == 201
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 200
    assert (await call(url, 'admin', 'DELETE', '/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings/b'))[
        0] == 200
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 403


async def test_aggregated_cluster_roles_collect_labelled_roles(url: str, access: AccessControl) -> None:
    """Aggregated ClusterRoles: the controller fills the ``rules`` of a ClusterRole with an
    ``aggregationRule`` from every ClusterRole its ``clusterRoleSelectors`` match, and keeps them
    in sync; the built-in ``admin``, ``edit`` and ``view`` aggregate the labels
    ``rbac.authorization.k8s.io/aggregate-to-admin|edit|view: "true"`` (view into edit, edit into admin)."""
    emulator = access.emulator
    label = {'rbac.authorization.k8s.io/aggregate-to-view': 'true'}
    emulator.create_object(f'{V1}/rolebindings', binding('RoleBinding', 'v', 'ClusterRole', 'view', [ALICE], 'ns'))
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 403
    assert (await call(url, 'alice', 'GET', '/api/v1/namespaces/ns/configmaps'))[0] == 200  # view's core rules
    assert (await call(url, 'alice', 'GET', '/api/v1/namespaces/ns/secrets'))[0] == 403  # view never reads Secrets
    assert (await call(url, 'admin', 'POST', f'/apis/{V1}/clusterroles',
                       role('ClusterRole', 'widgets-view', [rule(['widgets'], ['list'])], labels=label)))[0] == 201
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 200
    _, admin = await call(url, 'admin', 'GET', f'/apis/{V1}/clusterroles/admin')
    assert rule(['widgets'], ['list']) in admin['rules']  # view → edit → admin
    emulator.replace_object(f'{V1}/clusterroles', {**emulator.get_object(f'{V1}/clusterroles', None, 'widgets-view'),
                                                   'metadata': {'name': 'widgets-view', 'labels': {}}})
    assert (await call(url, 'alice', 'GET', WIDGETS.format(ns='ns')))[0] == 403


async def test_discovery_works_for_every_authenticated_identity(url: str, access: AccessControl,
                                                                tmp_path: Path) -> None:
    """The bootstrap ``system:discovery`` and ``system:basic-user`` roles are bound to
    ``system:authenticated``: any authenticated user can read ``/api``, ``/apis``, each group
    version, ``/version`` (``kubectl api-resources`` works) and ask what it may do."""
    for path in ('/api', '/api/v1', '/apis', '/apis/test.example.com/v1', '/version'):
        assert (await call(url, 'alice', 'GET', path))[0] == 200, path
    assert (await call(url, 'alice', 'GET', '/openapi/v2'))[0] == 404  # allowed; the emulator serves no OpenAPI
    out = await kubectl(tmp_path, url, 'alice', 'api-resources')
    assert 'widgets' in out
    assert (await kubectl(tmp_path, url, 'alice', 'auth', 'can-i', 'list', 'widgets', '-n', 'ns',
                          check=False)).strip() == 'no'


async def test_kubectl_auth_can_i_and_access_reviews(url: str, access: AccessControl, tmp_path: Path) -> None:
    """``kubectl auth can-i`` asks with a SelfSubjectAccessReview (``--list``: a
    SelfSubjectRulesReview); a SubjectAccessReview asks for any user and says which binding allowed it."""
    grant(access.emulator, [rule(['widgets'], ['get', 'list'])], ALICE)
    assert (await kubectl(tmp_path, url, 'alice', 'auth', 'can-i', 'list', 'widgets.test.example.com', '-n',
                          'ns')).strip() == 'yes'
    assert (await kubectl(tmp_path, url, 'alice', 'auth', 'can-i', 'delete', 'widgets.test.example.com', '-n',
                          'ns', check=False)).strip() == 'no'
    listed = await kubectl(tmp_path, url, 'alice', 'auth', 'can-i', '--list', '-n', 'ns')
    assert any(line.split()[:1] == ['widgets.test.example.com'] and '[get list]' in line
               for line in listed.splitlines()), listed
    status, review = await call(url, 'admin', 'POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
        'apiVersion': 'authorization.k8s.io/v1', 'kind': 'SubjectAccessReview',
        'spec': {'user': 'alice', 'resourceAttributes': {'namespace': 'ns', 'verb': 'get',
                                                         'group': 'test.example.com', 'resource': 'widgets'}}})
    assert status == 201
    assert review['status'] == {'allowed': True, 'reason': 'RBAC: allowed by RoleBinding "r/ns" of Role "r" to '
                                                           'User "alice"'}
    # creating SubjectAccessReviews is itself a permission that alice does not have
    assert (await call(url, 'alice', 'POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews',
                       {'spec': {'user': 'x'}}))[0] == 403


async def test_impersonation_needs_the_impersonate_verb(url: str, access: AccessControl, tmp_path: Path) -> None:
    """User impersonation (``kubectl --as``): the requester needs ``impersonate`` on ``users``
    (``groups`` for ``--as-group``, ``serviceaccounts`` for a service account), and the request
    is then authorized as the impersonated user."""
    grant(access.emulator, [rule(['widgets'], ['list'])], ALICE)
    assert (await kubectl(tmp_path, url, 'admin', 'auth', 'can-i', 'list', 'widgets.test.example.com', '-n', 'ns',
                          '--as', 'alice')).strip() == 'yes'
    assert (await kubectl(tmp_path, url, 'admin', 'auth', 'can-i', 'create', 'widgets.test.example.com', '-n',
                          'ns', '--as', 'alice', check=False)).strip() == 'no'
    status, body = await call(url, 'bob', 'GET', WIDGETS.format(ns='ns'), headers={'Impersonate-User': 'alice'})
    assert (status, body['message']) == (403, 'users "alice" is forbidden: User "bob" cannot impersonate resource '
                                              '"users" in API group "" at the cluster scope')
    grant(access.emulator, [rule(['users'], ['impersonate'], groups=[''], resourceNames=['alice'])],
          {**ALICE, 'name': 'bob'}, namespace=None, name='bob-as-alice')
    assert (await call(url, 'bob', 'GET', WIDGETS.format(ns='ns'), headers={'Impersonate-User': 'alice'}))[0] == 200
    # --as-group needs impersonate on groups too; the impersonated groups then count
    as_team = {'Impersonate-User': 'alice', 'Impersonate-Group': 'team'}
    status, body = await call(url, 'bob', 'GET', WIDGETS.format(ns='ns'), headers=as_team)
    assert (status, body['message']) == (403, 'groups "team" is forbidden: User "bob" cannot impersonate resource '
                                              '"groups" in API group "" at the cluster scope')
    _, review = await call(url, 'admin', 'POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews',
                           {'spec': {}}, headers=as_team)
    assert review['status']['userInfo'] == {'username': 'alice', 'groups': ['team', 'system:authenticated']}


async def test_local_subject_access_review_is_namespaced(url: str, access: AccessControl) -> None:
    """A LocalSubjectAccessReview asks about one namespace (its own); a different
    ``resourceAttributes.namespace`` is refused."""
    grant(access.emulator, [rule(['widgets'], ['get'])], ALICE)
    path = '/apis/authorization.k8s.io/v1/namespaces/ns/localsubjectaccessreviews'
    ask = {'user': 'alice', 'resourceAttributes': {'namespace': 'ns', 'verb': 'get', 'group': 'test.example.com',
                                                     'resource': 'widgets'}}
    status, review = await call(url, 'admin', 'POST', path, {'spec': ask})
    assert status == 201 and review['status']['allowed'] is True
    ask['resourceAttributes']['namespace'] = 'other'
    assert (await call(url, 'admin', 'POST', path, {'spec': ask}))[0] == 400


# --- kubectl ------------------------------------------------------------------------------------


async def kubectl(tmp_path: Path, url: str, token: str, *args: str, check: bool = True) -> str:
    config = write_kubeconfig(tmp_path / f'kubeconfig-{token}', url, token=token, ca_file=tmp_path / 'tls' /
                              'emulator.crt')
    process = await asyncio.create_subprocess_exec(
        KUBECTL, '--kubeconfig', str(config), '--cache-dir', str(tmp_path / f'cache-{token}'),
        '--request-timeout=10s', *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    if check:
        assert process.returncode == 0, err.decode()
    return out.decode()
