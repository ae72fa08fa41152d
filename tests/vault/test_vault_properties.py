"""Hypothesis properties of the vault: round trips, binding, tampering, and secrets never in messages."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from oneie_operator.errors import ConfigurationError, DecryptionError, KeyNotFoundError, VaultError
from oneie_operator.vault import (
    EncryptionKey,
    Keyring,
    associated_data,
    decrypt,
    encrypt,
    needs_rotation,
    reseal,
    seal,
    unseal,
)

settings.register_profile("vault", deadline=None, max_examples=150)
settings.load_profile("vault")

HEX_A = "5f" * 16 + "c3" * 16
HEX_B = "e7" * 32
KEY_A = EncryptionKey.from_hex(HEX_A, "a")
KEY_B = EncryptionKey.from_hex(HEX_B, "b")
RING_A = Keyring.single(KEY_A)
WHERE = {"namespace": "ns", "connection": "conn", "field": "secret"}

names = st.text(max_size=40)
materials = st.binary(min_size=32, max_size=32)
key_id_strategy = st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True)


def error_of(action: Callable[[], object]) -> Exception:
    try:
        action()
    except Exception as error:
        return error
    raise AssertionError("no error")


@given(plaintext=st.text(), namespace=names, connection=names, field=names)
def test_round_trip_of_any_unicode(plaintext: str, namespace: str, connection: str, field: str) -> None:
    token = encrypt(RING_A, plaintext, namespace=namespace, connection=connection, field=field)
    assert token.isascii()
    assert decrypt(RING_A, token, namespace=namespace, connection=connection, field=field) == plaintext


@given(plaintext=st.text())
def test_same_value_never_gives_the_same_token(plaintext: str) -> None:
    assert encrypt(RING_A, plaintext, **WHERE) != encrypt(RING_A, plaintext, **WHERE)


@given(first=st.tuples(names, names, names), second=st.tuples(names, names, names))
def test_associated_data_never_collides(first: tuple[str, str, str], second: tuple[str, str, str]) -> None:
    assume(first != second)
    assert associated_data(*first) != associated_data(*second)


@given(plaintext=st.text(), where=st.tuples(names, names, names), other=st.tuples(names, names, names))
def test_any_other_binding_fails(
    plaintext: str, where: tuple[str, str, str], other: tuple[str, str, str]
) -> None:
    assume(where != other)
    token = encrypt(RING_A, plaintext, namespace=where[0], connection=where[1], field=where[2])
    error = error_of(lambda: decrypt(RING_A, token, namespace=other[0], connection=other[1], field=other[2]))
    assert type(error) is DecryptionError


@given(where=st.permutations(["org-a", "conn-b", "field-c"]))
def test_swapping_namespace_connection_field_fails(where: list[str]) -> None:
    token = encrypt(RING_A, "value", namespace="org-a", connection="conn-b", field="field-c")
    namespace, connection, field = where
    if where == ["org-a", "conn-b", "field-c"]:
        assert decrypt(RING_A, token, namespace=namespace, connection=connection, field=field) == "value"
    else:
        error = error_of(
            lambda: decrypt(RING_A, token, namespace=namespace, connection=connection, field=field)
        )
        assert type(error) is DecryptionError


@given(plaintext=st.text(), data=st.data())
def test_any_byte_flip_is_detected(plaintext: str, data: st.DataObject) -> None:
    token = encrypt(RING_A, plaintext, **WHERE)
    raw = bytearray(token.encode("ascii"))
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    raw[position] ^= mask
    tampered = raw.decode("latin-1")
    error = error_of(lambda: decrypt(RING_A, tampered, **WHERE))
    in_key_id = position == 3  # "v1.a.": the key id is the single character at index 3
    assert type(error) in ((DecryptionError, KeyNotFoundError) if in_key_id else (DecryptionError,))
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@given(plaintext=st.text(), material=materials, key_id=key_id_strategy)
def test_wrong_key_fails(plaintext: str, material: bytes, key_id: str) -> None:
    right = Keyring.single(EncryptionKey(key_id, material))
    wrong_material = bytes([material[0] ^ 1]) + material[1:]
    wrong = Keyring.single(EncryptionKey(key_id, wrong_material))
    token = encrypt(right, plaintext, **WHERE)
    assert type(error_of(lambda: decrypt(wrong, token, **WHERE))) is DecryptionError
    unknown = Keyring.single(EncryptionKey(key_id + "x" if len(key_id) < 32 else "other", material))
    assert type(error_of(lambda: decrypt(unknown, token, **WHERE))) is KeyNotFoundError


@given(material=materials, key_id=key_id_strategy)
def test_repr_and_str_never_show_key_material(material: bytes, key_id: str) -> None:
    key = EncryptionKey(key_id, material)
    ring = Keyring([key, EncryptionKey("zz-other", bytes(32))])
    hexes = (material.hex(), material.hex().upper())
    for text in (repr(key), str(key), repr(ring), str(ring), f"{[key, ring]}"):
        assert key_id in text
        for hex_text in hexes:
            for start in range(0, 64 - 16 + 1):
                window = hex_text[start : start + 16]
                assert window not in text or window in key_id
        assert repr(material) not in text


# -- No secret in any error message -------------------------------------------------------------


def failures(plaintext: str) -> dict[str, Exception]:
    """Every way decrypting a value of ``plaintext`` can fail, with the resulting error."""
    ring_ab = Keyring([KEY_A, KEY_B], "a")
    token = encrypt(ring_ab, plaintext, **WHERE)
    parts = token.split(".")
    impostor = Keyring.single(EncryptionKey.from_hex(HEX_B, "a"))
    return {
        "binding": error_of(lambda: decrypt(ring_ab, token, **(WHERE | {"field": "other"}))),
        "wrong-key": error_of(lambda: decrypt(impostor, token, **WHERE)),
        "relabelled": error_of(lambda: decrypt(ring_ab, ".".join([parts[0], "b", *parts[2:]]), **WHERE)),
        "unknown-key": error_of(lambda: decrypt(Keyring.single(KEY_B), token, **WHERE)),
        "truncated": error_of(lambda: decrypt(ring_ab, token[:-1], **WHERE)),
        "tag": error_of(
            lambda: decrypt(ring_ab, token[:-2] + ("AA" if token[-2:] != "AA" else "AB"), **WHERE)
        ),
        "plaintext-as-token": error_of(lambda: decrypt(ring_ab, plaintext, **WHERE)),
        "token-like": error_of(lambda: decrypt(ring_ab, f"v1.a.{plaintext}.{plaintext}", **WHERE)),
    }


@given(plaintext=st.text(min_size=1))
def test_error_messages_never_contain_plaintext_key_or_token(plaintext: str) -> None:
    reference = failures("\x00")
    errors = failures(plaintext)
    for kind, error in errors.items():
        assert isinstance(error, VaultError), kind
        message = str(error)
        # The message depends on the kind of failure only, never on the value...
        if kind not in ("plaintext-as-token", "token-like", "truncated", "tag"):
            assert message == str(reference[kind]), kind
        # ...and shows no key material (any 12 hex characters of it).
        for hex_text in (HEX_A, HEX_B):
            for start in range(0, 64 - 12 + 1):
                assert hex_text[start : start + 12] not in message.lower(), kind
        # No plaintext, unless it is so short or common it is part of the fixed wording.
        assume_not_wording = plaintext not in str(reference[kind])
        if len(plaintext) >= 4 and assume_not_wording:
            assert plaintext not in message, kind
        assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


@given(plaintext=st.text(min_size=4))
def test_encrypt_errors_never_contain_plaintext(plaintext: str) -> None:
    # Unpaired surrogates make a str unencodable: the error must not echo it.
    bad = plaintext + "\ud800" + plaintext
    error = error_of(lambda: encrypt(RING_A, bad, **WHERE))
    assert isinstance(error, VaultError)
    assume(plaintext not in "the value of field 'secret' of connection 'ns/conn' is not valid Unicode text")
    assert plaintext not in str(error)
    assert error.__context__ is None or error.__suppress_context__


@given(credentials=st.dictionaries(names, st.text(), max_size=5), namespace=names, connection=names)
def test_rotation_of_any_set(credentials: dict[str, str], namespace: str, connection: str) -> None:
    old = Keyring.single(KEY_A)
    sealed = seal(old, credentials, namespace=namespace, connection=connection)
    during = old.with_key(KEY_B, primary=True)
    assert needs_rotation(during, sealed) == bool(credentials)
    rotated = reseal(during, sealed, namespace=namespace, connection=connection)
    assert not needs_rotation(during, rotated)
    assert unseal(Keyring.single(KEY_B), rotated, namespace=namespace, connection=connection) == credentials


# -- Environment parsing ------------------------------------------------------------------------


def config_message(encryption_key: str | None, keyring: str | None) -> str:
    error = error_of(lambda: Keyring.from_env(encryption_key, keyring))
    assert type(error) is ConfigurationError
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return str(error)


def neutral(value: str) -> str:
    """The same shape (length, whitespace, hex-ness) with none of the content."""
    hexdigits = set(string.hexdigits)
    return "".join(c if c.isspace() else ("0" if c in hexdigits else "#") for c in value)


@given(value=st.text(min_size=1))
def test_bad_encryption_key_message_is_independent_of_the_value(value: str) -> None:
    assume(value.strip() and not re.fullmatch(r"[0-9A-Fa-f]{64}", value.strip()))
    message = config_message(value, None)
    assert message.startswith("ENCRYPTION_KEY is invalid")
    assert "64 hexadecimal characters" in message
    # Identical to the message for a same-shaped value: nothing of the value can be in it.
    assert message == config_message(neutral(value), None)


@given(value=st.text(min_size=1))
def test_bad_keyring_text_never_echoed(value: str) -> None:
    assume(value.strip())
    try:
        Keyring.from_env(None, value)
    except ConfigurationError as error:
        message = str(error)
        assert message.startswith("ENCRYPTION_KEYRING is invalid")
        assert '{"primary": "<key id>", "keys": {"<key id>": "<64 hex characters>", ...}}' in message
        if len(value) >= 8:
            assume(value not in config_message(None, "#"))
            assert value not in message


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.just(HEX_A), st.just(HEX_A[:-1])
)
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["primary", "keys", "a", HEX_A, "extra"]) | st.text(max_size=5), inner, max_size=3
        )
    ),
    max_leaves=10,
)


@given(doc=json_values)
def test_bad_keyring_documents_never_echo_key_material(doc: object) -> None:
    value = json.dumps(doc)
    try:
        ring = Keyring.from_env(None, value)
    except ConfigurationError as error:
        message = str(error).lower()
        assert message.startswith("encryption_keyring is invalid")
        assert HEX_A[:32] not in message and HEX_A[32:] not in message
        assert HEX_A[:-1] not in message
    else:
        assert len(ring) >= 1
