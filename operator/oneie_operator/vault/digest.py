"""Keyed digests: tell whether stored plaintext (e.g. a Service Binding Secret) is what we wrote,
without putting an unkeyed hash of credentials (brute-forceable for weak passwords) anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from .keys import Keyring


def keyed_digest(keyring: Keyring, data: Mapping[str, str]) -> str:
    """HMAC-SHA256 (key derived from the primary key) of a string mapping, as 32 hex characters."""
    material = keyring.primary._material
    key = hashlib.sha256(b"one.ie/binding-digest/v1\x00" + material).digest()
    payload = json.dumps(dict(sorted(data.items())), separators=(",", ":"), ensure_ascii=False).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()[:32]
