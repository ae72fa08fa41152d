"""The one HTTP transport of every provider call (credential test, switch, health probe).

Front door: :class:`ProviderHTTP` (one per process: one ``aiohttp`` session, one connection pool)
and :class:`ProviderClient`, the view of it that a provider receives, bound by
:meth:`ProviderHTTP.bind` to the provider's name, display name, base URL and the connection's
credentials (like External Secrets' ``NewClient(store)``). A provider call then states only what is
particular to it: ``await http.request("GET", "/instance_name", call="probe", body="text")``. The
name and the tenant's namespace label every call's metric (``on_call(provider, call, outcome,
seconds, namespace)``; the operator wires it to ``oneie_provider_calls_total``), so a plug-in cannot
forget it; the credentials are removed from every message, so a plug-in cannot forget that either.

Guarantees, for every call:

* **destinations**: the URL is checked by the :class:`~oneie_operator.providers.netguard.DestinationPolicy`
  before anything is sent, and the addresses connected to are checked at connect time, in the
  connector's resolver, which resolves a name once and hands only checked IP addresses to the
  connector (DNS rebinding cannot slip in between); TLS verifies the URL's host name as usual;
* **no ambient behaviour**: no proxies from the environment, no redirects followed, no cookies kept
  or sent (one session serves every tenant), HTTP/1.1 only;
* **limits**: one deadline for the whole call (resolve, connect, TLS, headers, body); at most 64
  headers of 8 KiB; the body read in chunks and stopped at ``max_response_bytes`` (default 1 MiB)
  **counted after decoding, while decoding**: the request asks for ``Accept-Encoding: identity``;
  an answer compressed anyway (``gzip``, ``deflate``, at most two layers) is inflated a bounded
  step at a time, so a decompression bomb costs at most the limit in memory; other encodings
  (``br``, ``zstd``, ...) are refused;
* **request headers** are checked before sending: a credential with a control character or a
  non-ASCII character is refused naming its Secret field, never its value;
* **every failure is typed** and its message is a fixed sentence of ours plus, for HTTP errors, the
  provider's own error code and message (sanitised: every form of every secret removed, control
  characters dropped, 300 characters at most). Library exception text is never copied into a
  message: it may quote bytes of the request or answer (``b'...\\x0c...'``).

Every failure of a call is one of :mod:`oneie_operator.errors`::

    OneieError
    ├── SpecError
    │   └── DestinationForbiddenError   the URL, or an address its host resolves to, is not allowed
    ├── CredentialsError                a credential cannot be sent (control or non-ASCII character)
    │   └── CredentialsRejectedError    401 / 403
    └── ProviderError                   (transient: retried later)
        ├── ProviderUnreachableError    DNS failure, refused or reset connection, TLS failure,
        │                               connection closed before a complete answer
        ├── ProviderTimeoutError        no complete answer within the deadline
        ├── ProviderRateLimitedError    429 (and e.g. Notion's 529); ``retry_after`` from Retry-After
        ├── ProviderServerError         5xx
        └── ProviderProtocolError       redirect, other 4xx, not JSON, too large (decoded), an encoding
                                        we do not accept, malformed HTTP, anything unexpected
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import errno
import json as jsonlib
import logging
import math
import os
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import aiohttp.abc
import certifi
import yarl

from oneie_operator.errors import (
    CredentialsError,
    CredentialsRejectedError,
    DestinationForbiddenError,
    FieldIssue,
    OneieError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnreachableError,
)
from oneie_operator.lru import LRU
from oneie_operator.providers.netguard import DestinationPolicy, Resolver, ip_literal, system_resolver
from oneie_operator.providers.redaction import redact, sanitize

if TYPE_CHECKING:
    from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "ErrorDescriber",
    "OnCall",
    "ProviderClient",
    "ProviderHTTP",
    "ProviderResponse",
    "describe_error_body",
    "parse_retry_after",
    "redact",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
#: Error bodies are read only this far (enough for any error document; never an error by itself).
ERROR_BODY_BYTES = 64 * 1024
#: A Retry-After longer than this is treated as this (a day).
MAX_RETRY_AFTER = 86400.0
#: Connections open at once over all destinations (the probe engine bounds its own share).
DEFAULT_MAX_CONNECTIONS = 256
#: Idle connections are kept this long: a credential test and the health gate of a switch, or a
#: switch and its rollback, reuse them.
KEEPALIVE_SECONDS = 15.0
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8190
#: Content codings we inflate (bounded) when a server compresses despite ``identity``.
_INFLATABLE = {"gzip": 31, "x-gzip": 31, "deflate": 0}
MAX_ENCODING_LAYERS = 2
#: How many URLs that passed the destination policy are remembered (their check is skipped).
CHECKED_URLS = 4096

#: ``on_call(provider, call, outcome, seconds, namespace)`` (``namespace`` "" when not bound to a tenant).
OnCall = Callable[[str, str, str, float, str], None]
#: ``describe(status, body) -> "code: message"``; ``body`` is parsed JSON, text, or None.
ErrorDescriber = Callable[[int, Any], "str | None"]

BodyMode = Literal["json", "text", "none"]

_SECRET_HEADERS = ("authorization", "proxy-authorization", "apikey", "x-api-key", "cookie")
#: What an HTTP/1.1 header value may carry (RFC 9110 §5.5 without obs-text): HTAB, SP, VCHAR.
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _user_agent() -> str:
    try:
        version = metadata.version("oneie-operator")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a plain checkout
        version = "0"
    return f"oneie-operator/{version}"


@dataclass(frozen=True)
class ProviderResponse:
    """A successful answer: the status (one of ``expect``), headers, body and latency."""

    status: int
    #: Case-insensitive.
    headers: Mapping[str, str]
    #: Parsed JSON (``body="json"``), text (``"text"``) or ``None`` (``"none"``: never read).
    body: Any
    seconds: float


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _first_str(body: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def describe_error_body(status: int, body: Any) -> str | None:
    """``"code: message"`` from the error document shapes the built-in providers use.

    Convex ``{"code","message"}``, WordPress ``{"code","message","data"}``, Notion
    ``{"object":"error","code","message","additional_data"}``, Supabase gateway
    ``{"message","hint"}``, GoTrue ``{"code":<int>,"error_code","msg"}``, PostgREST
    ``{"code":"PGRST…","message"}``.
    """
    if isinstance(body, str):
        text = body.strip()
        return text or None
    if not isinstance(body, Mapping):
        return None
    code = _first_str(body, "error_code", "code")
    if code is None and isinstance(body.get("error"), str):
        code = body["error"]
    message = _first_str(body, "message", "msg", "error_description", "detail")
    extra = body.get("additional_data")
    if isinstance(extra, Mapping) and isinstance(extra.get("rate_limit_reason"), str):
        message = f"{message or ''} (rate limit: {extra['rate_limit_reason']})".strip()
    if code and message:
        return f"{code}: {message}"
    return code or message


# ------------------------------------------------------------------------------- bounded decoding
class _TooLarge(Exception):
    """The (decoded) answer passed its limit."""


class _Inflater:
    """One content coding layer, inflated at most ``limit`` + 1 bytes per step."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._z: Any = None

    def step(self, data: bytes, limit: int) -> bytes:
        if self._z is None:
            if not data:
                return b""
            wbits = _INFLATABLE[self.encoding]
            if wbits == 0:  # "deflate" is zlib-wrapped by the RFC; some servers send it raw
                wbits = 15 if len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0 else -15
            self._z = zlib.decompressobj(wbits)
        if self._z.eof:
            return b""  # trailing bytes after the end of the stream are ignored
        out: bytes = self._z.decompress(data, limit + 1)
        if len(out) > limit or self._z.unconsumed_tail:
            raise _TooLarge
        return out


class _Decoder:
    """The answer's content codings undone in reverse order, every layer bounded by ``limit``."""

    def __init__(self, encodings: Sequence[str], limit: int) -> None:
        self._layers = [_Inflater(e) for e in reversed(encodings)]
        self._limit = limit

    def feed(self, data: bytes) -> bytes:
        for layer in self._layers:
            data = layer.step(data, self._limit)
        return data


def _content_encodings(headers: Mapping[str, str]) -> list[str] | str:
    """The codings to undo, or the one we refuse."""
    raw = headers.get("Content-Encoding", "")
    codings = [c.strip().lower() for c in raw.split(",") if c.strip() and c.strip().lower() != "identity"]
    for coding in codings:
        if coding not in _INFLATABLE:
            return coding if re.fullmatch(r"[a-z0-9._-]{1,20}", coding) else "unknown"
    if len(codings) > MAX_ENCODING_LAYERS:
        return ", ".join(codings[:4]) + (", ..." if len(codings) > 4 else "")
    return codings


# ------------------------------------------------------------------------------- connect-time guard
class _GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolve with our resolver, judge every address, hand only checked ones to the connector."""

    def __init__(self, policy: DestinationPolicy, resolve: Resolver) -> None:
        self.policy = policy
        self._resolve = resolve

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        literal = ip_literal(host.rstrip(".").lower())
        addresses = [str(literal)] if literal is not None else list(await self._resolve(host, port))
        if not addresses:
            raise OSError(errno.ENOENT, "no addresses")
        self.policy.check_resolved(host, addresses)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


#: Library exceptions of a call, most specific first: our error type and our fixed phrase ("" = the
#: OS's phrase for the exception's errno). Their own text is never used: it may quote request or
#: answer bytes (a parser error quotes the offending header line).
_FAILURES: tuple[tuple[type[BaseException], type[OneieError], str], ...] = (
    (aiohttp.ClientConnectorDNSError, ProviderUnreachableError, "cannot resolve {host}"),
    (aiohttp.ClientConnectorCertificateError, ProviderUnreachableError, "TLS certificate verification failed"),
    (aiohttp.ClientSSLError, ProviderUnreachableError, "the TLS handshake failed"),
    (aiohttp.ClientConnectorError, ProviderUnreachableError, ""),
    (
        aiohttp.ServerDisconnectedError,
        ProviderUnreachableError,
        "the server closed the connection without a complete answer",
    ),
    (aiohttp.ClientPayloadError, ProviderUnreachableError, "the answer was cut off"),
    (
        aiohttp.ClientResponseError,
        ProviderProtocolError,
        "the answer is malformed or oversized HTTP (status line or headers)",
    ),
    (aiohttp.ClientOSError, ProviderUnreachableError, ""),
    (ConnectionError, ProviderUnreachableError, ""),
    (aiohttp.ClientError, ProviderUnreachableError, "the connection failed"),
    (OSError, ProviderUnreachableError, ""),
)


def _failure(exc: BaseException, display: str, host: str) -> OneieError:
    """The typed error for a library exception raised by a call (see :data:`_FAILURES`)."""
    for kind, error, phrase in _FAILURES:
        if isinstance(exc, kind):
            verb = "cannot reach" if error is ProviderUnreachableError else "cannot talk to"
            return error(f"{verb} {display} at {host}: {phrase.replace('{host}', host) or _os_reason(exc)}")
    log.debug("unexpected %s from a provider call to %s", type(exc).__name__, host)
    return ProviderProtocolError(f"cannot talk to {display} at {host}: the request failed ({type(exc).__name__})")


def _ssl_context(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    if isinstance(verify, ssl.SSLContext):
        return verify
    if not verify:
        return False
    return ssl.create_default_context(cafile=certifi.where())


def _os_reason(exc: BaseException) -> str:
    """A fixed phrase for an OS-level failure (from its errno, never from library text)."""
    os_error = getattr(exc, "os_error", None) or (exc if isinstance(exc, OSError) else None)
    number = getattr(os_error, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return os.strerror(number).lower()
    return "the connection failed"


@dataclass(frozen=True, slots=True)
class _Request:
    """One call as a provider stated it (see :meth:`ProviderClient.request`), defaults resolved."""

    method: str
    url: str
    call: str
    headers: Mapping[str, str] | None
    params: Mapping[str, str] | None
    json: Any
    auth: tuple[str, str] | None
    expect: Sequence[int]
    body: BodyMode
    deadline: float
    limit: int
    secrets: Iterable[str | None]
    url_field: str
    rate_limit_statuses: Sequence[int]
    describe: ErrorDescriber


# ------------------------------------------------------------------------------- the transport
class ProviderHTTP:
    """The process's provider transport: one guarded ``aiohttp`` session, limits, error mapping.

    Providers never use it directly: :meth:`bind` gives them a :class:`ProviderClient`. Use as an
    async context manager or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        policy: DestinationPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_call: OnCall | None = None,
        user_agent: str | None = None,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.policy = policy or DestinationPolicy()
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.on_call = on_call
        self._user_agent = user_agent or _user_agent()
        self._ssl = _ssl_context(verify)
        self._resolver = _GuardedResolver(self.policy, resolver or system_resolver)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed_in: asyncio.AbstractEventLoop | None = None
        self._checked_urls: LRU[str, tuple[str, yarl.URL]] = LRU(CHECKED_URLS)

    # ------------------------------------------------------------------ binding
    def bind(
        self,
        provider: Provider[Any],
        settings: ProviderSettings | None = None,
        credentials: Mapping[str, str] | None = None,
        *,
        namespace: str = "",
        deadline: float | None = None,
    ) -> ProviderClient:
        """The client one provider call gets: its name, display name, base URL and credentials, and
        the tenant's ``namespace`` its calls are counted for (``oneie_provider_calls_total``).
        ``deadline``: see :class:`ProviderClient`."""
        base = provider.base_url(settings) if settings is not None else None
        return self.client(
            provider.name,
            display_name=provider.display_name,
            base_url=base,
            url_field=f"spec.{provider.name}.{provider.base_url_field}",
            credentials=credentials,
            namespace=namespace,
            deadline=deadline,
        )

    async def test_credentials(
        self,
        provider: Provider[Any],
        settings: ProviderSettings,
        credentials: Mapping[str, str],
        *,
        namespace: str = "",
        deadline: float | None = None,
    ) -> CheckResult:
        """``provider.test_credentials`` with a bound client; every failure typed (see :meth:`run`)."""
        return await self.run(
            provider, "test_credentials", settings, credentials, namespace=namespace, deadline=deadline
        )

    async def probe(
        self,
        provider: Provider[Any],
        settings: ProviderSettings,
        credentials: Mapping[str, str],
        *,
        namespace: str = "",
        deadline: float | None = None,
    ) -> CheckResult:
        """``provider.probe`` with a bound client; every failure typed (see :meth:`run`)."""
        return await self.run(provider, "probe", settings, credentials, namespace=namespace, deadline=deadline)

    async def run(
        self,
        provider: Provider[Any],
        call: Literal["test_credentials", "probe"],
        settings: ProviderSettings,
        credentials: Mapping[str, str],
        *,
        namespace: str = "",
        deadline: float | None = None,
    ) -> CheckResult:
        """How the operator calls a provider: bound client, and a typed error whatever fails.

        A provider (a plug-in above all) may fail in its own code, e.g. a ``KeyError`` while
        reading an answer: that becomes a :class:`ProviderProtocolError` naming the provider and
        the exception's type, never its text (which may quote the answer or the credentials), so
        a switch rolls back and a probe reports it like any other failure.
        """
        client = self.bind(provider, settings, credentials, namespace=namespace, deadline=deadline)
        method = provider.test_credentials if call == "test_credentials" else provider.probe
        try:
            result: CheckResult = await method(settings, credentials, client)
        except OneieError:
            raise
        except Exception as exc:
            log.warning("provider %s failed in its own %s code: %s", provider.name, call, type(exc).__name__)
            raise ProviderProtocolError(
                f"{provider.display_name} {call.replace('_', ' ')} failed inside the provider ({type(exc).__name__})"
            ) from None
        if result.capabilities is not None:  # narrowing only: a provider cannot add capabilities here
            result = replace(result, capabilities=frozenset(result.capabilities) & provider.capabilities)
        return result

    def client(
        self,
        provider: str,
        *,
        display_name: str | None = None,
        base_url: str | None = None,
        url_field: str = "url",
        credentials: Mapping[str, str] | None = None,
        namespace: str = "",
        deadline: float | None = None,
    ) -> ProviderClient:
        """A :class:`ProviderClient` from its parts (what :meth:`bind` does for a registered provider)."""
        return ProviderClient(
            self, provider, display_name or provider, base_url, url_field, dict(credentials or {}), namespace, deadline
        )

    # ------------------------------------------------------------------ lifecycle
    def _client_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._closed_in is loop:
            # Closed for good in this loop: a new session now (a probe still running while the
            # operator stops) would never be closed.
            raise ProviderUnreachableError("the operator's provider HTTP client is closed")
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                ssl=self._ssl,
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=KEEPALIVE_SECONDS,
                use_dns_cache=False,  # the guard resolves (and judges) every new connection
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
                max_line_size=MAX_HEADER_BYTES,
                max_field_size=MAX_HEADER_BYTES,
                max_headers=MAX_HEADERS,
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the session (when called on its own event loop; another loop's is just dropped). A
        call made later in this loop raises :class:`ProviderUnreachableError`; another loop gets a new session."""
        session, self._session = self._session, None
        self._closed_in = asyncio.get_running_loop()
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()

    async def __aenter__(self) -> ProviderHTTP:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ one call
    async def _call(self, client: ProviderClient, request: _Request) -> ProviderResponse:
        started = time.perf_counter()
        outcome = "Error"
        try:
            secrets = _collect_secrets(client.credentials, request.secrets, request.headers, request.auth)
            response = await self._send(client, request, secrets, started)
            outcome = "Success"
            return response
        except OneieError as exc:
            outcome = exc.reason
            raise
        except asyncio.CancelledError:
            # Cut by the caller's own timeout (a probe's: the request armed no timer of its own)
            # is a timeout; any other cancellation (the operator stopping) is not.
            outcome = "ProviderTimeout" if _past(client.deadline) else "Cancelled"
            raise
        finally:
            if self.on_call is not None:
                try:
                    self.on_call(
                        client.provider, request.call, outcome, time.perf_counter() - started, client.namespace
                    )
                except Exception:  # a broken metrics hook must not break provider calls
                    log.exception("on_call hook failed")

    def _checked(self, url: str, url_field: str) -> tuple[str, yarl.URL]:
        checked = self._checked_urls.get(url)
        if checked is None:  # the policy is fixed: a URL that passed once passes again (connect time is checked anew)
            self.policy.check_url(url, field=url_field)
            parsed = yarl.URL(url, encoded=True)
            checked = (parsed.host or "", parsed)
            self._checked_urls.put(url, checked)
        return checked

    def _request_headers(self, client: ProviderClient, request: _Request) -> dict[str, str]:
        merged = {"User-Agent": self._user_agent, "Accept-Encoding": "identity"}
        if request.body == "json":
            merged["Accept"] = "application/json"
        if request.json is not None:
            merged["Content-Type"] = "application/json"
        merged.update(request.headers or {})
        if request.auth is not None:
            user, password = request.auth
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            merged["Authorization"] = f"Basic {token}"
        for name, value in merged.items():
            if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
                fields = [
                    f
                    for f, v in client.credentials.items()
                    if v and v.strip() and v.strip() in value and not _HEADER_VALUE.fullmatch(v.strip())
                ] or [f for f, v in client.credentials.items() if v and not _HEADER_VALUE.fullmatch(v.strip())]
                if fields:
                    raise _bad_credential(fields)
                raise CredentialsError(
                    f"{client.display} request header {name if _HEADER_NAME.fullmatch(name) else '(invalid name)'} "
                    "has a control or non-ASCII character, which HTTP cannot carry; expected printable ASCII"
                )
        return merged

    async def _send(
        self, client: ProviderClient, request: _Request, secrets: list[str], started: float
    ) -> ProviderResponse:
        display = client.display
        host, target = self._checked(request.url, request.url_field)
        merged = self._request_headers(client, request)
        data = jsonlib.dumps(request.json, separators=(",", ":")).encode() if request.json is not None else None
        deadline, limit, url_field = request.deadline, request.limit, request.url_field
        answered = False  # the answer's status line and headers came
        outer = client.deadline
        # The caller's timeout ends the call by then anyway: no timer of our own when it comes first.
        timer: contextlib.AbstractAsyncContextManager[object] = (
            asyncio.timeout(deadline)
            if outer is None or outer > asyncio.get_running_loop().time() + deadline
            else contextlib.nullcontext()
        )
        try:
            async with timer:
                try:
                    response = await self._client_session().request(
                        request.method,
                        target,
                        params=request.params,
                        headers=merged,
                        data=data,
                        allow_redirects=False,
                    )
                except aiohttp.InvalidURL:
                    # A host aiohttp will not parse, e.g. the decimal IPv4 form 2130706433 (= 127.0.0.1),
                    # which getaddrinfo would resolve: judge what it resolves to, then refuse the form.
                    await self._resolver.resolve(host, 0)
                    raise ProviderUnreachableError(
                        f"cannot reach {display} at {host}: not a host name or IP address in canonical form"
                    ) from None
                answered = True
                try:
                    status = response.status
                    if status in request.expect:
                        value = await self._read_success(response, request.body, limit, display, host, secrets)
                        return ProviderResponse(status, response.headers, value, time.perf_counter() - started)
                    raw = await self._read(response, ERROR_BODY_BYTES, display, host, truncate=True)
                finally:
                    if response.content.at_eof():
                        response.release()  # back to the pool, kept alive
                    else:
                        response.close()  # not read to the end (a limit, an error): drop the connection
        except DestinationForbiddenError as exc:  # refused at connect time: name the spec field
            raise DestinationForbiddenError([FieldIssue(url_field, issue.message) for issue in exc.issues]) from None
        except OneieError:
            raise
        except TimeoutError:
            raise ProviderTimeoutError(
                f"{display} at {host} "
                + ("timed out sending the rest of its answer" if answered else "did not answer in time")
                + f" (deadline {deadline:g}s)"
            ) from None
        except Exception as exc:  # whatever a library raises: typed, and never with its text
            raise _failure(exc, display, host) from None
        raise self._error_for_status(response, raw, display, host, secrets, request)

    async def _read_success(
        self,
        response: aiohttp.ClientResponse,
        body: BodyMode,
        limit: int,
        display: str,
        host: str,
        secrets: list[str],
    ) -> Any:
        if body == "none":
            return None
        if not 200 <= response.status < 300:
            # An expected non-success status (e.g. a 404 the caller handles): best effort only.
            raw = await self._read(response, ERROR_BODY_BYTES, display, host, truncate=True)
            text = raw.decode(response.charset or "utf-8", errors="replace")
            try:
                return jsonlib.loads(text) if body == "json" else text
            except ValueError:
                return None
        raw = await self._read(response, limit, display, host, truncate=False)
        text = raw.decode(_charset(response), errors="replace")
        if body == "text":
            return text
        try:
            return jsonlib.loads(text)
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            what = "an empty body" if not raw.strip() else f"a body that is not JSON ({kind})"
            raise ProviderProtocolError(
                sanitize(f"{display} answered HTTP {response.status} with {what}", secrets)
            ) from None

    async def _read(
        self, response: aiohttp.ClientResponse, limit: int, display: str, host: str, *, truncate: bool
    ) -> bytes:
        """The body, decoded, at most ``limit`` bytes (``truncate``: cut there; else refuse more)."""
        encodings = _content_encodings(response.headers)
        if isinstance(encodings, str):
            raise ProviderProtocolError(
                f"{display} at {host} answered with Content-Encoding {encodings}, which is not accepted "
                "(the operator asks for identity and inflates only gzip or deflate, at most two layers)"
            )
        too_large = (
            f"{display} at {host}: the answer is too large (more than {limit} bytes"
            f"{' once decoded' if encodings else ''}); stopped reading"
        )
        declared = response.content_length
        if declared is not None and declared > limit and (encodings or not truncate):
            raise ProviderProtocolError(
                f"{display} at {host}: the answer is too large "
                f"({declared} bytes declared, more than the limit of {limit})"
            )
        if not encodings and declared is not None and declared <= limit:
            # Identity with a declared length within the limit: aiohttp reads exactly that much.
            return await response.read()
        decoder = _Decoder(encodings, limit) if encodings else None
        chunks: list[bytes] = []
        total = 0
        try:
            async for chunk in response.content.iter_any():
                if decoder is not None:
                    chunk = decoder.feed(chunk)
                total += len(chunk)
                if total > limit:
                    if truncate and decoder is None:
                        chunks.append(chunk[: len(chunk) - (total - limit)])
                        break
                    raise _TooLarge
                chunks.append(chunk)
        except _TooLarge:
            raise ProviderProtocolError(too_large) from None
        except zlib.error:
            raise ProviderProtocolError(
                f"{display} at {host} answered with a {', '.join(encodings)} body that cannot be decoded"
            ) from None
        return b"".join(chunks)

    def _error_for_status(
        self,
        response: aiohttp.ClientResponse,
        raw: bytes,
        display: str,
        host: str,
        secrets: list[str],
        request: _Request,
    ) -> OneieError:
        status = response.status
        parsed: Any = None
        text = raw.decode(_charset(response), errors="replace")
        content_type = response.headers.get("Content-Type", "").lower()
        try:
            parsed = jsonlib.loads(text) if text.strip() else None
        except ValueError:
            # Plain-text errors are useful; HTML error pages are noise.
            parsed = text if content_type.startswith("text/plain") else None
        try:
            detail = request.describe(status, parsed)
        except Exception:  # a describer must never turn an error into a crash
            detail = None
        answer = f"HTTP {status}" + (f" ({sanitize(detail, secrets, 240)})" if detail else "")

        def msg(text: str) -> str:
            return sanitize(text, secrets)

        if status in request.rate_limit_statuses:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = f"; retry after {retry_after:g}s" if retry_after is not None else ""
            return ProviderRateLimitedError(
                msg(f"{display} is rate limiting requests: {answer}{wait}"), retry_after=retry_after
            )
        if status == 401:
            return CredentialsRejectedError(msg(f"{display} rejected the credentials: {answer}"))
        if status == 403:
            return CredentialsRejectedError(msg(f"{display} refused access with these credentials: {answer}"))
        if status >= 500:
            return ProviderServerError(msg(f"{display} at {host} has a server error: {answer}"))
        if 300 <= status < 400:
            return ProviderProtocolError(
                msg(
                    f"{display} at {host} answered {answer}, a redirect, which is not followed: configure the final URL"
                )
            )
        return ProviderProtocolError(msg(f"{display} at {host} gave an unexpected answer: {answer}"))


#: Timers fire within the event loop's clock granularity (a millisecond on uvloop) of their time.
_TIMER_SLACK = 0.005


def _past(deadline: float | None) -> bool:
    """Whether the loop time has reached ``deadline`` (None: there is none)."""
    return deadline is not None and asyncio.get_running_loop().time() >= deadline - _TIMER_SLACK


def _charset(response: aiohttp.ClientResponse) -> str:
    charset = response.charset or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset


def _bad_credential(fields: Sequence[str]) -> CredentialsError:
    names = ", ".join(sorted(set(fields)))
    return CredentialsError(
        f"the credentials Secret's {names} contains a control character (such as a line break) or a "
        "non-ASCII character, which cannot be sent in an HTTP header; expected the value exactly as the "
        "provider shows it (printable ASCII)"
    )


def _collect_secrets(
    credentials: Mapping[str, str],
    secrets: Iterable[str | None],
    headers: Mapping[str, str] | None,
    auth: tuple[str, str] | None,
) -> list[str]:
    found = [v for v in credentials.values() if v]
    found += [v.strip() for v in credentials.values() if v and v.strip() != v]
    found += [s for s in secrets if s]
    for name, value in (headers or {}).items():
        if name.lower() in _SECRET_HEADERS and value:
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                found.append(token.strip())
    if auth is not None and auth[1]:
        found.append(auth[1])
        found.append(f"{auth[0]}:{auth[1]}")
    return found


class ProviderClient:
    """What a provider's calls go through: a :class:`ProviderHTTP` bound to one provider and one
    connection's credentials (see :meth:`ProviderHTTP.bind`)."""

    __slots__ = ("_http", "base_url", "credentials", "deadline", "display", "namespace", "provider", "url_field")

    def __init__(
        self,
        http: ProviderHTTP,
        provider: str,
        display: str,
        base_url: str | None,
        url_field: str,
        credentials: Mapping[str, str],
        namespace: str = "",
        deadline: float | None = None,
    ) -> None:
        self._http = http
        #: The provider's name: the ``provider`` label of every call's metric.
        self.provider = provider
        #: The provider's display name, used in messages.
        self.display = display
        #: The connection's base URL (a ``path`` starting with ``/`` is appended to it).
        self.base_url = base_url
        #: The spec field the base URL came from, named by destination errors.
        self.url_field = url_field
        #: The connection's credentials: removed from every message, named (never shown) when unusable.
        self.credentials = credentials
        #: The tenant's namespace: the ``namespace`` label of every call's metric ("" when unbound).
        self.namespace = namespace
        #: When the caller's own timeout ends the whole call (event-loop time, ``loop.time()``), if
        #: it has one: a request whose own deadline would come later arms no timer of its own.
        self.deadline = deadline

    def url(self, path: str) -> str:
        """``path`` (``/version``) under the base URL, or ``path`` itself when it is an absolute URL."""
        if path.startswith("/"):
            if self.base_url is None:
                raise ValueError("this client has no base URL: pass an absolute URL")
            return f"{self.base_url}{path}"
        return path

    async def request(
        self,
        method: str,
        path: str,
        *,
        call: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        expect: Sequence[int] = (200,),
        body: BodyMode = "json",
        timeout: float | None = None,
        max_response_bytes: int | None = None,
        secrets: Iterable[str | None] = (),
        url_field: str | None = None,
        rate_limit_statuses: Sequence[int] = (429,),
        describe_error: ErrorDescriber | None = None,
    ) -> ProviderResponse:
        """Send one request and return the answer if its status is in ``expect``, else raise.

        ``path`` is appended to the bound base URL when it starts with ``/``; an absolute URL is
        used as it is. ``call`` names the call for the metric (``"test_credentials"``, ``"probe"``).
        ``body`` says what to do with a 2xx answer: ``"json"`` (parse; not JSON is a
        :class:`ProviderProtocolError`), ``"text"`` or ``"none"`` (never read: the status is the
        answer). An expected non-2xx status (``expect=(200, 404)``) is returned with a best-effort
        body (``None`` when unreadable). ``auth`` is HTTP Basic (user, password). ``secrets`` adds
        values to remove from messages besides the bound credentials (e.g. a derived form);
        ``Authorization``/``apikey`` header values and the ``auth`` password are added
        automatically. ``describe_error`` turns an error body into ``"code: message"`` (default:
        :func:`describe_error_body`).
        """
        http = self._http
        call_request = _Request(
            method=method,
            url=self.url(path),
            call=call,
            headers=headers,
            params=params,
            json=json,
            auth=auth,
            expect=expect,
            body=body,
            deadline=http.timeout if timeout is None else timeout,
            limit=http.max_response_bytes if max_response_bytes is None else max_response_bytes,
            secrets=secrets,
            url_field=url_field or self.url_field,
            rate_limit_statuses=rate_limit_statuses,
            describe=describe_error or describe_error_body,
        )
        return await http._call(self, call_request)
