"""Decode the Kubernetes protobuf bodies that kubectl sends for a few built-in kinds.

kubectl's typed commands (``kubectl create secret generic``, ``create configmap``, ``create
namespace``) send ``Content-Type: application/vnd.kubernetes.protobuf`` and do not fall back to
JSON when a server refuses it (they accept a JSON answer). The format
(https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding): the 4-byte
magic ``k8s\\x00``, then a ``runtime.Unknown`` message (1: ``typeMeta`` {1: apiVersion, 2: kind},
2: ``raw`` -- the object's own message --, 3: contentEncoding, 4: contentType), with the field
numbers of ``k8s.io/api/core/v1/generated.proto`` and
``k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto``.

No maintained Python package carries these messages (``k8s-proto`` on PyPI dates from 2019), so
this is a small hand-written decoder of the protobuf wire format for exactly the messages
needed: ``v1`` ``Secret``, ``ConfigMap`` and ``Namespace`` with ``ObjectMeta`` (name,
generateName, namespace, uid, resourceVersion, generation, labels, annotations,
ownerReferences, finalizers). Zero values are left out, as Go's JSON encoding omits them. Any
other kind, an unknown field or a malformed body raises :class:`ProtobufError`, whose message
says so (the emulator answers 415 or 400): nothing is silently dropped.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any, Union

__all__ = ['MAGIC', 'ProtobufError', 'UnsupportedKind', 'decode']

MAGIC = b'k8s\x00'

JsonDict = dict[str, Any]


class ProtobufError(ValueError):
    """A body that is not a well-formed Kubernetes protobuf message of a known shape."""


class UnsupportedKind(ProtobufError):
    """A well-formed envelope of a kind this decoder does not know."""


# A message: field number -> (JSON name, type, repeated). A type is a scalar name, a message, or
# ('map', value type) for map<string, value type> (map entries: 1 key, 2 value).
FieldType = Union[str, 'Message', tuple[str, str]]
Message = Mapping[int, tuple[str, FieldType, bool]]

_TIME: Message = {1: ('seconds', 'int64', False), 2: ('nanos', 'int32', False)}
_OWNER_REFERENCE: Message = {
    1: ('kind', 'string', False), 3: ('name', 'string', False), 4: ('uid', 'string', False),
    5: ('apiVersion', 'string', False), 6: ('controller', 'bool', False),
    7: ('blockOwnerDeletion', 'bool', False)}
_OBJECT_META: Message = {
    1: ('name', 'string', False), 2: ('generateName', 'string', False), 3: ('namespace', 'string', False),
    4: ('selfLink', 'string', False), 5: ('uid', 'string', False), 6: ('resourceVersion', 'string', False),
    7: ('generation', 'int64', False), 8: ('creationTimestamp', _TIME, False),
    9: ('deletionTimestamp', _TIME, False), 10: ('deletionGracePeriodSeconds', 'int64', False),
    11: ('labels', ('map', 'string'), False), 12: ('annotations', ('map', 'string'), False),
    13: ('ownerReferences', _OWNER_REFERENCE, True), 14: ('finalizers', 'string', True)}
_KINDS: Mapping[tuple[str, str], Message] = {
    ('v1', 'Secret'): {
        1: ('metadata', _OBJECT_META, False), 2: ('data', ('map', 'bytes'), False), 3: ('type', 'string', False),
        4: ('stringData', ('map', 'string'), False), 5: ('immutable', 'bool', False)},
    ('v1', 'ConfigMap'): {
        1: ('metadata', _OBJECT_META, False), 2: ('data', ('map', 'string'), False),
        3: ('binaryData', ('map', 'bytes'), False), 4: ('immutable', 'bool', False)},
    ('v1', 'Namespace'): {
        1: ('metadata', _OBJECT_META, False), 2: ('spec', {1: ('finalizers', 'string', True)}, False),
        3: ('status', {1: ('phase', 'string', False)}, False)},
}
_TYPE_META: Message = {1: ('apiVersion', 'string', False), 2: ('kind', 'string', False)}
_UNKNOWN: Message = {1: ('typeMeta', _TYPE_META, False), 2: ('raw', 'raw', False),
                     3: ('contentEncoding', 'string', False), 4: ('contentType', 'string', False)}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError('truncated or overlong varint')
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """The (field number, wire type, value) of a message; length-delimited values stay bytes."""
    fields: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError('a length-delimited field runs past the end of the message')
            value, pos = data[pos:pos + length], pos + length
        elif wire in {1, 5}:
            size = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos:pos + size], 'little'), pos + size
        else:
            raise ProtobufError(f'unsupported wire type {wire} (field {number})')
        fields.append((number, wire, value))
    return fields


def _scalar(kind: str, wire: int, value: Any, where: str) -> Any:
    expected = 0 if kind in {'int64', 'int32', 'bool'} else 2
    if wire != expected:
        raise ProtobufError(f'{where}: wire type {wire} where {kind} was expected')
    if kind == 'string':
        try:
            return bytes(value).decode('utf-8')
        except UnicodeDecodeError as e:
            raise ProtobufError(f'{where}: not UTF-8') from e
    if kind in {'bytes', 'raw'}:
        return bytes(value)
    if kind == 'bool':
        return bool(value)
    return value - (1 << 64) if value >= 1 << 63 else value  # two's complement int64/int32


def _message(data: bytes, message: Message, where: str) -> JsonDict:
    result: JsonDict = {}
    for number, wire, value in _fields(data):
        if number not in message:
            raise ProtobufError(f'{where}: field {number} is not known to the emulator\'s protobuf decoder '
                                '(send JSON instead)')
        name, kind, repeated = message[number]
        path = f'{where}.{name}'
        decoded: Any
        if isinstance(kind, tuple):  # map<string, value>: one entry per occurrence
            entry = {n: (w, v) for n, w, v in _fields(_scalar('bytes', wire, value, path))}
            key = _scalar('string', *entry[1], path) if 1 in entry else ''
            item: Any = _scalar(kind[1], *entry[2], path) if 2 in entry else (b'' if kind[1] == 'bytes' else '')
            result.setdefault(name, {})[key] = base64.b64encode(item).decode() if kind[1] == 'bytes' else item
            continue
        if isinstance(kind, str):
            decoded = _scalar(kind, wire, value, path)
        else:
            decoded = _message(_scalar('bytes', wire, value, path), kind, path)
            if kind is _TIME:
                decoded = _timestamp(decoded)
        if repeated:
            result.setdefault(name, []).append(decoded)
        else:
            result[name] = decoded
    return {k: v for k, v in result.items() if v not in ('', 0, False, None, {}, [])}


def _timestamp(time: JsonDict) -> str | None:
    if not time.get('seconds'):
        return None
    moment = datetime.datetime.fromtimestamp(time['seconds'], tz=datetime.UTC)
    return moment.strftime('%Y-%m-%dT%H:%M:%SZ')


def decode(body: bytes) -> JsonDict:
    """The JSON form of a ``application/vnd.kubernetes.protobuf`` body of a supported kind."""
    if not body.startswith(MAGIC):
        raise ProtobufError('the body does not start with the Kubernetes protobuf magic number "k8s\\x00"')
    envelope = _message(body[len(MAGIC):], _UNKNOWN, 'Unknown')
    type_meta = envelope.get('typeMeta') or {}
    api_version, kind = type_meta.get('apiVersion', ''), type_meta.get('kind', '')
    if envelope.get('contentEncoding'):
        raise ProtobufError(f'unsupported content encoding {envelope["contentEncoding"]!r}')
    message = _KINDS.get((api_version, kind))
    if message is None:
        known = ', '.join(k for _, k in sorted(_KINDS))
        raise UnsupportedKind(f'the emulator decodes protobuf bodies of v1 {known} only, not '
                              f'{api_version or "?"} {kind or "?"}: send JSON')
    obj = _message(envelope.get('raw', b''), message, kind)
    return {'apiVersion': api_version, 'kind': kind, **obj}
