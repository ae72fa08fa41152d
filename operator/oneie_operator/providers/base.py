"""The provider interface: what every backend provider (built-in or plug-in) implements.

A provider is one small module with one class deriving from :class:`Provider`:

* ``name``: the value of ``spec.provider`` and the key of the ``spec.<name>`` block;
* ``settings_model``: a pydantic model of the non-secret settings (``extra="forbid"``),
  whose field errors become the operator's field-level messages;
* ``secret_fields`` / ``optional_secret_fields``: the keys read from the credentials Secret;
* ``capabilities``: what the backend offers (becomes ``capability.one.ie/<name>`` labels);
* ``test_credentials``: the cheapest authenticated call that proves the credentials; it may
  *narrow* the capabilities to what these credentials allow by returning
  ``CheckResult(capabilities=...)`` (a subset of ``capabilities``; e.g. a read-only Convex key
  gets no ``database-write``). The operator's ``status.capabilities`` and
  ``capability.one.ie/*`` labels follow the narrowed set; ``None`` (the default) means all of
  ``capabilities``. The operator also runs it periodically as the authenticated part of the
  health check (``spec.healthCheck.credentialCheckEvery``), so keep it cheap and read-only;
* ``probe``: the liveness call for periodic monitoring (it need not be authenticated: the
  operator adds ``test_credentials`` to it);
* ``credential_issues`` (optional): format checks of the secret fields, run by
  ``check_credentials`` before any network call (messages name the field, never the value).

Providers import nothing from Kopf or Kubernetes: they receive validated settings, a mapping
of credentials and a :class:`~oneie_operator.providers.http.ProviderClient` already bound to
the provider (its name labels every call's metric), the connection's base URL
(:meth:`Provider.base_url`; paths like ``/version`` are appended to it) and the credentials
(removed from every message). It enforces the destination policy, time and size limits and
maps every failure onto :mod:`oneie_operator.errors`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

from oneie_operator.errors import CredentialsError, FieldIssue, SecretKeyMissingError

if TYPE_CHECKING:
    from oneie_operator.providers.http import ProviderClient


class ProviderSettings(BaseModel):
    """Base of every provider's non-secret settings model."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


SettingsT = TypeVar("SettingsT", bound=ProviderSettings)


def validate_base_url(value: str, *, example: str) -> str:
    """A settings validator for a service's base URL: ``http(s)://host[:port][/path]``.

    Returns the URL without a trailing slash. Raises ``ValueError`` with a message naming the
    expected format and never the value (pydantic turns it into a field error). Whether plain
    ``http`` is acceptable is the destination policy's decision, not the settings model's.
    """
    expected = f"expected an https URL like {example}"
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError):
        raise ValueError(f"is not a valid URL; {expected}") from None
    if url.scheme not in ("https", "http"):
        raise ValueError(f"must start with https://; {expected}")
    if not url.host:
        raise ValueError(f"has no host; {expected}")
    if url.userinfo:
        raise ValueError("must not contain a user name or password (put credentials in the Secret)")
    if url.query or url.fragment:
        raise ValueError(f"must not contain a query (?...) or fragment (#...); {expected}")
    return str(url).rstrip("/")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a successful credential test or health probe.

    Failures are raised as :class:`oneie_operator.errors.OneieError` subclasses instead.
    ``detail`` is short, human readable and free of credentials (e.g. the account or
    project the credentials belong to, or the server version).
    """

    latency_seconds: float
    detail: str = ""
    #: Facts learned on the way (e.g. ``{"site": "My Blog"}``); never secrets.
    facts: Mapping[str, str] = field(default_factory=dict)
    #: From ``test_credentials`` only: the capabilities these credentials allow, a subset of the
    #: provider's ``capabilities`` (``None``: all of them). Names outside it are ignored.
    capabilities: frozenset[str] | None = None


class Provider(abc.ABC, Generic[SettingsT]):
    """One backend provider. Stateless: one instance serves every connection."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    settings_model: ClassVar[type[ProviderSettings]]
    secret_fields: ClassVar[tuple[str, ...]]
    optional_secret_fields: ClassVar[tuple[str, ...]] = ()
    #: What each secret key holds, for people filling a form (published in the ``oneie-providers`` ConfigMap).
    secret_descriptions: ClassVar[Mapping[str, str]] = {}
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: The settings field that :meth:`base_url` comes from, for messages (``spec.<name>.<field>``).
    base_url_field: ClassVar[str] = "url"

    def credential_issues(self, credentials: Mapping[str, str]) -> list[FieldIssue]:
        """Format problems of present secret fields (override; never put a value in a message)."""
        return []

    def check_credentials(self, credentials: Mapping[str, str]) -> None:
        """Refuse unusable credentials before any network call.

        Raises :class:`SecretKeyMissingError` naming missing required fields and
        :class:`CredentialsError` for malformed ones (see :meth:`credential_issues`).
        """
        missing = [f for f in self.secret_fields if not (credentials.get(f) or "").strip()]
        if missing:
            raise SecretKeyMissingError(
                f"the credentials Secret lacks {', '.join(missing)} (required by provider {self.name})"
            )
        issues = self.credential_issues(credentials)
        if issues:
            raise CredentialsError("; ".join(str(issue) for issue in issues))

    def base_url(self, settings: SettingsT) -> str:
        """The base URL of the provider's calls, checked by the destination policy (default: ``settings.url``)."""
        return str(getattr(settings, "url"))  # noqa: B009

    @abc.abstractmethod
    async def test_credentials(
        self, settings: SettingsT, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        """Prove the credentials with one cheap authenticated call, or raise."""

    @abc.abstractmethod
    async def probe(self, settings: SettingsT, credentials: Mapping[str, str], http: ProviderClient) -> CheckResult:
        """Check that the backend serves requests now, or raise."""
