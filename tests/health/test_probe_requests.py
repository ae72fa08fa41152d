"""A requested probe (``one.ie/probe``) is never lost to a probe already under way.

The engine reports a probe's result (a status write) before it takes the next probe of the same
connection. A request that came while a probe was in flight (its result being reported, the
request not yet seen by it) was postponed by a whole interval (300 s by default): ``kubectl oneie
probe --wait`` then waited in vain. Now another probe follows the one under way at once.
"""

from __future__ import annotations

import asyncio

from oneie_operator.health.assessment import HealthTracker, ProbeOutcome, State, Thresholds
from oneie_operator.health.engine import EngineSettings, ProbeEngine
from oneie_operator.health.probing import ProbeTarget
from oneie_operator.providers import default_registry
from oneie_operator.testing.kubeapi import wait_for


def _target() -> ProbeTarget:
    provider = default_registry().get("supabase")
    return ProbeTarget(namespace="t", name="db", provider=provider, settings=None,  # type: ignore[arg-type]
                       sealed={}, thresholds=Thresholds(interval_seconds=300, timeout_seconds=1))


async def test_a_request_during_a_report_is_probed_at_once() -> None:
    probes = 0
    reporting = asyncio.Event()
    release = asyncio.Event()

    async def prober(target: ProbeTarget, check: bool) -> ProbeOutcome:
        nonlocal probes
        probes += 1
        return ProbeOutcome(ok=True, seconds=0.001, at="2026-12-06T00:00:00Z")

    async def on_result(target: ProbeTarget, tracker: HealthTracker, old: State, new: State) -> None:
        if probes == 1:  # the first report is slow (a status write): the request comes meanwhile
            reporting.set()
            await release.wait()

    engine = ProbeEngine(prober, on_result, EngineSettings(initial_jitter_seconds=0))
    task = asyncio.create_task(engine.run())
    try:
        engine.upsert(_target())
        await asyncio.wait_for(reporting.wait(), 5)
        assert engine.request("t", "db")
        release.set()

        async def probed_again() -> bool:
            return probes >= 2

        await wait_for(probed_again, timeout=5, what="the requested probe (not one interval, 300 s, later)")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
