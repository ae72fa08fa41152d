"""An ``httpx`` transport on ``aiohttp``, with the destination policy checked at connect time.

:class:`~oneie_operator.providers.http.ProviderHTTP` keeps ``httpx``'s request/response API (limits,
streaming reads, error mapping); this transport moves the bytes. It exists for speed: in a local
measurement (``benchmarks/switch.py`` and a client/server pair on 127.0.0.1), a request through
httpcore's pool cost ~450 µs of CPU alone and over 1 ms with 20 in flight (its pool rescans every
connection and waiting request per request), through ``aiohttp`` ~100 µs, and the ``httpx`` client
layer on top ~80 µs. The switch's provider calls (credential test, health gate) run 100 at a time.

The guard is the same as :class:`~oneie_operator.providers.netguard.GuardedNetworkBackend`'s:
the connector's resolver resolves the name itself, refuses it if **any** address is forbidden,
and hands only checked addresses to the connector, which connects to those IPs (never to the
name again: DNS rebinding cannot slip in between); a literal IP host (which ``aiohttp`` does not
resolve) is checked here before the request. TLS verifies the URL's host name (SNI and
certificate) as usual. No proxies (``trust_env`` off), no redirects, no cookies, no automatic
decompression (``httpx`` decodes, after our size limits). HTTP/1.1 only.

Errors become the ``httpx`` exceptions ``ProviderHTTP`` already maps: ``ConnectError`` (refused,
DNS, TLS), ``ConnectTimeout``/``ReadTimeout``, ``RemoteProtocolError``/``ReadError`` (reset, cut
answers); a policy refusal stays a :class:`~oneie_operator.errors.DestinationForbiddenError`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import aiohttp.abc
import httpx
import yarl

from oneie_operator.providers.netguard import (
    METADATA_HOSTNAMES,
    DestinationPolicy,
    Resolver,
    _default_resolver,
    _ip_literal,
)

CHUNK = 65536


class _GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolve with our resolver, check every address, return only checked ones."""

    def __init__(self, policy: DestinationPolicy, resolve: Resolver) -> None:
        self.policy = policy
        self._resolve = resolve

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        name = host.rstrip(".").lower()
        if name in METADATA_HOSTNAMES:
            self.policy.check_url(f"https://{name}/")  # raises with the metadata explanation
        literal = _ip_literal(name)
        addresses = [str(literal)] if literal is not None else list(await self._resolve(host, port))
        if not addresses:
            raise OSError(f"cannot resolve {host}: no addresses")
        for address in addresses:  # every address must pass, not just the one we would use
            self.policy.check_address(address, host=host)
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


class _AnswerStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
        except aiohttp.ClientPayloadError as exc:
            raise httpx.RemoteProtocolError(f"the answer was cut off: {type(exc).__name__}") from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise httpx.ReadTimeout("timed out reading the answer") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(_describe(exc)) from None

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # back to the pool, kept alive
        else:
            self._response.close()  # not read to the end (a limit, an error): drop the connection


def _describe(exc: BaseException) -> str:
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        return os_error.strerror.lower()
    return str(exc) or type(exc).__name__


class GuardedAiohttpTransport(httpx.AsyncBaseTransport):
    """``httpx`` transport over one ``aiohttp`` session whose connector only reaches checked IPs."""

    def __init__(
        self,
        policy: DestinationPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.policy = policy
        self._ssl: ssl.SSLContext = httpx.create_ssl_context(verify=verify, trust_env=False)
        # Idle connections are kept 15 s (aiohttp's default; httpx's is 5 s): a credential test and
        # the health gate of a switch, or a switch and its rollback, reuse them.
        limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=15.0)
        self._limit = limits.max_connections or 0
        self._keepalive = limits.keepalive_expiry or 15.0
        self._resolver = _GuardedResolver(policy, resolver or _default_resolver)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                resolver=self._resolver,
                ssl=self._ssl,
                limit=self._limit,
                limit_per_host=0,
                keepalive_timeout=self._keepalive,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        literal = _ip_literal(host.rstrip(".").lower())
        if literal is not None:  # aiohttp connects to literal IPs without asking the resolver
            self.policy.check_address(str(literal), host=host)
        timeouts = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read")
        )
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        body = await request.aread()
        try:
            response = await self._client().request(
                request.method,
                yarl.URL(str(request.url), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
            )
        except aiohttp.ClientConnectorDNSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {_describe(exc)}") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise httpx.ConnectError(f"TLS certificate verification failed: {exc.certificate_error}") from None
        except aiohttp.ClientSSLError as exc:
            raise httpx.ConnectError(f"TLS handshake failed: {_describe(exc)}") from None
        except aiohttp.InvalidURL:
            # A host aiohttp will not parse, e.g. the decimal IPv4 form 2130706433 (= 127.0.0.1),
            # which getaddrinfo would resolve: judge what it resolves to, then refuse the form.
            await self._resolver.resolve(host, request.url.port or 0)
            raise httpx.ConnectError(f"{host} is not a host name or IP address in canonical form") from None
        except aiohttp.ConnectionTimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host} timed out") from None
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(_describe(exc)) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise httpx.ReadTimeout("timed out waiting for the answer") from None
        except aiohttp.ServerDisconnectedError:
            raise httpx.RemoteProtocolError("the server closed the connection without answering") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(_describe(exc)) from None
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_AnswerStream(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode("latin-1")},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()
