"""AES-256-GCM encryption of single credential values, bound to where they belong.

Token format (ASCII, safe in YAML, Secret data and annotations)::

    v1.<key id>.<nonce>.<ciphertext>

* ``v1``: the format version.
* ``<key id>``: the id of the keyring key that encrypted the value (``[A-Za-z0-9_-]{1,32}``).
* ``<nonce>``: the 12-byte (96-bit) GCM nonce, fresh from :func:`os.urandom` for every
  value, base64url without padding (always 16 characters).
* ``<ciphertext>``: the AES-GCM ciphertext followed by its 16-byte tag, base64url
  without padding. The plaintext is the value's UTF-8 encoding.

Base64 must be canonical (what we produce): any other spelling is rejected, so every
change to a token's characters is detected.

The associated data (authenticated, not stored) binds the value to its place::

    b"one.ie/v1" + len32(namespace) + namespace + len32(connection) + connection + len32(field) + field

with ``len32`` the 4-byte big-endian length of the UTF-8 bytes that follow. The
length prefixes make the encoding injective: ``("a|b", "c")`` and ``("a", "b|c")``
give different associated data. A token copied to another namespace, connection or
field therefore fails to decrypt.

Errors are :class:`~oneie_operator.errors.VaultError` subclasses whose messages name
the field, connection and key id, never the plaintext, the key or the token; raw
exceptions from ``cryptography``/``base64`` never escape (and are not chained).
"""

from __future__ import annotations

import binascii
import os
import re
from typing import NamedTuple

from cryptography.exceptions import InvalidTag

from ..errors import DecryptionError, KeyNotFoundError, VaultError
from .keys import Keyring

__all__ = [
    "MAX_PLAINTEXT_BYTES",
    "NONCE_SIZE",
    "TOKEN_VERSION",
    "ParsedToken",
    "associated_data",
    "decrypt",
    "encrypt",
    "is_token",
    "parse_token",
    "token_key_id",
]

TOKEN_VERSION = "v1"
NONCE_SIZE = 12
TAG_SIZE = 16
#: Larger values are refused (a whole Kubernetes Secret is at most 1 MiB).
MAX_PLAINTEXT_BYTES = 1024 * 1024

_AD_PREFIX = b"one.ie/v1"
_B64 = r"[A-Za-z0-9_-]"
_TOKEN_RE = re.compile(rf"v1\.({_B64}{{1,32}})\.({_B64}{{16}})\.({_B64}{{22,}})")
# Base64 of MAX_PLAINTEXT_BYTES + tag, plus the rest of the token.
_MAX_TOKEN_CHARS = 4 * (MAX_PLAINTEXT_BYTES + TAG_SIZE + 2) // 3 + 64
_FORMAT_HINT = "expected v1.<key id>.<base64url nonce>.<base64url ciphertext>"
_AUTH_FAILED = (
    "authentication failed (the value was altered, the key with that id is not the one that "
    "encrypted it, or it was encrypted for another namespace, connection or field)"
)


class ParsedToken(NamedTuple):
    key_id: str
    nonce: bytes
    ciphertext: bytes


def associated_data(namespace: str, connection: str, field: str) -> bytes:
    """The authenticated binding of a value to its namespace, connection and field."""
    try:
        ns, conn, fld = namespace.encode("utf-8"), connection.encode("utf-8"), field.encode("utf-8")
    except AttributeError:
        raise TypeError("namespace, connection and field must be str") from None
    except UnicodeEncodeError:
        raise VaultError(
            "a namespace, connection or field name is not valid Unicode text (unpaired surrogate)"
        ) from None
    return b"".join((_AD_PREFIX, _u32(len(ns)), ns, _u32(len(conn)), conn, _u32(len(fld)), fld))


def encrypt(keyring: Keyring, plaintext: str, *, namespace: str, connection: str, field: str) -> str:
    """Encrypt ``plaintext`` with the keyring's primary key, bound to namespace/connection/field."""
    try:
        data = plaintext.encode("utf-8")
    except AttributeError:
        raise TypeError(f"the value of {_where(namespace, connection, field)} must be a str") from None
    except UnicodeEncodeError:
        raise VaultError(
            f"the value of {_where(namespace, connection, field)} is not valid Unicode text "
            "(unpaired surrogate)"
        ) from None
    if len(data) > MAX_PLAINTEXT_BYTES:
        raise VaultError(
            f"the value of {_where(namespace, connection, field)} is larger than {MAX_PLAINTEXT_BYTES} bytes"
        )
    ad = associated_data(namespace, connection, field)
    key = keyring.primary
    nonce = os.urandom(NONCE_SIZE)
    sealed = key.aead.encrypt(nonce, data, ad)
    return f"{TOKEN_VERSION}.{key.id}.{_b64encode(nonce)}.{_b64encode(sealed)}"


def decrypt(keyring: Keyring, token: str, *, namespace: str, connection: str, field: str) -> str:
    """The plaintext of ``token``, which must have been encrypted for this namespace/connection/field.

    Raises :class:`KeyNotFoundError` when the token's key id is not in the keyring and
    :class:`DecryptionError` when the token is malformed or does not authenticate
    (tampered, wrong key, or encrypted for another namespace, connection or field).
    """
    parsed = _parse(token, namespace, connection, field)
    try:
        key = keyring.get(parsed.key_id)
    except KeyNotFoundError:
        raise KeyNotFoundError(
            f"cannot decrypt {_where(namespace, connection, field)}: it was encrypted with key "
            f"{parsed.key_id!r}, which the keyring does not have (it has: {', '.join(keyring.ids)})"
        ) from None
    ad = associated_data(namespace, connection, field)
    try:
        data = key.aead.decrypt(parsed.nonce, parsed.ciphertext, ad)
    except (InvalidTag, ValueError, OverflowError):
        raise DecryptionError(
            f"cannot decrypt {_where(namespace, connection, field)} "
            f"with key {parsed.key_id!r}: {_AUTH_FAILED}"
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Only reachable if someone else encrypted non-UTF-8 bytes under our key and binding.
        raise DecryptionError(
            f"cannot decrypt {_where(namespace, connection, field)}: the decrypted value is not UTF-8 text"
        ) from None


def parse_token(token: str) -> ParsedToken:
    """Split a token into key id, nonce and ciphertext; :class:`DecryptionError` when malformed."""
    return _parse(token)


def token_key_id(token: str) -> str:
    """The id of the key that encrypted ``token`` (no decryption; :class:`DecryptionError` if malformed)."""
    return _parse(token).key_id


def is_token(value: object) -> bool:
    """Whether ``value`` is shaped like a token this module produces (not whether it decrypts)."""
    try:
        _parse(value)
    except DecryptionError:
        return False
    return True


def _parse(token: object, *where: str) -> ParsedToken:
    """The parts of ``token``; ``where`` (namespace, connection, field) only names it in errors."""

    def malformed(problem: str) -> DecryptionError:
        what = _where(*where) if where else "the value"
        return DecryptionError(f"cannot decrypt {what}: malformed token ({problem}; {_FORMAT_HINT})")

    if not isinstance(token, str):
        raise malformed("not a string")
    if len(token) > _MAX_TOKEN_CHARS:
        raise malformed("too long")
    if not token.startswith(TOKEN_VERSION + "."):
        raise malformed("unknown version or not a token")
    match = _TOKEN_RE.fullmatch(token)
    if match is None:
        raise malformed("wrong structure or characters")
    key_id, nonce_text, ciphertext_text = match.groups()
    nonce = _b64decode(nonce_text)
    ciphertext = _b64decode(ciphertext_text)
    if nonce is None or ciphertext is None:
        raise malformed("non-canonical base64")
    if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE:
        raise malformed("wrong nonce or ciphertext length")
    return ParsedToken(key_id, nonce, ciphertext)


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_B64_VALUE = {c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def _b64encode(data: bytes) -> str:
    """base64url without padding."""
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict base64url without padding: ``None`` unless ``text`` is exactly what we would write.

    ``text`` has already been checked to use only the base64url alphabet (so it is ASCII).
    """
    raw = text.encode("ascii").translate(_FROM_URLSAFE)
    remainder = len(raw) % 4
    if remainder == 1:
        return None  # a dangling character: not base64 at all
    if remainder:
        # The last character carries 4 (2 characters left over) or 2 (3 left over) unused low
        # bits. Canonical base64 has them zero; otherwise two spellings would decode alike.
        if _B64_VALUE[raw[-1]] & (0x0F if remainder == 2 else 0x03):
            return None
        raw += b"=" * (4 - remainder)
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


def _where(namespace: object, connection: object, field: object) -> str:
    if isinstance(namespace, str) and isinstance(connection, str):
        return f"field {_short(field)} of connection {_short(f'{namespace}/{connection}', 128)}"
    return f"field {_short(field)} of a connection (namespace or name not a str)"


def _short(name: object, limit: int = 64) -> str:
    if not isinstance(name, str):
        return "(not a str)"
    shown = name if len(name) <= limit else name[:limit] + "…"
    return repr(shown)
