"""``kubectl oneie switch | rollback | retry``: request a switch and, with ``--wait``, follow it live.

A switch is requested by patching ``spec.backend.connectionRef.name`` (a rollback adds the
annotation ``one.ie/rollback``, a retry only sets ``one.ie/retry``); the operator does the rest.
``--wait`` prints each step as the operator reports it in ``status.switching.step``, then the
timed steps of ``status.lastSwitch``, and maps the result to the exit code.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from oneie_operator.cli.gitops import gitops_warning
from oneie_operator.cli.plugin_common import ExitCode, PluginError, emit, notice, now_stamp, say, warn
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.cli.plugin_wait import wait_for
from oneie_operator.kube.tables import condition_of, describe_switch, is_ready
from oneie_operator.names import (
    CONNECTIONS,
    ORGANIZATION_KIND,
    ORGANIZATIONS,
    RETRY_ANNOTATION,
    ROLLBACK_ANNOTATION,
    qualified,
)
from oneie_operator.platform_default import PLATFORM_DEFAULT

FAILED = ("RolledBack", "Failed")
GITOPS_ADVICE = {
    "switch": "Change spec.backend.connectionRef.name in Git instead.",
    "rollback": "Revert the commit that changed spec.backend.connectionRef.name in Git instead.",
}


def desired_of(obj: Mapping[str, Any]) -> str:
    """The desired backend's name: the connection named in the spec, else the platform default."""
    ref = ((obj.get("spec") or {}).get("backend") or {}).get("connectionRef") or {}
    return str(ref.get("name") or PLATFORM_DEFAULT)


@dataclass(frozen=True)
class Expectation:
    """What "our switch has finished" looks like in the Organization's status."""

    target: str
    generation: int  # status.observedGeneration must reach it
    finished_before: str  # lastSwitch.finishedAt before the request: a newer one is ours

    def outcome(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        status = obj.get("status") or {}
        if int(status.get("observedGeneration") or 0) < self.generation or status.get("switching"):
            return None
        last = status.get("lastSwitch") or {}
        if last.get("to") != self.target or str(last.get("finishedAt") or "") == self.finished_before:
            return None
        return dict(last)


class Progress:
    """Prints each step once, as the operator reports it (``status.switching.step``)."""

    def __init__(self, target: str, live: bool) -> None:
        self.target = target
        self.started = time.monotonic()
        self.seen: list[str] = []
        self.out = sys.stdout if live else sys.stderr

    def observe(self, obj: Mapping[str, Any]) -> None:
        switching = (obj.get("status") or {}).get("switching") or {}
        step = switching.get("step")
        if step and switching.get("to") == self.target and (not self.seen or self.seen[-1] != step):
            self.seen.append(str(step))
            say(f"  [{time.monotonic() - self.started:6.2f}s] {step} …", self.out)


def _finished(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("status") or {}).get("lastSwitch") or {}).get("finishedAt") or "")


def _generation(obj: Mapping[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def _timeout(args: argparse.Namespace, obj: Mapping[str, Any]) -> float:
    if args.timeout is not None:
        return float(args.timeout)
    policy = float(((obj.get("spec") or {}).get("switchPolicy") or {}).get("timeoutSeconds") or 30)
    return policy + 30.0


def follow(args: argparse.Namespace, cluster: Cluster, start: dict[str, Any], expect: Expectation) -> int:
    """Wait for the switch to finish, printing live steps, then its timed steps; the exit code."""
    name = start["metadata"]["name"]
    progress = Progress(expect.target, live=args.output == "table")

    def check(obj: dict[str, Any]) -> dict[str, Any] | None:
        progress.observe(obj)
        if _generation(obj) > expect.generation and desired_of(obj) != expect.target:
            raise PluginError(
                f"organization {name} was changed to {desired_of(obj)} by someone else while waiting", ExitCode.USAGE
            )
        return expect.outcome(obj)

    try:
        last = wait_for(cluster, ORGANIZATIONS, name, check, timeout=_timeout(args, start), start=start,
                        what=f"the switch of {cluster.namespace}/{name} to {expect.target}")
    except PluginError as exc:
        if exc.code == ExitCode.TIMEOUT and progress.seen:
            raise PluginError(f"{exc} (last step seen: {progress.seen[-1]}; the switch goes on)", exc.code) from None
        raise
    return report(args, cluster, name, last)


def report(args: argparse.Namespace, cluster: Cluster, name: str, last: Mapping[str, Any]) -> int:
    result = str(last.get("result") or "")
    code = ExitCode.OK if result == "Succeeded" else ExitCode.NOT_OK
    if args.output != "table":
        emit({"kind": "SwitchResult", "namespace": cluster.namespace, "organization": name,
              "succeeded": code == ExitCode.OK, "lastSwitch": dict(last)}, args.output)
    else:
        say(describe_switch(last))
    if code != ExitCode.OK:
        say(f"kubectl oneie: switch of {name} to {last.get('to')} {result}: "
            f"{last.get('reason', '')}: {last.get('message', '')}", sys.stderr)
    return code


def _request(args: argparse.Namespace, cluster: Cluster, obj: dict[str, Any], target: str, verb: str,
             annotations: Mapping[str, str]) -> int:
    """Patch the desired connection (plus annotations), then report or follow the switch."""
    name = obj["metadata"]["name"]
    status = obj.get("status") or {}
    active = str(status.get("activeConnection") or "")
    last = status.get("lastSwitch") or {}
    current = desired_of(obj)
    if current == target and annotations and last.get("to") == target and last.get("result") in FAILED:
        annotations = {**annotations, RETRY_ANNOTATION: now_stamp()}  # the same target again: a new attempt
    ref: dict[str, Any] | None = None if target == PLATFORM_DEFAULT else {"name": target}
    body: dict[str, Any] = {"spec": {"backend": {"connectionRef": ref}}}
    if annotations:
        body["metadata"] = {"annotations": dict(annotations)}
    if current == target and not annotations:
        switching = status.get("switching") or {}
        if last.get("to") == target and last.get("result") in FAILED and active != target:
            raise PluginError(
                f"the switch of {name} to {target} already {last.get('result')} ({last.get('reason')}): "
                f"{last.get('message')}; fix the cause, then run `kubectl oneie retry {name}`", ExitCode.NOT_OK)
        if active == target and not switching:
            notice(args, {"kind": "SwitchResult", "namespace": cluster.namespace, "organization": name,
                          "succeeded": True, "unchanged": True, "lastSwitch": dict(last)},
                   f"organization {cluster.namespace}/{name} already uses {target}; nothing to do")
            return ExitCode.OK if is_ready(obj) else ExitCode.NOT_OK

    change = f"spec.backend.connectionRef.name: {current} → {target}"
    warning = gitops_warning("Organization", obj, change, GITOPS_ADVICE[verb])
    if warning:
        warn(warning)
    if target != PLATFORM_DEFAULT:
        conn = cluster.get(CONNECTIONS, target)
        if conn is None:
            raise PluginError(f'BackendConnection "{target}" not found in namespace "{cluster.namespace}"')
        if not is_ready(conn):
            ready = condition_of(conn, "Ready")
            warn(f"BackendConnection {target} is not Ready ({ready.get('reason', 'not reconciled yet')}): "
                 "the switch will fail and the current backend stays active")

    patched = cluster.patch(ORGANIZATIONS, name, body, dry_run=args.dry_run)
    if args.dry_run:
        lines = [f"would patch organization {cluster.namespace}/{name} ({verb}):", f"  {change}"]
        lines += [f"  annotation {k}={v}" for k, v in annotations.items()]
        notice(args, {"kind": "DryRun", "namespace": cluster.namespace, "organization": name, "patch": body},
               "\n".join(lines))
        return ExitCode.OK
    expect = Expectation(target, _generation(patched), _finished(obj))
    if not args.wait:
        notice(args, {"kind": "SwitchRequested", "namespace": cluster.namespace, "organization": name,
                      "from": active, "to": target, "annotations": dict(annotations)},
               f"{qualified(ORGANIZATION_KIND, name)} {verb} requested: {active or '(nothing)'} → {target} "
               f"(follow it: kubectl oneie status {name} -n {cluster.namespace})")
        return ExitCode.OK
    if args.output == "table":
        say(f"{verb.capitalize()} {cluster.namespace}/{name}: {active or '(nothing)'} → {target}")
    return follow(args, cluster, patched, expect)


def cmd_switch(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.require(ORGANIZATIONS, args.name)
    return _request(args, cluster, obj, args.to, "switch", {})


def cmd_rollback(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.require(ORGANIZATIONS, args.name)
    previous = str((obj.get("status") or {}).get("previousConnection") or "")
    if not previous:
        raise PluginError(f"organization {cluster.namespace}/{args.name} has no previous connection to roll back to")
    return _request(args, cluster, obj, previous, "rollback", {ROLLBACK_ANNOTATION: now_stamp()})


def cmd_retry(args: argparse.Namespace, cluster: Cluster) -> int:
    obj = cluster.require(ORGANIZATIONS, args.name)
    name = args.name
    status = obj.get("status") or {}
    last = status.get("lastSwitch") or {}
    target = desired_of(obj)
    if last.get("result") not in FAILED or last.get("to") != target or status.get("activeConnection") == target:
        raise PluginError(
            f"organization {cluster.namespace}/{name} has no failed switch to retry "
            f"(desired {target}, active {status.get('activeConnection') or '-'}, "
            f"last switch {last.get('result') or '-'})"
        )
    body = {"metadata": {"annotations": {RETRY_ANNOTATION: now_stamp()}}}
    patched = cluster.patch(ORGANIZATIONS, name, body, dry_run=args.dry_run)
    if args.dry_run:
        notice(args, {"kind": "DryRun", "namespace": cluster.namespace, "organization": name, "patch": body},
               f"would set annotation {RETRY_ANNOTATION} on organization {cluster.namespace}/{name} "
               f"(retry the switch to {target})")
        return ExitCode.OK
    if not args.wait:
        notice(args, {"kind": "SwitchRequested", "namespace": cluster.namespace, "organization": name,
                      "from": status.get("activeConnection") or "", "to": target,
                      "annotations": body["metadata"]["annotations"]},
               f"{qualified(ORGANIZATION_KIND, name)} retry requested: switch to {target} "
               f"(last attempt {last.get('result')}: {last.get('reason')})")
        return ExitCode.OK
    if args.output == "table":
        say(f"Retry {cluster.namespace}/{name}: {status.get('activeConnection') or '(nothing)'} → {target}")
    return follow(args, cluster, patched, Expectation(target, _generation(patched), _finished(obj)))
