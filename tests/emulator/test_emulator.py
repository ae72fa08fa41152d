"""The fixed Kubernetes emulator behaves as a real API server where our tests rely on it.

Every test talks real HTTP to an emulator on 127.0.0.1 and states, in its docstring,
the behaviour of a real Kubernetes API server that it checks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import kubernetes
import pytest

from oneie_operator.testing.cluster import (
    load_crds,
    serve_emulator,
    serve_emulator_in_thread,
    write_kubeconfig,
)
from oneie_operator.testing.emulator import FixedKubernetesEmulator

KUBECTL = '/usr/bin/kubectl'
WIDGETS = '/apis/test.example.com/v1/namespaces/ns/widgets'  # see conftest.TEST_CRDS
GADGETS = '/apis/test.example.com/v1/gadgets'
SECRETS = '/api/v1/namespaces/ns/secrets'
MERGE = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'


# --- helpers ------------------------------------------------------------------------------------


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None,
               content_type: str = 'application/json', **params: str) -> tuple[int, Any]:
    data = None if body is None else body if isinstance(body, str) else json.dumps(body)
    headers = {'Content-Type': content_type} if data is not None else {}
    async with http.request(method, path, data=data, headers=headers, params=params) as response:
        return response.status, await response.json()


async def create(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, obj = await call(http, 'POST', path, body)
    assert status == 201, obj
    return obj


async def patch(http: aiohttp.ClientSession, path: str, body: Any, content_type: str = MERGE,
                expect: int = 200) -> dict[str, Any]:
    status, obj = await call(http, 'PATCH', path, body, content_type)
    assert status == expect, obj
    return obj


def widget(name: str, **labels: str) -> dict[str, Any]:
    return {'apiVersion': 'test.example.com/v1', 'kind': 'Widget',
            'metadata': {'name': name, 'labels': labels}, 'spec': {'size': 1}}


async def read_watch(http: aiohttp.ClientSession, path: str, **params: str) -> list[dict[str, Any]]:
    """Read a whole watch stream (until the server closes it, e.g. on timeoutSeconds)."""
    async with http.get(path, params={'watch': 'true', **params}) as response:
        assert response.status == 200
        return [json.loads(line) async for line in response.content if line.strip()]


async def eventually(check: Callable[[], Any], within: float = 20) -> Any:
    """Poll until ``check()`` returns something truthy (never a fixed sleep)."""
    deadline = time.monotonic() + within
    while not (result := check()):
        assert time.monotonic() < deadline, 'the condition was not met in time'
        await asyncio.sleep(0.02)
    return result


# --- object metadata ----------------------------------------------------------------------------


async def test_create_assigns_server_metadata(http: aiohttp.ClientSession) -> None:
    """Kubernetes answers a create with 201 and assigns uid, resourceVersion, generation=1,
    creationTimestamp (RFC 3339, UTC), and the namespace of the URL; kind/apiVersion are set."""
    obj = await create(http, WIDGETS, widget('w1'))
    meta = obj['metadata']
    assert re.fullmatch(r'[0-9a-f-]{36}', meta['uid'])
    assert meta['resourceVersion'].isdigit()
    assert meta['generation'] == 1
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', meta['creationTimestamp'])
    assert meta['namespace'] == 'ns'
    assert (obj['apiVersion'], obj['kind']) == ('test.example.com/v1', 'Widget')
    status, fetched = await call(http, 'GET', f'{WIDGETS}/w1')
    assert status == 200 and fetched == obj


async def test_resource_version_is_one_global_increasing_counter(http: aiohttp.ClientSession) -> None:
    """resourceVersion comes from one cluster-wide counter (etcd's revision): it grows across
    resources, and a list carries the current one."""
    a = await create(http, WIDGETS, widget('a'))
    b = await create(http, SECRETS, {'metadata': {'name': 'b'}})
    c = await create(http, GADGETS, {'metadata': {'name': 'c'}})
    rvs = [int(o['metadata']['resourceVersion']) for o in (a, b, c)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    _, listed = await call(http, 'GET', WIDGETS)
    assert int(listed['metadata']['resourceVersion']) >= rvs[-1]


async def test_generate_name(http: aiohttp.ClientSession) -> None:
    """With generateName and no name, Kubernetes appends a random 5-character suffix: several
    objects with the same prefix coexist (Kopf posts all its Events this way)."""
    names = set()
    for _ in range(5):
        obj = await create(http, '/api/v1/namespaces/ns/events', {
            'metadata': {'generateName': 'kopf-event-'}, 'message': 'hello'})
        assert re.fullmatch(r'kopf-event-[a-z0-9]{5}', obj['metadata']['name'])
        names.add(obj['metadata']['name'])
    assert len(names) == 5


async def test_namespace_comes_from_the_url(http: aiohttp.ClientSession) -> None:
    """The namespace of the URL is filled in; a different one in the body is a 400 BadRequest;
    a cluster-scoped object has no namespace."""
    obj = await create(http, WIDGETS, widget('w'))
    assert obj['metadata']['namespace'] == 'ns'
    status, error = await call(http, 'POST', WIDGETS, {'metadata': {'name': 'x', 'namespace': 'other'}})
    assert (status, error['reason']) == (400, 'BadRequest')
    gadget = await create(http, GADGETS, {'metadata': {'name': 'g', 'namespace': 'ns'}})
    assert 'namespace' not in gadget['metadata']


async def test_generation_changes_only_with_the_spec(http: aiohttp.ClientSession) -> None:
    """For a CRD with a status subresource, generation is bumped by changes outside metadata and
    status; metadata-only and status changes get a new resourceVersion but the same generation."""
    obj = await create(http, WIDGETS, widget('w'))
    labelled = await patch(http, f'{WIDGETS}/w', {'metadata': {'labels': {'x': 'y'}}})
    assert labelled['metadata']['generation'] == 1
    assert int(labelled['metadata']['resourceVersion']) > int(obj['metadata']['resourceVersion'])
    with_status = await patch(http, f'{WIDGETS}/w/status', {'status': {'phase': 'Ready'}})
    assert with_status['metadata']['generation'] == 1
    resized = await patch(http, f'{WIDGETS}/w', {'spec': {'size': 2}})
    assert resized['metadata']['generation'] == 2


async def test_noop_update_keeps_the_resource_version(http: aiohttp.ClientSession) -> None:
    """An update that changes nothing is a no-op: same resourceVersion, no watch event."""
    obj = await create(http, WIDGETS, widget('w'))
    same = await patch(http, f'{WIDGETS}/w', {'spec': {'size': 1}})
    assert same['metadata']['resourceVersion'] == obj['metadata']['resourceVersion']


async def test_server_managed_metadata_cannot_be_changed(http: aiohttp.ClientSession) -> None:
    """uid, creationTimestamp and generation are set by the server; writes cannot change them."""
    obj = await create(http, WIDGETS, widget('w'))
    patched = await patch(http, f'{WIDGETS}/w', {'metadata': {'uid': 'x', 'generation': 9,
                                                               'creationTimestamp': 'y'}})
    for field in ('uid', 'generation', 'creationTimestamp'):
        assert patched['metadata'][field] == obj['metadata'][field]


# --- status subresource -------------------------------------------------------------------------


async def test_status_subresource_is_separate(http: aiohttp.ClientSession) -> None:
    """With the status subresource, create and main-object writes ignore .status, and writes to
    /status change only .status (the spec in the same request is ignored)."""
    obj = await create(http, WIDGETS, {**widget('w'), 'status': {'phase': 'Fake'}})
    assert 'status' not in obj
    patched = await patch(http, f'{WIDGETS}/w/status', {'spec': {'size': 9}, 'status': {'phase': 'Ready'}})
    assert patched['spec'] == {'size': 1} and patched['status'] == {'phase': 'Ready'}
    patched = await patch(http, f'{WIDGETS}/w', {'spec': {'size': 2}, 'status': {'phase': 'Hacked'}})
    assert patched['spec'] == {'size': 2} and patched['status'] == {'phase': 'Ready'}
    status, replaced = await call(http, 'PUT', f'{WIDGETS}/w/status', {
        **patched, 'spec': {'size': 7}, 'status': {'phase': 'Done'}})
    assert status == 200 and replaced['spec'] == {'size': 2} and replaced['status'] == {'phase': 'Done'}


async def test_status_without_subresource_is_an_ordinary_field(http: aiohttp.ClientSession) -> None:
    """Without the status subresource, status is part of the object and /status does not exist."""
    obj = await create(http, GADGETS, {'metadata': {'name': 'g'}, 'status': {'phase': 'Set'}})
    assert obj['status'] == {'phase': 'Set'}
    patched = await patch(http, f'{GADGETS}/g', {'status': {'phase': 'Changed'}})
    assert patched['status'] == {'phase': 'Changed'}
    status, _ = await call(http, 'PATCH', f'{GADGETS}/g/status', {'status': {}}, MERGE)
    assert status == 404


# --- patches and concurrency --------------------------------------------------------------------


async def test_merge_patch(http: aiohttp.ClientSession) -> None:
    """A JSON merge patch (RFC 7386) merges dicts, replaces lists, and deletes keys set to null."""
    await create(http, WIDGETS, {**widget('w'), 'spec': {'a': 1, 'b': 2, 'items': [1, 2]}})
    patched = await patch(http, f'{WIDGETS}/w', {'spec': {'a': None, 'c': 3, 'items': [3]}})
    assert patched['spec'] == {'b': 2, 'c': 3, 'items': [3]}


async def test_json_patch_and_failed_test_op(
        http: aiohttp.ClientSession, emulator: FixedKubernetesEmulator) -> None:
    """A JSON patch (RFC 6902) applies its ops in order; a failed `test` op (as Kopf sends on the
    resourceVersion when it edits finalizers) is a 422 and changes nothing."""
    obj = await create(http, WIDGETS, widget('w'))
    rv = obj['metadata']['resourceVersion']
    patched = await patch(http, f'{WIDGETS}/w', [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
        {'op': 'add', 'path': '/metadata/finalizers', 'value': ['a/b']},
        {'op': 'add', 'path': '/metadata/finalizers/-', 'value': 'c/d'},
        {'op': 'replace', 'path': '/spec/size', 'value': 5},
        {'op': 'copy', 'from': '/spec/size', 'path': '/spec/copy'},
        {'op': 'move', 'from': '/spec/copy', 'path': '/spec/moved'},
        {'op': 'remove', 'path': '/metadata/finalizers/0'},
    ], JSON_PATCH)
    assert patched['metadata']['finalizers'] == ['c/d']
    assert patched['spec'] == {'size': 5, 'moved': 5}
    error = await patch(http, f'{WIDGETS}/w', [
        {'op': 'test', 'path': '/metadata/resourceVersion', 'value': rv},
        {'op': 'remove', 'path': '/metadata/finalizers'},
    ], JSON_PATCH, expect=422)
    assert error['kind'] == 'Status' and error['code'] == 422
    assert emulator.get_object('test.example.com/v1/widgets', 'ns', 'w') == patched


async def test_stale_resource_version_is_a_conflict(http: aiohttp.ClientSession) -> None:
    """Optimistic concurrency: a PUT or PATCH whose metadata.resourceVersion is not the current
    one is a 409 Conflict; with the current one it succeeds."""
    obj = await create(http, WIDGETS, widget('w'))
    stale = obj['metadata']['resourceVersion']
    fresh = await patch(http, f'{WIDGETS}/w', {'spec': {'size': 2}})
    error = await patch(http, f'{WIDGETS}/w', {'metadata': {'resourceVersion': stale}, 'spec': {'size': 3}},
                        expect=409)
    assert (error['reason'], error['code']) == ('Conflict', 409)
    status, error = await call(http, 'PUT', f'{WIDGETS}/w', obj)
    assert (status, error['reason']) == (409, 'Conflict')
    status, replaced = await call(http, 'PUT', f'{WIDGETS}/w', {**fresh, 'spec': {'size': 4}})
    assert status == 200 and replaced['spec'] == {'size': 4}


async def test_strategic_merge_and_server_side_apply(http: aiohttp.ClientSession) -> None:
    """A strategic merge patch and a server-side apply (application/apply-patch+yaml, which also
    creates a missing object, 201) are honoured -- here both as merges of the given fields."""
    yaml_body = 'apiVersion: v1\nkind: Secret\nmetadata: {name: s, labels: {a: b}}\nstringData: {k: v}\n'
    status, created = await call(http, 'PATCH', f'{SECRETS}/s', yaml_body, 'application/apply-patch+yaml',
                                 fieldManager='test')
    assert status == 201 and created['data'] == {'k': base64.b64encode(b'v').decode()}
    status, applied = await call(http, 'PATCH', f'{SECRETS}/s', yaml_body.replace('{a: b}', '{a: c}'),
                                 'application/apply-patch+yaml', fieldManager='test')
    assert status == 200 and applied['metadata']['labels'] == {'a': 'c'}
    merged = await patch(http, f'{SECRETS}/s', {'metadata': {'labels': {'x': 'y'}}, '$patch': 'merge'},
                         'application/strategic-merge-patch+json')
    assert merged['metadata']['labels'] == {'a': 'c', 'x': 'y'} and '$patch' not in merged


async def test_status_codes_of_create_conflict_and_not_found(http: aiohttp.ClientSession) -> None:
    """Create is 201; creating an existing name is 409 AlreadyExists; a missing object is a 404
    with a Status of reason NotFound (what the kubernetes client and Kopf check)."""
    await create(http, WIDGETS, widget('w'))
    status, error = await call(http, 'POST', WIDGETS, widget('w'))
    assert (status, error['reason'], error['kind']) == (409, 'AlreadyExists', 'Status')
    for method in ('GET', 'DELETE'):
        status, error = await call(http, method, f'{WIDGETS}/missing')
        assert (status, error['reason']) == (404, 'NotFound')
        assert error['details'] == {'name': 'missing', 'group': 'test.example.com', 'kind': 'widgets'}
    status, error = await call(http, 'PATCH', f'{WIDGETS}/missing', {}, MERGE)
    assert (status, error['reason']) == (404, 'NotFound')
    status, error = await call(http, 'GET', '/apis/test.example.com/v1/unknowns')
    assert (status, error['reason']) == (404, 'NotFound')


async def test_put_replaces_the_object(http: aiohttp.ClientSession) -> None:
    """PUT replaces the whole object (fields absent from the body are gone), keeping the
    server-managed metadata; a name different from the URL's is a 400."""
    obj = await create(http, WIDGETS, {**widget('w'), 'spec': {'a': 1, 'b': 2}})
    body = {**obj, 'spec': {'c': 3}}
    del body['metadata']['resourceVersion']  # an unconditional update
    status, replaced = await call(http, 'PUT', f'{WIDGETS}/w', body)
    assert status == 200 and replaced['spec'] == {'c': 3}
    assert replaced['metadata']['uid'] == obj['metadata']['uid']
    assert replaced['metadata']['generation'] == 2
    status, error = await call(http, 'PUT', f'{WIDGETS}/w', {**body, 'metadata': {'name': 'other'}})
    assert (status, error['reason']) == (400, 'BadRequest')


async def test_dry_run_stores_nothing(http: aiohttp.ClientSession, emulator: FixedKubernetesEmulator) -> None:
    """With dryRun=All, requests are validated and answered as usual, but nothing is stored."""
    status, obj = await call(http, 'POST', WIDGETS, widget('w'), dryRun='All')
    assert status == 201 and obj['metadata']['name'] == 'w'
    assert emulator.get_object('test.example.com/v1/widgets', 'ns', 'w') is None
    stored = await create(http, WIDGETS, widget('w'))
    status, _ = await call(http, 'POST', WIDGETS, widget('w'), dryRun='All')
    assert status == 409  # still validated
    status, obj = await call(http, 'PATCH', f'{WIDGETS}/w', {'spec': {'size': 5}}, MERGE, dryRun='All')
    assert status == 200 and obj['spec'] == {'size': 5}
    status, _ = await call(http, 'DELETE', f'{WIDGETS}/w', dryRun='All')
    assert status == 200
    assert emulator.get_object('test.example.com/v1/widgets', 'ns', 'w') == stored


# --- deletion -----------------------------------------------------------------------------------


async def test_delete_without_finalizers_is_immediate(http: aiohttp.ClientSession) -> None:
    """An object without finalizers is gone as soon as it is deleted."""
    await create(http, WIDGETS, widget('w'))
    status, _ = await call(http, 'DELETE', f'{WIDGETS}/w')
    assert status == 200
    status, _ = await call(http, 'GET', f'{WIDGETS}/w')
    assert status == 404


async def test_delete_with_finalizers_waits_for_them(http: aiohttp.ClientSession) -> None:
    """Deleting an object with finalizers only sets deletionTimestamp; the object stays (and can
    still be written) until the last finalizer is removed, then it is gone."""
    await create(http, WIDGETS, {**widget('w'), 'metadata': {'name': 'w', 'finalizers': ['a/x', 'b/y']}})
    status, deleting = await call(http, 'DELETE', f'{WIDGETS}/w')
    assert status == 200 and deleting['metadata']['deletionTimestamp']
    patched = await patch(http, f'{WIDGETS}/w', {'metadata': {'finalizers': ['b/y']}})
    assert patched['metadata']['deletionTimestamp'] == deleting['metadata']['deletionTimestamp']
    status, _ = await call(http, 'GET', f'{WIDGETS}/w')
    assert status == 200
    await patch(http, f'{WIDGETS}/w', {'metadata': {'finalizers': None}})
    status, _ = await call(http, 'GET', f'{WIDGETS}/w')
    assert status == 404


async def test_delete_preconditions(http: aiohttp.ClientSession) -> None:
    """DeleteOptions.preconditions (uid, resourceVersion) that do not match are a 409 Conflict."""
    obj = await create(http, WIDGETS, widget('w'))
    status, _ = await call(http, 'DELETE', f'{WIDGETS}/w', {'preconditions': {'uid': 'nope'}})
    assert status == 409
    status, _ = await call(http, 'DELETE', f'{WIDGETS}/w', {'preconditions': {'uid': obj['metadata']['uid']}})
    assert status == 200


async def test_owner_references_are_garbage_collected(
        http: aiohttp.ClientSession, emulator: FixedKubernetesEmulator) -> None:
    """When an owner is really gone, the garbage collector deletes the objects whose
    ownerReferences name its uid -- unless another owner still lives; dependents with
    finalizers are only marked for deletion; propagationPolicy=Orphan keeps them."""
    owner = await create(http, WIDGETS, {**widget('owner'),
                                         'metadata': {'name': 'owner', 'finalizers': ['x/y']}})
    other = await create(http, WIDGETS, widget('other'))

    def ref(obj: dict[str, Any]) -> dict[str, Any]:
        return {'apiVersion': 'test.example.com/v1', 'kind': 'Widget', 'name': obj['metadata']['name'],
                'uid': obj['metadata']['uid'], 'controller': True}

    await create(http, SECRETS, {'metadata': {'name': 'owned', 'ownerReferences': [ref(owner)]}})
    await create(http, SECRETS, {'metadata': {'name': 'shared', 'ownerReferences': [ref(owner), ref(other)]}})
    await create(http, SECRETS, {'metadata': {'name': 'held', 'ownerReferences': [ref(owner)],
                                              'finalizers': ['keep/me']}})
    await call(http, 'DELETE', f'{WIDGETS}/owner')
    assert emulator.get_object('v1/secrets', 'ns', 'owned') is not None  # the owner still exists
    await patch(http, f'{WIDGETS}/owner', {'metadata': {'finalizers': []}})
    assert emulator.get_object('v1/secrets', 'ns', 'owned') is None
    assert emulator.get_object('v1/secrets', 'ns', 'shared') is not None
    held = emulator.get_object('v1/secrets', 'ns', 'held')
    assert held is not None and held['metadata']['deletionTimestamp']

    orphan = await create(http, SECRETS, {'metadata': {'name': 'orphan', 'ownerReferences': [ref(other)]}})
    status, _ = await call(http, 'DELETE', f'{WIDGETS}/other', {'propagationPolicy': 'Orphan'})
    assert status == 200
    assert emulator.get_object('v1/secrets', 'ns', 'orphan') == orphan


async def test_delete_collection(http: aiohttp.ClientSession, emulator: FixedKubernetesEmulator) -> None:
    """DELETE on a collection deletes the objects matching its selectors, and only them."""
    for name, app in [('a', 'x'), ('b', 'x'), ('c', 'y')]:
        await create(http, WIDGETS, widget(name, app=app))
    status, deleted = await call(http, 'DELETE', WIDGETS, labelSelector='app=x')
    assert status == 200 and sorted(o['metadata']['name'] for o in deleted['items']) == ['a', 'b']
    remaining = emulator.list_objects('test.example.com/v1/widgets')
    assert [o['metadata']['name'] for o in remaining] == ['c']


# --- secrets and namespaces ---------------------------------------------------------------------


async def test_secret_string_data_becomes_data(http: aiohttp.ClientSession) -> None:
    """stringData is a write-only convenience: it is merged into base64 data on every write."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    obj = await create(http, SECRETS, {'metadata': {'name': 's'}, 'data': {'a': b64('1')},
                                       'stringData': {'b': '2'}})
    assert obj['data'] == {'a': b64('1'), 'b': b64('2')} and 'stringData' not in obj
    assert obj['type'] == 'Opaque'
    patched = await patch(http, f'{SECRETS}/s', {'stringData': {'a': 'new'}})
    assert patched['data'] == {'a': b64('new'), 'b': b64('2')} and 'stringData' not in patched


async def test_namespaces(http: aiohttp.ClientSession, emulator: FixedKubernetesEmulator) -> None:
    """Namespaces are cluster-scoped objects at /api/v1/namespaces[/NAME] with phase Active;
    deleting one deletes the objects in it."""
    status, listed = await call(http, 'GET', '/api/v1/namespaces')
    assert status == 200 and listed['kind'] == 'NamespaceList'
    assert 'default' in [ns['metadata']['name'] for ns in listed['items']]
    created = await create(http, '/api/v1/namespaces', {'metadata': {'name': 'explicit'}})
    assert created['status'] == {'phase': 'Active'} and 'namespace' not in created['metadata']
    status, fetched = await call(http, 'GET', '/api/v1/namespaces/explicit')
    assert status == 200 and fetched['metadata']['uid'] == created['metadata']['uid']
    await create(http, WIDGETS, widget('w'))  # the namespace "ns" is created implicitly
    status, _ = await call(http, 'GET', '/api/v1/namespaces/ns')
    assert status == 200
    status, _ = await call(http, 'DELETE', '/api/v1/namespaces/ns')
    assert status == 200
    assert emulator.get_object('test.example.com/v1/widgets', 'ns', 'w') is None
    status, _ = await call(http, 'GET', '/api/v1/namespaces/ns')
    assert status == 404


# --- lists, selectors and watches ---------------------------------------------------------------


@pytest.mark.parametrize('selector, expected', [
    ('app=web', ['a', 'b']),
    ('app==web', ['a', 'b']),
    ('app!=web', ['c', 'd']),
    ('app in (web, db)', ['a', 'b', 'c']),
    ('app notin (web,db)', ['d']),
    ('tier', ['a', 'c']),
    ('!tier', ['b', 'd']),
    ('app=web,tier=front', ['a']),
])
async def test_label_selectors(http: aiohttp.ClientSession, selector: str, expected: list[str]) -> None:
    """Label selectors filter lists with =, ==, != (also matching objects without the key),
    in, notin (also matching objects without the key), existence and non-existence."""
    await create(http, WIDGETS, widget('a', app='web', tier='front'))
    await create(http, WIDGETS, widget('b', app='web'))
    await create(http, WIDGETS, widget('c', app='db', tier='back'))
    await create(http, WIDGETS, widget('d'))
    status, listed = await call(http, 'GET', WIDGETS, labelSelector=selector)
    assert status == 200 and [o['metadata']['name'] for o in listed['items']] == expected


async def test_field_selectors_and_list_format(http: aiohttp.ClientSession) -> None:
    """Field selectors metadata.name, metadata.namespace (and type for secrets) filter lists; a
    cluster-wide list of a namespaced resource has all namespaces; lists have kind <Kind>List."""
    await create(http, SECRETS, {'metadata': {'name': 'a'}, 'type': 'kubernetes.io/tls'})
    await create(http, SECRETS, {'metadata': {'name': 'b'}})
    await create(http, '/api/v1/namespaces/other/secrets', {'metadata': {'name': 'a'}})

    async def names(path: str, selector: str) -> list[str]:
        status, listed = await call(http, 'GET', path, fieldSelector=selector)
        assert status == 200 and listed['kind'] == 'SecretList' and listed['apiVersion'] == 'v1'
        return [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in listed['items']]

    assert await names('/api/v1/secrets', 'metadata.name=a') == ['ns/a', 'other/a']
    assert await names('/api/v1/secrets', 'metadata.namespace=other') == ['other/a']
    assert await names('/api/v1/secrets', 'metadata.namespace!=other') == ['ns/a', 'ns/b']
    assert await names(SECRETS, 'type=Opaque') == ['ns/b']
    assert await names('/api/v1/secrets', 'metadata.name=a,type=kubernetes.io/tls') == ['ns/a']


async def test_watch_sends_existing_objects_then_changes_until_timeout(http: aiohttp.ClientSession) -> None:
    """A watch without resourceVersion first sends the existing objects as ADDED, then the
    changes as they happen, and the server closes it after timeoutSeconds."""
    await create(http, WIDGETS, widget('old'))
    started = time.monotonic()
    watch = asyncio.create_task(read_watch(http, WIDGETS, timeoutSeconds='1'))
    await asyncio.sleep(0.2)  # let the watch start: it must see these as live changes
    await create(http, WIDGETS, widget('new'))
    await patch(http, f'{WIDGETS}/new', {'spec': {'size': 2}})
    await call(http, 'DELETE', f'{WIDGETS}/new')
    events = await watch
    assert 1 <= time.monotonic() - started < 5
    assert [(e['type'], e['object']['metadata']['name']) for e in events] == [
        ('ADDED', 'old'), ('ADDED', 'new'), ('MODIFIED', 'new'), ('DELETED', 'new')]
    rvs = [int(e['object']['metadata']['resourceVersion']) for e in events[1:]]
    assert rvs == sorted(rvs)


async def test_watch_resumes_from_a_resource_version(http: aiohttp.ClientSession) -> None:
    """A watch with resourceVersion sends only the events after it (no ADDED replay of the
    existing objects): this is how Kopf continues after its initial list."""
    await create(http, WIDGETS, widget('before'))
    _, listed = await call(http, 'GET', WIDGETS)
    await create(http, WIDGETS, widget('after'))
    await patch(http, f'{WIDGETS}/before', {'spec': {'size': 3}})
    events = await read_watch(http, WIDGETS, resourceVersion=listed['metadata']['resourceVersion'],
                              timeoutSeconds='1')
    assert [(e['type'], e['object']['metadata']['name']) for e in events] == [
        ('ADDED', 'after'), ('MODIFIED', 'before')]


async def test_watch_with_selectors(http: aiohttp.ClientSession) -> None:
    """Selectors apply to watches; an object that starts matching is ADDED, one that stops
    matching is DELETED for that watcher."""
    _, listed = await call(http, 'GET', WIDGETS)
    await create(http, WIDGETS, widget('w', app='other'))
    await patch(http, f'{WIDGETS}/w', {'metadata': {'labels': {'app': 'web'}}})
    await patch(http, f'{WIDGETS}/w', {'spec': {'size': 2}})
    await patch(http, f'{WIDGETS}/w', {'metadata': {'labels': {'app': 'db'}}})
    await create(http, WIDGETS, widget('x', app='web'))
    events = await read_watch(http, WIDGETS, resourceVersion=listed['metadata']['resourceVersion'],
                              timeoutSeconds='1', labelSelector='app=web', fieldSelector='metadata.name=w')
    assert [e['type'] for e in events] == ['ADDED', 'MODIFIED', 'DELETED']


@pytest.mark.parametrize('emulator_factory', [lambda: FixedKubernetesEmulator(watch_history=5)])
async def test_watch_from_a_too_old_resource_version_is_gone(http: aiohttp.ClientSession) -> None:
    """A watch from a resourceVersion older than the kept history gets an ERROR event with a
    410 Expired Status (real Kubernetes after etcd compaction); a recent one still resumes."""
    _, listed = await call(http, 'GET', WIDGETS)
    for i in range(10):
        await create(http, WIDGETS, widget(f'w{i}'))
    events = await read_watch(http, WIDGETS, resourceVersion=listed['metadata']['resourceVersion'],
                              timeoutSeconds='1')
    assert len(events) == 1 and events[0]['type'] == 'ERROR'
    assert (events[0]['object']['code'], events[0]['object']['reason']) == (410, 'Expired')
    _, w7 = await call(http, 'GET', f'{WIDGETS}/w7')
    events = await read_watch(http, WIDGETS, resourceVersion=w7['metadata']['resourceVersion'],
                              timeoutSeconds='1')
    assert [e['object']['metadata']['name'] for e in events] == ['w8', 'w9']


# --- discovery and CRDs -------------------------------------------------------------------------


async def test_discovery(http: aiohttp.ClientSession) -> None:
    """Discovery serves the core group as groupVersion v1 and custom resources with kind, short
    names, categories, verbs and scope; subresources appear as <plural>/<sub>; /openapi/v2 is 404
    (v3 only: see test_openapi.py)."""
    _, core = await call(http, 'GET', '/api/v1')
    assert core['groupVersion'] == 'v1'
    assert {'secrets', 'namespaces', 'events'} <= {r['name'] for r in core['resources']}
    _, custom = await call(http, 'GET', '/apis/test.example.com/v1')
    resources = {r['name']: r for r in custom['resources']}
    assert resources['widgets']['kind'] == 'Widget' and resources['widgets']['namespaced'] is True
    assert resources['widgets']['shortNames'] == ['wdg'] and resources['widgets']['categories'] == ['tests']
    assert {'get', 'list', 'watch', 'create', 'patch', 'delete'} <= set(resources['widgets']['verbs'])
    assert 'widgets/status' in resources and resources['gadgets']['namespaced'] is False
    _, groups = await call(http, 'GET', '/apis')
    assert 'test.example.com' in {g['name'] for g in groups['groups']}
    status, error = await call(http, 'GET', '/openapi/v2')
    assert (status, error['reason']) == (404, 'NotFound')


async def test_crd_created_through_the_api_declares_its_resource(http: aiohttp.ClientSession) -> None:
    """Creating a CustomResourceDefinition makes its resource available, as on a real server."""
    await create(http, '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
        'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
        'metadata': {'name': 'gizmos.late.example.com'},
        'spec': {'group': 'late.example.com', 'scope': 'Namespaced',
                 'names': {'plural': 'gizmos', 'kind': 'Gizmo'}, 'versions': [{'name': 'v1alpha1'}]}})
    obj = await create(http, '/apis/late.example.com/v1alpha1/namespaces/ns/gizmos',
                       {'metadata': {'name': 'g'}})
    assert obj['kind'] == 'Gizmo'


# --- real clients -------------------------------------------------------------------------------


async def test_kubernetes_client(url: str, tmp_path: Path) -> None:
    """The synchronous kubernetes client creates and reads a Secret (it needs 201 + the body),
    creates core and events.k8s.io Events, lists with a label selector, patches, and gets an
    ApiException 404 for a missing object."""
    kubeconfig = write_kubeconfig(tmp_path / 'kubeconfig', url)

    def use_the_client() -> None:
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        core = kubernetes.client.CoreV1Api(client)
        meta = kubernetes.client.V1ObjectMeta
        created = core.create_namespaced_secret('ns', kubernetes.client.V1Secret(
            metadata=meta(name='s', labels={'app': 'x'}), string_data={'k': 'v'}))
        assert created is not None and created.metadata.uid
        assert core.read_namespaced_secret('s', 'ns').data == {'k': base64.b64encode(b'v').decode()}
        core.create_namespaced_secret('ns', kubernetes.client.V1Secret(metadata=meta(name='other')))
        listed = core.list_namespaced_secret('ns', label_selector='app=x')
        assert [s.metadata.name for s in listed.items] == ['s']
        patched = core.patch_namespaced_secret('s', 'ns', [
            {'op': 'add', 'path': '/metadata/labels/extra', 'value': 'yes'}])
        assert patched.metadata.labels == {'app': 'x', 'extra': 'yes'}
        patched = core.patch_namespaced_secret('s', 'ns', {'metadata': {'annotations': {'a': 'b'}}})
        assert patched.metadata.annotations == {'a': 'b'}
        event = core.create_namespaced_event('ns', kubernetes.client.CoreV1Event(
            metadata=meta(generate_name='ev-'), reason='Tested', message='hello', type='Normal',
            involved_object=kubernetes.client.V1ObjectReference(kind='Secret', name='s', namespace='ns')))
        assert event.metadata.name.startswith('ev-')
        events_v1 = kubernetes.client.EventsV1Api(client)
        new_event = events_v1.create_namespaced_event('ns', kubernetes.client.EventsV1Event(
            metadata=meta(generate_name='ev-'), event_time=datetime.datetime.now(tz=datetime.UTC),
            reason='Tested', action='Test', note='hello', type='Normal',
            reporting_controller='tests/emulator', reporting_instance='tests'))
        assert new_event.metadata.uid
        assert len(events_v1.list_namespaced_event('ns').items) == 1
        with pytest.raises(kubernetes.client.ApiException) as missing:
            core.read_namespaced_secret('missing', 'ns')
        assert missing.value.status == 404
        core.delete_namespaced_secret('s', 'ns')
        assert [s.metadata.name for s in core.list_namespaced_secret('ns').items] == ['other']

    await asyncio.to_thread(use_the_client)


async def test_kubectl(url: str, tmp_path: Path, emulator: FixedKubernetesEmulator) -> None:
    """kubectl 1.32 works with --validate=false: apply (client- and server-side), get of lists
    (it needs `kind` in lists and discovery of core resources), -A, -l, -o json, replace, delete."""
    kubeconfig = write_kubeconfig(tmp_path / 'kubeconfig', url, namespace='ns')
    env = {'KUBECONFIG': str(kubeconfig), 'HOME': str(tmp_path), 'PATH': os.environ.get('PATH', '')}

    async def kubectl(*args: str, stdin: str | None = None) -> str:
        process = await asyncio.create_subprocess_exec(
            KUBECTL, '--cache-dir', str(tmp_path / 'cache'), '--request-timeout=10s', *args, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), 30)
        assert process.returncode == 0, err.decode()
        return out.decode() + err.decode()

    def manifest(size: int) -> str:
        return json.dumps({'apiVersion': 'test.example.com/v1', 'kind': 'Widget',
                           'metadata': {'name': 'w', 'labels': {'team': 'blue'}}, 'spec': {'size': size}})

    assert 'created' in await kubectl('--validate=false', 'apply', '-f', '-', stdin=manifest(1))
    assert 'configured' in await kubectl('--validate=false', 'apply', '-f', '-', stdin=manifest(2))
    assert re.search(r'ns\s+w\s', await kubectl('get', 'widgets', '-A'))
    assert re.search(r'^w\s', await kubectl('get', 'widget', '-l', 'team=blue'), re.M)
    assert 'No resources found' in await kubectl('get', 'wdg', '-l', 'team=red')
    fetched = json.loads(await kubectl('get', 'widget', 'w', '-o', 'json'))
    assert fetched['spec'] == {'size': 2} and fetched['metadata']['generation'] == 2

    secret = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'creds'}, 'stringData': {'k': 'v'}}
    await kubectl('--validate=false', 'apply', '-f', '-', stdin=json.dumps(secret))
    assert re.search(r'^creds\s', await kubectl('get', 'secrets', '-n', 'ns'), re.M)

    assert 'replaced' in await kubectl('--validate=false', 'replace', '-f', '-', stdin=manifest(3))
    assert 'serverside-applied' in await kubectl('--validate=false', 'apply', '--server-side', '-f', '-',
                                                 stdin=manifest(4))
    stored = emulator.get_object('test.example.com/v1/widgets', 'ns', 'w')
    assert stored is not None and stored['spec'] == {'size': 4} and stored['metadata']['generation'] == 4

    assert 'deleted' in await kubectl('delete', 'widget', 'w')
    assert emulator.get_object('test.example.com/v1/widgets', 'ns', 'w') is None
    assert 'No resources found' in await kubectl('get', 'widgets', '-A')


async def test_kopf_operator(crd_path: Path) -> None:
    """A real Kopf operator works: it adds its finalizer (JSON patch with a resourceVersion test),
    runs the creation handler and patches the status (merge patch on /status), posts several
    Events in one namespace (generateName), and on deletion runs the deletion handler and
    releases its finalizer so that the object is gone.

    The emulator runs in its own thread: kopf.operator() waits 5 s on exit for any task created
    in its loop while it ran (the server's connection tasks would be such tasks)."""
    registry = kopf.OperatorRegistry()
    deleted: list[str] = []

    with serve_emulator_in_thread([crd_path]) as (emulator, url):

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, scheme='Bearer', token='x')

        @kopf.on.create('test.example.com', 'v1', 'widgets', registry=registry)
        def on_create(body: Any, spec: Any, patch: Any, **_: Any) -> None:
            kopf.info(body, reason='Seen', message='first event')
            kopf.info(body, reason='Handled', message='second event')
            patch.status['phase'] = f"Ready-{spec['size']}"

        @kopf.on.delete('test.example.com', 'v1', 'widgets', registry=registry)
        def on_delete(name: str, **_: Any) -> None:
            deleted.append(name)

        def get() -> dict[str, Any] | None:
            return emulator.get_object('test.example.com/v1/widgets', 'ns', 'w')

        def events() -> list[dict[str, Any]]:
            items = emulator.list_objects('v1/events', 'ns')
            return items if len(items) >= 2 else []

        stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
        operator = asyncio.create_task(kopf.operator(
            standalone=True, clusterwide=True, registry=registry, stop_flag=stop_flag, ready_flag=ready_flag))
        try:
            async with aiohttp.ClientSession(url) as http:
                await asyncio.wait_for(ready_flag.wait(), 20)
                await create(http, WIDGETS, widget('w'))
                assert await eventually(lambda: (get() or {}).get('status', {}).get('phase')) == 'Ready-1'
                assert get()['metadata']['finalizers'] == ['kopf.zalando.org/KopfFinalizerMarker']

                posted = await eventually(events)
                assert {e['reason'] for e in posted} == {'Seen', 'Handled'}
                assert all(e['metadata']['name'].startswith('kopf-event-') for e in posted)
                assert all(e['involvedObject']['name'] == 'w' for e in posted)

                await call(http, 'DELETE', f'{WIDGETS}/w')
                await eventually(lambda: get() is None)
                assert deleted == ['w']
        finally:
            stop_flag.set()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(operator, 20)
        assert not emulator.errors


# --- cost per request ---------------------------------------------------------------------------


async def test_cost_per_request_does_not_grow(
        http: aiohttp.ClientSession, emulator: FixedKubernetesEmulator) -> None:
    """Serving a request costs the same after 2,000 requests as at first (a real API server does
    not re-scan a request history): over 2,000 PATCHes, the last 500 take at most ~2x the first 500
    (compared by their median latency, so that one GC pause or a busy neighbour does not count).
    No request is kept, and the event history per resource stays bounded."""
    await create(http, WIDGETS, widget('w'))
    latencies = []
    for i in range(2000):
        started = time.perf_counter()
        await patch(http, f'{WIDGETS}/w', {'spec': {'size': i + 2}})
        latencies.append(time.perf_counter() - started)
    first, last = statistics.median(latencies[:500]), statistics.median(latencies[-500:])
    assert last <= 2 * first, (first, last)
    assert len(emulator._requests) == 0
    assert len(emulator._stores['test.example.com', 'widgets'].events) <= emulator.watch_history


PROJECT_CRDS = sorted((Path(__file__).parents[2] / 'crds').glob('*.yaml'))


@pytest.mark.skipif(not PROJECT_CRDS, reason='the project has no CRDs yet')
async def test_project_crds_are_served(tmp_path: Path) -> None:
    """load_crds() declares every served version of the project's CRDs (crds/*.yaml), as applying
    them to a real cluster would: each resource can be listed and its CRD object is stored."""
    emulator = FixedKubernetesEmulator()
    load_crds(emulator, PROJECT_CRDS)
    crds = emulator.list_objects('apiextensions.k8s.io/v1/customresourcedefinitions')
    assert crds
    async with serve_emulator(emulator=emulator) as (_, url), aiohttp.ClientSession(url) as http:
        for crd in crds:
            spec = crd['spec']
            for version in spec['versions']:
                if not version.get('served', True):
                    continue
                path = f"/apis/{spec['group']}/{version['name']}/{spec['names']['plural']}"
                status, listed = await call(http, 'GET', path)
                assert status == 200 and listed['kind'] == f"{spec['names']['kind']}List"
