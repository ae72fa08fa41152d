"""Keys, keyrings and the ENCRYPTION_KEY / ENCRYPTION_KEYRING environment formats."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle

import pytest

from oneie_operator.errors import ConfigurationError, KeyNotFoundError
from oneie_operator.vault import (
    EncryptionKey,
    Keyring,
    derive_key_id,
    generate_key,
)

HEX_A = "a1" * 32
HEX_B = "0123456789abcdef" * 4


def test_generate_key_is_64_lowercase_hex_and_random() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(key) == 64
        assert all(c in "0123456789abcdef" for c in key)
        bytes.fromhex(key)


def test_derived_key_id_is_k_dash_8_hex_of_sha256() -> None:
    raw = bytes.fromhex(HEX_A)
    expected = "k-" + hashlib.sha256(raw).hexdigest()[:8]
    assert derive_key_id(raw) == expected
    assert EncryptionKey.from_hex(HEX_A).id == expected
    # Same key, same id, whatever the case or surrounding whitespace.
    assert EncryptionKey.from_hex(f"  {HEX_A.upper()}\n").id == expected
    assert EncryptionKey.from_hex(HEX_B).id != expected


def test_explicit_key_id() -> None:
    assert EncryptionKey.from_hex(HEX_A, "2025-06").id == "2025-06"


@pytest.mark.parametrize("bad_id", ["", "a.b", "a b", "é", "x" * 33, "a/b"])
def test_invalid_key_ids_are_refused(bad_id: str) -> None:
    with pytest.raises(ConfigurationError):
        EncryptionKey(bad_id, bytes(32))


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_material_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ConfigurationError):
        EncryptionKey("k", bytes(size))


def test_key_repr_and_str_hide_material() -> None:
    key = EncryptionKey.from_hex(HEX_B, "main")
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert "main" in text
        assert HEX_B not in text.lower()
        assert HEX_B[:16] not in text.lower()
        assert repr(bytes.fromhex(HEX_B)) not in text


def test_key_cannot_be_pickled_or_mutated_and_copies_are_itself() -> None:
    key = EncryptionKey.from_hex(HEX_A)
    with pytest.raises(TypeError):
        pickle.dumps(key)
    assert copy.copy(key) is key and copy.deepcopy(key) is key
    assert copy.deepcopy({"k": [key]})["k"][0] is key
    with pytest.raises(AttributeError):
        key._id = "other"
    assert not hasattr(key, "__dict__")


def test_key_equality() -> None:
    assert EncryptionKey.from_hex(HEX_A, "a") == EncryptionKey.from_hex(HEX_A, "a")
    assert EncryptionKey.from_hex(HEX_A, "a") != EncryptionKey.from_hex(HEX_B, "a")
    assert EncryptionKey.from_hex(HEX_A, "a") != EncryptionKey.from_hex(HEX_A, "b")
    assert len({EncryptionKey.from_hex(HEX_A, "a"), EncryptionKey.from_hex(HEX_A, "a")}) == 1


# -- Keyring --------------------------------------------------------------------------------------


def test_keyring_primary_defaults_to_first() -> None:
    a, b = EncryptionKey.from_hex(HEX_A, "a"), EncryptionKey.from_hex(HEX_B, "b")
    ring = Keyring([a, b])
    assert ring.primary is a
    assert ring.primary_id == "a"
    assert ring.ids == ("a", "b")
    assert len(ring) == 2
    assert "b" in ring and "c" not in ring
    assert list(ring) == [a, b]
    assert Keyring([a, b], "b").primary is b


def test_keyring_get_unknown_id_raises_key_not_found() -> None:
    ring = Keyring([EncryptionKey.from_hex(HEX_A, "a")])
    assert ring.get("a").id == "a"
    with pytest.raises(KeyNotFoundError, match="'zz'"):
        ring.get("zz")


@pytest.mark.parametrize(
    "build",
    [
        lambda a, b: Keyring([]),
        lambda a, b: Keyring([a, a]),
        lambda a, b: Keyring([a, b], "c"),
        lambda a, b: Keyring([a, "not a key"]),  # type: ignore[list-item]
    ],
)
def test_invalid_keyrings(build: object) -> None:
    a, b = EncryptionKey.from_hex(HEX_A, "a"), EncryptionKey.from_hex(HEX_B, "b")
    with pytest.raises(ConfigurationError):
        build(a, b)  # type: ignore[operator]


def test_with_key_and_with_primary_return_new_keyrings() -> None:
    a, b = EncryptionKey.from_hex(HEX_A, "a"), EncryptionKey.from_hex(HEX_B, "b")
    ring = Keyring.single(a)
    added = ring.with_key(b)
    assert added.primary_id == "a" and added.ids == ("a", "b")
    promoted = ring.with_key(b, primary=True)
    assert promoted.primary_id == "b"
    assert added.with_primary("b") == promoted
    assert ring.ids == ("a",)  # unchanged
    with pytest.raises(ConfigurationError):
        ring.with_key(EncryptionKey.from_hex(HEX_B, "a"))


def test_keyring_repr_hides_material() -> None:
    ring = Keyring([EncryptionKey.from_hex(HEX_A, "a"), EncryptionKey.from_hex(HEX_B, "b")], "b")
    for text in (repr(ring), str(ring)):
        assert "'a'" in text and "'b'" in text and "primary='b'" in text
        assert HEX_A not in text and HEX_B not in text and "a1a1a1" not in text
    with pytest.raises(TypeError):
        pickle.dumps(ring)
    assert copy.deepcopy(ring) is ring and copy.copy(ring) is ring
    with pytest.raises(AttributeError):
        ring._primary = ring.primary


# -- from_env -------------------------------------------------------------------------------------


def test_from_env_single_key() -> None:
    ring = Keyring.from_env(HEX_A, None)
    assert ring.ids == (derive_key_id(bytes.fromhex(HEX_A)),)
    assert Keyring.from_env(HEX_A + "\n", "") == ring
    assert Keyring.from_environ({"ENCRYPTION_KEY": HEX_A}) == ring


def test_from_env_keyring_json() -> None:
    value = json.dumps({"primary": "new", "keys": {"old": HEX_A, "new": HEX_B.upper()}})
    ring = Keyring.from_env(None, value)
    assert ring.primary_id == "new"
    assert ring.ids == ("old", "new")
    assert ring.get("old") == EncryptionKey.from_hex(HEX_A, "old")
    assert Keyring.from_env("", value) == ring
    assert Keyring.from_environ({"ENCRYPTION_KEYRING": value, "OTHER": "x"}) == ring


def test_single_key_can_move_into_a_keyring_under_its_derived_id() -> None:
    old_id = derive_key_id(bytes.fromhex(HEX_A))
    ring = Keyring.from_env(None, json.dumps({"primary": "next", "keys": {old_id: HEX_A, "next": HEX_B}}))
    assert ring.get(old_id) == Keyring.from_env(HEX_A, None).primary


def _config_error(encryption_key: str | None, keyring: str | None) -> str:
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_env(encryption_key, keyring)
    # No chained exception (e.g. json's, which may quote the input) in tracebacks either.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    return str(info.value)


def test_neither_variable_set_names_both() -> None:
    for key, ring in [(None, None), ("", ""), ("  ", None)]:
        message = _config_error(key, ring)
        assert "ENCRYPTION_KEY" in message and "ENCRYPTION_KEYRING" in message
        assert "64 hex" in message


def test_both_variables_set_is_an_error_without_values() -> None:
    ring = json.dumps({"primary": "a", "keys": {"a": HEX_B}})
    message = _config_error(HEX_A, ring)
    assert "ENCRYPTION_KEY" in message and "ENCRYPTION_KEYRING" in message and "only one" in message
    assert HEX_A not in message and HEX_B not in message


@pytest.mark.parametrize(
    "value",
    [
        HEX_A[:-1],  # 63 characters
        HEX_A + "a",  # 65 characters
        HEX_A[:-2] + "zz",  # not hex
        "0x" + HEX_A[:-2],
        HEX_A[:32] + " " + HEX_A[32:],
        "s3cr3t-passphrase-not-hex",
    ],
)
def test_bad_encryption_key_names_variable_and_format_not_value(value: str) -> None:
    message = _config_error(value, None)
    assert message.startswith("ENCRYPTION_KEY is invalid")
    assert "64 hexadecimal characters" in message
    assert value not in message
    assert value[:20] not in message


@pytest.mark.parametrize(
    "value",
    [
        "{not json " + HEX_A,
        json.dumps([HEX_A]),
        json.dumps(HEX_A),
        json.dumps({"primary": "a"}),
        json.dumps({"primary": "a", "keys": {}}),
        json.dumps({"primary": "a", "keys": [HEX_A]}),
        json.dumps({"primary": "b", "keys": {"a": HEX_A}}),
        json.dumps({"primary": HEX_A, "keys": {"a": HEX_A}}),
        json.dumps({"keys": {"a": HEX_A}}),
        json.dumps({"primary": 1, "keys": {"a": HEX_A}}),
        json.dumps({"primary": "a", "keys": {"a": HEX_A[:-1]}}),
        json.dumps({"primary": "a", "keys": {"a": 12}}),
        json.dumps({"primary": "a", "keys": {"a.b": HEX_A}}),
        json.dumps({"primary": "a", "keys": {HEX_A: "a"}}),  # id and key swapped
        json.dumps({"primary": "a", "keys": {"a": HEX_A}, "extra": HEX_B}),
        '{"primary": "a", "keys": {"a": "' + HEX_A + '", "a": "' + HEX_B + '"}}',
        "[" * 100_000,
    ],
)
def test_bad_keyring_names_variable_and_format_not_value(value: str) -> None:
    message = _config_error(None, value)
    assert message.startswith("ENCRYPTION_KEYRING is invalid")
    assert '"primary"' in message and '"keys"' in message and "64 hex" in message
    assert HEX_A not in message and HEX_B not in message
    assert HEX_A[:-1] not in message
    assert value[:40] not in message
