from __future__ import annotations

import pytest

from oneie_operator.config import load_config
from oneie_operator.errors import ConfigurationError
from oneie_operator.reconcile import conditions
from oneie_operator.reconcile.connections import capability_labels


def test_transition_time_changes_only_with_status() -> None:
    first = conditions.merge_conditions(None, conditions.stalled("A", "m"), generation=1, now="t1")
    same = conditions.merge_conditions(first, conditions.stalled("B", "other"), generation=2, now="t2")
    ready = {c["type"]: c for c in same}["Ready"]
    assert ready["lastTransitionTime"] == "t1" and ready["reason"] == "B" and ready["observedGeneration"] == 2
    flipped = conditions.merge_conditions(same, conditions.ready("C", "ok"), generation=2, now="t3")
    assert {c["type"]: c for c in flipped}["Ready"]["lastTransitionTime"] == "t3"
    assert [c["type"] for c in flipped] == ["Ready", "Reconciling", "Stalled"]


def test_capability_labels_add_and_remove() -> None:
    current = {"capability.one.ie/old": "true", "app": "x", "capability.one.ie/keep": "true"}
    assert capability_labels(current, ["keep", "new"]) == {"capability.one.ie/new": "true",
                                                           "capability.one.ie/old": None}


@pytest.mark.parametrize(("env", "variable", "expected"), [
    ({"METRICS_PORT": "x"}, "METRICS_PORT", "0-65535"),
    ({"HEALTH_PORT": "70000"}, "HEALTH_PORT", "0-65535"),
    ({"ALLOW_PRIVATE": "perhaps"}, "ALLOW_PRIVATE", "true/false"),
    ({"PROVIDER_TIMEOUT_SECONDS": "0"}, "PROVIDER_TIMEOUT_SECONDS", "0 < t <= 120"),
    ({"MAX_RESPONSE_BYTES": "10"}, "MAX_RESPONSE_BYTES", "at least 1024"),
])
def test_invalid_configuration_names_variable_and_format(env: dict[str, str], variable: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config(env)
    assert variable in str(info.value) and expected in str(info.value)
    assert all(value not in str(info.value) for value in env.values() if len(value) > 2)


def test_namespaces_are_split() -> None:
    assert load_config({"WATCH_NAMESPACES": "a, b,,c"}).watch_namespaces == ("a", "b", "c")
