"""encrypt/decrypt of single values: token format, binding, tampering, wrong and unknown keys."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from oneie_operator.errors import DecryptionError, KeyNotFoundError, VaultError
from oneie_operator.vault import (
    EncryptionKey,
    Keyring,
    associated_data,
    decrypt,
    encrypt,
    is_token,
    parse_token,
    token_key_id,
)

HEX_A = "a1" * 32
HEX_B = "0123456789abcdef" * 4
WHERE = {"namespace": "org-acme", "connection": "main-db", "field": "apiKey"}
SECRET = "sk_live_51HxYzVeryS3cretValue"


@pytest.fixture
def ring() -> Keyring:
    return Keyring.single(EncryptionKey.from_hex(HEX_A, "main"))


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_round_trip(ring: Keyring) -> None:
    token = encrypt(ring, SECRET, **WHERE)
    assert decrypt(ring, token, **WHERE) == SECRET
    assert decrypt(ring, encrypt(ring, "", **WHERE), **WHERE) == ""


def test_token_format(ring: Keyring) -> None:
    token = encrypt(ring, SECRET, **WHERE)
    assert re.fullmatch(r"v1\.main\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+", token)
    _, _, nonce, ciphertext = token.split(".")
    assert len(b64d(nonce)) == 12
    assert len(b64d(ciphertext)) == len(SECRET.encode()) + 16
    assert "=" not in token
    assert SECRET not in token
    assert token_key_id(token) == "main"
    parsed = parse_token(token)
    assert parsed.key_id == "main" and parsed.nonce == b64d(nonce) and parsed.ciphertext == b64d(ciphertext)
    assert is_token(token)
    assert not is_token(SECRET) and not is_token("") and not is_token(None)


def test_token_is_plain_aes_gcm_with_documented_associated_data(ring: Keyring) -> None:
    """The format is what the docs say: anyone with the key can decrypt it with plain AES-GCM."""
    token = encrypt(ring, SECRET, **WHERE)
    _, _, nonce, ciphertext = token.split(".")
    ad = b"one.ie/v1" + b"".join(
        len(part.encode()).to_bytes(4, "big") + part.encode() for part in ("org-acme", "main-db", "apiKey")
    )
    assert associated_data(**WHERE) == ad
    assert AESGCM(bytes.fromhex(HEX_A)).decrypt(b64d(nonce), b64d(ciphertext), ad).decode() == SECRET


def test_associated_data_is_injective() -> None:
    assert associated_data("a|b", "c", "d") != associated_data("a", "b|c", "d")
    assert associated_data("a", "b", "") != associated_data("a", "", "b")
    assert associated_data("ab", "", "c") != associated_data("a", "b", "c")
    assert associated_data("a\x00\x00\x00\x01b", "c", "d") != associated_data("a", "b", "c\x00\x00\x00\x01d")


def test_same_value_encrypts_differently(ring: Keyring) -> None:
    assert encrypt(ring, SECRET, **WHERE) != encrypt(ring, SECRET, **WHERE)


def test_nonces_are_unique_over_10000_encryptions(ring: Keyring) -> None:
    nonces = {parse_token(encrypt(ring, "x", **WHERE)).nonce for _ in range(10_000)}
    assert len(nonces) == 10_000


def test_encrypts_with_primary_and_decrypts_with_any_key() -> None:
    old = EncryptionKey.from_hex(HEX_A, "old")
    new = EncryptionKey.from_hex(HEX_B, "new")
    before = Keyring.single(old)
    after = Keyring([old, new], "new")
    old_token = encrypt(before, SECRET, **WHERE)
    assert token_key_id(encrypt(after, SECRET, **WHERE)) == "new"
    assert decrypt(after, old_token, **WHERE) == SECRET


@pytest.mark.parametrize(
    "changed",
    [
        {"namespace": "org-other"},
        {"connection": "other-db"},
        {"field": "password"},
        {"namespace": "main-db", "connection": "org-acme"},  # swapped
        {"namespace": "org-acme|main-db", "connection": ""},
        {"field": "apikey"},
    ],
)
def test_wrong_binding_fails(ring: Keyring, changed: dict[str, str]) -> None:
    token = encrypt(ring, SECRET, **WHERE)
    with pytest.raises(DecryptionError) as info:
        decrypt(ring, token, **(WHERE | changed))
    message = str(info.value)
    assert "authentication failed" in message
    assert "'main'" in message  # the key id
    assert repr((WHERE | changed)["field"]) in message
    assert SECRET not in message and token not in message and HEX_A not in message


def test_wrong_key_with_same_id_fails(ring: Keyring) -> None:
    token = encrypt(ring, SECRET, **WHERE)
    impostor = Keyring.single(EncryptionKey.from_hex(HEX_B, "main"))
    with pytest.raises(DecryptionError, match="authentication failed"):
        decrypt(impostor, token, **WHERE)


def test_token_relabelled_to_another_known_key_fails() -> None:
    ring = Keyring([EncryptionKey.from_hex(HEX_A, "a"), EncryptionKey.from_hex(HEX_B, "b")], "a")
    token = encrypt(ring, SECRET, **WHERE)
    with pytest.raises(DecryptionError, match="authentication failed"):
        decrypt(ring, token.replace("v1.a.", "v1.b.", 1), **WHERE)


def test_unknown_key_id(ring: Keyring) -> None:
    other = Keyring.single(EncryptionKey.from_hex(HEX_B, "retired-2024"))
    token = encrypt(other, SECRET, **WHERE)
    with pytest.raises(KeyNotFoundError) as info:
        decrypt(ring, token, **WHERE)
    message = str(info.value)
    assert "'retired-2024'" in message and "main" in message and "'apiKey'" in message
    assert SECRET not in message and token not in message and HEX_B not in message
    assert isinstance(info.value, VaultError)
    assert info.value.reason == "EncryptionKeyNotFound"


def test_every_single_byte_change_is_detected(ring: Keyring) -> None:
    token = encrypt(ring, "p@ss", **WHERE)
    key_id_span = range(3, 3 + len("main"))
    raw = token.encode("ascii")
    for position in range(len(raw)):
        for mask in (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF):
            flipped = bytearray(raw)
            flipped[position] ^= mask
            tampered = flipped.decode("latin-1")
            expected: tuple[type[Exception], ...] = (
                (DecryptionError, KeyNotFoundError) if position in key_id_span else (DecryptionError,)
            )
            with pytest.raises(expected):
                decrypt(ring, tampered, **WHERE)


def test_non_canonical_base64_is_rejected(ring: Keyring) -> None:
    # 4 bytes of plaintext + 16 of tag = 20 bytes = 27 characters: the last one has 2 unused bits.
    token = encrypt(ring, "abcd", **WHERE)
    head, last = token[:-1], token[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(last)
    for low_bits in range(1, 4):
        variant = head + alphabet[index ^ low_bits]
        assert b64d(variant.split(".")[-1]) == b64d(token.split(".")[-1])  # the same bytes...
        with pytest.raises(DecryptionError, match="malformed"):  # ...but is not ours
            decrypt(ring, variant, **WHERE)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "hunter2",
        "v1",
        "v1...",
        "v2.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.main.AAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",  # 15-char nonce
        "v1.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAA",  # tag too short
        "v1.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.extra",
        "v1.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAA=",
        "v1.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA\n",
        " v1.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAA+/",
        "v1.ma in.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.main.AAAAAAAAAAAAAAAA.ÄAAAAAAAAAAAAAAAAAAAAA",
        "v1.main.AAAAAAAAAAAAAAAA." + "A" * 2_000_000,
    ],
)
def test_malformed_tokens(ring: Keyring, token: str) -> None:
    with pytest.raises(DecryptionError) as info:
        decrypt(ring, token, **WHERE)
    message = str(info.value)
    assert "malformed" in message and "'apiKey'" in message
    assert token[:30] not in message or token[:30] in ("", "v1", "v1...")
    assert info.value.__cause__ is None and (
        info.value.__context__ is None or info.value.__suppress_context__
    )


def test_well_formed_but_forged_token_fails_authentication(ring: Keyring) -> None:
    with pytest.raises(DecryptionError, match="authentication failed"):
        decrypt(ring, "v1.main.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA", **WHERE)


@pytest.mark.parametrize("token", [None, b"v1.main.x.y", 42])
def test_non_string_tokens(ring: Keyring, token: object) -> None:
    with pytest.raises(DecryptionError, match="not a string"):
        decrypt(ring, token, **WHERE)  # type: ignore[arg-type]


def test_unencodable_plaintext_is_a_vault_error_without_the_value(ring: Keyring) -> None:
    with pytest.raises(VaultError) as info:
        encrypt(ring, "secret\ud800value", **WHERE)
    assert "secret" not in str(info.value)
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_authentication_failures_do_not_chain_cryptography_exceptions(ring: Keyring) -> None:
    token = encrypt(ring, SECRET, **WHERE)
    with pytest.raises(DecryptionError) as info:
        decrypt(ring, token, **(WHERE | {"field": "other"}))
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert info.value.reason == "DecryptionFailed"


def test_long_names_are_shortened_in_messages(ring: Keyring) -> None:
    token = encrypt(ring, SECRET, **WHERE)
    with pytest.raises(DecryptionError) as info:
        decrypt(ring, token, **(WHERE | {"field": "f" * 10_000}))
    assert len(str(info.value)) < 600
