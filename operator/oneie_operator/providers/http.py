"""The one way providers talk HTTP: :class:`ProviderHTTP`.

It wraps one ``httpx.AsyncClient`` built on
:class:`~oneie_operator.providers.aiotransport.GuardedAiohttpTransport` by default (or the httpcore
:class:`~oneie_operator.providers.netguard.GuardedTransport` the health probes' pool uses): the
destination policy checked on the URL *and* on the address actually connected to; no environment
proxies; redirects not followed; no cookies kept. It adds what every provider call needs:

* a deadline for the whole call (connect, TLS, headers and body), not just per socket operation;
* a size limit: the body is streamed and reading stops at ``max_response_bytes`` (default 1 MiB);
* failures mapped onto :mod:`oneie_operator.errors`:

  ============================================  =====================================
  DNS failure, refused/reset connection         :class:`ProviderUnreachableError`
  no complete answer within the deadline        :class:`ProviderTimeoutError`
  401 / 403                                     :class:`CredentialsRejectedError`
  429 (and e.g. Notion's 529)                   :class:`ProviderRateLimitedError` (``retry_after``)
  5xx                                           :class:`ProviderServerError`
  redirect, other 4xx, not JSON, too large      :class:`ProviderProtocolError`
  forbidden destination                         :class:`DestinationForbiddenError`
  ============================================  =====================================

* messages built from a provider's answer carry the provider's own error code and message, pass
  through :func:`~oneie_operator.providers.redaction.sanitize` (every secret removed in all its
  encodings, control characters dropped, 300 characters at most) and never include request headers;
* every call is reported to ``on_call(provider, call, outcome, seconds)`` — ``outcome`` is
  ``"Success"`` or the stable ``reason`` of the error (``"CredentialsRejected"``, ...), a bounded set
  fit for metric labels. The operator wires it to Prometheus; providers stay free of it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Literal

import httpx

from oneie_operator.errors import (
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
from oneie_operator.providers.aiotransport import GuardedAiohttpTransport
from oneie_operator.providers.netguard import DestinationPolicy, GuardedTransport
from oneie_operator.providers.redaction import redact, sanitize

__all__ = [
    "DEFAULT_MAX_RESPONSE_BYTES",
    "DEFAULT_TIMEOUT",
    "ErrorDescriber",
    "OnCall",
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

#: ``on_call(provider, call, outcome, seconds)``.
OnCall = Callable[[str, str, str, float], None]
#: ``describe(status, body) -> "code: message"``; ``body`` is parsed JSON, text, or None.
ErrorDescriber = Callable[[int, Any], "str | None"]

BodyMode = Literal["json", "text", "none"]

_NETWORK_PHRASES: dict[type[Exception], str] = {
    httpx.ConnectError: "the connection failed",
    httpx.ReadError: "the connection was reset while reading the answer",
    httpx.WriteError: "the connection was reset while sending the request",
    httpx.CloseError: "the connection failed while closing",
    httpx.RemoteProtocolError: "the server closed the connection without a complete answer",
}

_SECRET_HEADERS = ("authorization", "proxy-authorization", "apikey", "x-api-key", "cookie")


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
    headers: httpx.Headers
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


#: How many URLs that passed the destination policy are remembered (their check is skipped).
CHECKED_URLS = 4096


class _NoCookies(httpx.Cookies):
    """A cookie store that never stores: one client serves every tenant, so a cookie one provider
    sets must never ride along with another tenant's request to the same host."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` without cookies (and without the cost of reading them on every answer)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


_NO_COOKIES = _NoCookies()


class ProviderHTTP:
    """HTTP for providers: guarded destinations, deadlines, size limits, error mapping, counting.

    One instance owns one ``httpx.AsyncClient``; :meth:`for_provider` gives views that share it.
    Use as an async context manager or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        policy: DestinationPolicy | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_call: OnCall | None = None,
        provider: str = "unknown",
        display_name: str | None = None,
        transport: GuardedAiohttpTransport | GuardedTransport | None = None,
        user_agent: str | None = None,
        _client: httpx.AsyncClient | None = None,
        _checked_urls: LRU[str, str] | None = None,
    ) -> None:
        self.policy = policy or (transport.policy if transport is not None else DestinationPolicy())
        if transport is not None and transport.policy != self.policy:
            raise ValueError("the transport's destination policy differs from ProviderHTTP's policy")
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.on_call = on_call
        self.provider = provider
        self.display_name = display_name or provider
        self._owns_client = _client is None
        self._client = _client or _CookielessClient(
            transport=transport or GuardedAiohttpTransport(self.policy),
            trust_env=False,
            follow_redirects=False,
            headers={"User-Agent": user_agent or _user_agent()},
        )
        self._checked_urls: LRU[str, str] = _checked_urls if _checked_urls is not None else LRU(CHECKED_URLS)

    def for_provider(
        self, provider: str, *, display_name: str | None = None, on_call: OnCall | None = None
    ) -> ProviderHTTP:
        """A view for one provider (its name labels every call) sharing this client."""
        return ProviderHTTP(
            policy=self.policy,
            timeout=self.timeout,
            max_response_bytes=self.max_response_bytes,
            on_call=on_call if on_call is not None else self.on_call,
            provider=provider,
            display_name=display_name,
            _client=self._client,
            _checked_urls=self._checked_urls,
        )

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> ProviderHTTP:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ requests
    async def request_json(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        expect: Sequence[int] = (200,),
        call: str = "request",
        **options: Any,
    ) -> tuple[int, Any, float]:
        """``(status, parsed JSON, seconds)``; see :meth:`request` for ``options``."""
        response = await self.request(
            method, url, headers=headers, json=json, auth=auth, expect=expect, call=call, **options
        )
        return response.status, response.body, response.seconds

    async def request(
        self,
        method: str,
        url: str,
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
        url_field: str = "url",
        rate_limit_statuses: Sequence[int] = (429,),
        describe_error: ErrorDescriber | None = None,
        provider: str | None = None,
        display_name: str | None = None,
    ) -> ProviderResponse:
        """Send one request and return the answer if its status is in ``expect``, else raise.

        ``body`` says what to do with a 2xx answer: ``"json"`` (parse; not JSON is a
        :class:`ProviderProtocolError`), ``"text"`` or ``"none"`` (never read: the status is the
        answer). An expected non-2xx status (``expect=(200, 404)``) is returned with a best-effort
        body (``None`` when unreadable).

        ``call`` names the call for the counter (``"test_credentials"``, ``"probe"``...).
        ``secrets`` are removed from every message; values of ``Authorization``, ``apikey`` and
        similar headers and the ``auth`` password are added automatically.
        ``url_field`` names the spec field the URL came from, for destination errors.
        ``describe_error`` turns an error body into ``"code: message"`` (default:
        :func:`describe_error_body`).
        """
        provider = provider or self.provider
        display = display_name or (self.display_name if provider == self.provider else provider)
        started = time.perf_counter()
        outcome = "Error"
        try:
            all_secrets = self._collect_secrets(secrets, headers, auth)
            response = await self._request(
                method,
                url,
                headers=headers,
                params=params,
                json=json,
                auth=auth,
                expect=expect,
                body=body,
                deadline=self.timeout if timeout is None else timeout,
                limit=self.max_response_bytes if max_response_bytes is None else max_response_bytes,
                secrets=all_secrets,
                url_field=url_field,
                rate_limit_statuses=rate_limit_statuses,
                describe=describe_error or describe_error_body,
                display=display,
                started=started,
            )
            outcome = "Success"
            return response
        except OneieError as exc:
            outcome = exc.reason
            raise
        except asyncio.CancelledError:
            outcome = "Cancelled"
            raise
        finally:
            if self.on_call is not None:
                try:
                    self.on_call(provider, call, outcome, time.perf_counter() - started)
                except Exception:  # a broken metrics hook must not break provider calls
                    log.exception("on_call hook failed")

    @staticmethod
    def _collect_secrets(
        secrets: Iterable[str | None],
        headers: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
    ) -> list[str]:
        found = [s for s in secrets if s]
        for name, value in (headers or {}).items():
            if name.lower() in _SECRET_HEADERS and value:
                found.append(value)
                scheme, _, token = value.partition(" ")
                if token and scheme.isalpha():
                    found.append(token.strip())
        if auth is not None and auth[1]:
            found.append(auth[1])
        return found

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        json: Any,
        auth: tuple[str, str] | None,
        expect: Sequence[int],
        body: BodyMode,
        deadline: float,
        limit: int,
        secrets: list[str],
        url_field: str,
        rate_limit_statuses: Sequence[int],
        describe: ErrorDescriber,
        display: str,
        started: float,
    ) -> ProviderResponse:
        host = self._checked_urls.get(url)
        if host is None:  # the policy is fixed: a URL that passed once passes again (connect time is checked anew)
            self.policy.check_url(url, field=url_field)
            host = httpx.URL(url).host
            self._checked_urls.put(url, host)
        merged_headers = {"Accept": "application/json"} if body == "json" else {}
        merged_headers.update(headers or {})
        try:
            async with asyncio.timeout(deadline):
                request = self._client.build_request(
                    method,
                    url,
                    headers=merged_headers,
                    params=params,
                    json=json,
                    timeout=httpx.Timeout(deadline),
                )
                response = await self._client.send(request, stream=True, auth=httpx.BasicAuth(*auth) if auth else None)
                try:
                    status = response.status_code
                    if status in expect:
                        data = await self._read_success(response, body, limit, display, secrets)
                        return ProviderResponse(status, response.headers, data, time.perf_counter() - started)
                    raw = await self._read(response, ERROR_BODY_BYTES, display, truncate=True)
                finally:
                    await response.aclose()
        except DestinationForbiddenError as exc:
            raise DestinationForbiddenError([FieldIssue(url_field, issue.message) for issue in exc.issues]) from None
        except OneieError:
            raise
        except TimeoutError:
            raise ProviderTimeoutError(f"{display} at {host} did not answer within {deadline:g}s") from None
        except httpx.TimeoutException as exc:
            phase = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for the answer"
            raise ProviderTimeoutError(f"{display} at {host} timed out {phase} (deadline {deadline:g}s)") from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            detail = sanitize(str(exc) or _NETWORK_PHRASES.get(type(exc), type(exc).__name__), secrets, 160)
            raise ProviderUnreachableError(f"cannot reach {display} at {host}: {detail}") from None
        except httpx.HTTPError as exc:
            detail = sanitize(str(exc) or type(exc).__name__, secrets, 160)
            raise ProviderProtocolError(f"cannot talk to {display} at {host}: {detail}") from None
        raise self._error_for_status(response, raw, display, host, secrets, rate_limit_statuses, describe)

    async def _read_success(
        self, response: httpx.Response, body: BodyMode, limit: int, display: str, secrets: list[str]
    ) -> Any:
        if body == "none":
            return None
        if not 200 <= response.status_code < 300:
            # An expected non-success status (e.g. a 404 the caller handles): best effort only.
            raw = await self._read(response, ERROR_BODY_BYTES, display, truncate=True)
            text = raw.decode(response.encoding or "utf-8", errors="replace")
            try:
                return jsonlib.loads(text) if body == "json" else text
            except ValueError:
                return None
        raw = await self._read(response, limit, display, truncate=False)
        text = raw.decode(response.encoding or "utf-8", errors="replace")
        if body == "text":
            return text
        try:
            return jsonlib.loads(text)
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            what = "an empty body" if not raw.strip() else f"a body that is not JSON ({kind})"
            raise ProviderProtocolError(
                sanitize(f"{display} answered HTTP {response.status_code} with {what}", secrets)
            ) from None

    async def _read(self, response: httpx.Response, limit: int, display: str, *, truncate: bool) -> bytes:
        declared = response.headers.get("content-length", "")
        if not truncate and declared.isdigit() and int(declared) > limit:
            raise ProviderProtocolError(
                f"{display} answered with {int(declared)} bytes, more than the limit of {limit}"
            )
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (total - limit)])
                    break
                raise ProviderProtocolError(f"{display} answered with more than {limit} bytes; stopped reading")
            chunks.append(chunk)
        return b"".join(chunks)

    def _error_for_status(
        self,
        response: httpx.Response,
        raw: bytes,
        display: str,
        host: str,
        secrets: list[str],
        rate_limit_statuses: Sequence[int],
        describe: ErrorDescriber,
    ) -> OneieError:
        status = response.status_code
        parsed: Any = None
        text = raw.decode(response.encoding or "utf-8", errors="replace")
        content_type = response.headers.get("content-type", "").lower()
        try:
            parsed = jsonlib.loads(text) if text.strip() else None
        except ValueError:
            # Plain-text errors are useful; HTML error pages are noise.
            parsed = text if content_type.startswith("text/plain") else None
        try:
            detail = describe(status, parsed)
        except Exception:  # a describer must never turn an error into a crash
            detail = None
        answer = f"HTTP {status}" + (f" ({sanitize(detail, secrets, 240)})" if detail else "")

        def msg(text: str) -> str:
            return sanitize(text, secrets)

        if status in rate_limit_statuses:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
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
