"""A small asynchronous Kubernetes REST client for the few calls the operator makes itself.

Kopf talks to the API with its own client for its watches. The operator's other calls (Secrets,
Events, Kopf's status patches (``handlers/kopfpatches/mergepatch.py``), trigger annotations) go
through :class:`KubeREST`: plain JSON over keep-alive connections on the operator's event loop
(:mod:`oneie_operator.kube.wire`; ``aiohttp`` when the kubeconfig names a proxy). The official
``kubernetes`` client is synchronous (each call in a worker thread), builds model objects and
validates every argument; in ``benchmarks/switch.py`` it was a third of the operator's CPU per
switch. Its ``Configuration`` is still what loads the kubeconfig or the in-cluster service account
(one source of truth, shared with Kopf's login), and is read here on every request, so rotated
service-account tokens are picked up.

The methods are named like the official client's (``read_namespaced_secret``,
``patch_namespaced_custom_object_status``, ...), which is also what the chart's RBAC contract
test scans for.

Errors: :class:`KubeAPIError` (the API answered with an error status; ``status`` and the
API's own ``reason``/``message``, never a request or response body) and
:class:`KubeConnectionError` (no answer: refused, reset, timed out). Neither is a
:class:`~oneie_operator.errors.OneieError`: they are infrastructure failures that Kopf retries,
not verdicts on a tenant's input.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import kubernetes.client

from oneie_operator.kube.wire import Wire, WireError

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
#: Metadata only (no ``data``) where the server supports it, else the whole object.
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
#: How long the authentication headers are reused before the configuration is asked again (its
#: refresh hook re-reads a rotated service-account token, or re-loads the kubeconfig, each time).
AUTH_REFRESH_SECONDS = 10.0


class KubeAPIError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


class KubeConnectionError(KubeAPIError):
    """The API server could not be reached or did not answer in time (``status`` is 0)."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "Unreachable", message)


def _ssl_context(cfg: kubernetes.client.Configuration) -> ssl.SSLContext | bool:
    if not str(cfg.host).startswith("https:"):
        return False
    context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
    if cfg.cert_file:
        context.load_cert_chain(cfg.cert_file, cfg.key_file or None)
    if not cfg.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cfg.assert_hostname is False:
        context.check_hostname = False
    return context


class KubeREST:
    """JSON requests to the API server described by a ``kubernetes`` ``Configuration``."""

    def __init__(self, configuration: kubernetes.client.Configuration, *, timeout: float = 60.0) -> None:
        self._cfg = configuration
        self._host = str(configuration.host).rstrip("/")
        self._ssl = _ssl_context(configuration)
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(10.0, timeout))
        self._session: aiohttp.ClientSession | None = None
        self._wire: Wire | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed_in: asyncio.AbstractEventLoop | None = None
        self._auth: dict[str, str] = {}
        self._auth_at = -AUTH_REFRESH_SECONDS

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        if time.monotonic() - self._auth_at >= AUTH_REFRESH_SECONDS:
            auth: dict[str, str] = {}
            settings: Mapping[str, Any] = dict(self._cfg.auth_settings())  # runs the token refresh hook
            for setting in settings.values():
                if setting.get("in") == "header" and setting.get("value"):
                    auth[str(setting["key"])] = str(setting["value"])
            self._auth, self._auth_at = auth, time.monotonic()
        return {"Accept": accept, "User-Agent": "oneie-operator", **self._auth}

    def _client(self) -> aiohttp.ClientSession | Wire:
        """The transport of this event loop: :class:`Wire`, or ``aiohttp`` through a configured proxy."""
        loop = asyncio.get_running_loop()
        if self._closed_in is loop:
            # Closed for good in this loop: a new connection now (a late request while the operator
            # stops) would never be closed.
            raise KubeConnectionError("the operator's API client is closed")
        if self._cfg.proxy:
            if self._session is None or self._session.closed or self._loop is not loop:
                # One session per event loop (the demo restarts the operator in a new loop).
                connector = aiohttp.TCPConnector(ssl=self._ssl, limit=100)
                self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
                self._loop = loop
            return self._session
        if self._wire is None or self._loop is not loop:
            total = float(self._timeout.total or 60.0)
            connect = float(self._timeout.connect or total)
            self._wire = Wire(self._host, self._ssl, timeout=total, connect_timeout=connect)
            self._loop = loop
        return self._wire

    async def _send(
        self, method: str, path: str, headers: dict[str, str], data: bytes | None
    ) -> tuple[int, str, bytes]:
        client = self._client()
        if isinstance(client, Wire):
            return await client.request(method, path, headers, data)
        url = self._host + path
        async with client.request(method, url, data=data, headers=headers, proxy=self._cfg.proxy) as response:
            return response.status, response.reason or "", await response.read()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or :class:`KubeAPIError`.

        A 401 (the token was rotated or expired) re-reads the credentials from the configuration
        (its refresh hook) and tries once more with them."""
        for attempt in (1, 2):
            headers = self._headers(accept)
            data = None
            if body is not None:
                data = json.dumps(body, separators=(",", ":")).encode()
                headers["Content-Type"] = content_type
            try:
                status, http_reason, raw = await self._send(method, path, headers, data)
            except (aiohttp.ClientError, WireError, TimeoutError, OSError) as exc:
                raise KubeConnectionError(f"{method} {path}: {type(exc).__name__}") from None
            if status == 401 and attempt == 1:
                self._auth_at = -AUTH_REFRESH_SECONDS  # ask the configuration (and its refresh hook) again
                continue
            break
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        if status >= 400:
            answer = answer if isinstance(answer, dict) else {}
            # A Status object: its reason and message, never the request.
            raise KubeAPIError(status, str(answer.get("reason") or http_reason), str(answer.get("message") or "")[:500])
        return answer if isinstance(answer, dict) else {}

    async def aclose(self) -> None:
        """Close the session (when called on its own event loop; another loop's is just dropped). A
        request made later in this loop raises :class:`KubeConnectionError`; another loop gets a new session."""
        session, self._session = self._session, None
        wire, self._wire = self._wire, None
        self._closed_in = asyncio.get_running_loop()
        if wire is not None and self._loop is asyncio.get_running_loop():
            wire.close()
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()

    # --- core/v1 Namespaces ----------------------------------------------------------------

    async def list_namespaces(self, *, limit: int = 1) -> dict[str, Any]:
        """One page of namespaces (start-up checks that globs in WATCH_NAMESPACES can be matched)."""
        return await self.request("GET", f"/api/v1/namespaces?limit={int(limit)}")

    # --- core/v1 Secrets -------------------------------------------------------------------

    @staticmethod
    def _secret_path(namespace: str, name: str | None = None) -> str:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/secrets"
        return f"{path}/{quote(name, safe='')}" if name else path

    async def read_namespaced_secret(self, name: str, namespace: str) -> dict[str, Any]:
        return await self.request("GET", self._secret_path(namespace, name))

    async def read_namespaced_secret_metadata(self, name: str, namespace: str) -> dict[str, Any]:
        """The Secret's metadata only, where the API server can (``PartialObjectMetadata``, which
        carries no ``data``; a server that cannot falls back to the whole Secret: the caller must
        not use its ``data``)."""
        return await self.request("GET", self._secret_path(namespace, name), accept=PARTIAL_METADATA)

    async def list_namespaced_secret(
        self, namespace: str, *, label_selector: str = "", field_selector: str = ""
    ) -> dict[str, Any]:
        selectors = (("labelSelector", label_selector), ("fieldSelector", field_selector))
        query = urlencode({key: value for key, value in selectors if value})
        return await self.request("GET", self._secret_path(namespace) + (f"?{query}" if query else ""))

    async def create_namespaced_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", self._secret_path(namespace), body=body)

    async def replace_namespaced_secret(self, name: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", self._secret_path(namespace, name), body=body)

    async def patch_namespaced_secret(
        self, name: str, namespace: str, ops: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any]:
        """An RFC 6902 patch (its ``test`` ops make it conditional, atomically)."""
        return await self.request("PATCH", self._secret_path(namespace, name), body=ops, content_type=JSON_PATCH)

    async def delete_namespaced_secret(self, name: str, namespace: str) -> dict[str, Any]:
        return await self.request("DELETE", self._secret_path(namespace, name))

    # --- authorization.k8s.io -------------------------------------------------------------

    async def create_subject_access_review(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Ask the API server whether a user may do something (``SubjectAccessReview``)."""
        return await self.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=body)

    # --- custom objects --------------------------------------------------------------------

    @staticmethod
    def _object_path(group: str, version: str, namespace: str, plural: str, name: str) -> str:
        return (
            f"/apis/{group}/{version}/namespaces/{quote(namespace, safe='')}/{plural}/{quote(name, safe='')}"
        )

    async def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        return await self.request("GET", self._object_path(group, version, namespace, plural, name))

    async def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = self._object_path(group, version, namespace, plural, name)
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def patch_namespaced_custom_object_status(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        path = self._object_path(group, version, namespace, plural, name) + "/status"
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)
