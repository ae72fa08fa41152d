"""After an operator restart every gauge is right again (issue 13, item 7).

The restart is a new process as far as the operator knows: new services, metrics in a new
registry, a new probe engine (``restart_operator(new_process=True)``). Connections that resume
unchanged must come back in every gauge series, with the same values, not only the not-Ready ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from e2e_support import Tenant
from org_support import apply_org, wait_org

from oneie_operator.demo.environment import LocalEnvironment, local_environment, restart_operator
from oneie_operator.observability.metrics import Metrics
from oneie_operator.testing.kubeapi import wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Gauges whose value is a fresh measurement each time: compared by series, not by value.
MEASURED = {"oneie_connection_response_seconds"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def restart_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalEnvironment]:
    async with local_environment(Path(tmp_path_factory.mktemp("restart"))) as env:
        yield env


def gauges(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float | None]:
    """Every gauge series of the registry → its value (None for measured ones)."""
    series: dict[tuple[str, tuple[tuple[str, str], ...]], float | None] = {}
    for family in metrics.registry.collect():
        if family.type != "gauge":
            continue
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            series[key] = None if sample.name in MEASURED else sample.value
    return series


async def test_every_gauge_series_survives_a_restart(restart_env: LocalEnvironment) -> None:
    env = restart_env
    tenant = Tenant(env, "t-restart", set())
    for name, provider in (("c-convex", "convex"), ("c-supabase", "supabase"), ("c-notion", "notion")):
        await tenant.good(name, provider)
    # One not Ready connection too (its Secret is missing): its series say 0.
    await tenant.connection("c-broken", "convex")
    await tenant.wait_ready("c-broken", "False", "SecretNotFound")
    await apply_org(tenant, "org", "c-convex")
    await wait_org(tenant, "org", active="c-convex")

    async def probed() -> bool:
        # A probe's report sets the health series, writes status, then the credential check's
        # gauge: wait for the last of them, or the snapshot may fall between the two.
        series = gauges(env.services.metrics)
        checked = {"c-convex", "c-supabase", "c-notion"}
        health = {dict(k[1]).get("connection") for k in series if k[0] == "oneie_connection_health"}
        creds = {dict(k[1]).get("connection") for k in series if k[0] == "oneie_connection_credentials_rejected"}
        return checked <= health and checked <= creds

    await wait_for(probed, timeout=20, what="every Ready connection probed")
    before = gauges(env.services.metrics)
    ready = {dict(k[1])["connection"]: v for k, v in before.items() if k[0] == "oneie_connection_ready"}
    assert ready == {"c-convex": 1.0, "c-supabase": 1.0, "c-notion": 1.0, "c-broken": 0.0}, ready
    assert any(k[0] == "oneie_credentials_encrypted" and v == 3.0 for k, v in before.items()), before

    old_metrics = env.services.metrics
    # First probes after the restart come within 30 s: the gauges must be right before they do.
    await restart_operator(env, {**env.environ, "PROBE_INITIAL_JITTER_SECONDS": "30"}, new_process=True)
    assert env.services.metrics is not old_metrics, "the restart starts from an empty registry"

    async def same() -> bool:
        return gauges(env.services.metrics) == before

    try:
        await wait_for(same, timeout=10, what="every gauge series as before the restart")
    except TimeoutError:
        after = gauges(env.services.metrics)
        missing = sorted(set(before) - set(after))
        extra = sorted(set(after) - set(before))
        changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
        raise AssertionError(f"missing {missing}; extra {extra}; changed {changed}") from None
