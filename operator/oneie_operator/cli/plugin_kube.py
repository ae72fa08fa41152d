"""The cluster as ``kubectl oneie`` sees it: one synchronous ``kubernetes`` client, kubectl's defaults.

* The namespace defaults to the kubeconfig context's (``--context`` or the current one), else
  ``default``; in a pod, the service account's namespace.
* Every API failure becomes a :class:`PluginError` (exit code 2) with the server's message.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
from kubernetes.client.exceptions import ApiException

from oneie_operator.cli.plugin_common import PluginError
from oneie_operator.kube.client import load_api_client
from oneie_operator.names import GROUP, KINDS, PLUGIN_FIELD_MANAGER, VERSION

MERGE_PATCH = "application/merge-patch+json"
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _in_cluster(kubeconfig: str | None) -> bool:
    return kubeconfig is None and bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and not os.environ.get("KUBECONFIG")


def context_namespace(kubeconfig: str | None, context: str | None) -> str:
    """The namespace kubectl would use: the context's, else ``default``."""
    if _in_cluster(kubeconfig):
        with contextlib.suppress(OSError):
            return _SA_NAMESPACE.read_text().strip() or "default"
        return "default"
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser("~/.kube/config")
    contexts, active = kubernetes.config.list_kube_config_contexts(config_file=path)  # type: ignore[no-untyped-call]
    chosen = active if context is None else next((c for c in contexts if c.get("name") == context), None)
    if chosen is None:
        raise PluginError(f"context {context!r} not found in the kubeconfig {path}")
    return str((chosen.get("context") or {}).get("namespace") or "default")


def _mapping(value: object) -> dict[str, Any]:
    """The client types custom objects as ``object``; they are JSON objects."""
    if not isinstance(value, Mapping):
        raise PluginError(f"unexpected answer from the API server: {type(value).__name__}")
    return dict(value)


def api_error(exc: ApiException) -> PluginError:
    """A one-line message from the API server's Status body."""
    message = ""
    with contextlib.suppress(Exception):
        message = str(json.loads(exc.body or "{}").get("message") or "")
    return PluginError(f"API error {exc.status} {exc.reason or ''}: {message or str(exc.body or '')[:300]}".strip())


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    try:
        yield
    except ApiException as exc:
        raise api_error(exc) from None


class Cluster:
    """The handful of API calls the plug-in makes, in kubectl's terms."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        try:
            self.client = load_api_client(kubeconfig, context)
            self.namespace = namespace or context_namespace(kubeconfig, context)
        except PluginError:
            raise
        except Exception as exc:  # missing or broken kubeconfig
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise PluginError(f"cannot load the kubeconfig {where}: {exc}") from None
        self.custom = kubernetes.client.CustomObjectsApi(self.client)

    @functools.cached_property
    def core(self) -> Any:
        """The core API, for Secrets only; built on first use (importing it costs about a second)."""
        return kubernetes.client.CoreV1Api(self.client)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]

    # -- our custom objects ------------------------------------------------------------------

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace or self.namespace, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(exc) from None
        return _mapping(obj)

    def require(self, plural: str, name: str) -> dict[str, Any]:
        obj = self.get(plural, name)
        if obj is None:
            raise PluginError(f'{KINDS[plural]} "{name}" not found in namespace "{self.namespace}"')
        return obj

    def list(self, plural: str, all_namespaces: bool = False) -> list[dict[str, Any]]:
        with api_errors():
            if all_namespaces:
                result = self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
            else:
                result = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
        items = [_mapping(o) for o in _mapping(result).get("items") or []]
        return sorted(items, key=lambda o: ((o.get("metadata") or {}).get("namespace", ""), o["metadata"]["name"]))

    def patch(
        self, plural: str, name: str, body: Mapping[str, Any], *, dry_run: bool = False, namespace: str | None = None
    ) -> dict[str, Any]:
        """A JSON merge patch (``null`` removes a field); ``dry_run`` asks the server to check only."""
        with api_errors():
            result = self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace or self.namespace, plural, name, dict(body),
                dry_run="All" if dry_run else None, field_manager=PLUGIN_FIELD_MANAGER, _content_type=MERGE_PATCH,
            )
        return _mapping(result)

    def watch(self, plural: str, name: str, resource_version: str, seconds: float) -> Iterator[dict[str, Any]]:
        """The object as it changes after ``resource_version``, for at most ``seconds`` (one stream).

        Raises :class:`ApiException` (e.g. 410 Gone, 403 without the ``watch`` verb): callers
        fall back to reading the object again.
        """
        watcher = kubernetes.watch.Watch()  # type: ignore[no-untyped-call]
        stream = watcher.stream(  # type: ignore[no-untyped-call]
            self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, plural,
            field_selector=f"metadata.name={name}", resource_version=resource_version,
            timeout_seconds=max(1, int(seconds)), _request_timeout=seconds + 5,
        )
        try:
            for event in stream:
                obj = event.get("object")
                if event.get("type") == "ERROR":
                    code = int((obj or {}).get("code") or 500) if isinstance(obj, Mapping) else 500
                    raise ApiException(status=code, reason=str((obj or {}).get("reason", "")))
                if isinstance(obj, Mapping) and (obj.get("metadata") or {}).get("name") == name:
                    yield dict(obj)
        finally:
            watcher.stop()  # type: ignore[no-untyped-call]

    # -- Secrets (the operator's configuration) ----------------------------------------------

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """The decoded data of a Secret (error when it does not exist)."""
        with api_errors():
            secret = self.core.read_namespaced_secret(name, namespace)
        data = secret.data or {}
        return {key: base64.b64decode(value).decode() for key, value in data.items()}

    def read_secret_metadata(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret's ``type`` and ``labels`` (None when it does not exist); its data is not kept."""
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(exc) from None
        return {"type": str(secret.type or "Opaque"), "labels": dict(secret.metadata.labels or {})}

    def label_secret(self, namespace: str, name: str, labels: Mapping[str, str], *, dry_run: bool = False) -> None:
        with api_errors():
            self.core.patch_namespaced_secret(
                name, namespace, {"metadata": {"labels": dict(labels)}}, field_manager=PLUGIN_FIELD_MANAGER,
                dry_run="All" if dry_run else None, _content_type=MERGE_PATCH,
            )

    def patch_secret(self, namespace: str, name: str, data: Mapping[str, str | None]) -> None:
        """Set (or, with ``None``, remove) keys of a Secret's data in one merge patch."""
        encoded = {k: None if v is None else base64.b64encode(v.encode()).decode() for k, v in data.items()}
        with api_errors():
            self.core.patch_namespaced_secret(
                name, namespace, {"data": encoded}, field_manager=PLUGIN_FIELD_MANAGER, _content_type=MERGE_PATCH
            )


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (``time.monotonic()`` based), never negative."""
    return max(0.0, deadline - time.monotonic())
