"""The emulator validates custom resources on the server side as the API server does.

Real behaviour reproduced, each against this project's CRDs (``crds/``):
* https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
  -- an object that breaks the OpenAPI schema or a ``x-kubernetes-validations`` CEL rule is
  refused with 422 ``Invalid``, message ``<Kind>.<group> "<name>" is invalid: <field>: <detail>``
  and ``details.causes[]`` of ``{reason, message, field}``; on create, update, patch and status.
* .../custom-resource-definitions/#defaulting -- schema ``default``s are applied on write.
* .../custom-resource-definitions/#field-pruning and
  https://kubernetes.io/docs/reference/using-api/api-concepts/#field-validation -- unknown fields
  are pruned; ``fieldValidation=Strict`` (kubectl's default) refuses them with a 400 strict
  decoding error, ``Warn`` (the default for other clients) prunes them with a ``Warning`` header.
* https://kubernetes.io/docs/reference/using-api/health-checks/ neighbours: ``/version`` and
  ``/version/`` answer version.Info (kubectl version asks for it).
The rules themselves are the offline checker's (:mod:`oneie_operator.testing.schema`): one
implementation. Not checked here (nor by the emulator): CEL cost limits, messageExpression,
ratcheting of unchanged invalid values.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
from kubectl_support import CRDS, EXAMPLES, Kubectl

from oneie_operator.testing.cluster import serve_emulator
from oneie_operator.testing.emulator import FixedKubernetesEmulator

BCONNS = '/apis/one.ie/v1alpha1/namespaces/tenant-acme/backendconnections'


def connection(name: str = 'c', **spec: Any) -> dict[str, Any]:
    return {'apiVersion': 'one.ie/v1alpha1', 'kind': 'BackendConnection', 'metadata': {'name': name},
            'spec': {'provider': 'convex', 'credentialsSecretRef': {'name': 'creds'},
                     'convex': {'url': 'https://happy-otter-123.convex.cloud'}, **spec}}


async def send(url: str, method: str, path: str, body: Any, content_type: str = 'application/json',
               **params: str) -> tuple[int, Any, list[str]]:
    async with aiohttp.ClientSession() as http, http.request(
            method, url + path, data=json.dumps(body), headers={'Content-Type': content_type},
            params=params) as response:
        return response.status, await response.json(), response.headers.getall('Warning', [])


async def test_invalid_objects_are_refused_in_the_real_format(kubectl: Kubectl) -> None:
    """Schema and CEL violations are a 422 Invalid with the API server's message and causes,
    on create and on patch (and the stored object stays as it was)."""
    status, error, _ = await send(kubectl.url, 'POST', BCONNS, connection(healthCheck={'intervalSeconds': 'soon'}))
    assert (status, error['reason']) == (422, 'Invalid')
    assert error['message'].startswith('BackendConnection.one.ie "c" is invalid: [spec.healthCheck.intervalSeconds: '
                                       'Invalid value: "string": spec.healthCheck.intervalSeconds in body must be '
                                       'of type integer: "soon", <nil>: Invalid value: "null": some validation rules')
    assert error['details']['causes'][0] == {
        'reason': 'FieldValueTypeInvalid', 'field': 'spec.healthCheck.intervalSeconds',
        'message': 'Invalid value: "string": spec.healthCheck.intervalSeconds in body must be of type integer: '
                   '"soon"'}
    assert (error['details']['kind'], error['details']['group'], error['details']['name']) == (
        'BackendConnection', 'one.ie', 'c')

    no_block = connection()
    del no_block['spec']['convex']
    status, error, _ = await send(kubectl.url, 'POST', BCONNS, no_block)
    assert status == 422
    assert error['message'] == ('BackendConnection.one.ie "c" is invalid: spec.convex: Required value: '
                                "spec.convex is required when spec.provider is 'convex'")
    assert error['details']['causes'] == [{'reason': 'FieldValueRequired', 'field': 'spec.convex',
                                           'message': "Required value: spec.convex is required when spec.provider "
                                                      "is 'convex'"}]

    status, created, _ = await send(kubectl.url, 'POST', BCONNS, connection())
    assert status == 201
    status, error, _ = await send(kubectl.url, 'PATCH', f'{BCONNS}/c', {'spec': {'provider': 'notion'}},
                                  'application/merge-patch+json')
    assert status == 422 and 'spec.notion is required' in error['message']
    stored = kubectl.emulator.get_object('one.ie/v1alpha1/backendconnections', 'tenant-acme', 'c')
    assert stored is not None and stored['spec']['provider'] == 'convex'
    assert stored['metadata']['resourceVersion'] == created['metadata']['resourceVersion']


async def test_status_writes_are_validated(kubectl: Kubectl) -> None:
    """A status update is validated against the status schema too (a bad health status is 422)."""
    await send(kubectl.url, 'POST', BCONNS, connection())
    status, error, _ = await send(kubectl.url, 'PATCH', f'{BCONNS}/c/status',
                                  {'status': {'health': {'status': 'splendid'}}}, 'application/merge-patch+json')
    assert status == 422 and 'status.health.status: Unsupported value: "splendid"' in error['message']
    assert error['details']['causes'][0]['reason'] == 'FieldValueNotSupported'


async def test_defaults_and_pruning(kubectl: Kubectl) -> None:
    """Schema defaults are filled in on create; unknown fields outside preserve-unknown-fields
    are pruned -- with a Warning header when the client did not ask (Warn), silently with
    Ignore, refused with a 400 strict decoding error with Strict."""
    body = connection(healthCheck={'intervalSeconds': 60, 'bogus': 1})
    status, created, warnings = await send(kubectl.url, 'POST', BCONNS, body)
    assert status == 201
    assert created['spec']['healthCheck'] == {**created['spec']['healthCheck'], 'intervalSeconds': 60,
                                              'timeoutSeconds': 10}  # a default
    assert 'bogus' not in created['spec']['healthCheck']
    assert warnings == ['299 - "unknown field \\"spec.healthCheck.bogus\\""']
    status, _, warnings = await send(kubectl.url, 'POST', BCONNS, {**body, 'metadata': {'name': 'd'}},
                                     fieldValidation='Ignore')
    assert status == 201 and warnings == []
    status, error, _ = await send(kubectl.url, 'POST', BCONNS, {**body, 'metadata': {'name': 'e'}},
                                  fieldValidation='Strict')
    assert (status, error['reason']) == (400, 'BadRequest')
    assert error['message'] == ('BackendConnection in version "v1alpha1" cannot be handled as a BackendConnection: '
                                'strict decoding error: unknown field "spec.healthCheck.bogus"')


async def test_kubectl_reports_the_servers_refusal(kubectl: Kubectl) -> None:
    """kubectl apply (default validation) gets the server's refusal and prints it: an unknown
    field and a CEL rule; the valid examples apply."""
    await kubectl('apply', '-f', str(EXAMPLES / 'convex'))
    manifest = connection('typo', healthCheck={'intervalSecond': 60})
    manifest['metadata']['namespace'] = 'tenant-acme'
    result = await kubectl.run('apply', '-f', '-', stdin=json.dumps(manifest), check=False)
    assert result.code != 0 and 'strict decoding error: unknown field "spec.healthCheck.intervalSecond"' in result.err
    wrong = connection('wrong', wordpress={'url': 'https://example.org'})
    wrong['metadata']['namespace'] = 'tenant-acme'
    result = await kubectl.run('apply', '-f', '-', stdin=json.dumps(wrong), check=False)
    assert result.code != 0 and 'The BackendConnection "wrong" is invalid' in result.err
    assert "spec.wordpress: Forbidden: spec.wordpress is only allowed when spec.provider is 'wordpress'" in result.err


async def test_validation_is_an_option() -> None:
    """With schema_validation=False (benchmarks) any body is stored as sent."""
    emulator = FixedKubernetesEmulator(schema_validation=False)
    async with serve_emulator(CRDS, emulator=emulator) as (_, url):
        status, created, _ = await send(url, 'POST', BCONNS, connection(healthCheck={'intervalSeconds': 'soon'}))
        assert status == 201 and created['spec']['healthCheck'] == {'intervalSeconds': 'soon'}


async def test_version_endpoint(kubectl: Kubectl) -> None:
    """/version and /version/ answer version.Info; kubectl version shows the server version."""
    async with aiohttp.ClientSession() as http:
        for path in ('/version', '/version/'):
            async with http.get(kubectl.url + path) as response:
                assert response.status == 200
                info = await response.json()
                assert info['gitVersion'].startswith(f'v{info["major"]}.{info["minor"]}.')
    assert 'Server Version: v1.32.0' in await kubectl('version')
