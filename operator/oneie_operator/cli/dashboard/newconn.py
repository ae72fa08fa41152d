"""The dashboard's "New connection" flow, with the user's own kubeconfig identity.

The form is built from what the cluster serves, never from local Python packages:

* the providers and their Secret keys from the operator's catalog, the ConfigMap
  ``oneie-providers`` in the operator's namespace (``reconcile/catalog.py``);
* each provider's settings from the BackendConnection CRD's schema
  (``spec.properties.<provider>``), or ``/openapi/v3/apis/one.ie/v1alpha1`` when the user
  may not read CRDs. A plug-in provider without a schema block gets a JSON settings field.

"Test connection" creates the credentials Secret (Opaque, label ``one.ie/credentials``) and
the BackendConnection; the verdict is the connection's Ready condition, read like any other
view. "Cancel" deletes only what this dashboard created. Typed secret values go into the
Secret's ``stringData`` and nowhere else: not into an answer, a log line or an error text.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from oneie_operator.cli.gitops import gitops_warning
from oneie_operator.cli.plugin_kube import Cluster
from oneie_operator.kube.tables import condition_of, is_ready
from oneie_operator.names import (
    API_VERSION,
    CATALOG_NAME,
    CONNECTION_KIND,
    CONNECTIONS,
    CONNECTIONS_CRD,
    CREATED_BY_ANNOTATION,
    CREDENTIALS_LABEL,
    GROUP,
    OPTED_IN,
    ORGANIZATIONS,
    VERSION,
)

CATALOG_KEY = "providers.json"
OPENAPI_PATH = f"/openapi/v3/apis/{API_VERSION}"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
NOT_PROVIDER_BLOCKS = frozenset({"provider", "credentialsSecretRef", "healthCheck", "rateLimits"})


class FormError(Exception):
    """A problem with the form's input or the API server's answer, as a sentence for people."""

    def __init__(self, message: str, *, refused: bool = False, status: int = 400) -> None:
        super().__init__(message)
        self.refused = refused
        self.status = status


def _message_of(exc: ApiException) -> str:
    with contextlib.suppress(Exception):
        return str(json.loads(exc.body or "{}").get("message") or "")
    return ""


def explain(exc: ApiException, what: str) -> FormError:
    """An API error while doing ``what`` as a sentence; never the request body."""
    message = _message_of(exc)
    if exc.status == 403:
        return FormError(f"Refused by the Kubernetes API server for your identity while {what}: {message}",
                         refused=True, status=403)
    if exc.status == 409:
        return FormError(f"Could not finish {what}: an object of that name already exists; choose another name.",
                         status=409)
    if exc.status == 422:
        return FormError(f"The Kubernetes API server rejected the input while {what}: {_invalid(message)}",
                         status=422)
    if exc.status == 404:
        return FormError(f"Not found while {what}: {message}", status=404)
    return FormError(f"The Kubernetes API server answered {exc.status} {exc.reason or ''} while {what}.", status=502)


def _invalid(message: str) -> str:
    # 'BackendConnection.one.ie "x" is invalid: spec.convex.url: Invalid value: "...": msg' -> field: msg
    details = message.split(" is invalid: ", 1)[-1]
    parts = []
    for item in re.split(r", (?=spec\.|metadata\.|data\.)", details.strip("[]")):
        m = re.match(r"^(?P<field>[\w.\[\]-]+): (?:Invalid value: (?:\"[^\"]*\"|\S+): )?(?P<why>.*)$", item.strip())
        if m is None:
            parts.append(item.strip())
            continue
        why = m["why"].removeprefix(f"{m['field']} in body ").replace("should match", "must match the format")
        parts.append(f"{m['field']}: {why}")
    text = "; ".join(p for p in parts if p)
    return text if text.endswith(".") else text + "."


def _fields(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    required = set(block.get("required") or [])
    out = []
    for name, prop in (block.get("properties") or {}).items():
        kind = str(prop.get("type") or "string")
        if kind not in ("string", "integer", "number", "boolean"):
            continue  # nested objects: not part of the simple form
        out.append({"name": name, "type": kind, "description": str(prop.get("description") or ""),
                    "required": name in required, "pattern": prop.get("pattern"), "enum": prop.get("enum"),
                    "default": prop.get("default"), "maxLength": prop.get("maxLength")})
    out.sort(key=lambda f: (not f["required"], f["name"]))
    return out


class NewConnections:
    """Reads what the form needs and creates/cancels test connections, as the user."""

    def __init__(self, cluster: Cluster, operator_namespace: str = "oneie-system") -> None:
        self.cluster = cluster
        self.operator_namespace = operator_namespace
        self.created: set[tuple[str, str, str]] = set()  # (namespace, connection, secret) made here
        self._lock = threading.Lock()

    # -- what the form is made of ------------------------------------------------------------------

    def catalog(self) -> tuple[list[dict[str, Any]], str]:
        try:
            cm = self.cluster.core.read_namespaced_config_map(CATALOG_NAME, self.operator_namespace)
        except ApiException as exc:
            why = "you may not read it" if exc.status == 403 else "it does not exist (is the operator running?)"
            return [], (f"The operator's provider catalog ({self.operator_namespace}/{CATALOG_NAME}) could not "
                        f"be read: {why}. The Secret keys come from the schema's descriptions only.")
        try:
            return list(json.loads((cm.data or {}).get(CATALOG_KEY) or "[]")), ""
        except ValueError:
            return [], f"The provider catalog {CATALOG_NAME} is not valid JSON; ask the platform team."

    def _get_json(self, path: str) -> Any:
        client: Any = self.cluster.client
        method, url, headers, body, post = client.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"])
        response = client.call_api(method, url, header_params=headers, body=body, post_params=post,
                                   _request_timeout=10)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status, reason=response.reason)
        return json.loads(response.data)

    def spec_schema(self) -> tuple[dict[str, Any], str]:
        """``spec`` of the served BackendConnection schema, and where it came from."""
        try:
            crd = self._get_json(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CONNECTIONS_CRD}")
            for version in crd["spec"]["versions"]:
                if version.get("served") and version["name"] == VERSION:
                    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
                    return dict(spec), "CustomResourceDefinition " + CONNECTIONS_CRD
        except (ApiException, KeyError, TypeError, ValueError):
            pass
        try:
            schemas = self._get_json(OPENAPI_PATH).get("components", {}).get("schemas", {})
            for name, schema in schemas.items():
                if name.endswith(".BackendConnection"):
                    return dict(schema["properties"]["spec"]), "OpenAPI " + OPENAPI_PATH
        except (ApiException, KeyError, AttributeError, TypeError, ValueError):
            pass
        return {}, "The BackendConnection schema could not be read; settings are entered as JSON."

    def form(self, namespace: str) -> dict[str, Any]:
        catalog, catalog_note = self.catalog()
        spec, schema_source = self.spec_schema()
        props = spec.get("properties") or {}
        names = [str(p["name"]) for p in catalog] or sorted(
            k for k, v in props.items() if k not in NOT_PROVIDER_BLOCKS and (v or {}).get("type") == "object")
        by_name = {str(p["name"]): p for p in catalog}
        providers = []
        for name in names:
            facts = by_name.get(name, {})
            block = props.get(name)
            providers.append({
                "name": name, "displayName": facts.get("displayName") or name,
                "description": str((block or {}).get("description") or ""),
                "fields": _fields(block) if block else None,  # None: a JSON settings field
                "secretFields": list(facts.get("secretFields") or []),
                "optionalSecretFields": list(facts.get("optionalSecretFields") or []),
                "secretDescriptions": dict(facts.get("secretDescriptions") or {}),
            })
        orgs: list[dict[str, Any]] = []
        with contextlib.suppress(Exception):
            scoped = self._scoped(namespace)
            orgs = [{"name": o["metadata"]["name"],
                     "active": str((o.get("status") or {}).get("activeConnection") or ""),
                     "gitops": gitops_warning("Organization", o, "a change made from the dashboard",
                                              "Change spec.backend.connectionRef.name in Git instead.")}
                    for o in scoped.list(ORGANIZATIONS)]
        return {"namespace": namespace, "providers": providers, "catalogNote": catalog_note,
                "schemaSource": schema_source, "organizations": orgs, "gitops": self.namespace_gitops(namespace)}

    def namespace_gitops(self, namespace: str) -> str | None:
        try:
            ns = self.cluster.core.read_namespace(namespace)
        except ApiException:
            return None  # tenants may not read their Namespace: the organizations' own warnings still show
        client: Any = self.cluster.client
        meta = client.sanitize_for_serialization(ns)
        warning = gitops_warning("Namespace", meta, "a connection created from the dashboard",
                                 "Add the Secret and the BackendConnection to Git instead, or they may be pruned.")
        return warning.replace(f"Namespace /{namespace} ", f"Namespace {namespace} ", 1) if warning else None

    def _scoped(self, namespace: str) -> Cluster:
        import copy
        scoped = copy.copy(self.cluster)
        scoped.namespace = namespace
        return scoped

    # -- test, cancel ------------------------------------------------------------------------------

    def create(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "").strip()
        provider = str(body.get("provider") or "").strip()
        settings = body.get("settings")
        secrets = body.get("secrets")
        if not DNS_LABEL.match(name):
            raise FormError("Name the connection with lower-case letters, digits and hyphens "
                            "(at most 63, starting and ending with a letter or digit), e.g. acme-convex.")
        if not provider:
            raise FormError("Choose a provider.")
        if not isinstance(settings, dict):
            raise FormError(f"The settings of {provider} must be a JSON object, e.g. {{\"url\": \"https://…\"}}.")
        if not isinstance(secrets, dict) or not all(isinstance(v, str) for v in secrets.values()):
            raise FormError("The credentials must be text fields.")
        secret_name = f"{name}-credentials"
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": secret_name, "namespace": namespace, "labels": {CREDENTIALS_LABEL: OPTED_IN},
                               "annotations": {CREATED_BY_ANNOTATION: "kubectl oneie dashboard"}},
                  "stringData": {k: v for k, v in secrets.items() if v != ""}}
        connection = {"apiVersion": API_VERSION, "kind": CONNECTION_KIND,
                      "metadata": {"name": name, "namespace": namespace},
                      "spec": {"provider": provider, "credentialsSecretRef": {"name": secret_name}, provider: settings}}
        custom = self.cluster.custom
        # the connection checked first (dry run: a 422 names the field) before any Secret exists
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CONNECTIONS, connection, dry_run="All")
        except ApiException as exc:
            raise explain(exc, f"checking the connection {name}") from None
        try:
            self.cluster.core.create_namespaced_secret(namespace, secret)
        except ApiException as exc:
            raise explain(exc, f"creating the Secret {secret_name}") from None
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, CONNECTIONS, connection)
        except ApiException as exc:
            error = explain(exc, f"creating the connection {name}")
            with contextlib.suppress(ApiException):
                self.cluster.core.delete_namespaced_secret(secret_name, namespace)
            raise error from None
        with self._lock:
            self.created.add((namespace, name, secret_name))
        return {"namespace": namespace, "name": name, "secret": secret_name}

    def cancel(self, namespace: str, name: str) -> dict[str, Any]:
        with self._lock:
            made = [c for c in self.created if c[:2] == (namespace, name)]
        if not made:
            raise FormError(f"{namespace}/{name} was not created by this dashboard's form: nothing removed.")
        secret_name = made[0][2]
        removed = []
        try:
            self.cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, CONNECTIONS, name)
            removed.append(f"BackendConnection {name}")
        except ApiException as exc:
            if exc.status != 404:
                raise explain(exc, f"deleting the connection {name}") from None
        try:
            self.cluster.core.delete_namespaced_secret(secret_name, namespace)
            removed.append(f"Secret {secret_name}")
        except ApiException as exc:
            if exc.status != 404:
                raise explain(exc, f"deleting the Secret {secret_name}") from None
        with self._lock:
            self.created.discard(made[0])
        return {"removed": removed}

    def saved(self, namespace: str, name: str) -> None:
        """Save: the connection stays; Cancel no longer applies to it."""
        with self._lock:
            self.created = {c for c in self.created if c[:2] != (namespace, name)}

    def verdict(self, namespace: str, name: str) -> dict[str, Any]:
        obj = self._scoped(namespace).get(CONNECTIONS, name)
        if obj is None:
            return {"exists": False, "ready": "Unknown", "reason": "", "message": "The connection does not exist."}
        ready = condition_of(obj, "Ready")
        return {"exists": True, "ready": str(ready.get("status") or "Unknown"), "isReady": is_ready(obj),
                "reason": str(ready.get("reason") or ""), "message": str(ready.get("message") or
                                                                          "Waiting for the operator's test…")}
