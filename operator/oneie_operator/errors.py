"""Every exception the operator raises on purpose, in one tree.

::

    OneieError                        base of everything below; str() is always safe to show
    ├── ConfigurationError            the operator's own environment is invalid (names the variable)
    ├── SpecError                     a resource's spec is invalid (carries field-level ``issues``)
    │   ├── UnknownProviderError      spec.provider names no registered provider
    │   └── DestinationForbiddenError a URL points where the platform does not allow
    ├── CredentialsError              the referenced credentials cannot be used
    │   ├── SecretNotFoundError       the credentials Secret does not exist
    │   ├── SecretKeyMissingError     the Secret lacks a field the provider needs
    │   ├── SecretNotOptedInError     the Secret lacks the opt-in label or is not of type Opaque
    │   └── CredentialsRejectedError  the provider answered 401/403
    ├── ProviderError                 the provider could not be asked
    │   ├── ProviderUnreachableError  connection refused/reset, DNS failure
    │   ├── ProviderTimeoutError      no answer within the timeout
    │   ├── ProviderRateLimitedError  429 (``retry_after`` seconds when it said)
    │   ├── ProviderServerError       5xx
    │   └── ProviderProtocolError     an answer we cannot read: not JSON, too large, wrong shape
    ├── SwitchTargetError             an organization's desired backend cannot be used
    │   ├── ConnectionNotFoundError   no such BackendConnection in the namespace
    │   ├── ConnectionNotReadyError   it exists but is not Ready (its own reason in the message)
    │   ├── ConnectionDeletingError   it is being deleted (held by the in-use finalizer)
    │   ├── NoBackendError            no connectionRef and no platform default configured
    │   ├── SwitchDeadlineError       the switch did not finish within spec.switchPolicy.timeoutSeconds
    │   └── BindingIndeterminateError a failed switch could not put the previous binding back
    ├── APIServerError                the Kubernetes API server did not do what was asked
    │   ├── APIServerUnavailableError unreachable, 429, 5xx, conflict: try again later
    │   └── APIWriteRefusedError      a request refused for good (403, 422, ...)
    ├── SecretNameTakenError          a Secret the operator would write exists and is someone else's
    ├── DependencyTimeoutError        a call timed out (not the switch's own deadline)
    ├── UnexpectedError               any other exception, typed; its text withheld (may hold credentials)
    ├── VaultError                    encrypted credentials cannot be used
    │   ├── KeyNotFoundError          a ciphertext names a key id the keyring lacks
    │   └── DecryptionError           authentication failed: tampered, wrong key or wrong binding
    └── RegistryError                 a provider plug-in is a duplicate or broken

Messages never contain credentials: every place that builds one from outside
text passes it through :func:`oneie_operator.providers.redact` first.
Every error has a stable CamelCase ``reason`` used in conditions and Events.

Every error class also says what happens after it, without any change: its :class:`Retry`
(``retry``), the operator's one retry policy. Code decides on these (``retry_of``,
``retry_of_reason`` for a reason stored in status, ``keeps_last_good``), never on ``reason``
strings; ``tests/unit/test_retry_policy.py`` holds the whole table.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


class Retry(enum.Enum):
    """What follows a failure, if nothing changes."""

    #: Permanent: waits for a change (the spec, the Secret, the target connection, or a retry
    #: request); trying the same again would fail the same way.
    AFTER_CHANGE = "AfterChange"
    #: Transient, waited for rather than polled: a watch event (a Secret created later) brings
    #: the change that lets it pass.
    ON_WATCH = "OnWatch"
    #: The tenant's backend failed (down, slow, rate-limiting, an unreadable answer, a switch past
    #: its deadline): retried with back-off; a switch once the target's health is online again.
    BACKEND = "Backend"
    #: The cluster's side (the API server, a call of the operator's that timed out): tried again soon.
    CLUSTER = "Cluster"


class OneieError(Exception):
    """Base of all operator errors. ``str(error)`` is safe for logs, Events and status."""

    reason: ClassVar[str] = "Error"
    #: What follows this failure (the retry policy): declared once per class, below.
    retry: ClassVar[Retry] = Retry.AFTER_CHANGE
    #: Whether trying again later (without a change) may succeed: derived from ``retry``.
    transient: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.transient = cls.retry is not Retry.AFTER_CHANGE


class ConfigurationError(OneieError):
    reason = "InvalidConfiguration"


@dataclass(frozen=True)
class FieldIssue:
    """One problem with one field: where (dotted path), what is wrong, what is expected."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class SpecError(OneieError):
    reason = "InvalidSpec"

    def __init__(self, issues: Sequence[FieldIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("; ".join(str(i) for i in self.issues))


class UnknownProviderError(SpecError):
    reason = "UnknownProvider"


class DestinationForbiddenError(SpecError):
    reason = "DestinationForbidden"


class CredentialsError(OneieError):
    reason = "CredentialsError"


class SecretNotFoundError(CredentialsError):
    reason = "SecretNotFound"
    retry = Retry.ON_WATCH  # it may be created later; a Secret watch re-triggers us anyway


class SecretKeyMissingError(CredentialsError):
    reason = "SecretKeyMissing"


class SecretNotOptedInError(CredentialsError):
    """The named Secret exists but has not opted in to be read by the operator (DESIGN.md §5):
    no ``one.ie/credentials: "true"`` label, or not of type Opaque. Its values were not used.
    Permanent: labelling the Secret is a watch event that triggers the connection again."""

    reason = "SecretNotOptedIn"


class CredentialsRejectedError(CredentialsError):
    reason = "CredentialsRejected"


class ProviderError(OneieError):
    reason = "ProviderError"
    retry = Retry.BACKEND


class ProviderUnreachableError(ProviderError):
    reason = "ProviderUnreachable"


class ProviderTimeoutError(ProviderError):
    reason = "ProviderTimeout"


class ProviderRateLimitedError(ProviderError):
    reason = "ProviderRateLimited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderServerError(ProviderError):
    reason = "ProviderServerError"


class ProviderProtocolError(ProviderError):
    reason = "ProviderProtocolError"


class SwitchTargetError(OneieError):
    reason = "SwitchTargetError"


class ConnectionNotFoundError(SwitchTargetError):
    reason = "ConnectionNotFound"


class ConnectionNotReadyError(SwitchTargetError):
    reason = "ConnectionNotReady"


class ConnectionDeletingError(SwitchTargetError):
    """The target connection is being deleted (held only by the in-use finalizer): never a new
    target, or a tenant could extend the hold forever. Permanent: waits for a change of spec."""

    reason = "ConnectionDeleting"


class NoBackendError(SwitchTargetError):
    reason = "NoBackend"


class SwitchDeadlineError(SwitchTargetError):
    reason = "SwitchDeadlineExceeded"
    retry = Retry.BACKEND


class BindingIndeterminateError(SwitchTargetError):
    reason = "BindingIndeterminate"
    retry = Retry.CLUSTER


class APIServerError(OneieError):
    reason = "APIServerError"

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class APIServerUnavailableError(APIServerError):
    reason = "APIServerUnavailable"
    retry = Retry.CLUSTER


class APIWriteRefusedError(APIServerError):
    reason = "APIWriteRefused"


class SecretNameTakenError(OneieError):
    """A Secret the operator writes (an Organization's binding ``<org>-backend``, a connection's
    encrypted copy ``oneie-<conn>-credentials``) already exists and is not the operator's: it has
    no owner reference to the object it would serve. The operator never replaces, labels, owns or
    deletes it. Permanent: renaming or removing that Secret (then asking for a retry) resolves it."""

    reason = "SecretNameTaken"

    def __init__(self, namespace: str, name: str, owner_kind: str, owner_name: str) -> None:
        self.namespace, self.name = namespace, name
        super().__init__(
            f"Secret '{name}' in namespace '{namespace}' already exists and is not owned by"
            f" {owner_kind} '{owner_name}'; the operator does not overwrite a Secret it does not own:"
            f" rename or remove that Secret so that {owner_kind} '{owner_name}' can use the name"
        )


class DependencyTimeoutError(OneieError):
    reason = "Timeout"
    retry = Retry.CLUSTER


class UnexpectedError(OneieError):
    """Any exception that is not one of ours. Only its type is kept: library messages may quote
    request data (a credential in a header, repr-escaped), so their text never reaches status."""

    reason = "UnexpectedError"


def as_typed_error(exc: BaseException) -> OneieError:
    """``exc`` as a :class:`OneieError` (API server errors are typed in ``reconcile.failures``)."""
    if isinstance(exc, OneieError):
        return exc
    if isinstance(exc, TimeoutError):
        return DependencyTimeoutError("the call timed out")
    if isinstance(exc, UnicodeError | ValueError):
        return UnexpectedError(
            f"{type(exc).__name__}: a value could not be sent or read (a credential or setting with a"
            " control character or a non-ASCII character?)"
        )
    return UnexpectedError(f"{type(exc).__name__} (details withheld)")


class VaultError(OneieError):
    reason = "VaultError"


class KeyNotFoundError(VaultError):
    reason = "EncryptionKeyNotFound"


class DecryptionError(VaultError):
    reason = "DecryptionFailed"


class RegistryError(OneieError):
    reason = "ProviderRegistryError"


# ---------------------------------------------------------------- the retry policy, in one place
def retry_of(error: OneieError | type[OneieError]) -> Retry:
    """What follows ``error`` (an instance or a class) if nothing changes."""
    return error.retry


def _error_classes(cls: type[OneieError] = OneieError) -> list[type[OneieError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_error_classes(sub))
    return found


@functools.cache
def _retry_by_reason() -> dict[str, Retry]:
    table: dict[str, Retry] = {}
    for cls in _error_classes():
        if table.setdefault(cls.reason, cls.retry) is not cls.retry:
            raise TypeError(f"reason {cls.reason} is declared with two retry policies")  # pragma: no cover
    return table


def retry_of_reason(reason: str) -> Retry:
    """The policy of the error class whose reason this is: for a failure known only by the reason
    stored in status (``status.lastSwitch.reason``). An unknown reason is permanent."""
    return _retry_by_reason().get(reason, Retry.AFTER_CHANGE)


def keeps_last_good(error: OneieError) -> bool:
    """Whether a connection whose reconcile failed with ``error`` stays probed with its last
    verified credentials: when its backend is in trouble (it may pass: the health says when), or
    when the provider rejected credentials (the probes keep checking the ones in force). Any other
    failure means the spec or the Secret is unusable: nothing is probed until it is fixed."""
    return error.retry is Retry.BACKEND or isinstance(error, CredentialsRejectedError)
