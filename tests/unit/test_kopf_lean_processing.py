"""What the kopfpatches ``fastviews``, ``causes`` and ``echoes`` change, against Kopf's own code.

Each test runs Kopf's original beside the replacement on the same input (real Kopf objects:
registries, settings, bodies, patches, indexers), so a difference in behaviour fails here; the
Kopf internals they rely on are pinned by ``test_kopf_canaries.py``.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kopf._cogs.structs import bodies, dicts, references
from kopf._core.engines import indexing
from kopf._core.reactor import inventory

from oneie_operator.handlers.kopfpatches import causes, echoes, fastviews
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
