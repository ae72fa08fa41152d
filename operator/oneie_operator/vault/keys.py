"""Encryption keys and keyrings, and how they are read from the operator's environment.

Two environment variables configure the keys (set exactly one of them):

``ENCRYPTION_KEY``
    One AES-256 key as 64 hexadecimal characters (upper or lower case; surrounding
    whitespace is ignored). Its key id is derived from the key itself:
    ``"k-"`` followed by the first 8 hex characters of the SHA-256 of the 32 raw key
    bytes (see :func:`derive_key_id`), so the same key always gets the same id.

``ENCRYPTION_KEYRING``
    A JSON object naming several keys and the primary one::

        {"primary": "2025-06", "keys": {"2025-06": "<64 hex>", "2024-11": "<64 hex>"}}

    Key ids are 1 to 32 characters from ``A-Z a-z 0-9 _ -``. New values are always
    encrypted with the primary key; every key in ``keys`` can still decrypt the
    values it encrypted. To move from ``ENCRYPTION_KEY`` to a keyring without losing
    access to existing values, list the old key under its derived id
    (:func:`derive_key_id`, i.e. ``EncryptionKey.from_hex(old_key).id``).

Empty variables count as unset. Error messages name the variable and the expected
format and never repeat the value (it is a secret, or might be one).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NoReturn, Self, final

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigurationError, KeyNotFoundError

__all__ = [
    "ENCRYPTION_KEYRING_VAR",
    "ENCRYPTION_KEY_VAR",
    "KEY_ID_PATTERN",
    "KEY_SIZE",
    "EncryptionKey",
    "Keyring",
    "derive_key_id",
    "generate_key",
]

ENCRYPTION_KEY_VAR = "ENCRYPTION_KEY"
ENCRYPTION_KEYRING_VAR = "ENCRYPTION_KEYRING"

#: Raw key length in bytes (AES-256).
KEY_SIZE = 32

#: What a key id may look like. Ids travel inside tokens (``v1.<id>.…``), so no dots.
KEY_ID_PATTERN = r"[A-Za-z0-9_-]{1,32}"
_KEY_ID_RE = re.compile(KEY_ID_PATTERN)
_HEX_KEY_RE = re.compile(r"[0-9A-Fa-f]{64}")

_KEY_FORMAT = "64 hexadecimal characters (32 random bytes; `oneie-operator keygen` prints one)"
_KEYRING_FORMAT = (
    'a JSON object {"primary": "<key id>", "keys": {"<key id>": "<64 hex characters>", ...}} '
    "where key ids are 1-32 characters from A-Z a-z 0-9 _ - and the primary is one of the keys"
)


def generate_key() -> str:
    """A fresh random AES-256 key as 64 lowercase hex characters (for ``oneie-operator keygen``)."""
    return secrets.token_hex(KEY_SIZE)


def derive_key_id(material: bytes) -> str:
    """The deterministic id of a key used through ``ENCRYPTION_KEY``: ``k-`` + 8 hex of its SHA-256."""
    return "k-" + hashlib.sha256(material).hexdigest()[:8]


def is_valid_key_id(key_id: object) -> bool:
    return isinstance(key_id, str) and _KEY_ID_RE.fullmatch(key_id) is not None


@final
class EncryptionKey:
    """One AES-256-GCM key and its id. ``repr``/``str`` show the id only, never the key material."""

    __slots__ = ("_aead", "_id", "_material")

    _id: str
    _material: bytes
    _aead: AESGCM

    def __init__(self, key_id: str, material: bytes) -> None:
        if not is_valid_key_id(key_id):
            raise ConfigurationError(f"invalid encryption key id: expected {KEY_ID_PATTERN}")
        if not isinstance(material, bytes | bytearray) or len(material) != KEY_SIZE:
            raise ConfigurationError(f"an encryption key must be exactly {KEY_SIZE} raw bytes")
        object.__setattr__(self, "_id", key_id)
        object.__setattr__(self, "_material", bytes(material))
        object.__setattr__(self, "_aead", AESGCM(bytes(material)))

    @classmethod
    def from_hex(cls, hex_key: str, key_id: str | None = None) -> Self:
        """A key from 64 hex characters; without ``key_id`` the id is :func:`derive_key_id`'s."""
        if not isinstance(hex_key, str) or _HEX_KEY_RE.fullmatch(hex_key.strip()) is None:
            raise ConfigurationError(f"an encryption key must be {_KEY_FORMAT}")
        material = bytes.fromhex(hex_key.strip())
        return cls(derive_key_id(material) if key_id is None else key_id, material)

    @classmethod
    def generate(cls, key_id: str | None = None) -> Self:
        """A fresh random key (mostly for tests and tools)."""
        return cls.from_hex(generate_key(), key_id)

    @property
    def id(self) -> str:
        return self._id

    @property
    def aead(self) -> AESGCM:
        """The AES-GCM primitive for this key (used by :mod:`oneie_operator.vault.cipher`)."""
        return self._aead

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("EncryptionKey is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("EncryptionKey is immutable")

    def __reduce__(self) -> NoReturn:
        # Pickling would copy the key material somewhere we do not control.
        raise TypeError("EncryptionKey cannot be pickled")

    def __copy__(self) -> Self:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> Self:
        return self

    def __repr__(self) -> str:
        return f"EncryptionKey(id={self._id!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncryptionKey):
            return NotImplemented
        return self._id == other._id and hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        return hash(self._id)


@final
class Keyring:
    """Several keys, each with a unique id, one of them primary (used for all new encryptions).

    Immutable: :meth:`with_key` and :meth:`with_primary` return new keyrings.
    """

    __slots__ = ("_keys", "_primary")

    _keys: Mapping[str, EncryptionKey]
    _primary: EncryptionKey

    def __init__(self, keys: Iterable[EncryptionKey], primary: str | None = None) -> None:
        by_id: dict[str, EncryptionKey] = {}
        for key in keys:
            if not isinstance(key, EncryptionKey):
                raise ConfigurationError("a keyring holds EncryptionKey objects only")
            if key.id in by_id:
                raise ConfigurationError(f"the keyring has two keys with the id {key.id!r}")
            by_id[key.id] = key
        if not by_id:
            raise ConfigurationError("a keyring needs at least one key")
        primary_id = next(iter(by_id)) if primary is None else primary
        if primary_id not in by_id:
            shown = repr(primary_id) if is_valid_key_id(primary_id) else "(invalid id)"
            raise ConfigurationError(f"the primary key {shown} is not one of the keyring's keys")
        object.__setattr__(self, "_keys", MappingProxyType(by_id))
        object.__setattr__(self, "_primary", by_id[primary_id])

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def single(cls, key: EncryptionKey) -> Self:
        return cls([key])

    @classmethod
    def from_env(cls, encryption_key: str | None, keyring: str | None) -> Self:
        """The keyring described by ``ENCRYPTION_KEY`` or ``ENCRYPTION_KEYRING`` (module docstring).

        Exactly one must be set (empty counts as unset); otherwise, or when the value is
        invalid, :class:`ConfigurationError` names the variable and the expected format.
        """
        has_key = encryption_key is not None and encryption_key.strip() != ""
        has_ring = keyring is not None and keyring.strip() != ""
        if has_key and has_ring:
            raise ConfigurationError(
                f"both {ENCRYPTION_KEY_VAR} and {ENCRYPTION_KEYRING_VAR} are set; set only one: "
                f"{ENCRYPTION_KEY_VAR} as {_KEY_FORMAT}, or {ENCRYPTION_KEYRING_VAR} as {_KEYRING_FORMAT}"
            )
        if has_key:
            assert encryption_key is not None
            return cls._parse_single(encryption_key)
        if has_ring:
            assert keyring is not None
            return cls._parse_keyring(keyring)
        raise ConfigurationError(
            f"no encryption key configured: set {ENCRYPTION_KEY_VAR} to {_KEY_FORMAT}, "
            f"or {ENCRYPTION_KEYRING_VAR} to {_KEYRING_FORMAT}"
        )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        """:meth:`from_env` reading both variables from a mapping such as ``os.environ``."""
        return cls.from_env(environ.get(ENCRYPTION_KEY_VAR), environ.get(ENCRYPTION_KEYRING_VAR))

    @classmethod
    def _parse_single(cls, value: str) -> Self:
        stripped = value.strip()
        if _HEX_KEY_RE.fullmatch(stripped) is None:
            raise ConfigurationError(
                f"{ENCRYPTION_KEY_VAR} is invalid: expected {_KEY_FORMAT}, "
                f"got {len(stripped)} characters{'' if _is_hex(stripped) else ' (not all hexadecimal)'}"
            )
        return cls.single(EncryptionKey.from_hex(stripped))

    @classmethod
    def _parse_keyring(cls, value: str) -> Self:
        def fail(problem: str) -> NoReturn:
            raise ConfigurationError(
                f"{ENCRYPTION_KEYRING_VAR} is invalid: {problem}; expected {_KEYRING_FORMAT}"
            ) from None

        try:
            doc = json.loads(value, object_pairs_hook=_no_duplicates)
        except _DuplicateKeyError:
            fail("a JSON object repeats a member name")
        except (ValueError, RecursionError):
            fail("it is not valid JSON")
        if not isinstance(doc, dict):
            fail("the top level is not a JSON object")
        unknown = set(doc) - {"primary", "keys"}
        if unknown:
            names = ", ".join(sorted(repr(n) for n in unknown if is_valid_key_id(n)))
            fail(f"unexpected member(s) {names or '(unprintable)'}")
        primary = doc.get("primary")
        keys = doc.get("keys")
        if not isinstance(keys, dict) or not keys:
            fail('"keys" is missing, not an object, or empty')
        parsed: list[EncryptionKey] = []
        for position, (key_id, hex_key) in enumerate(keys.items(), start=1):
            if not is_valid_key_id(key_id):
                # Do not echo it: a swapped id/key pair would put the key here.
                fail(f'the key id at position {position} in "keys" is not 1-32 characters of A-Z a-z 0-9 _ -')
            if not isinstance(hex_key, str) or _HEX_KEY_RE.fullmatch(hex_key.strip()) is None:
                fail(f"the key {key_id!r} is not {_KEY_FORMAT}")
            parsed.append(EncryptionKey.from_hex(hex_key, key_id))
        if not isinstance(primary, str) or not primary:
            fail('"primary" is missing or not a string')
        if primary not in keys:
            shown = repr(primary) if is_valid_key_id(primary) else "(an invalid id)"
            fail(f'"primary" names {shown}, which is not in "keys"')
        return cls(parsed, primary)

    # -- use ----------------------------------------------------------------------------------

    @property
    def primary(self) -> EncryptionKey:
        return self._primary

    @property
    def primary_id(self) -> str:
        return self._primary.id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def get(self, key_id: str) -> EncryptionKey:
        """The key with this id, or :class:`KeyNotFoundError`."""
        try:
            return self._keys[key_id]
        except (KeyError, TypeError):
            shown = repr(key_id) if is_valid_key_id(key_id) else "(an invalid id)"
            raise KeyNotFoundError(
                f"the keyring has no key {shown} (it has: {', '.join(self._keys)})"
            ) from None

    def with_key(self, key: EncryptionKey, *, primary: bool = False) -> Keyring:
        """A new keyring with ``key`` added (and made primary when ``primary``)."""
        return Keyring([*self._keys.values(), key], key.id if primary else self.primary_id)

    def with_primary(self, key_id: str) -> Keyring:
        """A new keyring with the same keys and ``key_id`` as primary."""
        return Keyring(self._keys.values(), key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[EncryptionKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Keyring is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Keyring is immutable")

    def __reduce__(self) -> NoReturn:
        raise TypeError("Keyring cannot be pickled")

    def __copy__(self) -> Self:
        return self  # immutable

    def __deepcopy__(self, memo: object) -> Self:
        return self

    def __repr__(self) -> str:
        return f"Keyring(primary={self.primary_id!r}, ids={list(self._keys)!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keyring):
            return NotImplemented
        return self.primary_id == other.primary_id and dict(self._keys) == dict(other._keys)

    def __hash__(self) -> int:
        return hash((self.primary_id, tuple(self._keys)))


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateKeyError
        result[name] = value
    return result


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
