"""The per-test tenant helper of the end-to-end tests."""

from __future__ import annotations

import base64
from typing import Any

from oneie_operator.demo.environment import LocalEnvironment
from oneie_operator.testing.kubeapi import condition, wait_for

BC = ("one.ie/v1alpha1", "BackendConnection")


class Tenant:
    """Helpers for one test's namespace."""

    def __init__(self, env: LocalEnvironment, namespace: str, plaintexts: set[str]) -> None:
        self.env = env
        self.ns = namespace
        self.plaintexts = plaintexts  # every credential value used: the leak scan looks for them

    async def secret(self, name: str, data: dict[str, str], *, labels: dict[str, str] | None = None,
                     secret_type: str = "Opaque") -> dict[str, Any]:
        """A credentials Secret, opted in (label ``one.ie/credentials: "true"``) unless ``labels`` say otherwise."""
        self.plaintexts.update(v for v in data.values() if len(v) >= 8)
        obj = {"apiVersion": "v1", "kind": "Secret", "type": secret_type,
               "metadata": {"name": name, "namespace": self.ns,
                            "labels": {"one.ie/credentials": "true"} if labels is None else labels},
               "stringData": data}
        existing = await self.env.api.get("v1", "Secret", self.ns, name)
        if existing is None:
            return await self.env.api.create(obj)
        obj["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return await self.env.api.patch("v1", "Secret", self.ns, name, {"data": {
            k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})

    async def connection(self, name: str, provider: str, block: dict[str, Any] | None = None,
                         secret: str | None = None, **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {"provider": provider, "credentialsSecretRef": {"name": secret or f"{name}-creds"}}
        spec[provider] = block if block is not None else self.env.providers.settings(provider)
        spec.update(extra)
        return await self.env.api.apply({"apiVersion": BC[0], "kind": BC[1],
                                         "metadata": {"name": name, "namespace": self.ns}, "spec": spec})

    async def good(self, name: str, provider: str) -> dict[str, Any]:
        """A Secret with accepted credentials and a connection using it, Ready."""
        await self.secret(f"{name}-creds", dict(self.env.providers.credentials[provider]))
        await self.connection(name, provider)
        return await self.wait_ready(name, "True")

    async def get(self, name: str) -> dict[str, Any] | None:
        return await self.env.api.get(*BC, self.ns, name)

    async def wait_ready(self, name: str, status: str, reason: str | None = None,
                         timeout: float = 20.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            obj = await self.get(name)
            ready = condition(obj, "Ready")
            ok = ready.get("status") == status and (reason is None or ready.get("reason") == reason)
            generation = (obj or {}).get("metadata", {}).get("generation")
            return obj if ok and ready.get("observedGeneration") == generation else None
        try:
            return await wait_for(probe, timeout=timeout, what=f"{self.ns}/{name} Ready={status} {reason or ''}")
        except TimeoutError as exc:
            obj = await self.get(name)
            raise AssertionError(f"{exc}; last Ready condition: {condition(obj, 'Ready')}") from None

    async def events(self, name: str) -> list[dict[str, Any]]:
        return await self.env.api.events(self.ns, name)

    async def wait_event(self, name: str, reason: str, timeout: float = 20.0) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            return next((e for e in await self.events(name) if e.get("reason") == reason), None)
        return await wait_for(probe, timeout=timeout, what=f"Event {reason} on {self.ns}/{name}")

    async def owned(self, name: str) -> dict[str, Any] | None:
        return await self.env.api.get("v1", "Secret", self.ns, f"oneie-{name}-credentials")
