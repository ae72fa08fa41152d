"""The dashboard's JSON views and actions, every one made with the user's own kubeconfig identity.

Reads use the plug-in's :class:`~oneie_operator.cli.plugin_kube.Cluster`; actions call the
plug-in's own commands (``switch``, ``rollback``, ``retry``, ``probe``), so the API changes are
exactly those of ``kubectl oneie``. A refusal by the API server (403) is answered as
``{"refused": true, "message": ...}`` with the server's reason in a sentence. Secret *values*
never leave this module: a Secret is shown by its name, key names, labels and resourceVersion.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import io
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from kubernetes.client.exceptions import ApiException

from oneie_operator.cli import plugin_probe, plugin_switch
from oneie_operator.cli.dashboard.newconn import FormError, NewConnections
from oneie_operator.cli.gitops import gitops_warning
from oneie_operator.cli.plugin_common import PluginError
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.kube.tables import condition_of, connection_summary, is_ready, organization_summary
from oneie_operator.names import CONNECTIONS, CREDENTIALS_LABEL, OPTED_IN, ORGANIZATIONS, PROBE_ANNOTATION


def sentence(message: str) -> tuple[bool, str]:
    """(refused?, a sentence for people) from a plug-in error or an API message."""
    text = message.strip()
    if text.startswith("API error 403"):
        reason = text.split(":", 1)[1].strip() if ":" in text else text
        return True, f"Refused by the Kubernetes API server for your identity: {reason}"
    if text.startswith("API error 404"):
        return False, "Not found: " + (text.split(":", 1)[1].strip() if ":" in text else text)
    if text.startswith("API error"):
        return False, "The Kubernetes API server answered with an error: " + text.removeprefix("API error ")
    return False, text[:1].upper() + text[1:]


def _api_exception_text(exc: ApiException) -> str:
    message = ""
    with contextlib.suppress(Exception):
        message = str(json.loads(exc.body or "{}").get("message") or "")
    return f"API error {exc.status} {exc.reason or ''}: {message or exc.reason or ''}"


def unreachable(cluster: Cluster, exc: BaseException) -> str:
    """A sentence for people when the API server does not answer (no stack, no credentials)."""
    host = str(getattr(cluster.client.configuration, "host", "") or "the kubeconfig's server")
    return (f"The Kubernetes API server at {host} cannot be reached ({type(exc).__name__}): is the cluster up, "
            "and does your kubeconfig point at it?")


def failure(message: str) -> web.Response:
    refused, text = sentence(message)
    return web.json_response({"refused": refused, "message": text}, status=403 if refused else 400)


class Backend:
    """The cluster seen with the user's identity, and the namespaces the dashboard shows."""

    def __init__(self, cluster: Cluster, *, namespace: str | None, all_namespaces: bool,
                 operator_namespace: str = "oneie-system") -> None:
        self.cluster = cluster
        self.new = NewConnections(cluster, operator_namespace)
        self.pinned = namespace is not None  # -n given: that namespace only
        self.all_namespaces = all_namespaces
        self._lock = threading.Lock()  # the plug-in's commands print: one at a time, output captured

    def scoped(self, namespace: str) -> Cluster:
        scoped = copy.copy(self.cluster)
        scoped.namespace = namespace
        return scoped

    # -- reads -----------------------------------------------------------------------------------

    def list_all(self, plural: str) -> tuple[list[dict[str, Any]], str]:
        """Every object the user may list, and the scope shown ("all namespaces" or the namespace)."""
        if not self.pinned:
            try:
                return self.cluster.list(plural, all_namespaces=True), "all namespaces"
            except PluginError as exc:
                if self.all_namespaces or not str(exc).startswith("API error 403"):
                    raise
        return self.cluster.list(plural), f"namespace {self.cluster.namespace}"

    def fleet(self) -> dict[str, Any]:
        orgs, scope = self.list_all(ORGANIZATIONS)
        conns, _ = self.list_all(CONNECTIONS)
        return {
            "scope": scope,
            "organizations": [organization_summary(o) for o in orgs],
            "connections": [{**connection_summary(c), "errorRate": _error_rate(c),
                             "healthy": str(condition_of(c, "Healthy").get("status", "Unknown")),
                             "stalled": str(condition_of(c, "Stalled").get("status", "Unknown"))} for c in conns],
        }

    def events(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        try:
            listed = self.cluster.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name},involvedObject.kind={kind}")
        except ApiException as exc:
            refused, text = sentence(_api_exception_text(exc))
            return {"refused": refused, "message": text, "items": []}
        items = []
        for ev in listed.items or []:
            when = ev.last_timestamp or ev.event_time or ev.first_timestamp
            items.append({"type": ev.type, "reason": ev.reason, "message": ev.message,
                          "count": ev.count, "time": when.isoformat() if when else ""})
        items.sort(key=lambda e: str(e["time"]))
        return {"refused": False, "message": "", "items": items[-30:]}

    def organization(self, namespace: str, name: str) -> dict[str, Any]:
        cluster = self.scoped(namespace)
        obj = cluster.require(ORGANIZATIONS, name)
        status = obj.get("status") or {}
        conns, _ = self.scoped_list(cluster)
        return {
            "summary": organization_summary(obj),
            "conditions": list(status.get("conditions") or []),
            "lastSwitch": status.get("lastSwitch") or None,
            "switching": status.get("switching") or None,
            "history": list(status.get("history") or []),
            "connections": [{"name": c["metadata"]["name"], "ready": is_ready(c),
                             "provider": str((c.get("spec") or {}).get("provider") or "")} for c in conns],
            "gitops": gitops_warning("Organization", obj, "a change made from the dashboard",
                                     plugin_switch.GITOPS_ADVICE["switch"]),
            "resourceVersion": (obj.get("metadata") or {}).get("resourceVersion", ""),
            "events": self.events(namespace, "Organization", name),
        }

    def scoped_list(self, cluster: Cluster) -> tuple[list[dict[str, Any]], str]:
        try:
            return cluster.list(CONNECTIONS), cluster.namespace
        except PluginError:
            return [], cluster.namespace

    def connection(self, namespace: str, name: str) -> dict[str, Any]:
        cluster = self.scoped(namespace)
        obj = cluster.require(CONNECTIONS, name)
        spec = dict(obj.get("spec") or {})
        status = obj.get("status") or {}
        return {
            "summary": {**connection_summary(obj), "errorRate": _error_rate(obj)},
            "spec": spec,  # settings and the Secret's name only: credentials live in the Secret
            "capabilities": status.get("capabilities") or [],
            "health": status.get("health") or {},
            "conditions": list(status.get("conditions") or []),
            "credentials": {k: v for k, v in (status.get("credentials") or {}).items()},
            "secret": self.secret_facts(namespace, str((spec.get("credentialsSecretRef") or {}).get("name") or "")),
            "gitops": gitops_warning("BackendConnection", obj, f"a probe request (annotation {PROBE_ANNOTATION})",
                                     "A probe changes only an annotation; nothing to change in Git."),
            "events": self.events(namespace, "BackendConnection", name),
        }

    def secret_facts(self, namespace: str, name: str) -> dict[str, Any]:
        """Whether the credentials Secret is in place: name, key names, labels, version; never values."""
        if not name:
            return {"name": "", "exists": False, "message": "spec.credentialsSecretRef names no Secret"}
        try:
            secret = self.cluster.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return {"name": name, "exists": False, "message": f"Secret {name} does not exist"}
            refused, text = sentence(_api_exception_text(exc))
            return {"name": name, "exists": None, "refused": refused, "message": text}
        labels = dict(secret.metadata.labels or {})
        return {
            "name": name, "exists": True, "keys": sorted((secret.data or {}).keys()),
            "labelled": labels.get(CREDENTIALS_LABEL) == OPTED_IN, "type": secret.type,
            "resourceVersion": secret.metadata.resource_version, "message": "",
        }

    # -- actions (the plug-in's own commands) -----------------------------------------------------

    def run_command(self, command: Callable[[argparse.Namespace, Cluster], int], namespace: str,
                    **fields: Any) -> dict[str, Any]:
        args = argparse.Namespace(wait=False, dry_run=False, output="json", timeout=None, **fields)
        out, err = io.StringIO(), io.StringIO()
        with self._lock, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = command(args, self.scoped(namespace))
        document: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            document = json.loads(out.getvalue() or "{}")
        warnings = [line.removeprefix("WARNING: ") for line in err.getvalue().splitlines() if line.strip()]
        return {"exitCode": code, "result": document, "warnings": warnings}


def _error_rate(obj: Mapping[str, Any]) -> Any:
    health = (obj.get("status") or {}).get("health") or {}
    return health.get("errorRate")


ACTIONS: dict[str, Callable[[argparse.Namespace, Cluster], int]] = {
    "switch": plugin_switch.cmd_switch,
    "rollback": plugin_switch.cmd_rollback,
    "retry": plugin_switch.cmd_retry,
    "probe": plugin_probe.cmd_probe,
}


def routes(backend: Backend) -> web.RouteTableDef:
    r = web.RouteTableDef()

    async def call(func: Callable[..., dict[str, Any]], *args: Any, **kw: Any) -> web.Response:
        try:
            return web.json_response(await asyncio.to_thread(func, *args, **kw))
        except PluginError as exc:
            return failure(str(exc))
        except FormError as exc:
            return web.json_response({"refused": exc.refused, "message": str(exc)}, status=exc.status)
        except Exception as exc:  # the API server unreachable and the like
            return web.json_response({"refused": False, "unreachable": True,
                                      "message": unreachable(backend.cluster, exc)}, status=502)

    @r.get("/api/fleet")
    async def fleet(request: web.Request) -> web.Response:
        return await call(backend.fleet)

    @r.get("/api/organizations/{namespace}/{name}")
    async def organization(request: web.Request) -> web.Response:
        return await call(backend.organization, request.match_info["namespace"], request.match_info["name"])

    @r.get("/api/connections/{namespace}/{name}")
    async def connection(request: web.Request) -> web.Response:
        return await call(backend.connection, request.match_info["namespace"], request.match_info["name"])

    @r.post("/api/{plural:organizations|connections}/{namespace}/{name}/{action:switch|rollback|retry|probe}")
    async def action(request: web.Request) -> web.Response:
        verb, plural = request.match_info["action"], request.match_info["plural"]
        if (verb == "probe") != (plural == "connections"):
            return failure(f"{verb} does not apply to {plural}")
        fields: dict[str, Any] = {"name": request.match_info["name"]}
        if verb == "switch":
            body = await request.json() if request.can_read_body else {}
            target = str((body or {}).get("to") or "")
            if not target:
                return failure("Choose the connection to switch to (field: to).")
            fields["to"] = target
        return await call(backend.run_command, ACTIONS[verb], request.match_info["namespace"], **fields)

    # -- new connection ------------------------------------------------------------------------------

    @r.get("/api/new/{namespace}")
    async def new_form(request: web.Request) -> web.Response:
        return await call(backend.new.form, request.match_info["namespace"])

    async def body_of(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise FormError("The request is not JSON.") from None
        if not isinstance(body, dict):
            raise FormError("The request is not a JSON object.")
        return body

    @r.post("/api/new/{namespace}")
    async def new_test(request: web.Request) -> web.Response:
        try:
            body = await body_of(request)
        except FormError as exc:
            return failure(str(exc))
        return await call(backend.new.create, request.match_info["namespace"], body)

    @r.get("/api/new/{namespace}/{name}")
    async def new_verdict(request: web.Request) -> web.Response:
        return await call(backend.new.verdict, request.match_info["namespace"], request.match_info["name"])

    @r.delete("/api/new/{namespace}/{name}")
    async def new_cancel(request: web.Request) -> web.Response:
        return await call(backend.new.cancel, request.match_info["namespace"], request.match_info["name"])

    @r.post("/api/new/{namespace}/{name}/save")
    async def new_save(request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        try:
            body = await body_of(request)
        except FormError as exc:
            return failure(str(exc))
        backend.new.saved(namespace, name)
        organization = str(body.get("organization") or "")
        if not organization:
            return web.json_response({"saved": True, "switched": False})
        return await call(backend.run_command, ACTIONS["switch"], namespace, name=organization, to=name)

    return r
