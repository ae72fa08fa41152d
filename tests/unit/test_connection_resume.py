"""An unchanged connection is decided from the Secret watch, without a read, test or write (issue 14
item 6); anything that changed takes the long way (reads, and a credential test when needed).

``reconcile_connection`` with in-memory stand-ins for the API (a Secret store that records every
call) and the provider front door (which records every call): what the function asks of them is
the subject, so recording them is the measurement, not a mock of the code under test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from oneie_operator.kube.secrets import CREDENTIALS_LABEL, ENCRYPTED, OPTED_IN, SecretSnapshot, WatchedSecret
from oneie_operator.providers import DestinationPolicy, default_registry
from oneie_operator.providers.base import CheckResult
from oneie_operator.reconcile.connections import (
    ConnectionDeps,
    ConnectionObject,
    owned_secret_name,
    reconcile_connection,
)
from oneie_operator.vault import EncryptionKey, Keyring, seal

NS, NAME, UID = "tenant", "conn", "conn-uid"
CREDS = {"deployKey": "dev:happy-otter-123|" + "k" * 64}
KEYRING = Keyring([EncryptionKey.generate("k1")])
SEALED = seal(KEYRING, CREDS, namespace=NS, connection=NAME)


class RecordingSecrets:
    """The API's Secrets: the source at version 7, the encrypted copy (ours) at version 9."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def read_credentials(self, namespace: str, name: str) -> SecretSnapshot:
        self.calls.append(f"read_credentials {name}")
        return SecretSnapshot(name, namespace, "7", dict(CREDS), labels={CREDENTIALS_LABEL: OPTED_IN})

    async def read(self, namespace: str, name: str) -> SecretSnapshot | None:
        self.calls.append(f"read {name}")
        return SecretSnapshot(name, namespace, "9", dict(SEALED), labels={CREDENTIALS_LABEL: ENCRYPTED},
                              owner_uids=(UID,))

    async def write_owned(self, namespace: str, name: str, **_: Any) -> str:
        self.calls.append(f"write {name}")
        return "10"


class RecordingProviders:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def test_credentials(self, provider: Any, settings: Any, credentials: Mapping[str, str], *,
                               namespace: str = "") -> CheckResult:
        self.calls.append(f"test {provider.name}")
        return CheckResult(0.001)


def connection() -> ConnectionObject:
    status = {
        "observedGeneration": 3,
        "provider": "convex",
        "conditions": [{"type": "Ready", "status": "True", "reason": "CredentialsVerified", "message": "",
                        "observedGeneration": 3, "lastTransitionTime": "2026-12-06T00:00:00Z"}],
        "credentials": {"secretName": owned_secret_name(NAME), "keyId": "k1", "fields": ["deployKey"],
                        "sourceSecretName": "conn-creds", "sourceResourceVersion": "7", "resourceVersion": "9"},
        "capabilities": sorted(default_registry().get("convex").capabilities),
    }
    labels = {f"capability.one.ie/{c}": "true" for c in status["capabilities"]}
    spec = {"provider": "convex", "convex": {"url": "http://127.0.0.1:9"},
            "credentialsSecretRef": {"name": "conn-creds"}}
    return ConnectionObject(NS, NAME, UID, 3, spec, status, labels)


def watched(**changes: WatchedSecret | None) -> dict[str, WatchedSecret | None]:
    seen: dict[str, WatchedSecret | None] = {
        "conn-creds": WatchedSecret("7", OPTED_IN, "Opaque"),
        owned_secret_name(NAME): WatchedSecret("9", ENCRYPTED, "Opaque", (UID,), dict(SEALED)),
    }
    seen.update(changes)
    return seen


async def run(seen: Mapping[str, WatchedSecret | None] | None, keyring: Keyring = KEYRING) -> tuple[Any, list[str]]:
    secrets, providers = RecordingSecrets(), RecordingProviders()
    deps = ConnectionDeps(
        registry=default_registry(), secrets=secrets, keyring=keyring, http=providers,  # type: ignore[arg-type]
        policy=DestinationPolicy(allow_loopback=True, allow_plain_http=True),
        watched=None if seen is None else (lambda namespace, name: seen.get(name)),
    )
    result = await reconcile_connection(connection(), deps)
    return result, secrets.calls + providers.calls


async def test_unchanged_is_decided_from_the_watch_alone() -> None:
    result, calls = await run(watched())
    assert result.error is None and result.unchanged and not result.status and not result.events
    assert calls == [], "an unchanged connection was read, tested or written"
    assert dict(result.sealed) == dict(SEALED)  # what the probes get


async def test_without_the_watch_it_reads_but_does_not_test() -> None:
    result, calls = await run(None)
    assert result.unchanged
    assert calls == ["read_credentials conn-creds", f"read {owned_secret_name(NAME)}"]


@pytest.mark.parametrize(("what", "seen"), [
    ("the source Secret changed", watched(**{"conn-creds": WatchedSecret("8", OPTED_IN, "Opaque")})),
    ("the source Secret is not in the watch", watched(**{"conn-creds": None})),
    ("the encrypted copy changed", watched(**{owned_secret_name(NAME): WatchedSecret(
        "10", ENCRYPTED, "Opaque", (UID,), dict(SEALED))})),
    ("the encrypted copy is someone else's", watched(**{owned_secret_name(NAME): WatchedSecret(
        "9", ENCRYPTED, "Opaque", ("other-uid",), dict(SEALED))})),
])
async def test_anything_changed_takes_the_long_way(what: str, seen: dict[str, WatchedSecret | None]) -> None:
    _, calls = await run(seen)
    assert calls[:1] == ["read_credentials conn-creds"], what


async def test_a_source_at_another_version_is_tested_again() -> None:
    changed = watched(**{"conn-creds": WatchedSecret("8", OPTED_IN, "Opaque")})
    secrets = RecordingSecrets()

    async def at_version_8(namespace: str, name: str) -> SecretSnapshot:
        secrets.calls.append(f"read_credentials {name}")
        return SecretSnapshot(name, namespace, "8", dict(CREDS), labels={CREDENTIALS_LABEL: OPTED_IN})
    secrets.read_credentials = at_version_8  # type: ignore[method-assign]
    providers = RecordingProviders()
    deps = ConnectionDeps(
        registry=default_registry(), secrets=secrets, keyring=KEYRING, http=providers,  # type: ignore[arg-type]
        policy=DestinationPolicy(allow_loopback=True, allow_plain_http=True),
        watched=lambda namespace, name: changed.get(name),
    )
    result = await reconcile_connection(connection(), deps)
    assert providers.calls == ["test convex"]
    assert result.status["credentials"]["sourceResourceVersion"] == "8"


async def test_a_key_no_longer_in_the_keyring_takes_the_long_way() -> None:
    _, calls = await run(watched(), keyring=Keyring([EncryptionKey.generate("k2")]))
    assert calls[:1] == ["read_credentials conn-creds"]


def test_a_connections_spec_is_validated_once_per_generation_and_a_bad_one_every_time() -> None:
    """The spec cache the connection reconcile shares with the organizations' (``SpecCache``): the
    same generation is answered from it, a new generation or uid is validated again, and a spec
    that fails is never kept (it raises its field-level issues each time)."""
    import dataclasses

    from oneie_operator.errors import SpecError
    from oneie_operator.lru import LRU
    from oneie_operator.reconcile.connections import valid_spec_of

    registry, policy = default_registry(), DestinationPolicy(allow_loopback=True, allow_plain_http=True)
    cache: Any = LRU(10)
    obj = connection()
    first = valid_spec_of(obj, registry, policy, cache)
    assert valid_spec_of(obj, registry, policy, cache) is first
    assert valid_spec_of(dataclasses.replace(obj, generation=4), registry, policy, cache) is not first
    assert valid_spec_of(dataclasses.replace(obj, uid="other"), registry, policy, cache) is not first
    bad = dataclasses.replace(obj, generation=5, spec={**obj.spec, "convex": {"url": "not a url"}})
    for _ in range(2):
        with pytest.raises(SpecError) as caught:
            valid_spec_of(bad, registry, policy, cache)
        assert "spec.convex.url" in str(caught.value)
    assert cache.get((NS, NAME))[0] == ("other", 3), "the failing generation left nothing behind"
    assert valid_spec_of(obj, registry, policy, None).settings == first.settings  # no cache: validated
