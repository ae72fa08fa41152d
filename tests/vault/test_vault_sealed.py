"""Whole credential sets: seal/unseal, and key rotation (needs_rotation/reseal)."""

from __future__ import annotations

import pytest

from oneie_operator.errors import DecryptionError, KeyNotFoundError
from oneie_operator.vault import (
    EncryptionKey,
    Keyring,
    decrypt,
    key_ids,
    needs_rotation,
    reseal,
    seal,
    token_key_id,
    unseal,
)

OLD = EncryptionKey.from_hex("11" * 32, "2024-11")
NEW = EncryptionKey.from_hex("22" * 32, "2025-06")
CREDS = {
    "url": "https://acme.convex.cloud",
    "deployKey": "prod:acme|01a2b3c4d5e6f708090a0b0c0d0e0f1011121314",
    "username": "admin",
}
WHERE = {"namespace": "org-acme", "connection": "main"}


def test_seal_unseal_round_trip() -> None:
    ring = Keyring.single(OLD)
    sealed = seal(ring, CREDS, **WHERE)
    assert set(sealed) == set(CREDS)
    for field, token in sealed.items():
        assert CREDS[field] not in token
        assert decrypt(ring, token, field=field, **WHERE) == CREDS[field]
    assert unseal(ring, sealed, **WHERE) == CREDS
    assert seal(ring, {}, **WHERE) == {} and unseal(ring, {}, **WHERE) == {}


def test_fields_cannot_be_swapped_within_a_set() -> None:
    ring = Keyring.single(OLD)
    sealed = seal(ring, CREDS, **WHERE)
    swapped = dict(sealed, url=sealed["deployKey"], deployKey=sealed["url"])
    with pytest.raises(DecryptionError, match=r"'url'|'deployKey'"):
        unseal(ring, swapped, **WHERE)


def test_a_set_cannot_move_to_another_connection_or_namespace() -> None:
    ring = Keyring.single(OLD)
    sealed = seal(ring, CREDS, **WHERE)
    with pytest.raises(DecryptionError):
        unseal(ring, sealed, namespace="org-acme", connection="other")
    with pytest.raises(DecryptionError):
        unseal(ring, sealed, namespace="org-evil", connection="main")


def test_rotation() -> None:
    before = Keyring.single(OLD)
    sealed = seal(before, CREDS, **WHERE)
    assert not needs_rotation(before, sealed)
    assert key_ids(sealed) == {"2024-11"}

    # A new primary is added; the old key stays so everything stays readable.
    during = before.with_key(NEW, primary=True)
    assert needs_rotation(during, sealed)
    assert unseal(during, sealed, **WHERE) == CREDS

    # A set that is half rotated (e.g. a field added after the switch) still reads.
    mixed = dict(sealed, extra=seal(during, {"extra": "value"}, **WHERE)["extra"])
    assert key_ids(mixed) == {"2024-11", "2025-06"}
    assert needs_rotation(during, mixed)

    rotated = reseal(during, mixed, **WHERE)
    assert set(rotated) == set(mixed)
    assert key_ids(rotated) == {"2025-06"}
    assert all(token_key_id(token) == "2025-06" for token in rotated.values())
    assert not needs_rotation(during, rotated)
    assert rotated["extra"] == mixed["extra"]  # already under the primary: unchanged
    assert unseal(during, rotated, **WHERE) == dict(CREDS, extra="value")

    # Once nothing needs it, the old key can go.
    after = Keyring.single(NEW)
    assert unseal(after, rotated, **WHERE) == dict(CREDS, extra="value")
    with pytest.raises(KeyNotFoundError, match="'2024-11'"):
        unseal(after, sealed, **WHERE)


def test_reseal_without_rotation_needed_is_a_no_op() -> None:
    ring = Keyring.single(OLD)
    sealed = seal(ring, CREDS, **WHERE)
    assert reseal(ring, sealed, **WHERE) == sealed


def test_reseal_is_all_or_nothing() -> None:
    during = Keyring([OLD, NEW], "2025-06")
    sealed = seal(Keyring.single(OLD), CREDS, **WHERE)
    broken = dict(
        sealed, username=sealed["username"][:-2] + ("AA" if sealed["username"][-2:] != "AA" else "BA")
    )
    with pytest.raises(DecryptionError, match="'username'"):
        reseal(during, broken, **WHERE)
    unknown = dict(
        sealed, username=seal(Keyring.single(EncryptionKey.generate("gone")), CREDS, **WHERE)["username"]
    )
    with pytest.raises(KeyNotFoundError, match="'gone'"):
        reseal(during, unknown, **WHERE)


def test_needs_rotation_rejects_malformed_tokens() -> None:
    ring = Keyring.single(OLD)
    with pytest.raises(DecryptionError, match="malformed"):
        needs_rotation(ring, {"password": "plaintext-password"})
