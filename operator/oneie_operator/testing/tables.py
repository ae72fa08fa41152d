"""Server-side ``Table`` output for the emulator, as ``kubectl get`` asks for it.

kubectl sends ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`` on ``get`` (lists,
single objects and watches) and prints the rows the server computed
(https://kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables).
This module renders them as the real API server does:

* **Custom resources**: a ``Name`` column, then the CRD version's ``additionalPrinterColumns``
  (``Age`` on ``.metadata.creationTimestamp`` when the CRD has none, as the API server
  defaults it). Cells follow the column type: ``string`` prints the first value found
  (``None`` when the path finds nothing: kubectl shows ``<none>``), ``integer``/``number``/
  ``boolean`` the JSON value, ``date`` a human duration (``5m10s``, ``3h``, ``2d4h``). Columns
  with ``priority`` > 0 are sent too; kubectl shows them only with ``-o wide``.
  JSONPath: the simple forms CRDs use -- ``.a.b``, ``[N]``, ``[*]`` and
  ``[?(@.key=="value")]`` (also ``!=`` and single quotes); anything else raises
  :class:`ValueError` naming the path.
* **Built-in kinds** with Kubernetes' printers (``pkg/printers/internalversion``): Secrets
  (Name, Type, Data, Age), ConfigMaps (Name, Data, Age), Namespaces (Name, Status, Age), core
  Events (Last Seen, Type, Reason, Object, Message; Subobject, Source, First Seen, Count, Name
  with ``-o wide``). Any other kind gets the API server's default table (Name, Created At).
* ``includeObject``: ``Metadata`` (the default: each row carries a ``PartialObjectMetadata``,
  which kubectl needs for ``-A``'s namespace column and ``--show-labels``), ``Object`` (the
  whole object) or ``None``.

Not emulated: the printers of other built-in kinds (Deployments, RoleBindings... print the
default table), the protobuf form of tables, ``Table`` for ``v1beta1`` beyond its apiVersion.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ['TableRenderer', 'human_duration', 'jsonpath', 'requested_table_version']

JsonDict = dict[str, Any]
Cell = str | int | float | bool | None
Column = JsonDict

_NAME_DESCRIPTION = ('Name must be unique within a namespace. Is required when creating resources, although '
                     'some resources may allow a client to request the generation of an appropriate name '
                     'automatically. Name is primarily intended for creation idempotence and configuration '
                     'definition. Cannot be updated.')
_AGE_DESCRIPTION = ('CreationTimestamp is a timestamp representing the server time when this object was '
                    'created.')


def requested_table_version(accept: str) -> str | None:
    """The ``meta.k8s.io`` version of the Table an ``Accept`` header asks for first, if any."""
    for media_range in accept.split(','):
        params = dict(part.strip().partition('=')[::2] for part in media_range.split(';')[1:])
        if params.get('as') == 'Table' and params.get('g') == 'meta.k8s.io' and params.get('v') in {'v1', 'v1beta1'}:
            return params['v']
        if media_range.split(';')[0].strip() in {'application/json', '*/*'} and 'as' not in params:
            return None  # plain JSON is preferred
    return None


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration`` (apimachinery/pkg/util/duration), as kubectl shows ages."""
    s = int(seconds)
    if s < -1:
        return '<invalid>'
    if s < 0:
        return '0s'
    if s < 120:
        return f'{s}s'
    minutes = s // 60
    if minutes < 10:
        return f'{minutes}m' if s % 60 == 0 else f'{minutes}m{s % 60}s'
    if minutes < 180:
        return f'{minutes}m'
    hours = s // 3600
    if hours < 8:
        return f'{hours}h' if minutes % 60 == 0 else f'{hours}h{minutes % 60}m'
    if hours < 48:
        return f'{hours}h'
    if hours < 24 * 8:
        return f'{hours // 24}d' if hours % 24 == 0 else f'{hours // 24}d{hours % 24}h'
    if hours < 24 * 365 * 2:
        return f'{hours // 24}d'
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f'{hours // 24 // 365}y' if days == 0 else f'{hours // 24 // 365}y{days}d'
    return f'{hours // 24 // 365}y'


def _age(timestamp: Any, now: datetime.datetime) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return '<unknown>'
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace('Z', '+00:00'))
    except ValueError:
        return '<unknown>'
    return human_duration((now - then).total_seconds())


# --- JSONPath (the simple forms of additionalPrinterColumns) -------------------------------------

_TOKEN = re.compile(r'''
    \.(?P<field>[A-Za-z0-9_$-]+)
  | \[(?P<index>-?\d+|\*)\]
  | \[\?\(@\.(?P<fkey>[A-Za-z0-9_.-]+)\s*(?P<op>==|!=)\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<raw>[^)\s]+))\)\]
''', re.VERBOSE)

_Step = tuple[str, Any]  # ('field', name) | ('index', n) | ('all', None) | ('filter', (key, value, equal))


def _get_path(value: Any, dotted: str) -> Any:
    for part in dotted.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@functools.lru_cache(maxsize=256)
def _compile(path: str) -> tuple[_Step, ...]:
    text = path.strip()
    if text.startswith('{') and text.endswith('}'):
        text = text[1:-1]
    steps: list[_Step] = []
    position = 0
    while position < len(text):
        m = _TOKEN.match(text, position)
        if m is None:
            raise ValueError(f'unsupported JSONPath {path!r} (at {text[position:]!r}): the emulator knows '
                             '.field, [N], [*] and [?(@.key=="value")]')
        position = m.end()
        if m['field'] is not None:
            steps.append(('field', m['field']))
        elif m['index'] == '*':
            steps.append(('all', None))
        elif m['index'] is not None:
            steps.append(('index', int(m['index'])))
        else:
            wanted = m['dq'] if m['dq'] is not None else m['sq'] if m['sq'] is not None else m['raw']
            steps.append(('filter', (m['fkey'], wanted, m['op'] == '==')))
    return tuple(steps)


def _step(values: list[Any], step: _Step) -> list[Any]:
    kind, arg = step
    if kind == 'field':
        return [v[arg] for v in values if isinstance(v, dict) and arg in v]
    if kind == 'index':
        return [v[arg] for v in values if isinstance(v, list) and -len(v) <= arg < len(v)]
    items = [i for v in values if isinstance(v, list) for i in v]
    if kind == 'all':
        return items + [i for v in values if isinstance(v, dict) for i in v.values()]
    key, wanted, equal = arg
    return [i for i in items if isinstance(i, dict)
            and (_get_path(i, key) is not None and _text(_get_path(i, key)) == wanted) == equal]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    return str(value)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """All values that a Kubernetes JSONPath of the simple forms finds in ``obj``."""
    values = [obj]
    for step in _compile(path):
        values = _step(values, step)
    return values


# --- Tables -------------------------------------------------------------------------------------


def _column(name: str, type_: str = 'string', description: str = '', priority: int = 0,
            format_: str = '') -> Column:
    return {'name': name, 'type': type_, 'format': format_, 'description': description, 'priority': priority}


_NAME = _column('Name', format_='name', description=_NAME_DESCRIPTION)
_Printer = tuple[Sequence[Column], Callable[[JsonDict, datetime.datetime], list[Cell]]]


def _name(obj: JsonDict) -> str:
    return str((obj.get('metadata') or {}).get('name', ''))


def _created(obj: JsonDict, now: datetime.datetime) -> str:
    return _age((obj.get('metadata') or {}).get('creationTimestamp'), now)


def _event_cells(obj: JsonDict, now: datetime.datetime) -> list[Cell]:
    """Kubernetes' printEvent: ages of first/last occurrence, ``kind/name`` of the object, source."""
    meta = obj.get('metadata') or {}
    first = obj.get('firstTimestamp') or obj.get('eventTime') or meta.get('creationTimestamp')
    last = obj.get('lastTimestamp') or obj.get('eventTime') or first
    count = obj.get('count') or 1
    last_seen = _age(last, now)
    if count > 1:
        last_seen = f'{last_seen} (x{count} over {_age(first, now)})'
    involved = obj.get('involvedObject') or {}
    source = obj.get('source') or {}
    source_text = source.get('component') or obj.get('reportingComponent') or ''
    if source.get('host'):
        source_text = f'{source_text}, {source["host"]}'
    return [last_seen, obj.get('type', ''), obj.get('reason', ''),
            f'{str(involved.get("kind", "")).lower()}/{involved.get("name", "")}',
            involved.get('fieldPath', ''), source_text, obj.get('message', ''), _age(first, now),
            int(count), _name(obj)]


_BUILTIN: dict[tuple[str, str], _Printer] = {
    ('', 'secrets'): (
        [_NAME, _column('Type', description='The type of the Secret'),
         _column('Data', 'string', 'The number of entries in the data'), _column('Age', description=_AGE_DESCRIPTION)],
        lambda obj, now: [_name(obj), obj.get('type', ''), len(obj.get('data') or {}), _created(obj, now)]),
    ('', 'configmaps'): (
        [_NAME, _column('Data', 'string', 'The number of entries in the data'),
         _column('Age', description=_AGE_DESCRIPTION)],
        lambda obj, now: [_name(obj), len(obj.get('data') or {}) + len(obj.get('binaryData') or {}),
                          _created(obj, now)]),
    ('', 'namespaces'): (
        [_NAME, _column('Status', description='The status of the namespace'),
         _column('Age', description=_AGE_DESCRIPTION)],
        lambda obj, now: [_name(obj), (obj.get('status') or {}).get('phase', ''), _created(obj, now)]),
    ('', 'events'): (
        [_column('Last Seen', description='The time at which the most recent occurrence of this event was '
                                          'recorded.'),
         _column('Type', description='Type of this event (Normal, Warning).'),
         _column('Reason', description='The reason for the transition into the object\'s current status.'),
         _column('Object', description='The object that this event is about.'),
         _column('Subobject', description='The field of the object the event is about.', priority=1),
         _column('Source', description='The component reporting this event.', priority=1),
         _column('Message', description='A human-readable description of the status of this operation.'),
         _column('First Seen', description='The time at which the event was first recorded.', priority=1),
         _column('Count', description='The number of times this event has occurred.', priority=1),
         _column('Name', description=_NAME_DESCRIPTION, priority=1)],
        _event_cells),
}
_DEFAULT: _Printer = (
    [_NAME, _column('Created At', 'date', _AGE_DESCRIPTION)],
    lambda obj, now: [_name(obj), (obj.get('metadata') or {}).get('creationTimestamp')])


def _custom_printer(columns: Iterable[Mapping[str, Any]]) -> _Printer:
    specs = list(columns) or [{'name': 'Age', 'type': 'date', 'jsonPath': '.metadata.creationTimestamp'}]
    definitions = [_NAME, *(_column(str(c['name']), str(c.get('type', 'string')), str(c.get('description', '')),
                                    int(c.get('priority', 0)), str(c.get('format', ''))) for c in specs)]

    def cells(obj: JsonDict, now: datetime.datetime) -> list[Cell]:
        row: list[Cell] = [_name(obj)]
        for column in specs:
            found = jsonpath(obj, str(column['jsonPath']))
            value = found[0] if found else None
            kind = column.get('type', 'string')
            if value is None:
                row.append(None)
            elif kind == 'date':
                row.append(_age(value, now))
            elif kind == 'string':
                row.append(value if isinstance(value, str) else _json_text(value))
            elif kind == 'integer' and isinstance(value, (int, float)) and not isinstance(value, bool):
                row.append(int(value))
            elif kind == 'number' and isinstance(value, (int, float)) and not isinstance(value, bool):
                row.append(value)
            elif kind == 'boolean' and isinstance(value, bool):
                row.append(value)
            else:
                row.append(None)  # the real server leaves a cell of the wrong type empty
        return row
    return definitions, cells


def _json_text(value: Any) -> str:
    return _text(value) if not isinstance(value, (dict, list)) else json.dumps(value, separators=(',', ':'))


class TableRenderer:
    """Builds ``meta.k8s.io`` Tables for one resource."""

    def __init__(self, group: str, plural: str, printer_columns: Iterable[Mapping[str, Any]] | None) -> None:
        """``printer_columns``: the CRD version's ``additionalPrinterColumns`` (None: not a CRD)."""
        if printer_columns is not None:
            self._columns, self._cells = _custom_printer(printer_columns)
        else:
            self._columns, self._cells = _BUILTIN.get((group, plural), _DEFAULT)

    def table(self, objects: Iterable[JsonDict], *, version: str = 'v1', include: str = 'Metadata',
              resource_version: str | None = None, headers: bool = True) -> JsonDict:
        now = datetime.datetime.now(tz=datetime.UTC)
        rows = []
        for obj in objects:
            row: JsonDict = {'cells': self._cells(obj, now)}
            if include == 'Object':
                row['object'] = obj
            elif include != 'None':
                row['object'] = {'kind': 'PartialObjectMetadata', 'apiVersion': f'meta.k8s.io/{version}',
                                 'metadata': obj.get('metadata') or {}}
            rows.append(row)
        table: JsonDict = {'kind': 'Table', 'apiVersion': f'meta.k8s.io/{version}',
                           'metadata': {} if resource_version is None else {'resourceVersion': resource_version},
                           'columnDefinitions': list(self._columns) if headers else [], 'rows': rows}
        return table
