"""The per-connection gauges (``oneie_connection_*``): what a scrape shows, when series go, what they cost.

Plain unit tests of :class:`Metrics` against its real registry and the real text exposition
(``generate_latest``, parsed back by ``prometheus_client``'s own parser).
"""

from __future__ import annotations

import gc
import threading
import tracemalloc

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from oneie_operator.observability.metrics import Metrics

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(metrics: Metrics) -> Series:
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("oneie_connection_")
        for sample in family.samples
    }


def labels(namespace: str, name: str, provider: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"namespace": namespace, "connection": name, "provider": provider, **extra}.items()))


def probe(metrics: Metrics, namespace: str, name: str, provider: str, state: str = "online") -> None:
    metrics.observe_probe(
        namespace, name, provider, ok=state != "offline", seconds=0.25, reason="" if state != "offline" else "X",
        state=state, error_rate=0.1, consecutive_failures=0 if state != "offline" else 2,
    )


def test_a_probed_connection_exports_its_eight_series_with_the_values_of_its_latest_probe() -> None:
    metrics = Metrics()
    metrics.set_connection("t1", "db", "supabase", ready=True, key_id="k1")
    probe(metrics, "t1", "db", "supabase", state="degraded")
    metrics.set_credentials_rejected("t1", "db", "supabase", rejected=False)
    ls = labels("t1", "db", "supabase")
    assert scrape(metrics) == {
        ("oneie_connection_ready", ls): 1.0,
        **{
            ("oneie_connection_health", labels("t1", "db", "supabase", state=s)): float(s == "degraded")
            for s in ("online", "degraded", "offline", "unknown")
        },
        ("oneie_connection_response_seconds", ls): 0.25,
        ("oneie_connection_error_rate", ls): 0.1,
        ("oneie_connection_consecutive_failures", ls): 0.0,
        ("oneie_connection_credentials_rejected", ls): 0.0,
    }
    assert metrics.registry.get_sample_value("oneie_credentials_encrypted", {"key_id": "k1"}) == 1.0


def test_forgetting_health_keeps_ready_and_forgetting_the_connection_removes_everything() -> None:
    metrics = Metrics()
    metrics.set_connection("t1", "db", "convex", ready=False, key_id="k1")
    probe(metrics, "t1", "db", "convex", state="offline")
    metrics.observe_call("convex", "probe", "Success", 0.01, namespace="t1")
    metrics.forget_health("t1", "db")
    assert scrape(metrics) == {("oneie_connection_ready", labels("t1", "db", "convex")): 0.0}
    metrics.forget_connection("t1", "db")
    assert scrape(metrics) == {}
    assert metrics.registry.get_sample_value("oneie_credentials_encrypted", {"key_id": "k1"}) == 0.0
    assert metrics.registry.get_sample_value(
        "oneie_provider_calls_total", {"namespace": "t1", "provider": "convex", "call": "probe", "outcome": "Success"}
    ) is None  # the tenant's last connection went


def test_a_connection_moved_to_another_provider_keeps_no_series_of_the_old_one() -> None:
    metrics = Metrics()
    metrics.set_connection("t1", "db", "convex", ready=True, key_id=None)
    probe(metrics, "t1", "db", "convex")
    metrics.set_credentials_rejected("t1", "db", "convex", rejected=True)
    metrics.set_connection("t1", "db", "notion", ready=True, key_id=None)
    probe(metrics, "t1", "db", "notion")
    providers = {dict(ls)["provider"] for _, ls in scrape(metrics)}
    assert providers == {"notion"}
    assert ("oneie_connection_credentials_rejected", labels("t1", "db", "notion")) not in scrape(metrics)


def test_restored_health_shows_until_the_first_probe_and_never_overwrites_a_probe() -> None:
    metrics = Metrics()
    stored = {"status": "offline", "responseTimeMilliseconds": 1500, "errorRate": 0.5, "consecutiveFailures": 3}
    metrics.restore_health("t1", "db", "convex", stored, credentials_rejected=True)
    ls = labels("t1", "db", "convex")
    series = scrape(metrics)
    assert series[("oneie_connection_health", labels("t1", "db", "convex", state="offline"))] == 1.0
    assert series[("oneie_connection_response_seconds", ls)] == 1.5
    assert series[("oneie_connection_consecutive_failures", ls)] == 3.0
    assert series[("oneie_connection_credentials_rejected", ls)] == 1.0
    probe(metrics, "t1", "db", "convex")
    metrics.restore_health("t1", "db", "convex", stored)
    assert scrape(metrics)[("oneie_connection_health", labels("t1", "db", "convex", state="online"))] == 1.0
    metrics.restore_health("t1", "other", "convex", {"status": "unknown"})  # nothing stored worth showing
    assert not any(dict(ls)["connection"] == "other" for _, ls in scrape(metrics))


def test_ten_thousand_probed_connections_cost_under_a_kibibyte_each_in_series() -> None:
    metrics = Metrics()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            namespace, name = f"tenant-{i // 5:05d}", f"conn-{i % 5}"
            metrics.set_connection(namespace, name, "convex", ready=True, key_id="k1")
            probe(metrics, namespace, name, "convex")
            metrics.set_credentials_rejected(namespace, name, "convex", rejected=False)
        gc.collect()
        per_connection = (tracemalloc.get_traced_memory()[0] - before) / 10_000
    finally:
        tracemalloc.stop()
    assert per_connection < 1024, f"{per_connection:.0f} bytes of series per connection"
    assert len(scrape(metrics)) == 10_000 * 9


def test_a_scrape_from_the_server_thread_while_connections_come_and_go_never_fails() -> None:
    metrics = Metrics()
    errors: list[BaseException] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.is_set():
            try:
                generate_latest(metrics.registry)
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=scraper)
    thread.start()
    try:
        for round_ in range(3):
            for i in range(2_000):
                metrics.set_connection("t", f"c{i}", "convex", ready=True, key_id=None)
                probe(metrics, "t", f"c{i}", "convex", state=("online", "degraded", "offline")[round_])
            for i in range(2_000):
                metrics.forget_connection("t", f"c{i}")
    finally:
        stop.set()
        thread.join(10)
    assert errors == []
    assert scrape(metrics) == {}
