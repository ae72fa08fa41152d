"""Server-side apply in the emulator, as kubectl --server-side, Argo CD and Flux use it.

Real behaviour reproduced (https://kubernetes.io/docs/reference/using-api/server-side-apply/):
an apply (``PATCH`` ``application/apply-patch+yaml`` with ``fieldManager``) records the fields it
sets for its manager in ``metadata.managedFields`` (``operation: Apply``, ``fieldsV1``); other
writers are recorded as ``operation: Update`` for the fields they changed; applying a field
another manager owns with another value is a 409 conflict (``details.causes`` of
``FieldManagerConflict``), ``--force-conflicts`` takes it over; a field a manager stops applying
is removed unless someone else also owns it. Lists are one field (merge by key is not emulated).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubectl_support import EXAMPLES, Kubectl

BCONN = '/apis/one.ie/v1alpha1/namespaces/tenant-acme/backendconnections/acme-convex'


def managed(kubectl: Kubectl) -> dict[tuple[str, str], dict[str, Any]]:
    obj = kubectl.emulator.get_object('one.ie/v1alpha1/backendconnections', 'tenant-acme', 'acme-convex')
    assert obj is not None
    return {(e['manager'], e['operation']): e['fieldsV1'] for e in obj['metadata'].get('managedFields', [])}


def manifest(**labels: str) -> str:
    return json.dumps({
        'apiVersion': 'one.ie/v1alpha1', 'kind': 'BackendConnection',
        'metadata': {'name': 'acme-convex', 'namespace': 'tenant-acme', 'labels': labels},
        'spec': {'provider': 'convex', 'credentialsSecretRef': {'name': 'acme-convex-credentials'},
                 'convex': {'url': 'https://happy-otter-123.convex.cloud'}}})


async def test_apply_records_field_ownership(kubectl: Kubectl) -> None:
    """kubectl apply --server-side creates the objects and records manager "kubectl", operation
    Apply, and the applied fields in the f: form."""
    out = await kubectl('apply', '--server-side', '-f', str(EXAMPLES / 'convex'))
    assert 'backendconnection.one.ie/acme-convex serverside-applied' in out
    fields = managed(kubectl)[('kubectl', 'Apply')]
    assert fields['f:spec']['f:provider'] == {} and fields['f:spec']['f:convex'] == {'f:url': {}}
    shown = json.loads(await kubectl('get', 'bconn', 'acme-convex', '-n', 'tenant-acme', '-o', 'json',
                                     '--show-managed-fields'))
    assert shown['metadata']['managedFields'][0]['fieldsType'] == 'FieldsV1'


async def test_conflict_and_force(kubectl: Kubectl) -> None:
    """After kubectl patch changed a field (an Update by "kubectl-patch"), re-applying the old
    value conflicts -- kubectl prints the server's message and exits non-zero --, and
    --force-conflicts takes the field back."""
    await kubectl('apply', '--server-side', '-f', str(EXAMPLES / 'convex' / 'backendconnection.yaml'))
    await kubectl('patch', 'bconn', 'acme-convex', '-n', 'tenant-acme', '--type=merge',
                  '-p', '{"spec": {"healthCheck": {"intervalSeconds": 60}}}')
    assert managed(kubectl)[('kubectl-patch', 'Update')] == {'f:spec': {'f:healthCheck': {'f:intervalSeconds': {}}}}
    result = await kubectl.run('apply', '--server-side', '-f', str(EXAMPLES / 'convex' / 'backendconnection.yaml'),
                               check=False)
    assert result.code != 0
    assert ('Apply failed with 1 conflict: conflict with "kubectl-patch" using one.ie/v1alpha1: '
            '.spec.healthCheck.intervalSeconds') in result.err
    async with aiohttp.ClientSession() as http, http.patch(
            kubectl.url + BCONN, params={'fieldManager': 'kubectl'},
            data=(EXAMPLES / 'convex' / 'backendconnection.yaml').read_text(),
            headers={'Content-Type': 'application/apply-patch+yaml'}) as response:
        error = await response.json()
        assert (response.status, error['reason']) == (409, 'Conflict')
        assert error['details']['causes'] == [{'reason': 'FieldManagerConflict',
                                               'message': 'conflict with "kubectl-patch" using one.ie/v1alpha1',
                                               'field': '.spec.healthCheck.intervalSeconds'}]
    await kubectl('apply', '--server-side', '--force-conflicts', '-f',
                  str(EXAMPLES / 'convex' / 'backendconnection.yaml'))
    stored = kubectl.emulator.get_object('one.ie/v1alpha1/backendconnections', 'tenant-acme', 'acme-convex')
    assert stored is not None and stored['spec']['healthCheck']['intervalSeconds'] == 300
    assert ('kubectl-patch', 'Update') not in managed(kubectl)


async def test_dropped_fields_are_removed_unless_co_owned(kubectl: Kubectl) -> None:
    """A label the manager stops applying is removed; one that another manager applied with the
    same value (shared ownership) stays."""
    await kubectl('apply', '--server-side', '-f', '-', stdin=manifest(team='blue', tier='gold', zone='a'))
    await kubectl('apply', '--server-side', '--field-manager=argocd', '-f', '-', stdin=manifest(zone='a'))
    await kubectl('apply', '--server-side', '-f', '-', stdin=manifest(team='blue'))
    stored = kubectl.emulator.get_object('one.ie/v1alpha1/backendconnections', 'tenant-acme', 'acme-convex')
    assert stored is not None and stored['metadata']['labels'] == {'team': 'blue', 'zone': 'a'}


async def test_field_manager_is_required(kubectl: Kubectl) -> None:
    """An apply patch without fieldManager is refused (422), as the API server requires one."""
    async with aiohttp.ClientSession() as http, http.patch(
            kubectl.url + BCONN, data=manifest(), headers={'Content-Type': 'application/apply-patch+yaml'}) as response:
        assert response.status == 422
        assert 'fieldManager: Required value' in (await response.json())['message']
