"""`kubectl oneie` pieces without a cluster: GitOps detection, keyrings, tables, flags."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oneie_operator.cli import kubectl_plugin
from oneie_operator.cli.gitops import detect_gitops, gitops_warning
from oneie_operator.cli.plugin_common import PluginError
from oneie_operator.cli.plugin_keys import current_keys, rotated_keyring
from oneie_operator.cli.plugin_switch import Expectation
from oneie_operator.kube.tables import render_connections, render_organizations
from oneie_operator.vault import EncryptionKey, Keyring, generate_key


def _obj(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
         managers: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"name": "acme", "namespace": "t", "labels": labels or {}, "annotations": annotations or {},
                         "managedFields": [{"manager": m, "operation": "Apply"} for m in managers]}}


@pytest.mark.parametrize(
    ("obj", "tools"),
    [
        (_obj(annotations={"argocd.argoproj.io/tracking-id": "app:one.ie/Organization:t/acme"}), ["Argo CD"]),
        (_obj({"app.kubernetes.io/instance": "app"}, {"argocd.argoproj.io/tracking-id": "app:x"}), ["Argo CD"]),
        (_obj(annotations={"argocd.argoproj.io/instance": "app"}), ["Argo CD"]),
        (_obj({"argocd.argoproj.io/instance": "app"}), ["Argo CD"]),
        (_obj({"kustomize.toolkit.fluxcd.io/name": "k", "kustomize.toolkit.fluxcd.io/namespace": "flux"}), ["Flux"]),
        (_obj({"helm.toolkit.fluxcd.io/name": "r"}), ["Flux"]),
        (_obj(managers=("argocd-controller",)), ["Argo CD"]),
        (_obj(managers=("argocd-application-controller", "kubectl-client-side-apply")), ["Argo CD"]),
        (_obj(managers=("kustomize-controller",)), ["Flux"]),
        (_obj(managers=("helm-controller",)), ["Flux"]),
        # Not evidence: Helm sets app.kubernetes.io/instance too; kubectl and the operator are no GitOps.
        (_obj({"app.kubernetes.io/instance": "release"}), []),
        (_obj(managers=("kubectl", "kopf", "kubectl-oneie")), []),
        ({"metadata": {"name": "bare"}}, []),
    ],
)
def test_gitops_detection(obj: dict[str, Any], tools: list[str]) -> None:
    assert sorted({o.tool for o in detect_gitops(obj)}) == tools
    warning = gitops_warning("Organization", obj, "x → y", "Revert the commit.")
    assert (warning is None) == (not tools)
    if warning:
        assert "next sync will revert this change (x → y)" in warning and "Revert the commit." in warning


def test_gitops_warning_names_the_owner() -> None:
    obj = _obj({"kustomize.toolkit.fluxcd.io/name": "tenants", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
               {"argocd.argoproj.io/tracking-id": "platform:one.ie/Organization:t/acme"})
    warning = gitops_warning("Organization", obj, "a → b", "")
    assert warning is not None
    assert "Argo CD and Flux" in warning and "Application platform" in warning
    assert "Kustomization flux-system/tenants" in warning and "flux suspend" in warning


def test_keyring_from_a_single_key_and_from_a_keyring() -> None:
    old, new = generate_key(), generate_key()
    old_id, new_id = EncryptionKey.from_hex(old).id, EncryptionKey.from_hex(new).id
    keys = current_keys({"ENCRYPTION_KEY": old.upper() + "\n"})
    assert keys == {old_id: old}
    ring = rotated_keyring(keys, new)
    assert ring == {"primary": new_id, "keys": {old_id: old, new_id: new}}
    parsed = Keyring.from_env(None, json.dumps(ring))
    assert parsed.primary_id == new_id and set(parsed.ids) == {old_id, new_id}

    third = generate_key()
    again = rotated_keyring(current_keys({"ENCRYPTION_KEYRING": json.dumps(ring)}), third)
    assert list(again["keys"])[:2] == [new_id, old_id] and again["primary"] == EncryptionKey.from_hex(third).id

    with pytest.raises(PluginError, match="already in the keyring") as exc:
        rotated_keyring(keys, old)
    assert old not in str(exc.value)
    with pytest.raises(PluginError) as bad:
        rotated_keyring(keys, "zz" * 32)
    assert "zz" * 32 not in str(bad.value)
    with pytest.raises(PluginError, match="ENCRYPTION_KEY"):
        current_keys({})
    # A Secret with both (the chart maps one by name): every key of both kept, the keyring's primary first.
    stray = generate_key()
    both = current_keys({"ENCRYPTION_KEY": stray, "ENCRYPTION_KEYRING": json.dumps(ring)})
    assert both == {new_id: new, old_id: old, EncryptionKey.from_hex(stray).id: stray}
    assert current_keys({"ENCRYPTION_KEY": old, "ENCRYPTION_KEYRING": json.dumps(ring)}) == {new_id: new, old_id: old}
    clash = {"primary": old_id, "keys": {old_id: stray}}
    with pytest.raises(PluginError, match="different keys") as exc:
        current_keys({"ENCRYPTION_KEY": old, "ENCRYPTION_KEYRING": json.dumps(clash)})
    assert old not in str(exc.value) and stray not in str(exc.value)
    with pytest.raises(PluginError) as broken:
        current_keys({"ENCRYPTION_KEYRING": '{"primary": "x", "keys": {"x": "' + old[:60] + '"}}'})
    assert old[:60] not in str(broken.value)


def test_rotate_key_refuses_to_print_keys_to_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    old = generate_key()
    monkeypatch.setenv("ENCRYPTION_KEY", old)
    monkeypatch.delenv("ENCRYPTION_KEYRING", raising=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert kubectl_plugin.main(["rotate-key", "--generate"]) == 2
    captured = capsys.readouterr()
    assert "not printed to a terminal" in captured.err and old not in captured.out + captured.err
    assert kubectl_plugin.main(["rotate-key", "--generate", "--output-file", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"][EncryptionKey.from_hex(old).id] == old


def test_global_flags_before_or_after_the_command() -> None:
    parser = kubectl_plugin.build_parser()
    before = parser.parse_args(["-n", "t1", "--kubeconfig", "k", "-o", "json", "status"])
    after = parser.parse_args(["status", "-n", "t1", "--kubeconfig", "k", "-o", "json"])
    for args in (before, after):
        assert (args.namespace, args.kubeconfig, args.output, args.all_namespaces) == ("t1", "k", "json", False)
    assert parser.parse_args(["status", "-A"]).all_namespaces is True
    assert parser.parse_args(["switch", "o", "--to", "c"]).namespace is None


@pytest.mark.parametrize("argv", [["switch", "org"], ["nope"], ["status", "-o", "wide"], ["-A", "-n", "x", "status"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert kubectl_plugin.main(argv) == 2
    assert "kubectl oneie" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        kubectl_plugin.main(["switch", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for code in ("0  ok", "1  not ok", "2  usage or API error", "3  timeout"):
        assert code in text
    assert kubectl_plugin.__doc__ is not None and "Exit codes" in kubectl_plugin.__doc__


def test_expectation_waits_for_a_new_result_of_the_target() -> None:
    expect = Expectation("next", generation=3, finished_before="t1")
    org: dict[str, Any] = {"status": {"observedGeneration": 3, "lastSwitch": {"to": "next", "finishedAt": "t1"}}}
    assert expect.outcome(org) is None  # the old result
    org["status"]["lastSwitch"] = {"to": "next", "finishedAt": "t2", "result": "Succeeded"}
    org["status"]["switching"] = {"to": "next", "step": "healthGate"}
    assert expect.outcome(org) is None  # still running
    org["status"]["switching"] = None
    assert expect.outcome(org) == {"to": "next", "finishedAt": "t2", "result": "Succeeded"}
    org["status"]["observedGeneration"] = 2
    assert expect.outcome(org) is None  # not yet reconciled at our generation


def test_tables_show_a_running_switch_and_key_ids() -> None:
    org = {"metadata": {"name": "acme", "namespace": "t"},
           "status": {"provider": "convex", "activeConnection": "a", "previousConnection": "b",
                      "switching": {"to": "c", "step": "test"},
                      "lastSwitch": {"result": "Succeeded", "totalMilliseconds": 12.345},
                      "conditions": [{"type": "Ready", "status": "True", "reason": "Active"},
                                     {"type": "Healthy", "status": "True", "reason": "Online"}]}}
    row = render_organizations([org], namespace_column=False).splitlines()[1].split()
    assert row == ["acme", "convex", "a", "b", "True", "True", "Switching:test", "12.3", "Active"]
    conn = {"metadata": {"name": "db", "namespace": "t"}, "spec": {"provider": "notion"},
            "status": {"credentials": {"keyId": "k-1"}, "usedBy": ["acme", "beta"], "health": {"status": "online"}}}
    row = render_connections([conn]).splitlines()[1].split()
    assert row == ["t", "db", "notion", "Unknown", "-", "online", "k-1", "acme,beta", "-"]


class FakeCluster:
    """Versions of one object: the watch yields them, or refuses (403) so that the wait polls."""

    def __init__(self, versions: list[dict[str, Any]], watch_status: int | None = None) -> None:
        self.versions, self.watch_status, self.reads = versions, watch_status, 0

    def watch(self, plural: str, name: str, rv: str, seconds: float) -> Any:
        from kubernetes.client.exceptions import ApiException
        if self.watch_status is not None:
            raise ApiException(status=self.watch_status, reason="Forbidden")
        yield from self.versions

    def require(self, plural: str, name: str) -> dict[str, Any]:
        self.reads += 1
        return self.versions[min(self.reads, len(self.versions) - 1)]


def _version(n: int) -> dict[str, Any]:
    return {"metadata": {"name": "o", "resourceVersion": str(n)}, "n": n}


def test_wait_for_watches_polls_and_times_out() -> None:
    from oneie_operator.cli.plugin_common import ExitCode
    from oneie_operator.cli.plugin_wait import wait_for

    seen: list[int] = []

    def reach(target: int) -> Any:
        def check(obj: dict[str, Any]) -> int | None:
            seen.append(obj["n"])
            return obj["n"] if obj["n"] >= target else None
        return check

    watched = FakeCluster([_version(1), _version(2), _version(3)])
    assert wait_for(watched, "x", "o", reach(3), timeout=5, what="w", start=_version(0)) == 3  # type: ignore[arg-type]
    assert seen == [0, 1, 2, 3] and watched.reads == 0  # every version, in order, from the watch

    polled = FakeCluster([_version(0), _version(1), _version(2)], watch_status=403)
    assert wait_for(polled, "x", "o", reach(2), timeout=5, what="p", start=_version(0)) == 2  # type: ignore[arg-type]
    assert polled.reads == 2

    with pytest.raises(PluginError) as late:
        wait_for(FakeCluster([_version(0)], 403), "x", "o", reach(9), timeout=0.3, what="never")  # type: ignore[arg-type]
    assert late.value.code == ExitCode.TIMEOUT and "never" in str(late.value)

    def refuse(obj: dict[str, Any]) -> None:
        if obj["n"] == 2:
            raise PluginError("changed by someone else")
    with pytest.raises(PluginError, match="someone else"):
        wait_for(FakeCluster([_version(1), _version(2)]), "x", "o", refuse, timeout=5, what="r",  # type: ignore[arg-type]
                 start=_version(0))


def _conn(name: str, ready: str, reason: str, message: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "t"}, "spec": {"provider": "convex"},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": reason, "message": message}]}}


def test_long_messages_wrap_instead_of_being_cut() -> None:
    """A message longer than its column continues on the next lines under that column: every word
    is printed (a cut message hid the part that says what to do)."""
    message = ("Convex rejected the credentials: HTTP 401 (BadAdminKey: The provided admin key was invalid "
               "for this instance); fix the Secret's deployKey, the connection is re-verified at once")
    text = render_connections([_conn("main", "False", "CredentialsRejected", message)])
    lines = text.splitlines()
    assert len(lines) > 2 and all(len(line) < 200 for line in lines)
    column = lines[0].index("MESSAGE")
    assert " ".join(line[column:].strip() for line in lines[1:]) == message
    assert all(not line[:column].strip() for line in lines[2:])  # continuation lines: only the message column


def test_not_ready_summary_names_each_object_and_reason() -> None:
    from oneie_operator.kube.tables import not_ready_summary

    good = _conn("good", "True", "CredentialsVerified", "ok")
    assert not_ready_summary([], [good]) is None
    no_status = {"metadata": {"name": "new", "namespace": "t"}}
    text = not_ready_summary([no_status], [good, _conn("bad", "False", "CredentialsRejected", "no")])
    assert text == ("1 organization not Ready: t/new (no Ready condition yet); "
                    "1 connection not Ready: t/bad (CredentialsRejected)")


def test_a_closed_pipe_is_a_quiet_exit() -> None:
    """`kubectl oneie keygen | head -c0`: the reader went away; no error text, exit 141 as a shell's."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "oneie_operator.cli.kubectl_plugin", "keygen"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first write
    _, err = proc.communicate(timeout=60)
    assert b"BrokenPipe" not in err and b"Traceback" not in err, err
