"""Canaries of the Kopf internals the operator relies on (``handlers/kopfpatches/``, one per patch).

Each test fails loudly, naming the patch, when the installed Kopf no longer has the signature,
attribute, log line or default behaviour a patch was written against: upgrading Kopf is then a
matter of re-checking that patch, not of finding out in production. Behaviour that the patches
produce is tested elsewhere (tests/unit/test_kopf_settings.py, test_log_levels.py,
tests/admission/); these tests look at Kopf only.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import kopf
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from oneie_operator.handlers.kopfpatches import KOPF_CHECKED_VERSION

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "oneie_operator"


def _kopf_requirement() -> Requirement:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (req,) = [Requirement(d) for d in project["dependencies"] if Requirement(d).name == "kopf"]
    return req


def test_installed_kopf_is_within_the_pin() -> None:
    req = _kopf_requirement()
    installed = Version(version("kopf"))
    assert req.specifier.contains(installed), f"kopf {installed} is installed, pyproject.toml pins {req}"


def test_the_pin_is_the_minor_release_the_patches_were_checked_against() -> None:
    """The pin admits one minor release, the one of KOPF_CHECKED_VERSION, and no other."""
    req, checked = _kopf_requirement(), Version(KOPF_CHECKED_VERSION)
    assert req.specifier.contains(checked), f"{req} does not admit the checked Kopf {checked}"
    next_minor = Version(f"{checked.major}.{checked.minor + 1}")
    assert not req.specifier.contains(next_minor), f"{req} admits Kopf {next_minor}, which no one checked"
    installed = Version(version("kopf"))
    assert (installed.major, installed.minor) == (checked.major, checked.minor), (
        f"kopf {installed} is installed, handlers/kopfpatches was checked against {checked}"
    )


def test_kopf_private_modules_are_imported_by_the_patches_only() -> None:
    """``kopf._...`` (private) appears nowhere in the package but in handlers/kopfpatches/."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "kopfpatches" in path.parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bkopf\._|\"kopf\._", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "Kopf internals outside handlers/kopfpatches/:\n" + "\n".join(offenders)


# --- kopfpatches.lazy_reprs ------------------------------------------------------------------


def test_lazy_reprs_kopf_body_and_diff_are_where_the_patch_replaces_their_repr() -> None:
    from kopf._cogs.structs import bodies, diffs

    from oneie_operator.handlers.kopfpatches import lazy_reprs

    assert bodies.Body is kopf.Body, "kopf.Body moved out of kopf._cogs.structs.bodies"
    assert "__repr__" in vars(bodies.Body) or any("__repr__" in vars(c) for c in bodies.Body.__mro__[1:-1])
    assert "__repr__" in vars(diffs.Diff), "kopf's Diff has no __repr__ of its own any more"
    assert type(diffs.diff({"a": 1}, {"a": 2})) is diffs.Diff, "Kopf diffs are no longer ...structs.diffs.Diff"
    assert lazy_reprs._ORIGINAL_BODY_REPR is not lazy_reprs._body_repr


def test_lazy_reprs_kopf_still_formats_whole_bodies_in_its_debug_lines() -> None:
    """What the patch is for: without these lines, drop the patch."""
    from kopf._core.reactor import processing

    source = inspect.getsource(processing)
    assert "{body!r}" in source and "{cause.diff!r}" in source


# --- kopfpatches.diffbase --------------------------------------------------------------------


def test_diffbase_kopf_build_signature() -> None:
    params = inspect.signature(kopf.StatusDiffBaseStorage.build).parameters
    assert list(params) == ["self", "body", "extra_fields"], params
    assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in ("body", "extra_fields"))


def test_diffbase_kopf_essence_ignores_the_status() -> None:
    """The patch hands Kopf a body without its status: Kopf's own essence must not depend on it."""
    body: dict[str, Any] = {"apiVersion": "one.ie/v1alpha1", "kind": "Organization",
                            "metadata": {"name": "a", "namespace": "t", "labels": {"x": "1"}, "generation": 3},
                            "spec": {"backend": {"connectionRef": {"name": "b"}}}}
    storage = kopf.StatusDiffBaseStorage(name="kopf")
    with_status = storage.build(body=kopf.Body({**body, "status": {"activeConnection": "b", "kopf": {"x": 1}}}))
    without = storage.build(body=kopf.Body(body))
    assert with_status == without and "status" not in without


# --- kopfpatches.log_lines -------------------------------------------------------------------


def _registered_handler(handler_id: str) -> Any:
    import oneie_operator.handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    for sub in (registry._watching, registry._changing):
        for handler in sub.get_all_handlers():
            if handler.id == handler_id:
                return handler
    raise AssertionError(f"no handler {handler_id!r} registered")


def test_log_lines_kopf_success_and_temporary_failure_texts() -> None:
    from kopf._core.actions import execution

    source = inspect.getsource(execution)
    assert 'logger.info(f"{handler} succeeded.")' in source
    assert 'logger.error(f"{handler} failed temporarily: {str(e) or repr(e)}")' in source
    from oneie_operator.handlers.kopfpatches.log_lines import QuietWatchHandlers, TenantProblemsAsWarnings

    for name in ("secret_changed", "connection_changed"):
        assert f"{_registered_handler(name)} succeeded." in QuietWatchHandlers.QUIET
    reconcile = _registered_handler("reconcile")
    assert TenantProblemsAsWarnings.PATTERN.match(f"{reconcile} failed temporarily: SecretNotFound: x")


def test_log_lines_kopf_logger_names() -> None:
    from kopf._core.reactor import queueing

    from oneie_operator.handlers.kopfpatches.log_lines import (
        KOPF_OBJECTS_LOGGER,
        KOPF_QUEUEING_LOGGER,
        DroppedRetriesNotice,
    )

    assert queueing.logger.name == KOPF_QUEUEING_LOGGER
    assert f'logger.warning(f"{DroppedRetriesNotice.PREFIX} ' in inspect.getsource(queueing)
    # Handler lines go to the per-object logger Kopf builds on "kopf.objects".
    from kopf._core.actions import loggers

    body = kopf.Body({"metadata": {"name": "a", "namespace": "t"}})
    assert loggers.ObjectLogger(body=body, settings=kopf.OperatorSettings()).logger.name == KOPF_OBJECTS_LOGGER


# --- kopfpatches.webhook ---------------------------------------------------------------------


def test_webhook_kopf_allows_what_no_handler_judges() -> None:
    """The behaviour the patch reverses: if Kopf ever refuses by itself, the patch may go."""
    from kopf._core.engines import admission

    request = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u"}}
    response = admission.build_response(request=request, outcomes={}, warnings=[], jsonpatch=[])
    assert response["response"]["allowed"] is True


def test_webhook_kopf_server_calls_fn_with_the_path_as_webhook() -> None:
    from kopf._kits import webhooks

    assert list(inspect.signature(kopf.WebhookServer.__call__).parameters) == ["self", "fn"]
    source = inspect.getsource(webhooks.WebhookServer)
    assert "await fn(data, webhook=webhook, sslpeer=sslpeer, headers=headers)" in source
    assert re.search(r"webhook = request\.match_info\.get\('id'\)|match_info", source)
    assert kopf.WebhookServer is webhooks.WebhookServer


# --- handler arguments the handlers rely on beyond Kopf's typed signatures ------------------


def test_validating_handlers_get_the_stored_object_as_old() -> None:
    """handlers/admission.py reads ``kwargs["old"]`` (not in Kopf's typed signature of validating
    handlers) to skip the Secret access review when an update leaves the spec unchanged."""
    from kopf._core.intents import causes

    fields = {f.name: None for f in dataclasses.fields(causes.WebhookCause)}
    stored = kopf.Body({"metadata": {"name": "c", "namespace": "t"}, "spec": {"a": 1}})
    body = kopf.Body({"metadata": {"name": "c", "namespace": "t"}, "spec": {"a": 2}})
    cause = causes.WebhookCause(**{**fields, "indices": {}, "body": body, "old": stored, "memo": kopf.Memo()})
    kwargs = cause.kwargs
    assert kwargs["old"] is stored and "userinfo" in kwargs


# --- settings (public API; a typo'd attribute would silently be a new attribute) ------------


def _assigned_settings() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for path in (PACKAGE / "handlers" / "lifecycle.py", PACKAGE / "running.py"):
        found |= set(re.findall(r"\bsettings\.(\w+)\.(\w+)\s*(?:=|\[)", path.read_text(encoding="utf-8")))
    return found


def test_every_kopf_setting_we_assign_exists() -> None:
    settings = kopf.OperatorSettings()
    assigned = _assigned_settings()
    assert ("scanning", "disabled") in assigned and ("persistence", "finalizer") in assigned
    for group, name in sorted(assigned):
        section = getattr(settings, group, None)
        assert section is not None and dataclasses.is_dataclass(section), f"kopf settings have no {group!r}"
        assert name in {f.name for f in dataclasses.fields(section)}, f"kopf settings.{group} has no {name!r}"


@pytest.mark.parametrize(("pattern", "inside", "outside"), [
    ("tenant-a-*,!tenant-a-x", ["tenant-a-1", "tenant-a-"], ["tenant-a-x", "tenant-b-1"]),
    ("!kube-*", ["tenant-a-1"], ["kube-system"]),
    ("tenant-a", ["tenant-a"], ["tenant-a-1"]),
])
def test_kopf_namespace_pattern_semantics(pattern: str, inside: list[str], outside: list[str]) -> None:
    """WATCH_NAMESPACES becomes Kopf patterns (running.kopf_namespaces) on these semantics."""
    from kopf._cogs.structs import references

    assert all(references.match_namespace(references.NamespaceName(n), pattern) for n in inside)
    assert not any(references.match_namespace(references.NamespaceName(n), pattern) for n in outside)
    assert references.select_specific_namespaces(["tenant-a", "tenant-a-*", "!x"]) == {"tenant-a"}


# --- kopfpatches.indexing --------------------------------------------------------------------


def test_indexing_kopf_index_resource_signature_and_call_site() -> None:
    from kopf._core.engines import indexing

    from oneie_operator.handlers.kopfpatches import indexing as lean

    params = inspect.signature(lean.KOPF_INDEX_RESOURCE).parameters
    assert set(params) == {
        "indexers", "registry", "settings", "resource", "raw_event", "memory", "logger", "memo", "body",
    }, params
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    assert lean.KOPF_INDEX_RESOURCE.__module__ == indexing.__name__
    # Kopf looks the function up on its module at each call: replacing the attribute takes effect.
    from oneie_operator.handlers.kopfpatches import echoes

    assert "indexing.index_resource(" in inspect.getsource(echoes.KOPF_PROCESS_RESOURCE_EVENT)


async def test_indexing_lean_path_stores_what_kopfs_own_path_stores() -> None:
    """Both paths, one marked indexer, the same events: the same index; a failing indexer and a
    DELETED event go through Kopf's own path."""
    import logging

    from kopf._cogs.structs import references
    from kopf._core.engines import indexing

    from oneie_operator.handlers.kopfpatches import indexing as lean

    resource = references.Resource("one.ie", "v1alpha1", "organizations", namespaced=True)
    registry = kopf.OperatorRegistry()
    calls: list[str] = []

    @kopf.index("one.ie", "v1alpha1", "organizations", registry=registry, id="refs")
    @lean.lean_indexer
    async def refs(namespace: str, name: str, spec: Any, status: Any, **_: Any) -> dict[str, str]:
        calls.append(name)
        if spec.get("fail"):
            raise ValueError("boom")
        return {str(spec.get("ref")): f"{namespace}/{name}", str(status.get("active")): f"{namespace}/{name}"}

    def event(kind: str | None, name: str, ref: str, active: str, **spec: Any) -> dict[str, Any]:
        body = {"metadata": {"namespace": "t", "name": name, "uid": f"u-{name}"},
                "spec": {"ref": ref, **spec}, "status": {"active": active}}
        return {"type": kind, "object": body}

    events = [event(None, "a", "x", "y"), event("MODIFIED", "b", "x", "z"), event("MODIFIED", "a", "w", "w"),
              event("MODIFIED", "b", "q", "q", fail=True), event("DELETED", "a", "w", "w")]

    async def run(fn: Any) -> dict[Any, list[Any]]:
        indexers = indexing.OperatorIndexers()
        indexers.ensure(registry._indexing.get_all_handlers())
        memories: dict[str, indexing.IndexingMemory] = {}
        for raw in events:
            name = raw["object"]["metadata"]["name"]
            await fn(indexers=indexers, registry=registry, settings=kopf.OperatorSettings(), resource=resource,
                     raw_event=raw, memory=memories.setdefault(name, indexing.IndexingMemory()),
                     logger=logging.getLogger("test"), memo=kopf.Memo(), body=kopf.Body(raw["object"]))
        index = indexers.indices["refs"]
        return {key: sorted(index[key]) for key in index}

    assert getattr(refs, lean.LEAN_ATTRIBUTE) is True
    kopf_result, kopf_calls = await run(lean.KOPF_INDEX_RESOURCE), list(calls)
    calls.clear()
    lean_result = await run(lean.index_resource)
    assert lean_result == kopf_result
    # a left with its DELETED event; b's failing update left b's entries as they were (Kopf ignores it).
    assert kopf_result == {"x": ["t/b"], "z": ["t/b"]}
    assert kopf_calls == ["a", "b", "a", "b"]
    assert calls == ["a", "b", "a", "b", "b"], "the failing event: tried directly, then Kopf's own path"


# --- kopfpatches.watching --------------------------------------------------------------------


def test_watching_kopf_process_watching_cause_signature_call_site_and_texts() -> None:
    from kopf._core.actions import execution
    from kopf._core.reactor import processing

    from oneie_operator.handlers.kopfpatches import watching

    params = inspect.signature(watching.KOPF_PROCESS_WATCHING_CAUSE).parameters
    assert list(params) == ["lifecycle", "registry", "settings", "cause"], params
    # Looked up on the module at each call (so replacing the attribute takes effect), by keywords
    # (the replacement takes keywords only).
    call_site = re.sub(r"\s+", "", inspect.getsource(processing.process_resource_causes))
    assert "awaitprocess_watching_cause(lifecycle=lifecycles.all_at_once,registry=registry," in call_site
    # What the lean path reproduces: errors of watch handlers are ignored, with these texts.
    assert "default_errors=execution.ErrorsMode.IGNORED" in inspect.getsource(watching.KOPF_PROCESS_WATCHING_CAUSE)
    source = inspect.getsource(execution.execute_handler_once)
    for text in ("failed with an exception and will ignore it: ",
                 'f"{handler} failed temporarily: {str(e) or repr(e)}"',
                 'f"{handler} failed permanently: {str(e) or repr(e)}"'):
        assert text in source, text


async def test_watching_lean_path_passes_kopfs_kwargs_and_ignores_failures(caplog: pytest.LogCaptureFixture) -> None:
    """The same kwargs as Kopf's own path (but Kopf's per-attempt extras), one after the other, a
    failure logged with Kopf's text and ignored; an unmarked handler: Kopf's own path."""
    import logging

    from kopf._cogs.structs import references
    from kopf._core.actions import lifecycles
    from kopf._core.engines import indexing
    from kopf._core.intents import causes

    from oneie_operator.handlers.kopfpatches import watching

    resource = references.Resource("", "v1", "secrets", namespaced=True)
    registry = kopf.OperatorRegistry()
    seen: dict[str, dict[str, Any]] = {}

    @kopf.on.event("", "v1", "secrets", registry=registry, id="first")
    @watching.lean_watcher
    async def first(**kwargs: Any) -> None:
        seen.setdefault("first", kwargs)
        raise ValueError("boom")

    @kopf.on.event("", "v1", "secrets", registry=registry, id="second")
    @watching.lean_watcher
    async def second(**kwargs: Any) -> None:
        seen.setdefault("second", kwargs)

    indexers = indexing.OperatorIndexers()
    body = {"metadata": {"namespace": "t", "name": "s", "uid": "u"}, "data": {}}
    raw = {"type": "MODIFIED", "object": body}

    def cause() -> causes.WatchingCause:
        return causes.WatchingCause(
            logger=logging.getLogger("kopf.objects"), indices=indexers.indices, memo=kopf.Memo(),
            resource=resource, patch=kopf.Patch(), body=kopf.Body(body), type="MODIFIED", event=raw,
        )

    settings = kopf.OperatorSettings()
    with caplog.at_level(logging.INFO, logger="kopf.objects"):
        await watching.KOPF_PROCESS_WATCHING_CAUSE(
            lifecycle=lifecycles.all_at_once, registry=registry, settings=settings, cause=cause())
        kopf_seen, kopf_log = dict(seen), [r.getMessage() for r in caplog.records]
        seen.clear()
        caplog.clear()
        await watching.process_watching_cause(
            lifecycle=lifecycles.all_at_once, registry=registry, settings=settings, cause=cause())
        lean_log = [r.getMessage() for r in caplog.records]
    assert set(seen) == set(kopf_seen) == {"first", "second"}, "the second runs although the first failed"
    extras = {"retry", "started", "runtime", "settings", "param"}  # Kopf's per-attempt kwargs
    for name in seen:
        assert set(seen[name]) == set(kopf_seen[name]) - extras, name
        for key in ("event", "type", "namespace", "name", "uid", "body", "meta", "memo"):
            assert seen[name][key] == kopf_seen[name][key], key
    failure = "Handler 'first' failed with an exception and will ignore it: boom"
    assert failure in kopf_log and lean_log == [failure]  # Kopf also logs "succeeded" (dropped by our filter)

    @kopf.on.event("", "v1", "secrets", registry=registry, id="third")
    async def third(**kwargs: Any) -> None:
        seen.setdefault("third", kwargs)

    seen.clear()
    await watching.process_watching_cause(
        lifecycle=lifecycles.all_at_once, registry=registry, settings=settings, cause=cause())
    assert set(seen) == {"first", "second", "third"} and "retry" in seen["third"], "unmarked: Kopf's own path"


# --- kopfpatches.emptypatch ------------------------------------------------------------------


def test_emptypatch_kopf_answers_an_empty_patch_with_no_ops_after_a_deep_copy() -> None:
    """What the patch relies on (an empty patch gives ``[]`` whatever the body) and is for (Kopf
    deep-copies the body first, and asks after every patch it applies)."""
    from kopf._cogs.structs import patches

    from oneie_operator.handlers.kopfpatches import emptypatch

    body = {"metadata": {"name": "x"}, "status": {"history": [{"to": "a"}] * 3}}
    assert emptypatch.KOPF_AS_JSON_PATCH(patches.Patch(), body) == []
    assert emptypatch.KOPF_AS_JSON_PATCH(patches.Patch(body=kopf.Body(body))) == []
    source = inspect.getsource(emptypatch.KOPF_AS_JSON_PATCH)
    assert source.index("copy.deepcopy(") < source.index("if not self:"), "Kopf no longer copies first: drop the patch"
    from oneie_operator.handlers.kopfpatches import echoes

    assert "remaining_patch.as_json_patch(" in inspect.getsource(echoes.KOPF_PATCH_OBJ)


def test_emptypatch_same_ops_as_kopf() -> None:
    from kopf._cogs.structs import patches

    from oneie_operator.handlers.kopfpatches import emptypatch

    body = {"metadata": {"name": "x", "labels": {"a": "1"}}, "status": {"n": 1}}
    changed = patches.Patch()
    changed["status"] = {"n": 2}
    changed.fns.append(lambda b: b["metadata"]["labels"].pop("a"))
    for patch in (patches.Patch(), changed):
        assert emptypatch.as_json_patch(patch, body) == emptypatch.KOPF_AS_JSON_PATCH(patch, body)
    assert emptypatch.as_json_patch(changed, body) != []
    emptypatch.install()
    try:
        assert patches.Patch().as_json_patch(body) == [] and changed.as_json_patch(body) != []
    finally:
        emptypatch.uninstall()
    assert patches.Patch.as_json_patch is emptypatch.KOPF_AS_JSON_PATCH


# --- kopfpatches.essencecopy -----------------------------------------------------------------


def test_essencecopy_kopf_copies_essences_through_its_modules_copy() -> None:
    from kopf._cogs.configs import diffbase, progress

    from oneie_operator.handlers.kopfpatches import essencecopy

    assert essencecopy.MODULES == (diffbase, progress)
    for fn in (diffbase.DiffBaseStorage.build, progress.ProgressStorage.clear):
        source = inspect.getsource(fn)
        assert "copy.deepcopy" in source, "Kopf copies essences differently now: re-check the patch"
    for module in essencecopy.MODULES:
        assert module.copy is essencecopy.STAND_IN or module.copy.__name__ == "copy"  # type: ignore[attr-defined]
        uses = set(re.findall(r"\bcopy\.(\w+)", inspect.getsource(module)))
        assert uses <= set(vars(essencecopy.STAND_IN)), f"{module.__name__} uses copy.{uses}"


def test_essencecopy_same_essences_as_with_deepcopy() -> None:
    import copy

    from oneie_operator.handlers.kopfpatches import essencecopy
    from oneie_operator.handlers.kopfpatches.diffbase import LeanStatusDiffBaseStorage

    body = {
        "apiVersion": "one.ie/v1alpha1", "kind": "Organization",
        "metadata": {"name": "o", "generation": 4, "labels": {"a": "1"},
                     "annotations": {"one.ie/rollback": "t", "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"backend": {"connectionRef": {"name": "b"}}, "list": [1, 2.5, None, True, {"x": []}]},
        "status": {"kopf": {"progress": {"h": {"retries": 1}}}, "history": [{"to": "a"}]},
    }
    diffbases = LeanStatusDiffBaseStorage(name="kopf")
    progress = kopf.StatusProgressStorage(name="kopf")

    def essences() -> tuple[Any, Any]:
        built = diffbases.build(body=kopf.Body(body))
        return built, progress.clear(essence=built)

    plain = essences()
    essencecopy.install()
    try:
        fast = essences()
    finally:
        essencecopy.uninstall()
    assert fast == plain
    assert fast[0]["spec"] is not body["spec"] and fast[0]["spec"]["list"] is not body["spec"]["list"]
    value = {"a": [{"b": (1, 2)}], "c": {1: "int key"}}
    assert essencecopy.json_deepcopy(value) == copy.deepcopy(value)


# --- kopfpatches.fastviews -------------------------------------------------------------------


def test_fastviews_kopf_views_inherit_the_replaced_methods() -> None:
    """Every view class of Kopf gets its lookups from ``MappingView`` (none overrides them), and
    Kopf's lookup is still ``resolve()`` over the view's path."""
    from kopf._cogs.structs import bodies, dicts, patches

    from oneie_operator.handlers.kopfpatches import fastviews

    views = [
        dicts.MappingView,
        dicts.MutableMappingView,
        dicts.ReplaceableMappingView,
        bodies.Body,
        bodies.Meta,
        bodies.Spec,
        bodies.Status,
    ]
    for cls in views:
        for name in ("__getitem__", "get"):
            owner = next(base for base in cls.__mro__ if name in vars(base))
            assert owner in (dicts.MappingView, *Mapping.__mro__), (cls, name, owner)
    assert not issubclass(patches.Patch, dicts.MappingView), "Patch is a dict: the fast path leaves it to Kopf"
    assert "resolve(self._src, self._path + (item,))" in inspect.getsource(fastviews.KOPF_GETITEM)
    meta = bodies.Body({"metadata": {"name": "x"}}).metadata
    assert isinstance(meta._src, bodies.Body) and meta._path == ("metadata",), "views over views, by path"


# --- kopfpatches.causes ----------------------------------------------------------------------


def test_causes_kopf_detect_causes_signature_call_site_and_fields() -> None:
    from kopf._core.reactor import processing

    from oneie_operator.handlers.kopfpatches import causes

    params = inspect.signature(causes.KOPF_DETECT_CAUSES).parameters
    assert list(params) == [
        "indexers",
        "registry",
        "settings",
        "resource",
        "raw_event",
        "body",
        "patch",
        "memory",
        "local_logger",
        "event_logger",
    ], params
    assert processing._Causes._fields == ("watching_cause", "spawning_cause", "changing_cause")
    from kopf._core.intents import causes as kopf_causes

    # The diff feeds only the spawning and the changing cause (what the replacement skips); the
    # watching cause is built from the event alone, with these arguments.
    watching = inspect.signature(kopf_causes.detect_watching_cause).parameters
    assert not {"old", "new", "diff"} & set(watching), watching
    source = re.sub(r"\s+", "", inspect.getsource(causes.KOPF_DETECT_CAUSES))
    assert "reset=bool(diff)" in source and "diff=diff," in source
    assert (
        "watching_cause=causes.detect_watching_cause(raw_event=raw_event,resource=resource,"
        "indices=indexers.indices,logger=local_logger,patch=patch,body=body,memo=memory.memo,"
        ")ifregistry._watching.has_handlers(resource=resource)elseNone"
    ) in source
    call_site = re.sub(r"\s+", "", inspect.getsource(processing.process_resource_causes))
    assert "=_detect_causes(indexers=indexers," in call_site


# --- kopfpatches.echoes ----------------------------------------------------------------------


def test_echoes_kopf_signatures_and_call_sites() -> None:
    from kopf._core.actions import application
    from kopf._core.reactor import queueing, running

    from oneie_operator.handlers.kopfpatches import echoes

    params = inspect.signature(echoes.KOPF_PROCESS_RESOURCE_EVENT).parameters
    assert {"raw_event", "resource", "registry", "settings", "indexers", "memories", "memobase"} <= set(params)
    # Bound into the processor when the operator starts (after our install), called by keywords.
    assert "functools.partial(processing.process_resource_event," in inspect.getsource(running.spawn_tasks)
    assert "awaitprocessor(raw_event=raw_event," in re.sub(r"\s+", "", inspect.getsource(queueing.worker))
    # Kopf's patch goes through the module attribute, by keywords, and answers (body, remaining).
    assert "awaitpatching.patch_obj(settings=settings," in re.sub(
        r"\s+", "", inspect.getsource(application.patch_and_check)
    )
    patch_params = inspect.signature(echoes.KOPF_PATCH_OBJ).parameters
    assert list(patch_params)[:6] == ["settings", "resource", "namespace", "name", "patch", "logger"]
    assert all(p.default is not inspect.Parameter.empty for p in list(patch_params.values())[6:])
    # What the skip path reproduces of the start of Kopf's processing.
    source = inspect.getsource(echoes.KOPF_PROCESS_RESOURCE_EVENT)
    for text in (
        "memory = await memories.recall(raw_body, noticed_by_listing=raw_type is None, memobase=memobase)",
        "memory.daemons_memory.live_fresh_body._replace_with(raw_body)",
        "await indexing.index_resource(",
        "memory=memory.indexing_memory,",
    ):
        assert text in source, text
    # The version Kopf waits for after its patch is the one the patch answered.
    assert "resource_version = (resulting_body or {}).get('metadata', {}).get('resourceVersion')" in (
        inspect.getsource(application.patch_and_check)
    )
    storage = kopf.StatusProgressStorage(name="kopf")
    assert storage.field == ("status", "kopf", "progress") and storage.touch_field == ("status", "kopf", "dummy")


# --- kopfpatches.changing --------------------------------------------------------------------


def test_changing_kopf_process_changing_cause_signature_call_site_and_steps() -> None:
    from kopf._core.actions import execution, invocation
    from kopf._core.reactor import processing

    from oneie_operator.handlers.kopfpatches import changing

    params = inspect.signature(changing.KOPF_PROCESS_CHANGING_CAUSE).parameters
    assert list(params) == ["lifecycle", "registry", "settings", "memory", "cause"], params
    # Looked up on the module at each call, by keywords.
    call_site = re.sub(r"\s+", "", inspect.getsource(processing.process_resource_causes))
    assert "changing_delays=awaitprocess_changing_cause(lifecycle=lifecycle,registry=registry," in call_site
    # What the lean path reproduces of Kopf's path once every handler succeeded.
    source = re.sub(r"\s+", "", inspect.getsource(changing.KOPF_PROCESS_CHANGING_CAUSE))
    for text in (
        "state=progression.State.from_storage(body=cause.body,storage=storage,handlers=owned_handlers)",
        "progression.deliver_results(outcomes=outcomes,patch=cause.patch)",
        "ifcause.newisnotNoneandcause.old!=cause.new:"
        "settings.persistence.diffbase_storage.store(body=body,patch=patch,essence=cause.new)",
        "memory.fully_handled_once=True",
    ):
        assert text in source, text
    # Kopf's per-attempt kwargs, merged under the cause's (as the lean path merges them).
    invoke = re.sub(r"\s+", "", inspect.getsource(execution.invoke_handler))
    assert "kwargs=dict(param=handler.param,retry=retry,started=started,runtime=runtime,)" in invoke
    merged = "kwargs=dict(kwargs)|({}ifkwargsrcisNoneelsedict(kwargsrc.async_kwargs))"
    assert merged in re.sub(r"\s+", "", inspect.getsource(invocation.invoke))


# --- kopfpatches.mergepatch ------------------------------------------------------------------


def test_mergepatch_kopf_patches_status_through_the_api_module_attribute() -> None:
    from kopf._cogs.clients import api

    from oneie_operator.handlers.kopfpatches import echoes, mergepatch

    params = inspect.signature(mergepatch.KOPF_PATCH).parameters
    assert list(params) == ["url", "settings", "payload", "headers", "timeout", "logger"], params
    assert mergepatch.KOPF_PATCH is api.patch or api.patch is mergepatch.patch
    # Merge patches through the module attribute, by keywords, without a timeout; the status one
    # to the status subresource's URL, and its answer is the body.
    source = re.sub(r"\s+", "", inspect.getsource(echoes.KOPF_PATCH_OBJ))  # Kopf's, even once wrapped
    for text in (
        "patched_body=awaitapi.patch(url=resource.get_url(namespace=namespace,name=name,subresource='status'),"
        "headers={'Content-Type':'application/merge-patch+json'},payload=status_patch,settings=settings,logger=logger,)",
        "headers={'Content-Type':'application/json-patch+json'}",  # JSON patches: not ours
    ):
        assert text in source, text
    # Kopf's own patch answers the decoded JSON of the response (what ours returns).
    assert "returnawaitresponse.json()" in re.sub(r"\s+", "", inspect.getsource(mergepatch.KOPF_PATCH))
