"""The long-lived services the handlers use: built complete before Kopf starts
(``running.build_services``), passed in Kopf's memo, their background work (the probe engine)
started and stopped with the operator (``handlers.lifecycle``).

Every per-connection cache has one owner here, and :meth:`Services.forget_connection` (called when
a connection is deleted) empties each of them for that connection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
import kubernetes.client

from oneie_operator.config import OperatorConfig
from oneie_operator.handlers.health import HealthReporter
from oneie_operator.handlers.kopfpatches.echoes import expect_own_write
from oneie_operator.handlers.memory import ConnectionWatch, ProbeRequests, WatchedSecrets
from oneie_operator.health.assessment import HealthTracker, ProbeOutcome, State
from oneie_operator.health.engine import EngineSettings, ProbeEngine
from oneie_operator.health.probing import ProbeTarget, run_probe
from oneie_operator.kube.events import EventQueue, EventRecorder, EventSource
from oneie_operator.kube.rest import KubeREST
from oneie_operator.kube.secrets import CustomObjects, SecretStore
from oneie_operator.lru import LRU
from oneie_operator.names import BINDING, CREDENTIALS_LABEL, GROUP, ORGANIZATIONS, VERSION
from oneie_operator.observability.metrics import Metrics
from oneie_operator.platform_default import PlatformDefault
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.registry import ProviderRegistry
from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.connections import VALID_SPECS, ConnectionDeps, SpecCache, owned_secret_name
from oneie_operator.reconcile.organizations import OrgDeps, OrgObject
from oneie_operator.reconcile.retrigger import Retrigger
from oneie_operator.reconcile.usage import UsedByWriter
from oneie_operator.vault import Keyring

#: The switch steps reported in ``status.switching`` (the ones that wait on a provider).
PROGRESS_STEPS = frozenset({"resolve", "test", "healthGate"})


def binding_written(secret: Mapping[str, Any]) -> None:
    """A binding Secret the operator has just written: the watch event that brings it back (this
    very resourceVersion) is only indexed, not handled (``kopfpatches/echoes.py``). The Secret
    watch's handler would find it intact (the digest was computed for this write) and cache
    nothing for bindings (``WatchedSecrets``); a change by anyone else has another version."""
    meta = secret.get("metadata") or {}
    version = meta.get("resourceVersion")
    if (meta.get("labels") or {}).get(CREDENTIALS_LABEL) == BINDING and version:
        expect_own_write("", "v1", "secrets", str(meta.get("namespace") or ""), str(meta.get("name")), str(version))


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
    #: The platform's default backend (None: none configured).
    platform_default: PlatformDefault | None
    #: Events of the operator's background work (the health reports), outside Kopf's handlers.
    events: EventRecorder
    #: Events of the handlers (a switch, a connection's verification), posted in the background.
    event_queue: EventQueue
    #: The last ``one.ie/probe`` annotation value acted on, per connection.
    probe_requests: ProbeRequests
    #: Turns probe results into status, Events and metrics.
    health: HealthReporter
    #: Every usable connection probed on its interval; running between start() and stop().
    probe_engine: ProbeEngine
    #: BackendConnections as the watch last delivered them (kept by handlers.connections).
    watch: ConnectionWatch = field(default_factory=ConnectionWatch)
    #: Secrets as the operator's Secret watch last delivered them (kept by handlers.connections):
    #: an unchanged connection is decided without reading its Secrets (a resume after a restart).
    watched_secrets: WatchedSecrets = field(default_factory=WatchedSecrets)
    #: The validated spec of each connection at its latest generation, shared by the connection
    #: reconcile and the organizations' (``reconcile.connections.SpecCache``).
    valid_specs: SpecCache = field(default_factory=lambda: LRU(VALID_SPECS))
    _engine_task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

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
        counted = metrics
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
        # Posted like Kopf's own Events (its defaults: the operator does not change them).
        posting = kopf.OperatorSettings().posting
        events = EventRecorder(
            rest, EventSource(posting.reporting_component, posting.reporting_instance, posting.event_name_prefix)
        )
        probe_requests = ProbeRequests()
        watch = ConnectionWatch()

        async def prober(target: ProbeTarget, check_credentials: bool) -> ProbeOutcome:
            return await run_probe(target, keyring, http, check_credentials=check_credentials)

        def discarded(namespace: str, name: str) -> None:  # a probe of a connection deleted meanwhile
            counted.forget_tenant_calls(namespace)

        async def report(target: ProbeTarget, tracker: HealthTracker, old: State, new: State) -> None:
            await health(target, tracker, old, new)

        # The engine reports through the reporter, and the reporter's retries of refused writes
        # take the latest health from the engine's trackers: both built here, complete.
        engine = ProbeEngine(
            prober,
            report,
            EngineSettings(
                max_concurrency=config.probe_concurrency,
                max_per_namespace=config.probe_concurrency_per_namespace,
                initial_jitter_seconds=config.probe_initial_jitter_seconds,
            ),
            on_discarded=discarded,
        )
        health = HealthReporter(metrics, objects, events, probe_requests, engine.tracker)
        return cls(
            config=config,
            registry=registry,
            keyring=keyring,
            api_client=api_client,
            metrics=metrics,
            policy=policy,
            http=http,
            secrets=SecretStore(rest, on_written=binding_written),
            objects=objects,
            rest=rest,
            usage=UsedByWriter(objects, watched=watch.used_by),
            retrigger=Retrigger(objects),
            platform_default=platform_default,
            events=events,
            event_queue=EventQueue(events),
            probe_requests=probe_requests,
            health=health,
            probe_engine=engine,
            watch=watch,
        )

    def connection_deps(self) -> ConnectionDeps:
        return ConnectionDeps(
            registry=self.registry,
            secrets=self.secrets,
            keyring=self.keyring,
            http=self.http,
            policy=self.policy,
            retry_delay_seconds=self.config.retry_delay_seconds,
            watched=self.watched_secrets.get,
            valid_specs=self.valid_specs,
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

            await self.objects.update_status(ORGANIZATIONS, obj.namespace, obj.name, build)

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
            known_connections=self.watch.known,
            valid_specs=self.valid_specs,
            watched=self.watched_secrets.get,
        )

    def forget_connection(self, namespace: str, name: str) -> None:
        """A connection is deleted: every cache forgets it (its metric series too)."""
        self.metrics.forget_connection(namespace, name)
        self.probe_engine.remove(namespace, name)
        self.health.forget(namespace, name)
        self.probe_requests.forget(namespace, name)
        self.watch.forget(namespace, name)
        self.valid_specs.discard((namespace, name))
        # Its encrypted copy goes with it (garbage-collected; the watch's DELETED event may come
        # later, or never where nothing collects it); a tenant's Secret stays while it exists.
        self.watched_secrets.forget(namespace, owned_secret_name(name))

    def per_connection_caches(self) -> dict[str, int]:
        """How many connections each per-connection cache holds (all 0 once every connection is gone)."""
        return {
            "probe_engine": len(self.probe_engine),
            "health": len(self.health),
            "probe_requests": len(self.probe_requests),
            "watch": len(self.watch),
            "valid_specs": len(self.valid_specs),
            "watched_secrets (encrypted copies)": self.watched_secrets.encrypted_copies(),
        }

    def start(self) -> None:
        """Start the background work (the probe engine), once the operator starts (Kopf's start-up)."""
        self.event_queue.open()
        if self._engine_task is None or self._engine_task.done():
            self._engine_task = asyncio.create_task(self.probe_engine.run(), name="probe engine")

    async def stop(self) -> None:
        """Stop the background work (Kopf's clean-up, and :meth:`close`); in-flight probes are cancelled,
        refused health writes no longer tried again, waiting Events posted once (at most 2 s)."""
        self.health.close()
        await self.event_queue.aclose()  # the handlers' Events that wait are posted (bounded), its workers stop
        task, self._engine_task = self._engine_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        await self.stop()
        await self.retrigger.aclose()
        await self.usage.aclose()
        await self.http.aclose()
        await self.rest.aclose()
        self.api_client.close()  # type: ignore[no-untyped-call]
