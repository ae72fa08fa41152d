"""Fixtures for the provider tests: fake provider servers and a ProviderHTTP that may reach them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.registry import ProviderRegistry
from oneie_operator.testing.provider_servers import ProviderServers

#: The fake servers listen on 127.0.0.1 over plain http.
LOCAL_POLICY = DestinationPolicy(allow_loopback=True, allow_plain_http=True)


@pytest.fixture
async def servers() -> AsyncIterator[ProviderServers]:
    async with ProviderServers() as running:
        yield running


@pytest.fixture
def calls() -> list[tuple[str, str, str, float, str]]:
    return []


@pytest.fixture
async def http(calls: list[tuple[str, str, str, float, str]]) -> AsyncIterator[ProviderHTTP]:
    async with ProviderHTTP(policy=LOCAL_POLICY, timeout=3.0, on_call=lambda *call: calls.append(call)) as client:
        yield client


@pytest.fixture
def registry() -> ProviderRegistry:
    """The built-in providers, found through their entry points like any plug-in."""
    fresh = ProviderRegistry()
    fresh.load_entry_points()
    assert not fresh.errors, fresh.errors
    return fresh
