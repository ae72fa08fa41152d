"""Kopf settings: the lean diff-base storage gives Kopf its own essence; quiet watch-handler logs."""

from __future__ import annotations

import copy
import json
from typing import Any

import kopf
import pytest

from oneie_operator.handlers.kopfpatches.diffbase import LeanStatusDiffBaseStorage

ORG: dict[str, Any] = {
    "apiVersion": "one.ie/v1alpha1",
    "kind": "Organization",
    "metadata": {
        "name": "acme", "namespace": "t", "uid": "u-1", "generation": 7, "resourceVersion": "42",
        "labels": {"team": "a", "app.kubernetes.io/instance": "tenants"},
        "annotations": {
            "one.ie/rollback": "2026-11-25T10:00:00Z",
            "one.ie/reconcile-trigger": "creds@7",
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"spec": {"x": 1}}),
            "other-op.kopf.zalando.org/last-handled-configuration": "{}",  # another Kopf operator's
            "kopf.zalando.org/touch-dummy": "x",
        },
        "finalizers": ["one.ie/finalizer"],
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        "deletionTimestamp": None,
    },
    "spec": {"backend": {"connectionRef": {"name": "b"}}, "switchPolicy": {"timeoutSeconds": 30}},
    "status": {
        "activeConnection": "a",
        "history": [{"to": "a", "result": "Succeeded"}] * 10,
        "kopf": {"last-handled-configuration": "{}", "progress": {"reconcile": {"retries": 1}}},
    },
}


def _variants() -> list[dict[str, Any]]:
    bare = copy.deepcopy(ORG)
    del bare["metadata"]["labels"], bare["metadata"]["annotations"], bare["status"]
    no_spec = copy.deepcopy(ORG)
    del no_spec["spec"]
    extra_top = copy.deepcopy(ORG)
    extra_top["data"] = {"k": "v"}  # a top-level field besides spec
    return [ORG, bare, no_spec, extra_top]


@pytest.mark.parametrize("raw", _variants())
def test_the_essence_is_kopfs_own(raw: dict[str, Any]) -> None:
    body = kopf.Body(copy.deepcopy(raw))
    ours = LeanStatusDiffBaseStorage(name="kopf").build(body=body)
    theirs = kopf.StatusDiffBaseStorage(name="kopf").build(body=body)
    assert ours == theirs
    assert "status" not in ours
    if "annotations" in raw["metadata"]:  # our annotations count as changes; Kopf's and kubectl's do not
        assert set(ours["metadata"]["annotations"]) == {"one.ie/rollback", "one.ie/reconcile-trigger"}


def test_the_essence_is_a_copy() -> None:
    raw = copy.deepcopy(ORG)
    ours = LeanStatusDiffBaseStorage(name="kopf").build(body=kopf.Body(raw))
    raw["spec"]["backend"]["connectionRef"]["name"] = "changed"
    raw["metadata"]["labels"]["team"] = "changed"
    assert ours["spec"]["backend"]["connectionRef"]["name"] == "b"
    assert ours["metadata"]["labels"]["team"] == "a"


def test_extra_fields_take_kopfs_full_path() -> None:
    body = kopf.Body(copy.deepcopy(ORG))
    ours = LeanStatusDiffBaseStorage(name="kopf").build(body=body, extra_fields=["status.activeConnection"])
    theirs = kopf.StatusDiffBaseStorage(name="kopf").build(body=body, extra_fields=["status.activeConnection"])
    assert ours == theirs and ours["status"] == {"activeConnection": "a"}


def test_watch_handlers_success_lines_are_dropped_and_the_rest_kept() -> None:
    import logging

    from oneie_operator.handlers.kopfpatches.log_lines import QuietWatchHandlers

    quiet = QuietWatchHandlers()

    def record(msg: str, level: int = logging.INFO) -> logging.LogRecord:
        return logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)

    assert not quiet.filter(record("Handler 'secret_changed' succeeded."))
    assert not quiet.filter(record("Handler 'connection_changed' succeeded."))
    assert quiet.filter(record("Handler 'reconcile' succeeded."))
    assert quiet.filter(record("Handler 'secret_changed' failed with an exception. Will retry.", logging.ERROR))


@pytest.fixture
def lazy_reprs_installed() -> Any:
    from oneie_operator.handlers.kopfpatches import lazy_reprs

    logger = lazy_reprs.KOPF_OBJECTS_LOGGER
    level = logger.level
    lazy_reprs.install()
    yield logger
    lazy_reprs.uninstall()
    logger.setLevel(level)


def test_kopf_body_and_diff_repr_is_a_name_while_debug_is_off(lazy_reprs_installed: Any) -> None:
    """Kopf's per-change ``{body!r}`` / ``{diff!r}`` debug lines stop formatting whole objects."""
    import logging

    from kopf._cogs.structs import diffs

    lazy_reprs_installed.setLevel(logging.INFO)
    body = kopf.Body(copy.deepcopy(ORG))
    assert repr(body) == "<Body Organization t/acme rv=42>"
    assert "last-applied" not in f"Handling is in progress: {body!r}"
    diff = diffs.diff({"a": 1, "b": 2}, {"a": 3})
    assert repr(diff) == "<Diff of 2 items>"


def test_kopf_body_and_diff_repr_is_full_with_debug_on(lazy_reprs_installed: Any) -> None:
    """``--verbose`` (DEBUG on ``kopf.objects``) still shows the whole object, as Kopf would."""
    import logging

    from kopf._cogs.structs import diffs

    lazy_reprs_installed.setLevel(logging.DEBUG)
    body = kopf.Body(copy.deepcopy(ORG))
    assert repr(body) == repr(dict(body))
    assert "'switchPolicy': {'timeoutSeconds': 30}" in repr(body)
    diff = diffs.diff({"a": 1}, {"a": 3})
    assert repr(diff) == "(('change', ('a',), 1, 3),)"


def test_kopf_still_formats_bodies_in_its_debug_lines() -> None:
    """The lines :mod:`lazy_reprs` is for are still there; if Kopf drops them, drop the shim too."""
    import inspect

    from kopf._core.reactor import processing

    source = inspect.getsource(processing)
    assert "{body!r}" in source and "{cause.diff!r}" in source


def test_the_secret_watch_is_narrowed_by_the_api_server() -> None:
    """Kopf sends the opt-in selector with its Secret list and watch (``settings.watching``):
    Secrets without the ``one.ie/credentials`` label never reach the operator (issue 12, item 2)."""
    from types import SimpleNamespace

    from oneie_operator.handlers.lifecycle import configure
    from oneie_operator.names import WATCH_SELECTOR

    settings = kopf.OperatorSettings()
    services = SimpleNamespace(config=SimpleNamespace(webhook_port=None))
    configure(settings=settings, memo=kopf.Memo(services=services))
    secrets = kopf.Resource("", "v1", "secrets", kind="Secret", namespaced=True)
    connections = kopf.Resource("one.ie", "v1alpha1", "backendconnections", kind="BackendConnection", namespaced=True)
    assert settings.watching.label_selectors.collect(secrets) == [WATCH_SELECTOR]
    assert settings.watching.label_selectors.collect(connections) == []
    assert WATCH_SELECTOR == "one.ie/credentials in (binding,encrypted,true)"


def test_organization_success_lines_are_dropped_and_the_rest_kept() -> None:
    import logging

    from oneie_operator.handlers.kopfpatches.log_lines import QuietOrganizationSuccesses

    quiet = QuietOrganizationSuccesses()

    def record(msg: str, kind: str = "Organization", level: int = logging.INFO) -> logging.LogRecord:
        rec = logging.LogRecord("kopf.objects", level, __file__, 1, msg, None, None)
        rec.k8s_ref = {"kind": kind, "name": "o", "namespace": "t"}
        return rec

    assert not quiet.filter(record("Handler 'reconcile' succeeded."))
    for cause in ("Updating", "Creation", "Resuming"):
        assert not quiet.filter(record(f"{cause} is processed: 1 succeeded; 0 failed."))
    assert quiet.filter(record("Updating is processed: 0 succeeded; 1 failed."))
    assert quiet.filter(record("Handler 'reconcile' failed temporarily: boom", level=logging.ERROR))
    assert quiet.filter(record("Handler 'reconcile' succeeded.", kind="BackendConnection"))
    assert quiet.filter(logging.LogRecord("kopf.objects", logging.INFO, __file__, 1, "Handler 'x' succeeded.",
                                          None, None)), "no object reference: kept"
