"""A small asynchronous Kubernetes REST client for the demo and the tests.

It speaks plain JSON over HTTP to any API server (the emulator here): create, get, list,
merge-patch, replace, delete, and apply (create or merge-patch). The operator itself does
not use it; it is the "user" side (what ``kubectl apply`` would do).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

_CORE_PLURALS = {"Secret": "secrets", "Namespace": "namespaces", "Event": "events", "ConfigMap": "configmaps"}
_CUSTOM_PLURALS = {"BackendConnection": "backendconnections", "Organization": "organizations"}


class KubeAPIError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


def resource_path(api_version: str, kind_or_plural: str, namespace: str | None, name: str | None = None) -> str:
    plural = _CORE_PLURALS.get(kind_or_plural) or _CUSTOM_PLURALS.get(kind_or_plural) or kind_or_plural
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if plural == "namespaces":
        path = f"{base}/namespaces"
    elif namespace:
        path = f"{base}/namespaces/{namespace}/{plural}"
    else:
        path = f"{base}/{plural}"
    return f"{path}/{name}" if name else path


class KubeAPI:
    def __init__(self, server: str, token: str = "demo", verify: str | bool = True) -> None:  # noqa: S107
        """``token``: any, unless the emulator authenticates; ``verify``: the CA file of an HTTPS emulator."""
        self._client = httpx.AsyncClient(
            base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=30.0, verify=verify
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise KubeAPIError(response.status_code, response.text)
        return response.json() if response.content else None

    async def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        path = resource_path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        return dict(await self._call("POST", path, json=obj))

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return dict(await self._call("GET", resource_path(api_version, kind, namespace, name)))
        except KubeAPIError as exc:
            if exc.status == 404:
                return None
            raise

    async def items(
        self, api_version: str, kind: str, namespace: str | None = None, **params: str
    ) -> list[dict[str, Any]]:
        result = await self._call("GET", resource_path(api_version, kind, namespace), params=params)
        return list(result.get("items") or [])

    async def patch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
        field_validation: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch an object; ``field_validation`` (Strict, Warn, Ignore) as kubectl's --validate."""
        path = resource_path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        params = {"fieldValidation": field_validation} if field_validation else {}
        return dict(
            await self._call("PATCH", path, json=patch, params=params,
                             headers={"Content-Type": "application/merge-patch+json"})
        )

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        try:
            await self._call("DELETE", resource_path(api_version, kind, namespace, name))
        except KubeAPIError as exc:
            if exc.status != 404:
                raise

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create, or merge the given fields into the existing object (like client-side apply)."""
        meta = obj.get("metadata") or {}
        try:
            return await self.create(obj)
        except KubeAPIError as exc:
            if exc.status != 409:
                raise
        return await self.patch(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"], obj)

    async def events(self, namespace: str, involved: str | None = None) -> list[dict[str, Any]]:
        items = await self.items("v1", "Event", namespace)
        if involved is not None:
            items = [e for e in items if (e.get("involvedObject") or {}).get("name") == involved]
        return items


async def wait_for(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


def condition(obj: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return {}
