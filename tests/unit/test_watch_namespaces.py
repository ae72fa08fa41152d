"""WATCH_NAMESPACES: names, globs and exclusions, validated, and served as Kopf matches them.

The conversion (``running.kopf_namespaces``) is checked against Kopf's own matcher, so a namespace
counted as served here is one Kopf serves. The end-to-end proof (two shards against one API
server) is tests/e2e/test_sharding.py."""

from __future__ import annotations

from typing import Any

import pytest
from kopf._cogs.structs import references

from oneie_operator.config import load_config
from oneie_operator.errors import ConfigurationError
from oneie_operator.running import kopf_namespaces

NAMESPACES = ["default", "kube-system", "oneie-system", "tenant-a-1", "tenant-a-2", "tenant-a-x", "tenant-b-1",
              "tenant-b-22", "tenant-c"]


def served(value: str) -> tuple[list[str], bool]:
    patterns, scan = kopf_namespaces(load_config({"WATCH_NAMESPACES": value}).watch_namespaces)
    if not scan:  # exact names: Kopf serves exactly them (select_specific_namespaces), no listing
        exact = references.select_specific_namespaces(patterns)
        assert set(exact) == set(patterns)
        return [n for n in NAMESPACES if n in exact], scan
    return [n for n in NAMESPACES if any(references.match_namespace(references.NamespaceName(n), p)
                                          for p in patterns)], scan


@pytest.mark.parametrize(("value", "expected", "scan"), [
    ("tenant-a-1,tenant-c", ["tenant-a-1", "tenant-c"], False),
    ("tenant-a-*", ["tenant-a-1", "tenant-a-2", "tenant-a-x"], True),
    ("tenant-a-*, !tenant-a-x", ["tenant-a-1", "tenant-a-2"], True),
    ("!tenant-a-x, tenant-a-*, tenant-b-?", ["tenant-a-1", "tenant-a-2", "tenant-b-1"], True),
    ("tenant-b-*,tenant-c", ["tenant-b-1", "tenant-b-22", "tenant-c"], True),
    ("!kube-*,!oneie-system,!default", ["tenant-a-1", "tenant-a-2", "tenant-a-x", "tenant-b-1", "tenant-b-22",
                                        "tenant-c"], True),
])
def test_served_namespaces(value: str, expected: list[str], scan: bool) -> None:
    assert served(value) == (expected, scan)


def test_disjoint_shards_cover_each_namespace_once() -> None:
    a, _ = served("tenant-a-*")
    b, _ = served("tenant-b-*")
    rest, _ = served("!tenant-a-*,!tenant-b-*")
    assert sorted(a + b + rest) == sorted(NAMESPACES)


def test_empty_is_cluster_wide() -> None:
    assert kopf_namespaces(load_config({}).watch_namespaces) == ([], False)


@pytest.mark.parametrize("value", ["Tenant-A", "tenant_a", "tenant-a-[0-9]", "tenant-a/*", "-x", "!", "a" * 64])
def test_bad_entries_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        load_config({"WATCH_NAMESPACES": f"ok,{value}"})
    message = str(info.value)
    assert message.startswith("invalid operator configuration: WATCH_NAMESPACES: ")
    assert repr(value) in message and "'ok'" not in message


def test_bad_command_line_namespaces_are_refused_before_kopf_starts() -> None:
    """``oneie-operator run -n`` values get the same check, naming the flag."""
    import asyncio
    from types import SimpleNamespace

    from oneie_operator.running import run_operator

    services: Any = SimpleNamespace(config=load_config({}))
    with pytest.raises(ConfigurationError, match=r"^--namespace: 'Tenant_A' is no namespace name or glob"):
        asyncio.run(run_operator(services, namespaces=["ok", "Tenant_A"]))
