"""The emulator publishes OpenAPI v3 as a real API server does, so kubectl validates and explains.

Real behaviour reproduced (https://kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3):
``/openapi/v3`` lists one document per group version, each at a ``serverRelativeURL`` with a
content hash; each document has the paths of the group version's resources (the PATCH
operations tagged with ``x-kubernetes-group-version-kind`` and taking ``fieldValidation``) and
the schemas of its kinds in ``components.schemas``. For custom resources the schema is the CRD's
``openAPIV3Schema`` (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/#publish-validation-schema-in-openapi).
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp
from kubectl_support import EXAMPLES, Kubectl

from oneie_operator.testing.openapi import crd_schema_name


async def get_json(url: str) -> object:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_openapi_v3_documents(kubectl: Kubectl) -> None:
    """The index names each group version's document with a hash; the one.ie document has the
    CRD's schema (with x-kubernetes-group-version-kind, its descriptions, metadata as ObjectMeta)
    and PATCH operations that take fieldValidation; the core document has Secret from the
    published Kubernetes schemas."""
    index = await get_json(f'{kubectl.url}/openapi/v3')
    assert isinstance(index, dict)
    paths = index['paths']
    one_ie = paths['apis/one.ie/v1alpha1']['serverRelativeURL']
    assert urlsplit(one_ie).path == '/openapi/v3/apis/one.ie/v1alpha1' and 'hash=' in one_ie
    document = await get_json(kubectl.url + one_ie)
    assert isinstance(document, dict)
    schema = document['components']['schemas'][crd_schema_name('one.ie', 'v1alpha1', 'BackendConnection')]
    assert schema['x-kubernetes-group-version-kind'] == [
        {'group': 'one.ie', 'version': 'v1alpha1', 'kind': 'BackendConnection'}]
    assert 'Exactly one provider block' in schema['properties']['spec']['description']
    assert schema['properties']['metadata']['allOf'] == [
        {'$ref': '#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta'}]
    assert 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta' in document['components']['schemas']
    item = document['paths']['/apis/one.ie/v1alpha1/namespaces/{namespace}/backendconnections/{name}']
    assert item['patch']['x-kubernetes-group-version-kind']['kind'] == 'BackendConnection'
    assert {'name': 'fieldValidation', 'in': 'query'}.items() <= item['patch']['parameters'][2].items()

    core = await get_json(kubectl.url + paths['api/v1']['serverRelativeURL'])
    assert isinstance(core, dict)
    secret = core['components']['schemas']['io.k8s.api.core.v1.Secret']
    assert secret['properties']['type']['type'] == 'string'  # converted back from ["string", "null"]
    assert secret['x-kubernetes-group-version-kind'] == [{'group': '', 'kind': 'Secret', 'version': 'v1'}]


async def test_kubectl_apply_examples_with_default_validation(kubectl: Kubectl) -> None:
    """kubectl apply (default --validate=strict) asks /openapi/v3 whether the server validates
    fields (fieldValidation on PATCH) and fails with "failed to download openapi" without it;
    every example directory applies, several kinds per directory."""
    for folder in ('', 'convex', 'wordpress', 'notion', 'supabase', 'tenant'):
        result = await kubectl.run('apply', '-f', str(EXAMPLES / folder) if folder else str(EXAMPLES))
        assert 'failed to download openapi' not in result.err
        assert 'created' in result.out or 'configured' in result.out
    assert kubectl.emulator.get_object('one.ie/v1alpha1/backendconnections', 'tenant-acme', 'acme-convex')
    assert kubectl.emulator.get_object('v1/secrets', 'tenant-acme', 'acme-convex-credentials')
    assert kubectl.emulator.get_object('one.ie/v1alpha1/organizations', 'tenant-acme', 'acme')


async def test_kubectl_explain(kubectl: Kubectl) -> None:
    """kubectl explain prints a field's description and its fields from the OpenAPI v3 schema:
    the CRD's own descriptions for custom kinds, Kubernetes' for built-in kinds."""
    spec = await kubectl('explain', 'backendconnection.spec')
    assert 'KIND:       BackendConnection' in spec and 'Exactly one provider block is allowed' in spec
    assert 'credentialsSecretRef\t<Object> -required-' in spec
    convex = await kubectl('explain', 'backendconnection.spec.convex')
    assert 'Settings of a Convex deployment' in convex
    org = await kubectl('explain', 'org.spec.backend')
    assert 'connectionRef' in org
    assert 'stringData allows specifying non-binary secret data' in await kubectl('explain', 'secret.stringData')


async def test_openapi_follows_crd_changes(kubectl: Kubectl) -> None:
    """A CRD created through the API is published in /openapi/v3 (the real server rebuilds its
    OpenAPI when CRDs change)."""
    crd = {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
           'metadata': {'name': 'things.example.org'},
           'spec': {'group': 'example.org', 'scope': 'Namespaced',
                    'names': {'plural': 'things', 'singular': 'thing', 'kind': 'Thing'},
                    'versions': [{'name': 'v1', 'served': True, 'storage': True, 'schema': {'openAPIV3Schema': {
                        'type': 'object', 'description': 'A thing for the test.',
                        'properties': {'spec': {'type': 'object'}}}}}]}}
    await kubectl('apply', '-f', '-', stdin=json.dumps(crd))
    index = await get_json(f'{kubectl.url}/openapi/v3')
    assert isinstance(index, dict) and 'apis/example.org/v1' in index['paths']
    assert 'A thing for the test.' in await kubectl('explain', 'things')
