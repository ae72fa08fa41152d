"""kubectl's typed ``create`` commands work: the emulator reads Kubernetes protobuf bodies.

Real behaviour reproduced (https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding):
built-in kinds may be sent as ``application/vnd.kubernetes.protobuf`` -- the magic ``k8s\\x00``
and a ``runtime.Unknown`` envelope around the object's message -- which kubectl does for
``kubectl create secret|configmap|namespace`` (it does not fall back to JSON on a 415). Every
test below sends the real kubectl's encoding, except the error cases, which hand-encode bodies.
"""

from __future__ import annotations

import base64
import json

import aiohttp
from kubectl_support import Kubectl

from oneie_operator.testing.protobuf import MAGIC

PROTOBUF = 'application/vnd.kubernetes.protobuf'


def field(number: int, payload: bytes | str) -> bytes:
    """One length-delimited protobuf field (enough for these hand-made bodies)."""
    data = payload.encode() if isinstance(payload, str) else payload
    assert len(data) < 128
    return bytes([number << 3 | 2, len(data)]) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + field(1, field(1, api_version) + field(2, kind)) + field(2, raw)


async def test_kubectl_create_namespace_secret_configmap(kubectl: Kubectl) -> None:
    """kubectl create namespace / secret generic / configmap send protobuf; the objects are
    stored as sent: names, the namespace, data (base64), binaryData, the type, and the
    annotation that --save-config adds (a protobuf map)."""
    await kubectl('create', 'namespace', 'tenant-new')
    assert kubectl.emulator.get_object('v1/namespaces', None, 'tenant-new') is not None
    await kubectl('create', 'secret', 'generic', 'creds', '--from-literal=apiKey=s3cr3t', '--from-literal=user=me',
                  '--type=Opaque', '--save-config', '-n', 'tenant-new')
    secret = kubectl.emulator.get_object('v1/secrets', 'tenant-new', 'creds')
    assert secret is not None
    assert {k: base64.b64decode(v).decode() for k, v in secret['data'].items()} == {'apiKey': 's3cr3t', 'user': 'me'}
    assert secret['type'] == 'Opaque'
    applied = json.loads(secret['metadata']['annotations']['kubectl.kubernetes.io/last-applied-configuration'])
    assert applied['metadata']['name'] == 'creds'
    (kubectl.home / 'blob').write_bytes(b'\x00\xff\x01')
    await kubectl('create', 'configmap', 'settings', '--from-literal=mode=fast',
                  f'--from-file=blob={kubectl.home / "blob"}', '-n', 'tenant-new')
    configmap = kubectl.emulator.get_object('v1/configmaps', 'tenant-new', 'settings')
    assert configmap is not None and configmap['data'] == {'mode': 'fast'}
    assert base64.b64decode(configmap['binaryData']['blob']) == b'\x00\xff\x01'
    docker = await kubectl('create', 'secret', 'docker-registry', 'pull', '--docker-server=r.example',
                           '--docker-username=u', '--docker-password=p', '-n', 'tenant-new', '-o', 'json')
    assert json.loads(docker)['type'] == 'kubernetes.io/dockerconfigjson'


async def test_protobuf_errors_are_explicit(kubectl: Kubectl) -> None:
    """A kind the decoder does not know is a 415 that says to send JSON; an unknown field or a
    malformed body is a 400 naming the problem: nothing is dropped silently."""
    url = f'{kubectl.url}/api/v1/namespaces/default'
    async with aiohttp.ClientSession() as http:
        quota = envelope('v1', 'ResourceQuota', field(1, field(1, 'q')))
        async with http.post(f'{url}/resourcequotas', data=quota, headers={'Content-Type': PROTOBUF}) as r:
            assert r.status == 415 and 'send JSON' in (await r.json())['message']
        unknown = envelope('v1', 'Secret', field(1, field(1, 's')) + field(9, 'surprise'))
        async with http.post(f'{url}/secrets', data=unknown, headers={'Content-Type': PROTOBUF}) as r:
            body = await r.json()
            assert r.status == 400 and 'Secret: field 9 is not known' in body['message']
        async with http.post(f'{url}/secrets', data=b'not protobuf', headers={'Content-Type': PROTOBUF}) as r:
            assert r.status == 400 and 'magic' in (await r.json())['message']
        labelled = envelope('v1', 'Secret', field(1, field(1, 'hand') + field(11, field(1, 'a') + field(2, 'b'))))
        async with http.post(f'{url}/secrets', data=labelled, headers={'Content-Type': PROTOBUF}) as r:
            assert r.status == 201, await r.text()
    stored = kubectl.emulator.get_object('v1/secrets', 'default', 'hand')
    assert stored is not None and stored['metadata']['labels'] == {'a': 'b'}
