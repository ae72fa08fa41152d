"""The long-lived services the handlers use, built once at start-up and passed in Kopf's memo."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kubernetes.client

from oneie_operator.config import OperatorConfig
from oneie_operator.health.engine import ProbeEngine
from oneie_operator.kube.rest import KubeREST
from oneie_operator.kube.secrets import CustomObjects, SecretStore, WatchedSecret
from oneie_operator.lru import LRU
from oneie_operator.observability.metrics import Metrics
from oneie_operator.platform_default import PlatformDefault
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.registry import ProviderRegistry
from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.connections import GROUP, VERSION, ConnectionDeps, ValidSpec
from oneie_operator.reconcile.organizations import VALID_SPECS, OrgDeps, OrgObject
from oneie_operator.reconcile.retrigger import Retrigger
from oneie_operator.reconcile.sealedcache import SealedCache
from oneie_operator.reconcile.usage import UsedByWriter
from oneie_operator.vault import Keyring

#: The switch steps reported in ``status.switching`` (the ones that wait on a provider).
PROGRESS_STEPS = frozenset({"resolve", "test", "healthGate"})


@dataclass
class Services:
    config: OperatorConfig
    registry: ProviderRegistry
    keyring: Keyring
    api_client: kubernetes.client.ApiClient
    metrics: Metrics
    policy: DestinationPolicy
    http: ProviderHTTP
    secrets: SecretStore
    objects: CustomObjects
    rest: KubeREST
    usage: UsedByWriter
    #: Reconciles to run again later (a switch the API server's faults stopped).
    retrigger: Retrigger
    platform_default: PlatformDefault | None = None
    probe_engine: ProbeEngine | None = None
    #: The last ``one.ie/probe`` annotation value acted on, per connection.
    probe_requests: dict[tuple[str, str], str] = field(default_factory=dict)
    health_reporter: Any = None
    #: Encrypted credentials already read by switches (see reconcile.sealedcache).
    sealed_cache: SealedCache = field(default_factory=SealedCache)
    #: BackendConnections as the watch last delivered them (kept by handlers.connections).
    known_connections: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Secrets as the operator's Secret watch last delivered them (kept by handlers.connections):
    #: an unchanged connection is decided without reading its Secrets (a resume after a restart).
    watched_secrets: dict[tuple[str, str], WatchedSecret] = field(default_factory=dict)
    #: Validated connection specs, shared by the organizations' reconciles.
    valid_specs: LRU[tuple[str, str, str, int], ValidSpec] = field(default_factory=lambda: LRU(VALID_SPECS))

    @classmethod
    def build(
        cls,
        config: OperatorConfig,
        registry: ProviderRegistry,
        keyring: Keyring,
        api_client: kubernetes.client.ApiClient,
        metrics: Metrics | None = None,
        platform_default: PlatformDefault | None = None,
    ) -> Services:
        metrics = metrics or Metrics()
        policy = DestinationPolicy(
            allow_loopback=config.allow_loopback,
            allow_private=config.allow_private,
            allow_plain_http=config.allow_plain_http,
        )
        http = ProviderHTTP(
            policy=policy,
            timeout=config.provider_timeout_seconds,
            max_response_bytes=config.max_response_bytes,
            on_call=metrics.observe_call,
            # One pool for every provider call: the probes' share (at most PROBE_CONCURRENCY in
            # flight) plus room for credential tests and switches.
            max_connections=config.probe_concurrency + 100,
        )
        rest = KubeREST(api_client.configuration)
        objects = CustomObjects(rest, GROUP, VERSION)
        known_connections: dict[tuple[str, str], dict[str, Any]] = {}

        def watched_used_by(namespace: str, name: str) -> list[str] | None:
            seen = known_connections.get((namespace, name))
            return None if seen is None else list((seen.get("status") or {}).get("usedBy") or [])

        return cls(
            config=config,
            registry=registry,
            keyring=keyring,
            api_client=api_client,
            metrics=metrics,
            policy=policy,
            http=http,
            secrets=SecretStore(rest),
            objects=objects,
            rest=rest,
            usage=UsedByWriter(objects, watched=watched_used_by),
            retrigger=Retrigger(objects),
            platform_default=platform_default,
            known_connections=known_connections,
        )

    def watched_secret(self, namespace: str, name: str) -> WatchedSecret | None:
        return self.watched_secrets.get((namespace, name))

    def connection_deps(self) -> ConnectionDeps:
        return ConnectionDeps(
            registry=self.registry,
            secrets=self.secrets,
            keyring=self.keyring,
            http=self.http,
            policy=self.policy,
            retry_delay_seconds=self.config.retry_delay_seconds,
        )

    def org_deps(self) -> OrgDeps:
        async def progress(obj: OrgObject, target: str, step: str) -> None:
            if step not in PROGRESS_STEPS:
                return  # activate and rollback take milliseconds: not worth a write and a watch event each
            switching = conditions.Condition("Switching", "True", "Switching", f"switching to {target}: step {step}")

            def build(status: Mapping[str, Any]) -> dict[str, Any]:
                # Switching=True for watchers, merged into the stored conditions (the switch's final
                # status, written after this, sets it False again).
                merged = conditions.merge_conditions(status.get("conditions"), [switching], generation=obj.generation)
                return {"switching": {"to": target, "step": step}, "conditions": merged}

            await self.objects.update_status("organizations", obj.namespace, obj.name, build)

        return OrgDeps(
            registry=self.registry,
            keyring=self.keyring,
            http=self.http,
            policy=self.policy,
            secrets=self.secrets,
            objects=self.objects,
            platform_default=self.platform_default,
            on_step=progress,
            progress_delay_seconds=self.config.switch_progress_delay_seconds,
            sealed_cache=self.sealed_cache,
            known_connections=self.known_connections,
            valid_specs=self.valid_specs,
        )

    async def close(self) -> None:
        await self.retrigger.aclose()
        await self.usage.aclose()
        await self.http.aclose()
        await self.rest.aclose()
        self.api_client.close()  # type: ignore[no-untyped-call]
