"""The BackendConnection reconcile, as a plain function of the object and its dependencies.

validate the spec → read the same-namespace Secret → live credential test → encrypt each
secret field → write the operator-owned Secret → status, capability labels and Events.

The function returns what should change (:class:`ConnectionResult`); the Kopf handler only
applies it. A failure never touches the operator-owned Secret or ``status.credentials``:
the last verified credentials stay in force until a change is verified.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from oneie_operator.errors import (
    FieldIssue,
    OneieError,
    ProviderRateLimitedError,
    Retry,
    SecretKeyMissingError,
    SecretNameTakenError,
    SecretNotFoundError,
    SecretNotOptedInError,
    SpecError,
    VaultError,
)
from oneie_operator.kube.secrets import CREDENTIALS_TYPE, OwnerRef, SecretRefusal, SecretSnapshot, WatchedSecret
from oneie_operator.lru import LRU
from oneie_operator.names import (
    API_VERSION,
    CAPABILITY_LABEL_PREFIX,
    CONNECTION_KIND,
    CONNECTION_LABEL,
    CREDENTIALS_LABEL,
    ENCRYPTED,
    KEY_ID_ANNOTATION,
    OPTED_IN,
    SOURCE_VERSION_ANNOTATION,
)
from oneie_operator.providers.base import Provider, ProviderSettings
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.redaction import redact
from oneie_operator.providers.registry import ProviderRegistry, validate_settings
from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.events import EventNote
from oneie_operator.vault import Keyring, needs_rotation, reseal, seal, unseal
from oneie_operator.vault.sealed import key_ids


def owned_secret_name(connection: str) -> str:
    """The operator-owned Secret holding a connection's encrypted credentials."""
    return f"oneie-{connection}-credentials"


class SecretReader(Protocol):
    async def read(self, namespace: str, name: str) -> SecretSnapshot | None: ...

    async def write_owned(
        self,
        namespace: str,
        name: str,
        *,
        data: Mapping[str, str],
        owner: OwnerRef,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        current: SecretSnapshot | None = None,
        patch_first: bool = False,
    ) -> str: ...


class CredentialSecrets(SecretReader, Protocol):
    async def read_credentials(self, namespace: str, name: str) -> SecretSnapshot | SecretRefusal | None: ...


@dataclass(frozen=True)
class ConnectionObject:
    """The parts of a BackendConnection the reconcile reads."""

    namespace: str
    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    labels: Mapping[str, str]


@dataclass
class ConnectionDeps:
    """Everything the reconcile talks to."""

    registry: ProviderRegistry
    secrets: CredentialSecrets
    keyring: Keyring
    http: ProviderHTTP
    policy: DestinationPolicy
    retry_delay_seconds: float = 30.0
    #: Secrets as the operator's Secret watch last saw them ((namespace, name) → None if unseen):
    #: an unchanged connection (a resume after a restart) is then decided without an API read.
    watched: Callable[[str, str], WatchedSecret | None] | None = None
    #: Validated specs, shared with the Organization reconcile (see :data:`SpecCache`).
    valid_specs: SpecCache | None = None


@dataclass
class ConnectionResult:
    """What should change: status fields to merge, labels to set (None = remove), Events, retry."""

    status: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str | None] = field(default_factory=dict)
    events: list[EventNote] = field(default_factory=list)
    retry_after: float | None = None
    #: The error that stopped this reconcile, if any (for the handler's log and metrics).
    error: OneieError | None = None
    #: True when nothing had to be done (everything was already up to date).
    unchanged: bool = False
    #: When the connection is usable: its provider, settings and encrypted credentials (for probes).
    provider: Provider[Any] | None = None
    settings: ProviderSettings | None = None
    sealed: Mapping[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ValidSpec:
    provider: Provider[Any]
    settings: ProviderSettings
    secret_name: str


def validate_spec(obj: ConnectionObject, registry: ProviderRegistry, policy: DestinationPolicy) -> ValidSpec:
    """Check the spec against the provider's model; raise SpecError with field-level issues."""
    spec = obj.spec
    name = spec.get("provider")
    if not isinstance(name, str) or not name:
        raise SpecError([FieldIssue("spec.provider", f"is required; expected one of: {', '.join(registry.names())}")])
    provider = registry.get(name)  # UnknownProviderError names the field and the choices
    issues: list[FieldIssue] = []
    others = [p for p in registry.names() if p != name and p in spec]
    for other in others:
        issues.append(FieldIssue(f"spec.{other}", f"is not allowed when spec.provider is '{name}'; remove it"))
    block = spec.get(name)
    if block is None:
        issues.append(FieldIssue(f"spec.{name}", f"is required when spec.provider is '{name}'"))
    elif not isinstance(block, Mapping):
        issues.append(FieldIssue(f"spec.{name}", "must be an object with the provider's settings"))
    ref = spec.get("credentialsSecretRef")
    secret_name = ref.get("name") if isinstance(ref, Mapping) else None
    if not isinstance(secret_name, str) or not secret_name:
        issues.append(
            FieldIssue("spec.credentialsSecretRef.name", "is required: the name of a Secret in this namespace")
        )
    elif isinstance(ref, Mapping) and ref.get("namespace") not in (None, "", obj.namespace):
        issues.append(
            FieldIssue(
                "spec.credentialsSecretRef.namespace",
                f"must be omitted: the Secret must be in this connection's namespace '{obj.namespace}'",
            )
        )
    if issues:
        raise SpecError(issues)
    assert isinstance(block, Mapping) and isinstance(secret_name, str)
    settings = validate_settings(provider, dict(block), f"spec.{name}")
    policy.check_url(provider.base_url(settings), field=f"spec.{name}.{provider.base_url_field}")
    return ValidSpec(provider=provider, settings=settings, secret_name=secret_name)


#: (namespace, connection) → ((uid, generation), its validated spec at that generation): one entry
#: per connection, its latest generation's. A spec at a given generation never changes (nor do the
#: registry and the policy in a process), so the connection reconcile and the organizations that
#: switch to it validate it once between them.
SpecCache = LRU[tuple[str, str], tuple[tuple[str, int], ValidSpec]]
#: Connections a :data:`SpecCache` holds (an LRU: the least recently used goes first).
VALID_SPECS = 10_000


def valid_spec_of(
    obj: ConnectionObject, registry: ProviderRegistry, policy: DestinationPolicy, cache: SpecCache | None
) -> ValidSpec:
    """:func:`validate_spec`, answered from ``cache`` when it holds this connection's generation
    (a spec that fails is not kept: it raises again, with its field-level issues)."""
    at = (obj.uid, obj.generation)
    cached = cache.get((obj.namespace, obj.name)) if cache is not None else None
    if cached is not None and cached[0] == at:
        return cached[1]
    valid = validate_spec(obj, registry, policy)
    if cache is not None:
        cache.put((obj.namespace, obj.name), (at, valid))
    return valid


def refusal_message(refusal: SecretRefusal) -> str:
    """Why a Secret is not read, and how to let it be read (DESIGN.md §5)."""
    where = f"spec.credentialsSecretRef.name: Secret '{refusal.name}' in namespace '{refusal.namespace}'"
    if refusal.labelled:
        return (
            f"{where} is of type '{refusal.type}'; the operator reads only credential Secrets of type"
            f" {CREDENTIALS_TYPE}: put the credentials in an {CREDENTIALS_TYPE} Secret labelled"
            f" {CREDENTIALS_LABEL}={OPTED_IN} and name that one"
        )
    has = "lacks the label" if refusal.label is None else f"has {CREDENTIALS_LABEL}={refusal.label!r}, not"
    return (
        f"{where} has not opted in to be read by the operator: it {has} {CREDENTIALS_LABEL}={OPTED_IN}"
        f" (and must be of type {CREDENTIALS_TYPE}); its values were not used. If it holds this"
        f" connection's credentials, label it: kubectl label secret {refusal.name} -n {refusal.namespace}"
        f" {CREDENTIALS_LABEL}={OPTED_IN}"
    )


def read_credentials(
    provider: Provider[Any], snapshot: SecretSnapshot | SecretRefusal | None, namespace: str, secret_name: str
) -> dict[str, str]:
    """The provider's fields from the Secret; a missing, not opted-in Secret or key is a clear error."""
    expected = ", ".join(provider.secret_fields)
    if snapshot is None:
        raise SecretNotFoundError(
            f"spec.credentialsSecretRef.name: Secret '{secret_name}' not found in namespace '{namespace}'"
            f" (expected an {CREDENTIALS_TYPE} Secret labelled {CREDENTIALS_LABEL}={OPTED_IN}"
            f" with key(s): {expected})"
        )
    if isinstance(snapshot, SecretRefusal):
        raise SecretNotOptedInError(refusal_message(snapshot))
    missing = [key for key in provider.secret_fields if not snapshot.data.get(key)]
    undecodable = [key for key in snapshot.undecodable if key in provider.secret_fields]
    if missing or undecodable:
        parts = []
        if missing:
            parts.append(f"lacks key(s) {', '.join(missing)}")
        if undecodable:
            parts.append(f"has non-UTF-8 value(s) in {', '.join(undecodable)}")
        raise SecretKeyMissingError(
            f"Secret '{secret_name}' {' and '.join(parts)}; {provider.name} expects key(s): {expected}"
            + (f" (optional: {', '.join(provider.optional_secret_fields)})" if provider.optional_secret_fields else "")
        )
    wanted = (*provider.secret_fields, *provider.optional_secret_fields)
    return {key: snapshot.data[key] for key in wanted if snapshot.data.get(key)}


def known_capabilities(status: Mapping[str, Any], provider: Provider[Any]) -> list[str]:
    """The capabilities the last credential test allowed (``status.capabilities``, which a test may
    have narrowed), within the provider's; the provider's own when nothing was recorded for it."""
    stored = status.get("capabilities")
    if status.get("provider") == provider.name and isinstance(stored, list):
        return sorted(provider.capabilities & {str(c) for c in stored})
    return sorted(provider.capabilities)


def capability_labels(current: Mapping[str, str], capabilities: Sequence[str]) -> dict[str, str | None]:
    """Label changes so that exactly ``capability.one.ie/<c>: "true"`` for each capability exists."""
    desired = {f"{CAPABILITY_LABEL_PREFIX}{cap}": "true" for cap in capabilities}
    changes: dict[str, str | None] = {k: v for k, v in desired.items() if current.get(k) != v}
    changes.update({k: None for k in current if k.startswith(CAPABILITY_LABEL_PREFIX) and k not in desired})
    return changes


def _failure(
    obj: ConnectionObject, error: OneieError, deps: ConnectionDeps, secrets: Sequence[str]
) -> ConnectionResult:
    message = redact(str(error), secrets)
    kept = (
        obj.status.get("credentials", {}).get("secretName")
        if isinstance(obj.status.get("credentials"), Mapping)
        else None
    )
    if kept:
        message += f" (the last verified credentials in Secret '{kept}' stay in force)"
    transient = error.transient
    retry = None
    # Retry.ON_WATCH (a missing Secret) is waited for, not polled: the operator watches the
    # tenant's (labelled) credential Secrets, and a new one re-triggers the connections that name it.
    if error.retry in (Retry.BACKEND, Retry.CLUSTER):
        retry = deps.retry_delay_seconds
        if isinstance(error, ProviderRateLimitedError) and error.retry_after:
            retry = max(1.0, min(error.retry_after, 3600.0))
    conds = (conditions.retrying if transient else conditions.stalled)(error.reason, message)
    status = {
        "observedGeneration": obj.generation,
        "conditions": conditions.merge_conditions(obj.status.get("conditions"), conds, generation=obj.generation),
    }
    # One Event per change of the problem, not one per retry.
    current = conditions.get_condition(obj.status.get("conditions"), "Ready") or {}
    repeated = current.get("reason") == error.reason and current.get("message") == message
    return ConnectionResult(
        status=status,
        events=[] if repeated else [EventNote("Warning", error.reason, message)],
        retry_after=retry,
        error=error,
    )


def _is_current(obj: ConnectionObject, source: SecretSnapshot) -> bool:
    creds = obj.status.get("credentials")
    return (
        isinstance(creds, Mapping)
        and obj.status.get("observedGeneration") == obj.generation
        and creds.get("sourceResourceVersion") == source.resource_version
        and conditions.is_true(obj.status.get("conditions"), "Ready")
    )


def _unchanged_as_watched(obj: ConnectionObject, valid: ValidSpec, deps: ConnectionDeps) -> ConnectionResult | None:
    """The result for a connection nothing happened to since its last verification, decided from
    the Secret watch alone (no API read, no provider call), or None: then read and decide.

    Nothing happened when the spec's generation is the one verified and Ready, the source Secret
    (opted in, Opaque) is still at the version verified, and the encrypted copy is ours, at the
    version the operator wrote, decrypts with the current keys and needs no re-encryption. A
    Secret changed but not yet delivered by the watch is no risk: its event re-triggers the
    connection (``handlers.connections.secret_changed``)."""
    creds = obj.status.get("credentials")
    if (
        deps.watched is None
        or not isinstance(creds, Mapping)
        or obj.status.get("observedGeneration") != obj.generation
        or not conditions.is_true(obj.status.get("conditions"), "Ready")
        or creds.get("sourceSecretName") != valid.secret_name
    ):
        return None
    source = deps.watched(obj.namespace, valid.secret_name)
    owned = deps.watched(obj.namespace, owned_secret_name(obj.name))
    if (
        source is None
        or owned is None
        or owned.sealed is None
        or (source.label, source.type) != (OPTED_IN, CREDENTIALS_TYPE)
        or source.resource_version != creds.get("sourceResourceVersion")
        or owned.label != ENCRYPTED
        or owned.resource_version != creds.get("resourceVersion")
        or obj.uid not in owned.owner_uids
        or sorted(owned.sealed) != sorted(creds.get("fields") or ())
    ):
        return None
    try:
        unseal(deps.keyring, owned.sealed, namespace=obj.namespace, connection=obj.name)
    except VaultError:
        return None  # read and decided the long way (which reports it)
    if needs_rotation(deps.keyring, owned.sealed):
        return None
    labels = capability_labels(obj.labels, known_capabilities(obj.status, valid.provider))
    return ConnectionResult(
        labels=labels, unchanged=not labels, provider=valid.provider, settings=valid.settings,
        sealed=dict(owned.sealed),
    )


async def reconcile_connection(obj: ConnectionObject, deps: ConnectionDeps) -> ConnectionResult:
    """Bring one BackendConnection to its desired state (see the module docstring)."""
    credentials: dict[str, str] = {}
    try:
        valid = valid_spec_of(obj, deps.registry, deps.policy, deps.valid_specs)
        unchanged = _unchanged_as_watched(obj, valid, deps)
        if unchanged is not None:
            return unchanged
        source = await deps.secrets.read_credentials(obj.namespace, valid.secret_name)
        credentials = read_credentials(valid.provider, source, obj.namespace, valid.secret_name)
        assert isinstance(source, SecretSnapshot)
        owned_name = owned_secret_name(obj.name)
        events: list[EventNote] = []

        if _is_current(obj, source):
            owned = await deps.secrets.read(obj.namespace, owned_name)
            if owned is not None and obj.uid not in owned.owner_uids:
                # Someone else's Secret under our name: never read, replaced or owned by us.
                raise SecretNameTakenError(obj.namespace, owned_name, CONNECTION_KIND, obj.name)
            sealed = dict(owned.data) if owned is not None else {}
            try:
                if owned is None or set(sealed) != set(credentials):
                    raise VaultError(f"the encrypted Secret '{owned_name}' is missing or incomplete")
                unseal(deps.keyring, sealed, namespace=obj.namespace, connection=obj.name)
            except VaultError as exc:
                events.append(
                    EventNote(
                        "Warning",
                        exc.reason,
                        f"{exc}; re-verifying and re-encrypting from Secret '{valid.secret_name}'",
                    )
                )
            else:
                if not needs_rotation(deps.keyring, sealed):
                    if owned is not None and owned.labels.get(CREDENTIALS_LABEL) != ENCRYPTED:
                        # Written by a version before the opt-in label: label it (same data, no
                        # Event), so that the operator's Secret watch sees it (edits are noticed).
                        return await _store(
                            obj, deps, valid, source, sealed, events, check=None, quiet=True, current=owned
                        )
                    labels = capability_labels(obj.labels, known_capabilities(obj.status, valid.provider))
                    return ConnectionResult(
                        labels=labels, unchanged=not labels, provider=valid.provider, settings=valid.settings,
                        sealed=sealed,
                    )
                resealed = reseal(deps.keyring, sealed, namespace=obj.namespace, connection=obj.name)
                return await _store(
                    obj,
                    deps,
                    valid,
                    source,
                    resealed,
                    [
                        *events,
                        EventNote(
                            "Normal",
                            "CredentialsReencrypted",
                            f"re-encrypted {len(resealed)} field(s) under key {deps.keyring.primary_id}",
                        ),
                    ],
                    check=None,
                    current=owned,
                )

        check = await deps.http.test_credentials(valid.provider, valid.settings, credentials, namespace=obj.namespace)
        events.append(
            EventNote(
                "Normal",
                "CredentialsVerified",
                redact(
                    f"{valid.provider.name} accepted the credentials in {check.latency_seconds * 1000:.0f} ms"
                    + (f" ({check.detail})" if check.detail else ""),
                    list(credentials.values()),
                ),
            )
        )
        sealed = seal(deps.keyring, credentials, namespace=obj.namespace, connection=obj.name)
        return await _store(
            obj, deps, valid, source, sealed, events, check=check.latency_seconds, capabilities=check.capabilities
        )
    except OneieError as exc:
        return _failure(obj, exc, deps, list(credentials.values()))


async def _store(
    obj: ConnectionObject,
    deps: ConnectionDeps,
    valid: ValidSpec,
    source: SecretSnapshot,
    sealed: Mapping[str, str],
    events: list[EventNote],
    check: float | None,
    quiet: bool = False,
    capabilities: frozenset[str] | None = None,
    current: SecretSnapshot | None = None,
) -> ConnectionResult:
    owned_name = owned_secret_name(obj.name)
    key_id = deps.keyring.primary_id
    owned_rv = await deps.secrets.write_owned(
        obj.namespace,
        owned_name,
        data=sealed,
        owner=OwnerRef(API_VERSION, CONNECTION_KIND, obj.name, obj.uid),
        labels={CONNECTION_LABEL: obj.name, CREDENTIALS_LABEL: ENCRYPTED},
        annotations={SOURCE_VERSION_ANNOTATION: source.resource_version, KEY_ID_ANNOTATION: key_id},
        current=current,
        patch_first=bool(obj.status.get("credentials")),  # stored before: one conditioned write
    )
    if not quiet:
        events.append(
            EventNote(
                "Normal",
                "CredentialsStored",
                f"encrypted {len(sealed)} field(s) with AES-256-GCM key {key_id} into Secret '{owned_name}'",
            )
        )
    allowed = sorted(capabilities) if capabilities is not None else known_capabilities(obj.status, valid.provider)
    message = f"credentials verified and stored encrypted; provider {valid.provider.name}"
    status: dict[str, Any] = {
        "observedGeneration": obj.generation,
        "provider": valid.provider.name,
        "capabilities": allowed,
        "credentials": {
            "secretName": owned_name,
            "keyId": key_id,
            "keyIds": sorted(key_ids(sealed)),
            "fields": sorted(sealed),
            "sourceSecretName": valid.secret_name,
            "sourceResourceVersion": source.resource_version,
            "resourceVersion": owned_rv,
            "encryptedAt": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **({"verificationMilliseconds": round(check * 1000)} if check is not None else {}),
        },
        "conditions": conditions.merge_conditions(
            obj.status.get("conditions"), conditions.ready("CredentialsVerified", message), generation=obj.generation
        ),
    }
    # status.health is the probes' alone: a reconcile writing a placeholder could land after the
    # first probe's result (an immediate probe finishes first) and turn it back to "unknown".
    return ConnectionResult(
        status=status, labels=capability_labels(obj.labels, allowed), events=events,
        provider=valid.provider, settings=valid.settings, sealed=dict(sealed),
    )
