"""Encryption of connection credentials at rest (DESIGN.md §5). No Kopf, no Kubernetes.

* :mod:`.keys`: :class:`EncryptionKey`, :class:`Keyring` (``ENCRYPTION_KEY`` / ``ENCRYPTION_KEYRING``),
  :func:`generate_key`.
* :mod:`.cipher`: :func:`encrypt` / :func:`decrypt` of one value into a ``v1.<key id>.<nonce>.<ciphertext>``
  token, AES-256-GCM bound to namespace, connection and field.
* :mod:`.sealed`: whole credential sets, and key rotation (:func:`needs_rotation`, :func:`reseal`).
"""

from __future__ import annotations

from .cipher import (
    MAX_PLAINTEXT_BYTES,
    NONCE_SIZE,
    TOKEN_VERSION,
    ParsedToken,
    associated_data,
    decrypt,
    encrypt,
    is_token,
    parse_token,
    token_key_id,
)
from .digest import DigestCheck, keyed_digest, verify_digest
from .keys import (
    ENCRYPTION_KEY_VAR,
    ENCRYPTION_KEYRING_VAR,
    KEY_ID_PATTERN,
    KEY_SIZE,
    EncryptionKey,
    Keyring,
    derive_key_id,
    generate_key,
)
from .sealed import key_ids, needs_rotation, reseal, seal, unseal

__all__ = [
    "ENCRYPTION_KEYRING_VAR",
    "ENCRYPTION_KEY_VAR",
    "KEY_ID_PATTERN",
    "KEY_SIZE",
    "MAX_PLAINTEXT_BYTES",
    "NONCE_SIZE",
    "TOKEN_VERSION",
    "DigestCheck",
    "EncryptionKey",
    "Keyring",
    "ParsedToken",
    "associated_data",
    "decrypt",
    "derive_key_id",
    "encrypt",
    "generate_key",
    "is_token",
    "key_ids",
    "keyed_digest",
    "needs_rotation",
    "parse_token",
    "reseal",
    "seal",
    "token_key_id",
    "unseal",
    "verify_digest",
]
