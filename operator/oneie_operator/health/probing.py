"""One health probe of one connection: decrypt, call the provider's probe (liveness) and, on the
probes that ``spec.healthCheck.credentialCheckEvery`` selects, its credential test (the cheapest
authenticated call), and classify the result."""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oneie_operator.errors import OneieError, ProviderRateLimitedError
from oneie_operator.health.assessment import ProbeOutcome, Thresholds
from oneie_operator.providers.base import Provider, ProviderSettings
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.redaction import sanitize
from oneie_operator.vault import Keyring, unseal


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """What the engine needs to probe one connection (credentials stay encrypted at rest here)."""

    namespace: str
    name: str
    provider: Provider[Any]
    settings: ProviderSettings
    sealed: Mapping[str, str] = field(repr=False)
    thresholds: Thresholds = field(default_factory=Thresholds)
    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    uid: str = ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_probe(
    target: ProbeTarget, keyring: Keyring, http: ProviderHTTP, *, check_credentials: bool = True
) -> ProbeOutcome:
    """Probe within the connection's timeout; every failure becomes a sanitised outcome.

    ``check_credentials``: after the liveness call, also run the provider's credential test (the
    engine asks for it on the probes ``spec.healthCheck.credentialCheckEvery`` selects)."""
    started = time.perf_counter()
    credentials: dict[str, str] = {}
    try:
        credentials = unseal(keyring, target.sealed, namespace=target.namespace, connection=target.name)
        async with asyncio.timeout(target.thresholds.timeout_seconds) as scope:
            # One timer for the whole probe: the calls arm none of their own when this one comes first.
            deadline = scope.when()
            result = await http.probe(
                target.provider, target.settings, credentials, namespace=target.namespace, deadline=deadline
            )
            if check_credentials:
                # Liveness alone would keep a revoked key "online": prove the credentials too.
                await http.test_credentials(
                    target.provider, target.settings, credentials, namespace=target.namespace, deadline=deadline
                )
        return ProbeOutcome(ok=True, seconds=result.latency_seconds, at=_now(), credentials_checked=check_credentials)
    except TimeoutError:
        return ProbeOutcome(
            False,
            time.perf_counter() - started,
            _now(),
            "ProviderTimeout",
            f"no answer within {target.thresholds.timeout_seconds:g}s",
        )
    except OneieError as exc:
        retry = exc.retry_after if isinstance(exc, ProviderRateLimitedError) else None
        return ProbeOutcome(
            False,
            time.perf_counter() - started,
            _now(),
            exc.reason,
            sanitize(str(exc), credentials.values()),
            retry,
            credentials_checked=check_credentials,
        )
