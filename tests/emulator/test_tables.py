"""The emulator answers ``kubectl get`` with server-side Tables, as a real API server does.

Real behaviour reproduced:
* https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables --
  ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` gets a ``Table`` (columnDefinitions,
  rows of cells, each row's object as ``PartialObjectMetadata`` unless ``includeObject`` says
  ``Object`` or ``None``), for lists, single objects and watches.
* https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#additional-printer-columns
  -- a custom resource's columns are Name plus the CRD's ``additionalPrinterColumns`` (JSONPath,
  typed cells); columns with ``priority`` > 0 appear only with ``kubectl get -o wide``.
* Built-in kinds print Kubernetes' own columns (``kubectl get secrets``: NAME TYPE DATA AGE;
  namespaces: NAME STATUS AGE; events: LAST SEEN TYPE REASON OBJECT MESSAGE), and ages are
  ``duration.HumanDuration`` (https://pkg.go.dev/k8s.io/apimachinery/pkg/util/duration#HumanDuration).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import pytest
from kubectl_support import EXAMPLES, Kubectl

from oneie_operator.testing.tables import human_duration, jsonpath

TABLE = ('application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,'
         'application/json')  # what kubectl get sends
BCONNS = '/apis/one.ie/v1alpha1/namespaces/tenant-acme/backendconnections'


def header(output: str) -> list[str]:
    return re.split(r'\s{2,}', output.splitlines()[0].strip())


async def get(url: str, accept: str = TABLE, **params: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url, headers={'Accept': accept}, params=params) as r:
        assert r.status == 200, await r.text()
        return await r.json(content_type=None)


@pytest.mark.parametrize(('seconds', 'shown'), [
    (0, '0s'), (119, '119s'), (120, '2m'), (130, '2m10s'), (600, '10m'), (3 * 3600, '3h'),
    (3 * 3600 + 60 * 5, '3h5m'), (10 * 3600, '10h'), (50 * 3600, '2d2h'), (9 * 86400, '9d'),
    (3 * 365 * 86400 + 86400, '3y1d'), (9 * 365 * 86400, '9y'), (-5, '<invalid>')])
def test_human_duration(seconds: int, shown: str) -> None:
    """Ages print as Kubernetes' HumanDuration does."""
    assert human_duration(seconds) == shown


def test_jsonpath_simple_forms() -> None:
    """The JSONPath forms of additionalPrinterColumns: fields, indexes and equality filters."""
    obj = {'status': {'conditions': [{'type': 'Healthy', 'status': 'False'}, {'type': 'Ready', 'status': 'True'}],
                      'usedBy': ['acme', 'beta']}}
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ['True']
    assert jsonpath(obj, ".status.conditions[?(@.type!='Ready')].type") == ['Healthy']
    assert jsonpath(obj, '.status.usedBy[0]') == ['acme']
    assert jsonpath(obj, '.status.usedBy[*]') == ['acme', 'beta']
    assert jsonpath(obj, '.status.missing.deeper') == []
    with pytest.raises(ValueError, match='unsupported JSONPath'):
        jsonpath(obj, '.status..conditions')


async def test_table_for_a_custom_resource(kubectl: Kubectl) -> None:
    """Name, then every printer column in the CRD's order with its type, description and priority;
    cells typed (missing values are null); rows carry PartialObjectMetadata by default, the whole
    object with includeObject=Object, nothing with None; plain JSON stays a list."""
    await kubectl('apply', '-f', str(EXAMPLES / 'convex'))
    table = await get(kubectl.url + BCONNS)
    assert (table['kind'], table['apiVersion']) == ('Table', 'meta.k8s.io/v1')
    columns = [(c['name'], c['type'], c['priority']) for c in table['columnDefinitions']]
    assert columns == [('Name', 'string', 0), ('Provider', 'string', 0), ('Ready', 'string', 0),
                       ('Health', 'string', 0), ('Used-By', 'string', 0), ('Response-ms', 'integer', 1),
                       ('Key-ID', 'string', 1), ('Reason', 'string', 1), ('Age', 'date', 0)]
    [row] = table['rows']
    assert row['cells'][:8] == ['acme-convex', 'convex', None, None, None, None, None, None]
    assert re.fullmatch(r'\d+s', row['cells'][8])
    assert row['object']['kind'] == 'PartialObjectMetadata' and row['object']['metadata']['name'] == 'acme-convex'
    assert 'spec' not in row['object']
    full = await get(kubectl.url + BCONNS, includeObject='Object')
    assert full['rows'][0]['object']['spec']['provider'] == 'convex'
    bare = await get(kubectl.url + BCONNS, includeObject='None')
    assert 'object' not in bare['rows'][0]
    single = await get(f'{kubectl.url}{BCONNS}/acme-convex')
    assert single['kind'] == 'Table' and len(single['rows']) == 1
    plain = await get(kubectl.url + BCONNS, accept='application/json')
    assert plain['kind'] == 'BackendConnectionList'


async def test_kubectl_get_shows_printer_columns(kubectl: Kubectl) -> None:
    """kubectl get prints the server's columns: -o wide adds the priority-1 columns; the category
    `oneie` lists both kinds with their own columns; status values fill the cells."""
    for folder in ('convex', ''):
        await kubectl('apply', '-f', str(EXAMPLES / folder))
    await kubectl('patch', 'bconn', 'acme-convex', '-n', 'tenant-acme', '--subresource=status', '--type=merge',
                  '-p', json.dumps({'status': {
                      'conditions': [{'type': 'Ready', 'status': 'True', 'reason': 'CredentialsVerified',
                                      'message': 'ok', 'lastTransitionTime': '2026-01-01T00:00:00Z'}],
                      'health': {'status': 'online', 'responseTimeMilliseconds': 42},
                      'credentials': {'keyId': 'k1'}, 'usedBy': ['acme']}}))
    narrow = await kubectl('get', 'bconn', '-n', 'tenant-acme')
    assert header(narrow) == ['NAME', 'PROVIDER', 'READY', 'HEALTH', 'USED-BY', 'AGE']
    assert re.search(r'^acme-convex\s+convex\s+True\s+online\s+acme\s+\d+s$', narrow, re.M)
    wide = await kubectl('get', 'bconn', '-o', 'wide', '-n', 'tenant-acme')
    assert header(wide) == ['NAME', 'PROVIDER', 'READY', 'HEALTH', 'USED-BY', 'RESPONSE-MS', 'KEY-ID', 'REASON',
                            'AGE']
    assert re.search(r'^acme-convex\s+convex\s+True\s+online\s+acme\s+42\s+k1\s+CredentialsVerified\s+\d+s$',
                     wide, re.M)
    everything = await kubectl('get', 'oneie', '-A')
    assert 'organization.one.ie/acme' in everything and 'backendconnection.one.ie/acme-convex' in everything
    assert re.search(r'^NAMESPACE\s+NAME\s+PROVIDER\s+ACTIVE\s+HEALTH\s+READY\s+AGE$', everything, re.M)
    assert header(await kubectl('get', 'org', '-n', 'tenant-acme')) == [
        'NAME', 'PROVIDER', 'ACTIVE', 'HEALTH', 'READY', 'AGE']


async def test_kubectl_get_builtin_kinds(kubectl: Kubectl) -> None:
    """Secrets, namespaces and events print Kubernetes' columns; an event seen 3 times shows
    "x3 over" its first occurrence and OBJECT as kind/name."""
    await kubectl('apply', '-f', str(EXAMPLES / 'convex'))
    secrets = await kubectl('get', 'secrets', '-n', 'tenant-acme')
    assert header(secrets) == ['NAME', 'TYPE', 'DATA', 'AGE']
    assert re.search(r'^acme-convex-credentials\s+Opaque\s+1\s+\d+s$', secrets, re.M)
    namespaces = await kubectl('get', 'namespaces')
    assert header(namespaces) == ['NAME', 'STATUS', 'AGE'] and re.search(r'^tenant-acme\s+Active\s', namespaces, re.M)
    kubectl.emulator.create_object('v1/events', {
        'metadata': {'name': 'acme.1'}, 'type': 'Warning', 'reason': 'SwitchFailed', 'message': 'rolled back',
        'involvedObject': {'kind': 'Organization', 'name': 'acme', 'namespace': 'tenant-acme'}, 'count': 3,
        'firstTimestamp': '2020-01-01T00:00:00Z', 'lastTimestamp': '2020-01-01T01:00:00Z',
        'source': {'component': 'oneie-operator'}}, 'tenant-acme')
    events = await kubectl('get', 'events', '-n', 'tenant-acme')
    assert header(events) == ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'MESSAGE']
    assert re.search(r'^\S+ \(x3 over \S+\)\s+Warning\s+SwitchFailed\s+organization/acme\s+rolled back$', events,
                     re.M)
    wide = await kubectl('get', 'events', '-n', 'tenant-acme', '-o', 'wide')
    assert header(wide) == ['LAST SEEN', 'TYPE', 'REASON', 'OBJECT', 'SUBOBJECT', 'SOURCE', 'MESSAGE',
                            'FIRST SEEN', 'COUNT', 'NAME']


async def test_kubectl_get_watch_prints_rows(kubectl: Kubectl) -> None:
    """kubectl get -w asks for Tables on the watch too: each change arrives as a one-row Table
    and is printed under the same columns."""
    await kubectl('apply', '-f', str(EXAMPLES / 'convex'))
    process = await asyncio.create_subprocess_exec(
        'kubectl', '--cache-dir', str(kubectl.home / 'cache'), 'get', 'bconn', '-n', 'tenant-acme', '-w',
        env={'KUBECONFIG': str(kubectl.home / 'kubeconfig'), 'HOME': str(kubectl.home), 'PATH': '/usr/bin:/bin'},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    try:
        lines = [await asyncio.wait_for(process.stdout.readline(), 20) for _ in range(2)]
        assert lines[0].decode().split()[:3] == ['NAME', 'PROVIDER', 'READY']
        await kubectl('patch', 'bconn', 'acme-convex', '-n', 'tenant-acme', '--subresource=status',
                      '--type=merge', '-p', '{"status": {"health": {"status": "degraded"}}}')
        changed = await asyncio.wait_for(process.stdout.readline(), 20)
        assert re.match(r'acme-convex\s+convex\s+degraded\s', changed.decode())
    finally:
        process.terminate()
        await process.wait()
