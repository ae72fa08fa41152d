"""In-memory fakes of an Organization switch's dependencies, with a fault injector.

They implement the interfaces the reconcile is given (``OrgDeps``: the binding store, the object
reader, the provider plug-in interface, the progress writer) — not our own code — so tests that
use them assert on outcomes: what the binding Secret serves against what status says.

Every external call goes through :meth:`Faults.call` with a label; a test can make any call
raise (before it has any effect) or, for writes, take effect and then raise (an answer lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from oneie_operator.errors import ProviderServerError
from oneie_operator.kube.rest import KubeAPIError, KubeConnectionError
from oneie_operator.kube.secrets import OwnerRef, SecretSnapshot
from oneie_operator.names import BINDING_CONNECTION_ANNOTATION
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.registry import ProviderRegistry
from oneie_operator.reconcile.connections import owned_secret_name
from oneie_operator.reconcile.organizations import (
    OrgDeps,
    OrgObject,
    binding_name,
    resolve,
    write_binding,
)
from oneie_operator.vault import EncryptionKey, Keyring, seal

NS = "tenant"
ORG = "acme"
#: Plaintext credentials of each connection; never to be seen in status or Events.
CREDENTIALS = {"old-db": "s3cret-OLD-value", "new-db": "s3cret-NEW-value"}


def write_refused() -> Exception:
    return KubeAPIError(403, "Forbidden", "secrets is forbidden: write refused")


#: Exceptions a dependency may raise, by name (CancelledError apart: it must propagate).
EXCEPTIONS: dict[str, Callable[[], BaseException]] = {
    "typed": lambda: ProviderServerError("the provider answered 503"),
    "ValueError": lambda: ValueError("Invalid header value b'Convex s3cret\\x0c'"),
    "UnicodeEncodeError": lambda: UnicodeEncodeError("ascii", "s3cret-é", 7, 8, "ordinal not in range(128)"),
    "RuntimeError": lambda: RuntimeError("Session is closed"),
    "TimeoutError": lambda: TimeoutError(),
    "write refused": write_refused,
    "API unavailable": lambda: KubeAPIError(503, "ServiceUnavailable", ""),
    "API unreachable": lambda: KubeConnectionError("PUT /api/v1/...: ClientConnectorError"),
    "CancelledError": lambda: asyncio.CancelledError(),
}


@dataclass
class Fault:
    index: int
    exception: str
    #: For writes: the write lands, then the answer is lost (the exception is raised after it).
    after: bool = False


@dataclass
class Faults:
    plan: list[Fault] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def _fault(self) -> Fault | None:
        index = len(self.calls) - 1
        return next((f for f in self.plan if f.index == index), None)

    async def call(self, label: str) -> Fault | None:
        """Record a call; raise now if a fault is planned before it; return a fault planned after it."""
        self.calls.append(label)
        await asyncio.sleep(0)
        fault = self._fault()
        if fault is not None and not fault.after:
            raise EXCEPTIONS[fault.exception]()
        return fault

    @staticmethod
    def after(fault: Fault | None) -> None:
        if fault is not None and fault.after:
            raise EXCEPTIONS[fault.exception]()


class FakeSettings(ProviderSettings):
    url: str = Field(description="the backend URL")


class FakeProvider(Provider[FakeSettings]):
    """A provider plug-in whose calls go through the fault injector."""

    name: ClassVar[str] = "fake"
    display_name: ClassVar[str] = "Fake"
    settings_model: ClassVar[type[ProviderSettings]] = FakeSettings
    secret_fields: ClassVar[tuple[str, ...]] = ("token",)
    faults: ClassVar[Faults] = Faults()

    async def test_credentials(self, settings: FakeSettings, credentials: Mapping[str, str], http: Any) -> CheckResult:
        await self.faults.call(f"provider.test {settings.url}")
        return CheckResult(0.001)

    async def probe(self, settings: FakeSettings, credentials: Mapping[str, str], http: Any) -> CheckResult:
        await self.faults.call(f"provider.probe {settings.url}")
        return CheckResult(0.001)


class DirectProviderCalls:
    """Stands for ``ProviderHTTP`` (the operator's front door to providers): calls the provider
    directly, without the typed-error translation the real one adds, so an untyped exception
    injected into a provider call reaches the switch as such (the harder case)."""

    async def test_credentials(
        self, provider: Any, settings: Any, credentials: Mapping[str, str], *, namespace: str = ""
    ) -> CheckResult:
        return await provider.test_credentials(settings, credentials, None)  # type: ignore[no-any-return]

    async def probe(
        self, provider: Any, settings: Any, credentials: Mapping[str, str], *, namespace: str = ""
    ) -> CheckResult:
        return await provider.probe(settings, credentials, None)  # type: ignore[no-any-return]


class FakeSecrets:
    """The binding store: Secrets in a dict; writes are atomic (all or nothing)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.secrets: dict[str, SecretSnapshot] = {}
        self._version = 0

    async def read(self, namespace: str, name: str) -> SecretSnapshot | None:
        await self.faults.call(f"secrets.read {name}")
        return self.secrets.get(name)

    async def delete(self, namespace: str, name: str) -> None:
        fault = await self.faults.call(f"secrets.delete {name}")
        self.secrets.pop(name, None)
        self.faults.after(fault)

    async def delete_owned(self, namespace: str, name: str, owner_uid: str) -> None:
        current = self.secrets.get(name)
        if current is not None and owner_uid in current.owner_uids:
            await self.delete(namespace, name)

    async def write_owned(
        self,
        namespace: str,
        name: str,
        *,
        data: Mapping[str, str],
        owner: OwnerRef,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        secret_type: str = "Opaque",
        current: SecretSnapshot | None = None,
        patch_first: bool = False,
    ) -> str:
        fault = await self.faults.call(f"secrets.write {name}")
        self.put(name, data, annotations)
        self.faults.after(fault)
        return str(self._version)

    def put(self, name: str, data: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        self._version += 1
        self.secrets[name] = SecretSnapshot(
            name, NS, str(self._version), dict(data), annotations=dict(annotations), owner_uids=("org-uid",)
        )
        return str(self._version)


class FakeObjects:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.progress: list[Mapping[str, Any]] = []

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        await self.faults.call(f"objects.get {name}")
        found = self.objects.get((plural, name))
        return dict(found) if found is not None else None

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        fault = await self.faults.call("objects.patch_status")
        self.progress.append(dict(status))
        self.faults.after(fault)


@dataclass
class World:
    """Two Ready connections, an organization, its binding, and the fakes around them."""

    faults: Faults
    secrets: FakeSecrets
    objects: FakeObjects
    deps: OrgDeps
    status: dict[str, Any]
    spec: dict[str, Any]
    generation: int = 2

    def org(self) -> OrgObject:
        return OrgObject(NS, ORG, "org-uid", self.generation, dict(self.spec), dict(self.status))

    def served(self) -> str | None:
        binding = self.secrets.secrets.get(binding_name(ORG))
        if binding is None:
            return None
        served = binding.annotations.get(BINDING_CONNECTION_ANNOTATION)
        assert binding.data.get("connection") == served, "the binding's data and annotation agree"
        assert binding.data.get("token") == CREDENTIALS.get(str(served)), "it carries that connection's credentials"
        return served

    def apply(self, status: Mapping[str, Any]) -> None:
        """Apply a status patch as the API server does (None deletes a key)."""
        for key, value in status.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = value


async def make_world(
    *, active: str | None, desired: str | None, policy: Mapping[str, Any] | None = None
) -> World:
    """A world where ``active`` serves (binding and status agree) and the spec wants ``desired``."""
    faults = Faults()
    FakeProvider.faults = faults
    registry = ProviderRegistry()
    registry.register(FakeProvider)
    keyring = Keyring([EncryptionKey.generate("k1")])
    secrets, objects = FakeSecrets(faults), FakeObjects(faults)
    for number, (conn, token) in enumerate(CREDENTIALS.items()):
        version = secrets.put(
            owned_secret_name(conn), seal(keyring, {"token": token}, namespace=NS, connection=conn), {}
        )
        objects.objects[("backendconnections", conn)] = {
            "metadata": {"name": conn, "namespace": NS, "uid": f"uid-{conn}", "generation": 1},
            "spec": {
                "provider": "fake",
                "fake": {"url": f"http://127.0.0.{number + 1}:8080"},
                "credentialsSecretRef": {"name": f"{conn}-creds"},
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "Verified", "message": "ok"}],
                "credentials": {"resourceVersion": version, "sourceResourceVersion": "7"},
                "health": {"status": "online"},
            },
        }
    deps = OrgDeps(
        registry=registry,
        keyring=keyring,
        http=DirectProviderCalls(),  # type: ignore[arg-type]  # the fake provider makes no HTTP call
        policy=DestinationPolicy(allow_loopback=True, allow_private=True, allow_plain_http=True),
        secrets=secrets,
        objects=objects,
        progress_delay_seconds=0.0,  # every step writes progress: every write is a fault point
    )

    async def progress(obj: OrgObject, target: str, step: str) -> None:
        switching = {"switching": {"to": target, "step": step}}
        await objects.patch_status("organizations", obj.namespace, obj.name, switching)

    deps.on_step = progress
    spec: dict[str, Any] = {"backend": {"connectionRef": {"name": desired}} if desired else {}}
    if policy:
        spec["switchPolicy"] = dict(policy)
    world = World(faults, secrets, objects, deps, {}, spec)
    if active is not None:
        target, _ = await resolve(world.org(), active, deps, require_ready=False)
        await write_binding(world.org(), target, deps)
        world.status.update(activeConnection=active, activeCredentialsVersion=target.credentials_version)
    faults.calls.clear()
    return world
