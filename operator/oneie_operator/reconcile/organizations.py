"""The Organization reconcile: keep the tenant on its desired backend, switching in timed steps.

* **Steady state** (desired == active): keep the Service Binding Secret exactly as it should be
  (restored if deleted or edited by hand, updated when the active connection's credentials
  rotate) and mirror the active connection's health.
* **Switch** (desired != active): resolve → test → activate → healthGate, timed, under
  ``spec.switchPolicy.timeoutSeconds`` (the state machine in ``reconcile.switch_machine``; this
  module adapts it to Kubernetes objects). Any failure leaves (or puts back) the previous backend
  in the binding and sets ``Stalled``. A transient failure of the target (unreachable, unhealthy,
  too slow) is retried by itself once the target's health is online, with back-off, at most
  ``MAX_SWITCH_RETRIES`` times; any other is not retried until the spec, the target connection or
  its credentials change, or the ``one.ie/retry`` annotation changes. ``Healthy`` follows the
  active backend's health in every state.
* **Crash safety**: the binding Secret is the commit point. It is written in one atomic
  replace, annotated with the connection it serves. Status is written after it. An operator
  killed anywhere re-runs the switch from the start (every step is idempotent); a health gate
  that fails after a restart still finds the previous connection in ``status.activeConnection``
  and restores it. Binding and status never disagree once a reconcile ends.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from oneie_operator.errors import (
    ConnectionDeletingError,
    ConnectionNotFoundError,
    ConnectionNotReadyError,
    NoBackendError,
    OneieError,
    Retry,
    SecretNameTakenError,
    retry_of,
    retry_of_reason,
)
from oneie_operator.kube.secrets import OwnerRef, SecretSnapshot, WatchedSecret
from oneie_operator.lru import LRU
from oneie_operator.names import (
    API_VERSION,
    BINDING,
    BINDING_CONNECTION_ANNOTATION,
    BINDING_DIGEST_ANNOTATION,
    BINDING_PROVIDER,
    CONNECTIONS,
    CREDENTIALS_LABEL,
    ORGANIZATION_KIND,
    ORGANIZATION_LABEL,
    RETRY_ANNOTATION,
    ROLLBACK_ANNOTATION,
)
from oneie_operator.platform_default import PLATFORM_DEFAULT, PlatformDefault
from oneie_operator.providers.base import Provider, ProviderSettings
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.registry import ProviderRegistry
from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.connections import (
    VALID_SPECS,
    ConnectionObject,
    SecretReader,
    SpecCache,
    owned_secret_name,
    valid_spec_of,
)
from oneie_operator.reconcile.events import EventNote
from oneie_operator.reconcile.failures import as_typed_error
from oneie_operator.reconcile.progress import DelayedProgress
from oneie_operator.reconcile.switch_machine import StepFailure, SwitchDeps, SwitchOutcome, SwitchPlan, run_switch
from oneie_operator.vault import Keyring, keyed_digest, unseal, verify_digest

HISTORY_LIMIT = 10


def binding_name(organization: str) -> str:
    return f"{organization}-backend"


class ObjectReader(Protocol):
    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...


class BindingStore(SecretReader, Protocol):
    async def delete_owned(self, namespace: str, name: str, owner_uid: str) -> None: ...


@dataclass(frozen=True)
class OrgObject:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)
    managed_fields: tuple[Mapping[str, Any], ...] = ()


@dataclass
class OrgDeps:
    registry: ProviderRegistry
    keyring: Keyring
    http: ProviderHTTP
    policy: DestinationPolicy
    secrets: BindingStore
    objects: ObjectReader
    platform_default: PlatformDefault | None = None
    #: Writes the step a switch is in to status (live progress; see ``reconcile.progress``).
    on_step: Callable[[OrgObject, str, str], Awaitable[None]] | None = None
    #: Switches shorter than this write no live progress (their steps are in lastSwitch).
    progress_delay_seconds: float = 1.0
    #: Connections as the watch last delivered them, by (namespace, name).
    known_connections: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    #: Validated specs, shared with the connection reconcile (``reconcile.connections.SpecCache``).
    valid_specs: SpecCache = field(default_factory=lambda: LRU(VALID_SPECS))
    #: Secrets as the operator's Secret watch last saw them (see ``ConnectionDeps.watched``): a
    #: connection's encrypted copy at the version its status names is taken from there, unread.
    watched: Callable[[str, str], WatchedSecret | None] | None = None


@dataclass(frozen=True)
class Target:
    """A resolved backend: a connection (or the platform default) with its decrypted credentials."""

    name: str
    provider: Provider[Any]
    settings: ProviderSettings
    credentials: Mapping[str, str] = field(repr=False)
    health: str = "unknown"
    share_credentials: bool = True
    #: resourceVersion of the connection's encrypted-credentials Secret ("" for the platform default).
    credentials_version: str = ""


@dataclass
class SwitchRecord:
    """One switch or rollback, for status, the Event and the metrics."""

    source: str | None
    target: str
    result: str  # Succeeded / RolledBack / Failed
    seconds: float
    steps: list[dict[str, object]]
    reason: str
    message: str
    started_at: str
    finished_at: str
    attempt: str
    explicit_rollback: bool = False
    #: Automatic retries of this switch so far (after a transient failure of its target).
    retries: int = 0

    def as_status(self) -> dict[str, Any]:
        return {
            **({"retries": self.retries} if self.retries else {}),
            "from": self.source or "",
            "to": self.target,
            "result": self.result,
            "totalMilliseconds": round(self.seconds * 1000, 1),
            "steps": self.steps,
            "reason": self.reason,
            "message": self.message[:1024],
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "attempt": self.attempt,
        }


@dataclass
class OrgResult:
    status: dict[str, Any] = field(default_factory=dict)
    events: list[EventNote] = field(default_factory=list)
    switch: SwitchRecord | None = None
    #: (connection, organization is now using it?) — for ``status.usedBy`` of connections.
    usage: list[tuple[str, bool]] = field(default_factory=list)
    unchanged: bool = False
    #: Seconds after which to reconcile again (a switch failed because the API server did not answer).
    retry_after: float | None = None


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def connection_ref(spec: Mapping[str, Any]) -> str | None:
    """``spec.backend.connectionRef.name`` of an Organization, or None (the platform default)."""
    ref = (spec.get("backend") or {}).get("connectionRef") or {}
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return str(name) if name else None


def desired_connection(obj: OrgObject) -> str | None:
    return connection_ref(obj.spec)


def changed_by(obj: OrgObject) -> str | None:
    """The manager that last wrote spec, when managedFields tell (kubectl, argocd, kustomize-controller)."""
    best: tuple[str, str] | None = None
    for entry in obj.managed_fields:
        fields = entry.get("fieldsV1") or {}
        if "f:spec" in fields and entry.get("manager"):
            stamp = str(entry.get("time") or "")
            if best is None or stamp >= best[0]:
                best = (stamp, str(entry["manager"]))
    return best[1] if best else None


async def resolve(
    obj: OrgObject,
    name: str | None,
    deps: OrgDeps,
    *,
    require_ready: bool,
    fetched: Mapping[str, Any] | None = None,
) -> tuple[Target, dict[str, Any] | None]:
    """The backend named ``name`` (None: platform default), its credentials decrypted.

    ``fetched``: the connection as just read by the caller (saves a second GET)."""
    if name is None:
        default = deps.platform_default
        if default is None:
            raise NoBackendError(
                "spec.backend.connectionRef.name is not set and the operator has no platform default"
                " (BACKEND_PROVIDER); name a BackendConnection in this namespace"
            )
        return Target(
            PLATFORM_DEFAULT,
            default.provider,
            default.settings,
            default.credentials,
            share_credentials=default.share_credentials,
        ), None
    conn = dict(fetched) if fetched is not None else await _connection(obj.namespace, name, deps)
    if conn is None:
        raise ConnectionNotFoundError(
            f"spec.backend.connectionRef.name: BackendConnection '{name}' not found in namespace '{obj.namespace}'"
        )
    meta, status = conn.get("metadata") or {}, conn.get("status") or {}
    connection = ConnectionObject(
        namespace=obj.namespace,
        name=name,
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        spec=conn.get("spec") or {},
        status=status,
        labels=meta.get("labels") or {},
    )
    valid = valid_spec_of(connection, deps.registry, deps.policy, deps.valid_specs)
    if require_ready and meta.get("deletionTimestamp") and name != obj.status.get("activeConnection"):
        raise ConnectionDeletingError(
            f"spec.backend.connectionRef.name: BackendConnection '{name}' is being deleted"
            f" (since {meta['deletionTimestamp']}); name another connection"
        )
    ready = conditions.get_condition(status.get("conditions"), "Ready") or {}
    if require_ready and ready.get("status") != "True":
        why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "not reconciled yet"
        raise ConnectionNotReadyError(f"BackendConnection '{name}' is not Ready ({why})")
    stored = str((status.get("credentials") or {}).get("resourceVersion") or "")
    version = stored
    # The encrypted copy as the Secret watch delivered it, when at the version the connection's
    # status names (the one cache of it: only ciphertext, decrypted per switch); else read.
    seen = deps.watched(obj.namespace, owned_secret_name(name)) if deps.watched else None
    sealed = seen.sealed if seen is not None and stored and seen.resource_version == stored else None
    if sealed is None:
        owned = await deps.secrets.read(obj.namespace, owned_secret_name(name))
        if owned is None:
            raise ConnectionNotReadyError(f"BackendConnection '{name}' has no encrypted credentials yet")
        sealed, version = owned.data, owned.resource_version
    credentials = unseal(deps.keyring, sealed, namespace=obj.namespace, connection=name)
    health = str((status.get("health") or {}).get("status") or "unknown")
    return Target(
        name, valid.provider, valid.settings, credentials, health=health, credentials_version=version
    ), conn


async def _connection(namespace: str, name: str, deps: OrgDeps) -> dict[str, Any] | None:
    """The connection as the operator's watch last saw it (an informer cache, as controller-runtime
    reads), else from the API. A state the watch has not delivered yet is no risk: the event that
    delivers it makes the organization check again (``handlers.connections.connection_changed``)."""
    seen = deps.known_connections.get((namespace, name))
    if seen is not None:
        return dict(seen)
    return await deps.objects.get(CONNECTIONS, namespace, name)


def attempt_key(obj: OrgObject, desired: str | None, conn: Mapping[str, Any] | None) -> str:
    """What a failed switch depended on; the same key again means "nothing changed: do not retry"."""
    parts = [str(obj.generation), desired or PLATFORM_DEFAULT, obj.annotations.get(RETRY_ANNOTATION, "")]
    if conn is not None:
        meta, status = conn.get("metadata") or {}, conn.get("status") or {}
        ready = conditions.get_condition(status.get("conditions"), "Ready") or {}
        parts += [
            str(meta.get("uid", "")),
            str(meta.get("generation", "")),
            str((status.get("credentials") or {}).get("sourceResourceVersion", "")),
            str(ready.get("status", "")),
            str(ready.get("reason", "")),
        ]
    return "|".join(parts)


def only_lost_readiness(last_attempt: str, attempt: str, conn: Mapping[str, Any] | None) -> bool:
    """Whether the one change since a failed attempt is its target connection turning not Ready.

    That cannot make the switch succeed (it would now fail to resolve, ``ConnectionNotReady``), so it
    is no reason to run the switch again, nor to record a second failure, Event and metric for one
    change of the spec (a rejected credential test is soon followed by the connection's own probe
    saying ``CredentialsRejected``). The change that makes the connection Ready again is one."""
    if conn is None or last_attempt == attempt:
        return False
    # The last two parts of a connection target's key (attempt_key) are its Ready status and
    # reason, never containing a "|"; what comes before them is everything else it depended on.
    depended_on, ready, _reason = attempt.rsplit("|", 2)
    return ready != "True" and last_attempt.rsplit("|", 2)[0] == depended_on


def binding_data(target: Target) -> dict[str, str]:
    """The Service Binding (servicebinding.io) entries: type, provider, settings, credentials."""
    data = {
        "type": target.provider.name,
        "provider": BINDING_PROVIDER,
        "connection": target.name,
        "uri": target.provider.base_url(target.settings),
    }
    for key, value in target.settings.model_dump(by_alias=True, mode="json", exclude_none=True).items():
        data[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if target.share_credentials:
        data.update(target.credentials)
    return data


async def write_binding(
    obj: OrgObject, target: Target, deps: OrgDeps, current: SecretSnapshot | None = None
) -> None:
    """Write the binding; ``current`` is the binding as just read (ours), to replace it in one
    request. A Secret of that name that is not ours raises :class:`SecretNameTakenError`."""
    data = binding_data(target)
    await deps.secrets.write_owned(
        obj.namespace,
        binding_name(obj.name),
        data=data,
        owner=OwnerRef(API_VERSION, ORGANIZATION_KIND, obj.name, obj.uid),
        labels={ORGANIZATION_LABEL: obj.name, CREDENTIALS_LABEL: BINDING},
        annotations={
            BINDING_CONNECTION_ANNOTATION: target.name,
            BINDING_DIGEST_ANNOTATION: keyed_digest(deps.keyring, data),
        },
        current=current,
        patch_first=True,  # usually there already: one conditioned write (a switch reads nothing first)
    )


def _ours(obj: OrgObject, binding: SecretSnapshot | None) -> SecretSnapshot | None:
    """The binding if the operator wrote it for this organization (owner reference), else None:
    a Secret of that name that belongs to someone else is neither read nor replaced."""
    return binding if binding is not None and obj.uid in binding.owner_uids else None


def _binding_state(binding: SecretSnapshot | None, deps: OrgDeps) -> tuple[str | None, bool]:
    """(connection the binding serves, whether its data is as the operator wrote it: its digest
    verifies with the key that stamped it, the primary or an older key of the keyring)."""
    if binding is None:
        return None, False
    check = verify_digest(deps.keyring, binding.data, binding.annotations.get(BINDING_DIGEST_ANNOTATION))
    return binding.annotations.get(BINDING_CONNECTION_ANNOTATION), check.genuine


def _stamp_is_stale(binding: SecretSnapshot, deps: OrgDeps) -> bool:
    """A genuine binding whose digest an older key (or the id-less form) stamped: after a key
    rotation, re-stamped with the primary in one write, without an alarm."""
    return verify_digest(deps.keyring, binding.data, binding.annotations.get(BINDING_DIGEST_ANNOTATION)).stale


def _healthy(target: Target | None) -> conditions.Condition:
    if target is None:
        return conditions.Condition("Healthy", "Unknown", "NoActiveBackend", "no backend is active")
    return conditions.healthy(target.health, target.name)


def _base_status(obj: OrgObject, target: Target | None, active: str | None) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": obj.generation, "binding": {"name": binding_name(obj.name)}}
    if target is not None:
        status["provider"] = target.provider.name
        status["activeConnection"] = active
        status["usingPlatformDefault"] = target.name == PLATFORM_DEFAULT
    return status


async def reconcile_organization(obj: OrgObject, deps: OrgDeps) -> OrgResult:
    """The organization's new status, Events and usage; raises only typed errors (and cancellation).

    Whatever fails, once this returns the binding Secret serves what the returned status names as
    active. When it raises (a :class:`OneieError`, transient: the API server or the binding could
    not be reached), status is not written, and the next attempt converges."""
    try:
        return await _reconcile(obj, deps)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise as_typed_error(exc) from None


async def _reconcile(obj: OrgObject, deps: OrgDeps) -> OrgResult:
    desired = desired_connection(obj)
    desired_name = desired or PLATFORM_DEFAULT
    active = obj.status.get("activeConnection") or None
    if active is None or desired_name != active:
        # A switch: it rewrites the binding anyway; the binding is read only if the switch is not
        # attempted again (see _switch).
        return await _switch(obj, deps, desired, active)
    binding = _ours(obj, await deps.secrets.read(obj.namespace, binding_name(obj.name)))
    served, intact = _binding_state(binding, deps)
    if served in (active, None):
        return await _steady(obj, deps, active, binding, intact)
    # The binding serves another connection than status says (e.g. a crash between activation
    # and the status write): switch to the active one again, which rewrites the binding.
    return await _switch(obj, deps, desired, active)


async def _steady(
    obj: OrgObject, deps: OrgDeps, active: str, binding: SecretSnapshot | None, intact: bool
) -> OrgResult:
    events: list[EventNote] = []
    try:
        target, _ = await resolve(obj, None if active == PLATFORM_DEFAULT else active, deps, require_ready=False)
    except OneieError as exc:
        # The active backend cannot be read right now: keep the binding as it is (last good).
        conds = conditions.retrying(exc.reason, f"active backend {active}: {exc}")
        status = {
            "observedGeneration": obj.generation,
            "conditions": conditions.merge_conditions(obj.status.get("conditions"), conds, generation=obj.generation),
        }
        current = conditions.get_condition(obj.status.get("conditions"), "Ready") or {}
        if current.get("reason") != exc.reason:
            events.append(EventNote("Warning", exc.reason, f"active backend {active}: {exc}"))
        return OrgResult(status=status, events=events)
    expected = binding_data(target)
    if binding is None or not intact or dict(binding.data) != expected:
        try:
            await write_binding(obj, target, deps, current=binding)
        except SecretNameTakenError as exc:
            return _name_taken(obj, exc)
        if binding is None or not intact:
            events.append(_binding_restored(obj, active, None if binding is None else active, intact))
        else:
            events.append(
                EventNote(
                    "Normal",
                    "BindingUpdated",
                    f"binding Secret '{binding_name(obj.name)}' updated: {active}'s settings or credentials changed",
                )
            )
    elif _stamp_is_stale(binding, deps):
        # Same data, stamped by an older key: re-stamp with the primary (no Event: nothing changed
        # for the tenant, and a rotation is not tampering).
        try:
            await write_binding(obj, target, deps, current=binding)
        except SecretNameTakenError as exc:
            return _name_taken(obj, exc)
    ready_message = f"{target.provider.name} backend {active} is active"
    # Ready because the switch that made it active succeeded ("Switched") is as true as "Active":
    # a steady reconcile (every organization's, when the operator restarts) does not rewrite
    # status for that word.
    stored = conditions.get_condition(obj.status.get("conditions"), "Ready") or {}
    switched = (stored.get("status"), stored.get("reason"), stored.get("message")) == (
        "True", "Switched", ready_message
    )
    reason = "Switched" if switched else "Active"
    wanted = [
        *conditions.ready(reason, ready_message),
        conditions.Condition("Switching", "False", reason, ""),
        _healthy(target),
    ]
    merged = conditions.merge_conditions(obj.status.get("conditions"), wanted, generation=obj.generation)
    status = {
        **_base_status(obj, target, active),
        "activeCredentialsVersion": target.credentials_version,
        "conditions": merged,
    }
    # usedBy: reported on every reconcile (Kopf resumes all at start-up), written only if it differs.
    previous = obj.status.get("previousConnection") or None
    usage = [(active, True)] + ([(previous, False)] if previous and previous != active else [])
    usage += [(c, False) for c in _listed_in_error(obj, deps, active, previous)]
    usage = [(c, u) for c, u in usage if c != PLATFORM_DEFAULT]
    current = {k: obj.status.get(k) for k in status}
    if current == status and not events:
        return OrgResult(unchanged=True, usage=usage)
    return OrgResult(status=status, events=events, usage=usage)


def _name_taken(obj: OrgObject, exc: SecretNameTakenError) -> OrgResult:
    """The binding's name is someone else's Secret: Stalled with the reason, one Warning, nothing
    written to that Secret (the next reconcile, e.g. once it is renamed or removed, tries again)."""
    current = conditions.get_condition(obj.status.get("conditions"), "Ready") or {}
    status = {
        "observedGeneration": obj.generation,
        "conditions": conditions.merge_conditions(
            obj.status.get("conditions"), conditions.stalled(exc.reason, str(exc)), generation=obj.generation
        ),
    }
    repeated = current.get("reason") == exc.reason and current.get("message") == str(exc)
    return OrgResult(status=status, events=[] if repeated else [EventNote("Warning", exc.reason, str(exc))])


class _OrgSwitchDeps:
    """The switch machine's dependencies for one organization (see ``reconcile.switch_machine``)."""

    def __init__(self, obj: OrgObject, deps: OrgDeps, desired: str | None, fetched: Mapping[str, Any] | None) -> None:
        self._obj, self._deps, self._desired, self._fetched = obj, deps, desired, fetched

    async def resolve(self, name: str | None, *, require_ready: bool) -> Target:
        fetched = self._fetched if name is not None and name == self._desired else None
        target, _ = await resolve(self._obj, name, self._deps, require_ready=require_ready, fetched=fetched)
        return target

    async def test(self, target: Target) -> None:
        await self._deps.http.test_credentials(
            target.provider, target.settings, target.credentials, namespace=self._obj.namespace
        )

    async def check(self, target: Target) -> None:
        await self._deps.http.probe(target.provider, target.settings, target.credentials, namespace=self._obj.namespace)

    async def write(self, target: Target) -> None:
        await write_binding(self._obj, target, self._deps)

    async def clear(self) -> None:
        await self._deps.secrets.delete_owned(self._obj.namespace, binding_name(self._obj.name), self._obj.uid)


class _Progress:
    def __init__(self, progress: DelayedProgress) -> None:
        self._progress = progress

    async def step(self, name: str) -> None:
        await self._progress.on_step(name)


def _listed_in_error(obj: OrgObject, deps: OrgDeps, active: str, previous: str | None) -> list[str]:
    """Connections whose ``usedBy`` (as the watch last showed it) names this organization although
    it uses another: left by a switch whose status write was lost (the API server away or
    refusing), after which status still named the connection the switch had left."""
    return [
        conn
        for (namespace, conn), seen in deps.known_connections.items()
        if namespace == obj.namespace
        and conn not in (active, previous)
        and obj.name in ((seen.get("status") or {}).get("usedBy") or ())
    ]


async def _switch(
    obj: OrgObject,
    deps: OrgDeps,
    desired: str | None,
    active: str | None,
) -> OrgResult:
    desired_name = desired or PLATFORM_DEFAULT
    # Nothing changed since the last failed attempt: stay where we are (no retry loop), but
    # keep the binding of the backend that stays active as it should be.
    conn_now = await _connection(obj.namespace, desired, deps) if desired else None
    attempt = attempt_key(obj, desired, conn_now)
    last = obj.status.get("lastSwitch") or {}
    retries = 0
    failed_before = last.get("result") in ("RolledBack", "Failed")
    if failed_before and only_lost_readiness(str(last.get("attempt") or ""), attempt, conn_now):
        kept = await _keep_after_failure(obj, deps, active)
        # The failure stands for this state too: recorded so, a return to Ready is a change again.
        kept.status["lastSwitch"] = {**last, "attempt": attempt}
        kept.unchanged = False
        return kept
    if failed_before and last.get("attempt") == attempt:
        wait = transient_retry_in(last, conn_now)
        if wait is None or wait > 0:
            kept = await _keep_after_failure(obj, deps, active)
            kept.retry_after = wait  # back-off still running: come back when it has
            return kept
        retries = int(last.get("retries") or 0) + 1  # the target is online again: retry by itself

    policy = obj.spec.get("switchPolicy") or {}
    explicit = _explicit_rollback(obj, desired_name)
    previous = obj.status.get("previousConnection") or None
    plan = SwitchPlan(
        source=active,
        target=desired,
        deadline_seconds=float(policy.get("timeoutSeconds") or 30),
        health_gate=policy.get("healthGate", True) is not False,
        auto_rollback=policy.get("autoRollback", True) is not False,
        verified=(previous, str(obj.status.get("previousCredentialsVersion") or ""))
        if explicit and previous
        else None,
    )
    started_at = _now()

    async def write_progress(step: str) -> None:
        if deps.on_step is not None:
            await deps.on_step(obj, desired_name, step)

    progress = DelayedProgress(write_progress, delay=deps.progress_delay_seconds)
    parts = _OrgSwitchDeps(obj, deps, desired, conn_now)
    try:
        outcome = await run_switch(plan, SwitchDeps(parts, parts, parts, parts, _Progress(progress)))
    finally:
        await progress.close()  # before the final status: no progress write may land after it
    if outcome.failure is not None:
        return _failed(obj, outcome, outcome.failure, desired_name, active, plan, started_at, attempt, retries)
    target = outcome.target
    assert target is not None
    record = SwitchRecord(
        source=active,
        target=desired_name,
        result="Succeeded",
        seconds=outcome.seconds,
        steps=[s.as_status() for s in outcome.steps],
        reason="Switched",
        message=f"switched from {active or 'nothing'} to {desired_name}",
        started_at=started_at,
        finished_at=_now(),
        attempt=attempt,
        explicit_rollback=explicit,
        retries=retries,
    )
    status = {
        **_serving_status(obj, target, active, record),
        "conditions": conditions.merge_conditions(
            obj.status.get("conditions"),
            [
                *conditions.ready("Switched", f"{target.provider.name} backend {desired_name} is active"),
                conditions.Condition("Switching", "False", "Switched", ""),
                _healthy(target),
            ],
            generation=obj.generation,
        ),
    }
    if record.explicit_rollback:
        status["lastRollback"] = obj.annotations.get(ROLLBACK_ANNOTATION, "")
    steps = ", ".join(
        f"{step['name']} skipped" if step["result"] == "Skipped" else f"{step['name']} {step['milliseconds']} ms"
        for step in record.steps
    )
    who = changed_by(obj)
    verb = "ProviderRolledBack" if record.explicit_rollback else "ProviderSwitched"
    message = (
        f"from {active or 'nothing'} to {desired_name} ({target.provider.name}) in "
        f"{record.seconds * 1000:.0f} ms: {steps}" + (f"; changed by {who}" if who else "")
    )
    return OrgResult(
        status=status,
        events=[EventNote("Normal", verb, message)],
        switch=record,
        usage=_usage_after_switch(desired_name, active),
    )


def _usage_after_switch(now: str, before: str | None) -> list[tuple[str, bool]]:
    usage = [(now, True)] + ([(before, False)] if before and before != now else [])
    return [(c, u) for c, u in usage if c != PLATFORM_DEFAULT]


def _serving_status(obj: OrgObject, target: Target, active: str | None, record: SwitchRecord) -> dict[str, Any]:
    """Status of a switch that left ``target`` serving in place of ``active``."""
    return {
        **_base_status(obj, target, target.name),
        "previousConnection": active or obj.status.get("previousConnection") or "",
        "activeCredentialsVersion": target.credentials_version,
        "previousCredentialsVersion": str(
            obj.status.get("activeCredentialsVersion" if active else "previousCredentialsVersion") or ""
        ),
        "switchedAt": record.finished_at,
        "lastSwitch": record.as_status(),
        "history": _history(obj, record),
        "switching": None,
    }


async def _keep_after_failure(obj: OrgObject, deps: OrgDeps, active: str | None) -> OrgResult:
    """After a failed switch that nothing has changed since: keep the binding serving ``active``,
    and ``Healthy`` following the active backend's health (it is still what the tenant uses)."""
    binding = _ours(obj, await deps.secrets.read(obj.namespace, binding_name(obj.name)))
    served, intact = _binding_state(binding, deps)
    if active is None:
        if served is not None:
            await deps.secrets.delete_owned(obj.namespace, binding_name(obj.name), obj.uid)
        return OrgResult(unchanged=True)
    try:
        target, _ = await resolve(obj, None if active == PLATFORM_DEFAULT else active, deps, require_ready=False)
    except OneieError:
        return OrgResult(unchanged=True)  # the active backend cannot be read now: keep what is there
    events: list[EventNote] = []
    if served != active or not intact:
        try:
            await write_binding(obj, target, deps, current=binding)
        except SecretNameTakenError:
            pass  # the failed switch's status already says so (Stalled, SecretNameTaken)
        else:
            events.append(_binding_restored(obj, active, served, intact))
    merged = conditions.merge_conditions(obj.status.get("conditions"), [_healthy(target)], generation=obj.generation)
    if merged == list(obj.status.get("conditions") or []):
        return OrgResult(events=events, unchanged=not events)
    return OrgResult(status={"conditions": merged}, events=events)


def _binding_restored(obj: OrgObject, active: str, served: str | None, intact: bool) -> EventNote:
    """Why the binding had to be rewritten: the operator's own interrupted switch, or a hand."""
    name = binding_name(obj.name)
    if served is not None and intact:
        why = (
            f"binding Secret '{name}' served {served}, as left by this operator's switch that was"
            f" interrupted before it finished; restored for {active}"
        )
    else:
        why = f"binding Secret '{name}' was {'deleted' if served is None else 'edited'}; restored for {active}"
    return EventNote("Warning", "BindingRestored", why)


def _explicit_rollback(obj: OrgObject, desired_name: str) -> bool:
    requested = obj.annotations.get(ROLLBACK_ANNOTATION)
    return (
        bool(requested)
        and requested != obj.status.get("lastRollback")
        and desired_name == (obj.status.get("previousConnection") or None)
    )


def _history(obj: OrgObject, record: SwitchRecord) -> list[dict[str, Any]]:
    # Compact: the steps of the last switch are in lastSwitch; history keeps the outcome only.
    entry = {k: v for k, v in record.as_status().items() if k not in ("steps", "attempt", "retries")}
    return [entry, *list(obj.status.get("history") or [])][:HISTORY_LIMIT]


# Failures of the switch's target that pass (Retry.BACKEND: unreachable, unhealthy, too slow): the
# switch is retried by itself, with back-off and at most MAX_SWITCH_RETRIES times, once the
# target's health is online again. The cluster's failures (Retry.CLUSTER) are tried again soon. Any
# other (credentials rejected, an invalid spec, a missing or deleting connection) waits for a change.
MAX_SWITCH_RETRIES = 5
SWITCH_RETRY_BASE_SECONDS = 5.0
SWITCH_RETRY_MAX_SECONDS = 300.0


def retry_delay(retries: int) -> float:
    """The back-off before automatic retry number ``retries + 1``: 5 s, 10 s, 20 s … at most 5 min."""
    return float(min(SWITCH_RETRY_BASE_SECONDS * 2**retries, SWITCH_RETRY_MAX_SECONDS))


def transient_retry_in(
    last: Mapping[str, Any], conn: Mapping[str, Any] | None, now: float | None = None
) -> float | None:
    """Seconds until a failed switch may be retried by itself (0: now), or None: it waits for a change.

    Only a transient failure of a connection target, fewer than MAX_SWITCH_RETRIES times, and only
    while the target's health (its own probes) is online; the back-off counts from the failure."""
    if conn is None or retry_of_reason(str(last.get("reason") or "")) is not Retry.BACKEND:
        return None
    retries = int(last.get("retries") or 0)
    if retries >= MAX_SWITCH_RETRIES:
        return None
    if ((conn.get("status") or {}).get("health") or {}).get("status") != "online":
        return None  # the health change that brings it online triggers this organization again
    try:
        finished = datetime.datetime.fromisoformat(str(last.get("finishedAt"))).timestamp()
    except ValueError:
        return 0.0
    current = now if now is not None else datetime.datetime.now(datetime.UTC).timestamp()
    return max(0.0, finished + retry_delay(retries) - current)


#: After a failure of the cluster itself (Retry.CLUSTER), not of the tenant's backend: the switch is tried again.
RETRY_AFTER_SECONDS = 5.0


def _failed(
    obj: OrgObject,
    outcome: SwitchOutcome[Target],
    failure: StepFailure,
    desired_name: str,
    active: str | None,
    plan: SwitchPlan,
    started_at: str,
    attempt: str,
    retries: int = 0,
) -> OrgResult:
    serving = outcome.serving_target
    message = failure.message
    retried = retry_of(failure.error) is Retry.CLUSTER
    retry_after: float | None = RETRY_AFTER_SECONDS if retried else None
    if retried:
        # Not "nothing changed since": an empty attempt key lets the retry run the switch again.
        attempt = ""
    if outcome.restore_error is not None:
        message += f"; putting {active or 'nothing'} back failed too ({outcome.restore_error}), nothing was changed"
    elif outcome.result == "RolledBack":
        message += f"; {active} stays active"
    elif outcome.serving is not None and outcome.serving != active:
        message += f"; autoRollback is off: {outcome.serving} stays active"
    elif outcome.serving is None:
        message += "; no backend is active"
    if retried:
        message += f"; retrying in {RETRY_AFTER_SECONDS:g}s"
    elif retry_of(failure.error) is Retry.BACKEND and desired_name != PLATFORM_DEFAULT:
        if retries < MAX_SWITCH_RETRIES:
            # Back after the back-off: retried then if the target's health is online; if it is not,
            # the health change that brings it online triggers the organization again.
            retry_after = retry_delay(retries)
            message += (
                f"; retried by itself once {desired_name}'s health is online again"
                f" (retry {retries + 1} of {MAX_SWITCH_RETRIES}, not before {retry_delay(retries):g}s)"
            )
        else:
            message += f"; {MAX_SWITCH_RETRIES} automatic retries failed: waits for a change"
    else:
        message += f"; waits for a change (spec, the target connection or its credentials, or {RETRY_ANNOTATION})"
    record = SwitchRecord(
        source=active,
        target=desired_name,
        result=outcome.result,
        seconds=outcome.seconds,
        steps=[s.as_status() for s in outcome.steps],
        reason=failure.reason,
        message=message,
        started_at=started_at,
        finished_at=_now(),
        attempt=attempt,
        retries=retries,
    )
    conds = [
        *conditions.stalled(failure.reason, message),
        conditions.Condition("Switching", "False", failure.reason, ""),
        _healthy(serving),
    ]
    status: dict[str, Any] = {
        "observedGeneration": obj.generation,
        "binding": {"name": binding_name(obj.name)},
        "lastSwitch": record.as_status(),
        "history": _history(obj, record),
        "switching": None,
    }
    usage: list[tuple[str, bool]] = []
    if serving is not None and outcome.serving != active:
        # autoRollback off: the target serves now, and status names it (binding == status).
        status.update(_serving_status(obj, serving, active, record))
        usage = _usage_after_switch(serving.name, active)
    status["conditions"] = conditions.merge_conditions(obj.status.get("conditions"), conds, generation=obj.generation)
    reason = "SwitchRolledBack" if outcome.result == "RolledBack" else "SwitchFailed"
    event = EventNote(
        "Warning",
        reason,
        f"switch from {active or 'nothing'} to {desired_name} failed at step "
        f"{failure.step} ({failure.reason}): {message}",
    )
    return OrgResult(
        status=status, events=[event], switch=record, usage=usage, retry_after=retry_after
    )
