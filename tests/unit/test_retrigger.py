"""Retrigger: the re-trigger annotation is written after the delay, and again until it lands."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from oneie_operator.kube.rest import KubeConnectionError
from oneie_operator.names import TRIGGER_ANNOTATION
from oneie_operator.reconcile.retrigger import Retrigger


class Flaky:
    """An API server that refuses the first ``refusals`` writes."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.written: list[tuple[str, str, str, dict[str, str]]] = []
        self.tries = 0
        self.landed = asyncio.Event()

    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self.tries += 1
        if self.tries <= self.refusals:
            raise KubeConnectionError("PATCH ...: ClientConnectorError")
        self.written.append((plural, namespace, name, dict(annotations)))
        self.landed.set()


async def test_the_trigger_is_written_again_until_it_lands() -> None:
    api = Flaky(refusals=3)
    retrigger = Retrigger(api, max_backoff=0.05)
    retrigger.schedule("organizations", "t", "org", 0.01)
    await asyncio.wait_for(api.landed.wait(), timeout=10)
    assert api.tries == 4
    [(plural, namespace, name, annotations)] = api.written
    assert (plural, namespace, name) == ("organizations", "t", "org")
    assert annotations[TRIGGER_ANNOTATION].startswith("retry@")
    await asyncio.sleep(0.1)
    assert retrigger.pending == 0 and len(api.written) == 1


async def test_one_pending_trigger_per_object() -> None:
    api = Flaky(refusals=0)
    retrigger = Retrigger(api)
    for _ in range(5):
        retrigger.schedule("organizations", "t", "org", 0.05)
    retrigger.schedule("organizations", "t", "other", 0.05)
    assert retrigger.pending == 2
    await asyncio.wait_for(api.landed.wait(), timeout=10)
    await asyncio.sleep(0.2)
    assert sorted(w[2] for w in api.written) == ["org", "other"]


async def test_close_cancels_what_is_pending() -> None:
    api = Flaky(refusals=0)
    retrigger = Retrigger(api)
    retrigger.schedule("organizations", "t", "org", 60)
    await retrigger.aclose()
    assert retrigger.pending == 0 and api.written == []
