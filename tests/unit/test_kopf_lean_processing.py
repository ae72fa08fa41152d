"""What the kopfpatches ``fastviews``, ``causes``, ``echoes`` and ``changing`` change, against Kopf's own code.

Each test runs Kopf's original beside the replacement on the same input (real Kopf objects:
registries, settings, bodies, patches, indexers), so a difference in behaviour fails here; the
Kopf internals they rely on are pinned by ``test_kopf_canaries.py``.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf._cogs.structs import bodies, dicts, references
from kopf._core.engines import indexing
from kopf._core.reactor import inventory

from oneie_operator.handlers.kopfpatches import causes, changing, echoes, fastviews
from oneie_operator.handlers.kopfpatches import indexing as lean_indexing

# --- fastviews -------------------------------------------------------------------------------

KEYS = st.sampled_from(["metadata", "spec", "status", "name", "labels", "x"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=2) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


def _answer(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except (KeyError, TypeError) as exc:
        return type(exc).__name__, None


@settings(max_examples=300, deadline=None)
@given(body=st.dictionaries(KEYS, JSON, max_size=4), path=st.lists(KEYS, max_size=3), key=KEYS)
def test_fastviews_answer_as_kopf_answers(body: dict[str, Any], path: list[str], key: str) -> None:
    """Any JSON body, a view of any path (directly or as a view over a Body), any key: the same
    value or the same error as Kopf's own lookup, for ``[]`` and ``.get``."""
    for view in (
        dicts.MappingView(body, tuple(path)),
        dicts.MappingView(bodies.Body(body), tuple(path)),
        dicts.MappingView(dicts.MappingView(bodies.Body(body), tuple(path[:1])), tuple(path[1:])),
    ):
        assert _answer(fastviews.getitem, view, key) == _answer(fastviews.KOPF_GETITEM, view, key)
        assert _answer(fastviews.get, view, key, "d") == _answer(fastviews.KOPF_GET, view, key, "d")


def test_fastviews_leave_non_dicts_to_kopf() -> None:
    patch = kopf.Patch()
    patch["status"] = {"a": 1}
    view = dicts.MappingView(patch, "status")  # a view over a Patch (a dict subclass): Kopf's path
    assert fastviews.getitem(view, "a") == 1 and fastviews.get(view, "b", 2) == 2
    body = bodies.Body({"spec": "not a mapping"})
    with pytest.raises(TypeError):
        fastviews.getitem(body.spec, "x")
    with pytest.raises(TypeError):
        fastviews.get(body.spec, "x")  # Mapping.get lets Kopf's TypeError through, as here


def test_fastviews_install_and_uninstall() -> None:
    body = bodies.Body({"metadata": {"name": "n"}})
    fastviews.install()
    try:
        assert dicts.MappingView.__getitem__ is fastviews.getitem
        assert body.metadata.name == "n" and body.meta.get("uid", "none") == "none"
        body._replace_with({"metadata": {"name": "m"}})  # a replaced source is seen at once
        assert body.metadata.name == "m"
    finally:
        fastviews.uninstall()
    assert dicts.MappingView.__getitem__ is fastviews.KOPF_GETITEM


# --- causes ----------------------------------------------------------------------------------

RESOURCE = references.Resource("one.ie", "v1alpha1", "organizations", namespaced=True)
SECRETS = references.Resource("", "v1", "secrets", namespaced=True)


def _detect(fn: Any, registry: kopf.OperatorRegistry, resource: references.Resource, raw: dict[str, Any]) -> Any:
    body = kopf.Body(raw["object"])
    logger = logging.getLogger("test")
    memory = inventory.ResourceMemory()
    st = kopf.OperatorSettings()
    st.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    st.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="kopf")
    return fn(
        indexers=indexing.OperatorIndexers(),
        registry=registry,
        settings=st,
        resource=resource,
        raw_event=raw,
        body=body,
        patch=kopf.Patch(),
        memory=memory,
        local_logger=logger,
        event_logger=logger,
    )


async def test_causes_watch_only_kind_gets_kopfs_watching_cause_and_nothing_else() -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.event("", "v1", "secrets", registry=registry)
    async def seen(**_: Any) -> None: ...

    raw = {
        "type": "MODIFIED",
        "object": {"metadata": {"namespace": "t", "name": "s", "uid": "u"}, "data": {"k": "dmFsdWU="}},
    }
    ours, theirs = (
        _detect(causes.detect_causes, registry, SECRETS, raw),
        _detect(causes.KOPF_DETECT_CAUSES, registry, SECRETS, raw),
    )
    assert theirs.spawning_cause is None and theirs.changing_cause is None
    assert ours.spawning_cause is None and ours.changing_cause is None
    assert ours.watching_cause.type == theirs.watching_cause.type == "MODIFIED"
    assert ours.watching_cause.event is raw and ours.watching_cause.body == theirs.watching_cause.body
    nothing = kopf.OperatorRegistry()  # a kind with no handlers at all: no causes either way
    assert tuple(_detect(causes.detect_causes, nothing, SECRETS, raw)) == (None, None, None)


async def test_causes_kinds_with_change_handlers_go_through_kopf() -> None:
    registry = kopf.OperatorRegistry()

    @kopf.on.update("one.ie", "v1alpha1", "organizations", registry=registry)
    async def updated(**_: Any) -> None: ...

    raw = {"type": "MODIFIED", "object": {"metadata": {"namespace": "t", "name": "o", "uid": "u"}, "spec": {"x": 1}}}
    ours = _detect(causes.detect_causes, registry, RESOURCE, raw)
    assert (
        ours.changing_cause is not None
        and ours.changing_cause.diff == _detect(causes.KOPF_DETECT_CAUSES, registry, RESOURCE, raw).changing_cause.diff
    )


# --- echoes ----------------------------------------------------------------------------------


def _settings() -> kopf.OperatorSettings:
    st = kopf.OperatorSettings()
    st.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    return st


def _org(version: str, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "t",
            "name": "o",
            "uid": "u-o",
            "resourceVersion": version,
            "generation": 2,
            "annotations": {"a": "1"},
            **meta,
        },
        "spec": {"ref": "b"},
        "status": {"active": "a"},
    }


def _status_patch(**status: Any) -> kopf.Patch:
    patch = kopf.Patch()
    patch["status"] = {"active": "b", "kopf": {"progress": {"reconcile": None}}, **status}
    return patch


def _result(version: str, **meta: Any) -> dict[str, Any]:
    body = _org(version, **meta)
    body["status"] = {"active": "b", "kopf": {"last-handled-configuration": "{}"}}
    return body


def _change_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.update("one.ie", "v1alpha1", "organizations", registry=registry)
    async def updated(**_: Any) -> None: ...

    return registry


def _echo(
    record: echoes.PatchRecord | None,
    *,
    registry: kopf.OperatorRegistry | None = None,
    st: kopf.OperatorSettings | None = None,
    handled: dict[str, Any] | None = None,
) -> str | None:
    return echoes.echo_version(
        registry=registry or _change_registry(),
        settings=st or _settings(),
        resource=RESOURCE,
        handled=handled or _org("10"),
        record=record,
    )


def test_echoes_a_finished_status_patch_expects_its_echo() -> None:
    assert _echo(echoes.PatchRecord(_status_patch(), _result("11"), None)) == "11"


@pytest.mark.parametrize(
    "why, record",
    [
        ("no patch", None),
        ("the patch failed", echoes.PatchRecord(_status_patch(), None, None)),
        ("something left to re-apply", echoes.PatchRecord(_status_patch(), _result("11"), {"status": {"x": 1}})),
        (
            "a handler still in progress",
            echoes.PatchRecord(
                _status_patch(),
                {**_result("11"), "status": {"kopf": {"progress": {"reconcile": {"retries": 1}}}}},
                None,
            ),
        ),
        (
            "a touch (Kopf's wake-up for a retry)",
            echoes.PatchRecord(_status_patch(kopf={"dummy": "2026-12-06T00:00:00"}), _result("11"), None),
        ),
        (
            "not a status-only patch",
            echoes.PatchRecord(
                kopf.Patch({"status": {"a": 1}, "metadata": {"finalizers": ["x"]}}), _result("11"), None
            ),
        ),
        ("someone changed the spec meanwhile", echoes.PatchRecord(_status_patch(), _result("11", generation=3), None)),
        (
            "someone changed an annotation meanwhile",
            echoes.PatchRecord(_status_patch(), _result("11", annotations={"a": "2"}), None),
        ),
        ("a finalizer appeared", echoes.PatchRecord(_status_patch(), _result("11", finalizers=["f"]), None)),
        (
            "being deleted",
            echoes.PatchRecord(_status_patch(), _result("11", deletionTimestamp="2026-12-06T00:00:00Z"), None),
        ),
    ],
)
def test_echoes_anything_else_goes_through_kopf(why: str, record: echoes.PatchRecord | None) -> None:
    assert _echo(record) is None, why


def test_echoes_json_patch_ops_or_watch_handlers_or_other_storage_go_through_kopf() -> None:
    with_ops = _status_patch()
    with_ops.fns.append(lambda body: body)
    assert _echo(echoes.PatchRecord(with_ops, _result("11"), None)) is None
    watched = _change_registry()

    @kopf.on.event("one.ie", "v1alpha1", "organizations", registry=watched)
    async def every_event(**_: Any) -> None: ...

    assert _echo(echoes.PatchRecord(_status_patch(), _result("11"), None), registry=watched) is None
    annotations = kopf.OperatorSettings()
    annotations.persistence.progress_storage = kopf.AnnotationsProgressStorage()
    assert _echo(echoes.PatchRecord(_status_patch(), _result("11"), None), st=annotations) is None


async def test_echoes_only_the_expected_version_is_skipped_and_it_is_still_indexed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kopf's processing (its function, standing in for the API server's answer to its patch)
    sees every event but the echo of its own finished patch; the echo still reaches the index;
    another event of the object, or a second echo of the same version, goes through Kopf."""
    registry = _change_registry()

    @kopf.index("one.ie", "v1alpha1", "organizations", registry=registry, id="active")
    @lean_indexing.lean_indexer
    async def active(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict[str, str]:
        return {str(status.get("active")): name}

    processed: list[str] = []
    answers: dict[str, dict[str, Any]] = {"10": _result("11")}

    async def kopf_processing(*, raw_event: dict[str, Any], **_: Any) -> str | None:
        version = raw_event["object"]["metadata"]["resourceVersion"]
        processed.append(version)
        answer = answers.get(version)
        if answer is None:
            return None
        await echoes.patch_obj(patch=_status_patch())  # as Kopf's application.apply calls it
        return str(answer["metadata"]["resourceVersion"])

    async def api_answers(*, patch: Any, **_: Any) -> tuple[dict[str, Any], None]:
        return answers[processed[-1]], None

    monkeypatch.setattr(echoes, "KOPF_PROCESS_RESOURCE_EVENT", kopf_processing)
    monkeypatch.setattr(echoes, "KOPF_PATCH_OBJ", api_answers)
    monkeypatch.setattr(indexing, "index_resource", lean_indexing.index_resource)
    indexers = indexing.OperatorIndexers()
    indexers.ensure(registry._indexing.get_all_handlers())
    common = dict(
        resource=RESOURCE,
        registry=registry,
        settings=_settings(),
        indexers=indexers,
        memories=inventory.ResourceMemories(),
        memobase=kopf.Memo(),
    )

    echoes.forget_echoes()  # an operator run earlier in this process may have left some

    async def event(version: str, body: dict[str, Any] | None = None) -> str | None:
        raw = {"type": "MODIFIED", "object": body or _org(version)}
        return await echoes.process_resource_event(raw_event=raw, **common)

    try:
        assert await event("10") == "11" and echoes.expected_echoes() == 1
        assert await event("11", _result("11")) is None, "the echo: skipped"
        assert processed == ["10"] and echoes.expected_echoes() == 0
        index = {k: list(v) for k, v in indexers.indices["active"].items()}
        assert index == {"b": ["o"]}, "the echo's status reached the index"
        assert await event("11", _result("11")) is None and processed == ["10", "11"], "once only"
        answers["12"] = _result("13")
        await event("12")
        await event("14")  # not the expected echo: through Kopf, and the expectation is dropped
        assert processed == ["10", "11", "12", "14"] and echoes.expected_echoes() == 0
    finally:
        echoes.forget_echoes()


async def test_echoes_the_operators_own_write_is_only_indexed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A declared own write: its MODIFIED echo (that version exactly) skips Kopf; another version,
    an ADDED event, or the same version again go through Kopf."""
    processed: list[tuple[str, str]] = []

    async def kopf_processing(*, raw_event: dict[str, Any], **_: Any) -> None:
        processed.append((raw_event["type"], raw_event["object"]["metadata"]["resourceVersion"]))

    monkeypatch.setattr(echoes, "KOPF_PROCESS_RESOURCE_EVENT", kopf_processing)
    registry = kopf.OperatorRegistry()
    common = dict(resource=SECRETS, registry=registry, settings=_settings(), indexers=indexing.OperatorIndexers(),
                  memories=inventory.ResourceMemories(), memobase=kopf.Memo())

    async def event(kind: str, version: str) -> None:
        body = {"metadata": {"namespace": "t", "name": "b", "uid": "u-b", "resourceVersion": version}}
        await echoes.process_resource_event(raw_event={"type": kind, "object": body}, **common)

    echoes.forget_echoes()
    before = echoes.skipped_echoes("secrets")
    try:
        echoes.expect_own_write("", "v1", "secrets", "t", "b", "5")
        await event("MODIFIED", "5")
        assert processed == [] and echoes.skipped_echoes("secrets") == before + 1
        await event("MODIFIED", "5")
        echoes.expect_own_write("", "v1", "secrets", "t", "b", "7")
        await event("MODIFIED", "6")  # someone else's write came first: Kopf, and the expectation is gone
        await event("MODIFIED", "7")
        echoes.expect_own_write("", "v1", "secrets", "t", "b", "8")
        await event("ADDED", "8")
        echoes.expect_own_write("", "v1", "secrets", "t", "other", "9")
        await event("MODIFIED", "9")  # another object's version
        assert processed == [("MODIFIED", "5"), ("MODIFIED", "6"), ("MODIFIED", "7"), ("ADDED", "8"),
                             ("MODIFIED", "9")]
        assert echoes.skipped_echoes("secrets") == before + 1
    finally:
        echoes.forget_echoes()


# --- changing --------------------------------------------------------------------------------


def _changing_settings() -> kopf.OperatorSettings:
    st = kopf.OperatorSettings()
    st.persistence.progress_storage = kopf.StatusProgressStorage(name="kopf")
    st.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name="kopf")
    return st


def _pruned(value: Any) -> Any:
    """A merge patch without its empty objects (no-ops: Kopf leaves ``progress: {}`` behind)."""
    if isinstance(value, dict):
        pruned = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v != {}}
    return value


async def _change(
    fn: Any, registry: kopf.OperatorRegistry, body: dict[str, Any], *, kind: str = "MODIFIED"
) -> tuple[dict[str, Any], bool, Any]:
    """One change cause of ``body`` as Kopf detects it, handled by ``fn`` (Kopf's
    ``process_changing_cause`` or ours): (the patch, handled once?, the delays)."""
    from kopf._core.actions import lifecycles
    from kopf._core.reactor import processing

    st = _changing_settings()
    memory = inventory.ResourceMemory()
    memory.fully_handled_once = kind != "RESUME"
    raw = {"type": None if kind == "RESUME" else kind, "object": body}
    logger = logging.getLogger("kopf.objects")
    found = processing._detect_causes(
        indexers=indexing.OperatorIndexers(), registry=registry, settings=st, resource=RESOURCE, raw_event=raw,
        body=kopf.Body(body), patch=kopf.Patch(), memory=memory, local_logger=logger, event_logger=logger,
    )
    cause = found.changing_cause
    assert cause is not None
    delays = await fn(lifecycle=lifecycles.asap, registry=registry, settings=st, memory=memory, cause=cause)
    return _pruned(dict(cause.patch)), memory.fully_handled_once, delays


def _changed_org(**status: Any) -> dict[str, Any]:
    body = _org("10")
    body["status"] = dict(status)
    return body


def _lean_registry(calls: list[dict[str, Any]], *, fail: int = 0, returns: Any = None,
                   marked: bool = True) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    async def reconcile(patch: kopf.Patch, **kwargs: Any) -> Any:
        calls.append({"patch": patch, **kwargs})
        if len(calls) <= fail:
            raise ValueError("a bug")
        patch.status["active"] = "b"
        return returns

    fn = changing.lean_changer(reconcile) if marked else reconcile
    for decorator in (kopf.on.resume, kopf.on.create, kopf.on.update):
        decorator("one.ie", "v1alpha1", "organizations", registry=registry, id="reconcile")(fn)
    return registry


@pytest.mark.parametrize("kind", ["MODIFIED", "ADDED", "RESUME"])
@pytest.mark.parametrize("returns", [None, {"x": 1}])
async def test_changing_lean_path_leaves_what_kopfs_own_path_leaves(kind: str, returns: Any) -> None:
    """An object with nothing in progress: the same patch (status, the handler's result, the new
    diff base; less the progress Kopf stores and purges again), handled once, no delays, and the
    handler gets Kopf's kwargs."""
    body = _changed_org(kopf={"last-handled-configuration": '{"spec": {"ref": "a"}}'})
    kopf_calls: list[dict[str, Any]] = []
    ours_calls: list[dict[str, Any]] = []
    before = changing.lean_runs()
    theirs = await _change(changing.KOPF_PROCESS_CHANGING_CAUSE, _lean_registry(kopf_calls, returns=returns), body,
                           kind=kind)
    ours = await _change(changing.process_changing_cause, _lean_registry(ours_calls, returns=returns), body, kind=kind)
    assert changing.lean_runs() == before + 1
    assert ours == theirs and ours[1] is True and list(ours[2]) == []
    assert ours[0]["status"]["active"] == "b" and "last-handled-configuration" in ours[0]["status"]["kopf"]
    assert len(kopf_calls) == len(ours_calls) == 1
    assert set(ours_calls[0]) == set(kopf_calls[0])
    for key in ("reason", "diff", "old", "new", "namespace", "name", "uid", "body", "retry", "param"):
        assert ours_calls[0][key] == kopf_calls[0][key], key
    assert ours_calls[0]["runtime"] == datetime.timedelta(0) <= kopf_calls[0]["runtime"] < datetime.timedelta(seconds=5)


async def test_changing_progress_in_the_object_goes_through_kopf() -> None:
    """A retry pending (Kopf's progress in status): Kopf's own path, which counts the retry."""
    progress = {"reconcile": {"started": "2026-12-06T10:00:00.000000+00:00", "retries": 1, "success": False,
                              "failure": False, "purpose": "update", "delayed": "2026-12-06T10:00:01.000000+00:00"}}
    body = _changed_org(kopf={"progress": progress, "last-handled-configuration": '{"spec": {"ref": "a"}}'})
    calls: list[dict[str, Any]] = []
    before = changing.lean_runs()
    patch, handled, _ = await _change(changing.process_changing_cause, _lean_registry(calls), body)
    assert changing.lean_runs() == before and calls[0]["retry"] == 1
    assert patch["status"]["kopf"]["progress"] == {"reconcile": None}, "Kopf purged its progress"
    assert handled is True


async def test_changing_a_raising_handler_runs_again_through_kopf_which_records_the_failure() -> None:
    calls: list[dict[str, Any]] = []
    before = changing.lean_runs()
    patch, _, delays = await _change(changing.process_changing_cause, _lean_registry(calls, fail=2), _changed_org())
    assert len(calls) == 2 and changing.lean_runs() == before
    record = patch["status"]["kopf"]["progress"]["reconcile"]
    assert record["retries"] == 1 and record["success"] is False and record["delayed"], record
    assert "active" not in patch["status"] and 55 < max(delays) <= 60, "Kopf retries it later"


async def test_changing_unmarked_or_several_handlers_or_deletion_go_through_kopf() -> None:
    from kopf._core.intents import causes as kopf_causes

    calls: list[dict[str, Any]] = []
    before = changing.lean_runs()
    await _change(changing.process_changing_cause, _lean_registry(calls, marked=False), _changed_org())
    registry = _lean_registry(calls)

    @kopf.on.update("one.ie", "v1alpha1", "organizations", registry=registry, id="another")
    async def another(**_: Any) -> None: ...

    updated = _changed_org(kopf={"last-handled-configuration": '{"spec": {"ref": "a"}}'})  # an update: both
    await _change(changing.process_changing_cause, registry, updated)
    assert len(calls) == 2 and changing.lean_runs() == before
    assert changing.LEAN_REASONS == {kopf_causes.Reason.CREATE, kopf_causes.Reason.UPDATE, kopf_causes.Reason.RESUME}


def test_changing_install_and_uninstall() -> None:
    from kopf._core.reactor import processing

    try:
        changing.install()
        changing.install()
        assert processing.process_changing_cause is changing.process_changing_cause
    finally:
        changing.uninstall()
    assert processing.process_changing_cause is changing.KOPF_PROCESS_CHANGING_CAUSE
