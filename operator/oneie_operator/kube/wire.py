"""HTTP/1.1 keep-alive connections to the API server: the transport of :class:`kube.rest.KubeREST`.

The operator's own API requests (a switch's binding patch and Event, Kopf's status patches) are
small JSON requests to one counterpart, the API server its kubeconfig or service account names.
``aiohttp``'s client spends most of their CPU in its URL, header, cookie, tracing, redirect and
timer machinery: ``benchmarks/kube_client.py`` measures :class:`KubeREST` over this transport at
0.43-0.58 of the CPU per request of the same work through ``aiohttp`` (2026-12-07: 113-131 µs
against 240-273 µs; the rest is the system calls and the JSON).

What it does, and no more: ``Content-Length`` requests on a pool of keep-alive connections (at most
``limit`` at once; idle ones closed after ``idle_seconds``, before the API server would), TLS with
the configured context, one deadline per request (connecting, sending and the whole answer). The
answer is parsed by ``httptools`` (llhttp, Node.js's HTTP parser; the one uvicorn uses), which also
undoes chunked transfer encoding. No redirects, no cookies, no compression (none is asked for),
no proxy (:class:`KubeREST` keeps ``aiohttp`` for a kubeconfig with ``proxy-url``). A request whose
reused connection turns out closed by the server before any answer is sent again on a new
connection when its method is idempotent (as ``aiohttp`` does).

Errors: :class:`WireError` (the connection failed or closed, the answer was malformed) and
:class:`TimeoutError`; neither carries a request or response body.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

#: Closed when idle this long: before the API server closes it (Go's default keep-alive is longer).
IDLE_SECONDS = 15.0
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class WireError(Exception):
    """The connection failed, closed early, or the answer was not HTTP/1.1."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.chunks: list[bytes] = []
        self.status = 0
        self.reason = ""
        self.keep_alive = False
        self.answered = False  # a byte of the answer arrived
        self.lost = False
        self.idle_since = 0.0

    def begin(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        self.chunks, self.status, self.reason, self.keep_alive, self.answered = [], 0, "", False, False
        self.waiter = loop.create_future()
        return self.waiter

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport (create_connection)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(WireError("the API server's answer is not valid HTTP/1.1"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(WireError("the connection closed before the whole answer"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Wire:
    """Requests to one origin (``scheme://host:port`` and a path prefix) on one event loop."""

    def __init__(
        self,
        url: str,
        ssl_context: ssl.SSLContext | bool,
        *,
        timeout: float,
        connect_timeout: float,
        limit: int = 100,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the API server's URL must be http(s)://host[:port][/prefix]")
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl_context if isinstance(ssl_context, ssl.SSLContext) else ssl.create_default_context()
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._host_header = parts.netloc.rpartition("@")[2]
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._idle_seconds = idle_seconds
        self._closed = False

    async def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> tuple[int, str, bytes]:
        """Send one request (``target``: path and query, after the URL's prefix); the answer's
        status, reason phrase and body."""
        head = self._head(method, target, headers, body)
        async with asyncio.timeout(self._timeout), self._slots:
            for attempt in (1, 2):
                connection, reused = await self._connection()
                try:
                    return await self._exchange(connection, head, body)
                except WireError:
                    if attempt == 1 and reused and not connection.answered and method in _IDEMPOTENT:
                        continue  # the server had closed the idle connection: once more, on a new one
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
        lines = [f"{method} {self._prefix}{target} HTTP/1.1", f"Host: {self._host_header}"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise WireError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _exchange(self, connection: _Connection, head: bytes, body: bytes | None) -> tuple[int, str, bytes]:
        done = False
        try:
            waiter = connection.begin(asyncio.get_running_loop())
            assert connection.transport is not None
            connection.transport.write(head + body if body else head)
            await waiter
            done = True
            return connection.status, connection.reason, b"".join(connection.chunks)
        finally:
            if done and connection.keep_alive and not connection.lost and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.append(connection)
            else:
                connection.close()  # failed, cancelled (a deadline) or not kept alive: never reused

    async def _connection(self) -> tuple[_Connection, bool]:
        if self._closed:
            raise WireError("the API client is closed")
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if connection.lost or transport is None or transport.is_closing():
                continue
            if now - connection.idle_since > self._idle_seconds:
                connection.close()
                continue
            return connection, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, connection = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
        except (OSError, ssl.SSLError) as exc:
            raise WireError(f"cannot connect to {self._host_header}: {type(exc).__name__}") from None
        connection.transport = transport  # uvloop may call connection_made only later
        return connection, False

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


__all__ = ["IDLE_SECONDS", "Wire", "WireError"]
