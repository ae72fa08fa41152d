"""When a failed switch is retried by itself (issue 13 item 9): the pure rule of organizations."""

from __future__ import annotations

import datetime
from typing import Any

from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.organizations import MAX_SWITCH_RETRIES, retry_delay, transient_retry_in

FINISHED = "2026-12-06T12:00:00.000000Z"
AT = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.UTC).timestamp()


def _last(reason: str, retries: int = 0) -> dict[str, Any]:
    return {"result": "RolledBack", "reason": reason, "finishedAt": FINISHED, "retries": retries}


def _conn(health: str) -> dict[str, Any]:
    return {"status": {"health": {"status": health}}}


def test_transient_failure_is_retried_after_its_back_off_once_the_target_is_online() -> None:
    last = _last("ProviderUnreachable")
    assert transient_retry_in(last, _conn("online"), now=AT + 1) == retry_delay(0) - 1
    assert transient_retry_in(last, _conn("online"), now=AT + retry_delay(0)) == 0.0
    for health in ("offline", "degraded", "unknown"):
        assert transient_retry_in(last, _conn(health), now=AT + 1000) is None


def test_back_off_doubles_up_to_a_bound_and_retries_stop() -> None:
    assert [retry_delay(n) for n in range(4)] == [5.0, 10.0, 20.0, 40.0]
    assert retry_delay(20) == 300.0
    done = _last("ProviderServerError", retries=MAX_SWITCH_RETRIES)
    assert transient_retry_in(done, _conn("online"), now=AT + 10_000) is None


def test_permanent_reasons_wait_for_a_change() -> None:
    for reason in ("CredentialsRejected", "InvalidSpec", "ConnectionNotFound", "ConnectionDeleting"):
        assert transient_retry_in(_last(reason), _conn("online"), now=AT + 10_000) is None
    assert transient_retry_in(_last("ProviderTimeout"), None, now=AT + 10_000) is None  # platform default


def test_healthy_is_true_only_while_online() -> None:
    assert conditions.healthy("online", "db").status == "True"
    assert (conditions.healthy("degraded", "db").status, conditions.healthy("degraded", "db").reason) == (
        "False", "Degraded")
    assert (conditions.healthy("offline", "db").status, conditions.healthy("offline", "db").reason) == (
        "False", "Offline")
    assert conditions.healthy("unknown", "db").status == "Unknown"
