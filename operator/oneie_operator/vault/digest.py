"""Keyed digests: tell whether stored plaintext (e.g. a Service Binding Secret) is what we wrote,
without putting an unkeyed hash of credentials (brute-forceable for weak passwords) anywhere.

A digest names the key that stamped it: ``<key id>:<32 hex>``. It is verified with that key, so a
key rotation (a new primary) does not make every stored digest look forged: a digest stamped by a
key the keyring still holds is genuine, just :attr:`DigestCheck.stale` (re-stamp it quietly with
the new primary). A digest without a key id (written before ids were recorded) is verified with
every key of the keyring.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .keys import EncryptionKey, Keyring

_SEPARATOR = ":"


def _hmac(key: EncryptionKey, data: Mapping[str, str]) -> str:
    derived = hashlib.sha256(b"one.ie/binding-digest/v1\x00" + key._material).digest()
    payload = json.dumps(dict(sorted(data.items())), separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(derived, payload, hashlib.sha256).hexdigest()[:32]


def keyed_digest(keyring: Keyring, data: Mapping[str, str]) -> str:
    """``<primary key id>:<HMAC-SHA256 of the mapping, key derived from the primary key, 32 hex>``."""
    return f"{keyring.primary_id}{_SEPARATOR}{_hmac(keyring.primary, data)}"


@dataclass(frozen=True)
class DigestCheck:
    """What a stored digest says about the data it is stored with."""

    #: The data is what the operator stamped (with a key of the keyring).
    genuine: bool
    #: Genuine, but not stamped by the current primary key in the current form: re-stamp it.
    stale: bool = False


def verify_digest(keyring: Keyring, data: Mapping[str, str], digest: str | None) -> DigestCheck:
    """Check ``digest`` against ``data`` with the key that stamped it (its id is in the digest;
    an unprefixed digest is tried with every key). Unknown key id or no match: not genuine."""
    if not digest:
        return DigestCheck(genuine=False)
    key_id, separator, mac = digest.rpartition(_SEPARATOR)
    if separator:
        if key_id not in keyring.ids:
            return DigestCheck(genuine=False)
        genuine = hmac.compare_digest(mac, _hmac(keyring.get(key_id), data))
        return DigestCheck(genuine=genuine, stale=genuine and key_id != keyring.primary_id)
    for candidate in keyring.ids:
        if hmac.compare_digest(digest, _hmac(keyring.get(candidate), data)):
            return DigestCheck(genuine=True, stale=True)
    return DigestCheck(genuine=False)
