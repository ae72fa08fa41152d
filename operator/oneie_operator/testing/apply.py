"""Server-side apply for the emulator: field managers, ``managedFields`` and conflicts.

What ``kubectl apply --server-side``, Argo CD (``ServerSideApply=true``) and Flux send is a
``PATCH`` with ``Content-Type: application/apply-patch+yaml`` and ``?fieldManager=NAME``
(https://kubernetes.io/docs/reference/using-api/server-side-apply/). This module reproduces
the part of it that this project's tests, docs and demo rely on:

* ``fieldManager`` is required (400 otherwise); the applied configuration is merged into the
  object (maps merged, lists replaced) and the fields it sets are recorded for that manager in
  ``metadata.managedFields`` (``operation: Apply``, ``fieldsType: FieldsV1``, ``fieldsV1`` in
  the real ``f:<name>`` form);
* applying a field that another manager owns with a different value is a 409 ``Conflict``:
  ``Apply failed with N conflict(s): conflict with "mgr": .spec.x`` with ``details.causes`` of
  ``{reason: FieldManagerConflict, message: 'conflict with "mgr"', field: .spec.x}``
  (``using <apiVersion>`` for managers of Update operations); ``force=true``
  (``--force-conflicts``) takes the fields over; the same value is shared ownership;
* a field the manager applied before and no longer applies is removed from the object, unless
  another manager also owns it;
* on an object that has ``managedFields``, other writes (PUT and non-apply PATCH of the main
  resource) record ``operation: Update`` for their manager (``fieldManager``, else the
  client's user agent up to the first ``/``) over the fields they changed, taking them from
  other managers, as the API server does.

Not emulated: lists merged by key (``x-kubernetes-list-type: map``) or as sets -- a list is
one field, replaced whole --; granular/atomic map markers; managedFields for objects that were
never server-side applied (the real server records every write); ownership of ``status``
writes; ``.`` (the node itself) entries of fieldsV1.
"""

from __future__ import annotations

import contextvars
import copy
import datetime
from collections.abc import Iterable
from typing import Any

__all__ = ['MANAGER', 'ApplyConflict', 'apply', 'fields_of', 'record_update', 'to_fields_v1']

JsonDict = dict[str, Any]
Path = tuple[str, ...]

#: The field manager of the request being served (``fieldManager``, else from the user agent).
MANAGER: contextvars.ContextVar[str] = contextvars.ContextVar('field_manager', default='unknown')

_IGNORED_META = {'name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp',
                 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink'}


class ApplyConflict(Exception):
    """Fields owned by other managers with other values: (manager, operation, apiVersion, path)."""

    def __init__(self, conflicts: list[tuple[str, str, str, Path]]) -> None:
        self.conflicts = conflicts
        super().__init__(self.message)

    @staticmethod
    def _who(manager: str, operation: str, api_version: str) -> str:
        return f'conflict with "{manager}"' + (f' using {api_version}' if operation == 'Update' else '')

    @property
    def message(self) -> str:
        count = len(self.conflicts)
        texts = [f'{self._who(m, o, v)}: {_dotted(p)}' for m, o, v, p in self.conflicts]
        listed = texts[0] if count == 1 else '\n' + '\n'.join(f'- {t}' for t in texts)
        return f'Apply failed with {count} conflict{"s" if count > 1 else ""}: {listed}'

    @property
    def causes(self) -> list[JsonDict]:
        return [{'reason': 'FieldManagerConflict', 'message': self._who(m, o, v), 'field': _dotted(p)}
                for m, o, v, p in self.conflicts]


def _dotted(path: Path) -> str:
    return ''.join(f'.{part}' for part in path)


def fields_of(obj: Any, prefix: Path = (), *, top: bool = True) -> set[Path]:
    """The leaf fields an object sets (maps recursed; lists and scalars are leaves)."""
    fields: set[Path] = set()
    if not isinstance(obj, dict):
        return {prefix}
    if not obj and not top:
        return {prefix}
    for key, value in obj.items():
        if top and key in {'apiVersion', 'kind', 'status'}:
            continue
        if top and key == 'metadata' and isinstance(value, dict):
            for meta_key, meta_value in value.items():
                if meta_key not in _IGNORED_META:
                    fields |= fields_of(meta_value, ('metadata', meta_key), top=False)
            continue
        fields |= fields_of(value, (*prefix, key), top=False)
    return fields


def to_fields_v1(fields: Iterable[Path]) -> JsonDict:
    """The ``fieldsV1`` form: ``{"f:spec": {"f:provider": {}}}``."""
    tree: JsonDict = {}
    for path in sorted(fields):
        node = tree
        for part in path:
            node = node.setdefault(f'f:{part}', {})
    return tree


def _from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    if not isinstance(tree, dict) or not tree:
        return {prefix} if prefix else set()
    fields: set[Path] = set()
    for key, sub in tree.items():
        if key.startswith('f:'):
            fields |= _from_fields_v1(sub, (*prefix, key[2:]))
    return fields


_MISSING = object()


def _get(obj: Any, path: Path) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _delete(obj: JsonDict, path: Path) -> None:
    parents = [obj]
    for part in path[:-1]:
        child = parents[-1].get(part)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):  # drop maps that became empty
        if parents[depth] == {}:
            parents[depth - 1].pop(path[depth - 1], None)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    result = dict(target)
    for key, value in patch.items():
        result[key] = _merge(result.get(key), value)
    return result


def _entry(manager: str, operation: str, api_version: str, fields: set[Path]) -> JsonDict:
    now = datetime.datetime.now(tz=datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')
    return {'manager': manager, 'operation': operation, 'apiVersion': api_version, 'time': now,
            'fieldsType': 'FieldsV1', 'fieldsV1': to_fields_v1(fields)}


def _entries(obj: JsonDict) -> list[JsonDict]:
    return [e for e in (obj.get('metadata') or {}).get('managedFields') or [] if isinstance(e, dict)]


def _rebuild(entries: list[tuple[JsonDict, set[Path]]]) -> list[JsonDict]:
    return [{**entry, 'fieldsV1': to_fields_v1(fields)} for entry, fields in entries if fields]


def apply(old: JsonDict | None, applied: JsonDict, manager: str, force: bool, api_version: str) -> JsonDict:
    """The object after ``manager`` applied ``applied`` (raises :class:`ApplyConflict`)."""
    old = old or {}
    mine = fields_of(applied)
    others: list[tuple[JsonDict, set[Path]]] = []
    previous: set[Path] = set()
    for entry in _entries(old):
        owned = _from_fields_v1(entry.get('fieldsV1'))
        if entry.get('manager') == manager and entry.get('operation') == 'Apply':
            previous = owned
        else:
            others.append((entry, owned))
    conflicts = []
    for entry, owned in others:
        for path in sorted(owned & mine):
            if _get(old, path) != _get(applied, path):
                conflicts.append((str(entry.get('manager')), str(entry.get('operation')),
                                  str(entry.get('apiVersion', '')), path))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    if force:
        others = [(entry, owned - mine) for entry, owned in others]
    result: JsonDict = _merge({k: v for k, v in old.items() if k != 'status'}, applied)
    if 'status' in old:
        result['status'] = old['status']
    still_owned = set().union(*(owned for _, owned in others)) if others else set()
    for path in previous - mine - still_owned:
        _delete(result, path)
    managed = [*_rebuild(others), _entry(manager, 'Apply', api_version, mine)]
    result['metadata'] = {**(result.get('metadata') or {}), 'managedFields': managed}
    return result


def record_update(old: JsonDict, new: JsonDict, manager: str, api_version: str) -> JsonDict:
    """After a non-apply write: ``manager`` owns the fields it changed (only if ``old`` is managed)."""
    entries = _entries(old)
    if not entries:
        return new
    before, after = fields_of(old), fields_of(new)
    changed = {p for p in after if _get(old, p) != _get(new, p)}
    removed = before - after
    kept: list[tuple[JsonDict, set[Path]]] = []
    mine: set[Path] = set()
    for entry in entries:
        owned = _from_fields_v1(entry.get('fieldsV1'))
        if entry.get('manager') == manager and entry.get('operation') == 'Update':
            mine = owned
        else:
            kept.append((entry, owned - changed - removed))
    mine = (mine | changed) - removed
    managed = _rebuild(kept) + ([_entry(manager, 'Update', api_version, mine)] if mine else [])
    return {**new, 'metadata': {**(new.get('metadata') or {}), 'managedFields': managed}}
