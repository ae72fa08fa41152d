"""HTTP clients for probes: one small client per probe slot, checked out per probe.

Measured by ``benchmarks/probes.py`` (DESIGN §7 warned about it): one shared httpx client with a
large pool degrades at high concurrency to one host — httpcore rescans its whole queue on every
request event, and above its keep-alive limit it reopens a TCP connection per probe, so probes
measure time spent queueing in the client and healthy backends look slow. One client with a
single connection per slot gave ~2.7 times the throughput at ~38% of the CPU, with no queueing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import httpx

from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy, GuardedTransport


class ProbeClientPool:
    """Up to ``size`` clients (created on demand), handed out last-in first-out."""

    def __init__(
        self,
        size: int,
        policy: DestinationPolicy,
        *,
        timeout: float,
        max_response_bytes: int,
        on_call: Callable[[str, str, str, float], None] | None = None,
    ) -> None:
        self._size = size
        self._policy = policy
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._on_call = on_call
        self._ssl = httpx.create_ssl_context(trust_env=False)  # one TLS context shared by all
        self._free: asyncio.LifoQueue[ProviderHTTP] = asyncio.LifoQueue()
        self._all: list[ProviderHTTP] = []

    def _new(self) -> ProviderHTTP:
        transport = GuardedTransport(
            self._policy, verify=self._ssl, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
        )
        client = ProviderHTTP(
            policy=self._policy,
            timeout=self._timeout,
            max_response_bytes=self._max_response_bytes,
            on_call=self._on_call,
            transport=transport,
        )
        self._all.append(client)
        return client

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[ProviderHTTP]:
        if self._free.empty() and len(self._all) < self._size:
            http = self._new()
        else:
            http = await self._free.get()
        try:
            yield http
        finally:
            self._free.put_nowait(http)

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._all), return_exceptions=True)
        self._all.clear()
