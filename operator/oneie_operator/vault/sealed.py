"""A connection's whole credential set, encrypted field by field.

A *sealed* set maps each field name to its token (see :mod:`oneie_operator.vault.cipher`);
every token is bound to the namespace, the connection and its own field name.

Rotation: after a new primary key is added to the keyring, :func:`needs_rotation`
tells which sets still hold tokens from other keys, and :func:`reseal` re-encrypts
them under the primary. The old keys stay in the keyring until nothing needs them,
so every value stays readable throughout (no downtime).
"""

from __future__ import annotations

from collections.abc import Mapping

from .cipher import decrypt, encrypt, token_key_id
from .keys import Keyring

__all__ = ["key_ids", "needs_rotation", "reseal", "seal", "unseal"]


def seal(
    keyring: Keyring, credentials: Mapping[str, str], *, namespace: str, connection: str
) -> dict[str, str]:
    """Encrypt every value with the primary key: field name → token."""
    return {
        field: encrypt(keyring, value, namespace=namespace, connection=connection, field=field)
        for field, value in credentials.items()
    }


def unseal(keyring: Keyring, sealed: Mapping[str, str], *, namespace: str, connection: str) -> dict[str, str]:
    """Decrypt every token: field name → plaintext. The first failure raises (a VaultError)."""
    return {
        field: decrypt(keyring, token, namespace=namespace, connection=connection, field=field)
        for field, token in sealed.items()
    }


def key_ids(sealed: Mapping[str, str]) -> set[str]:
    """The ids of the keys the set's tokens were encrypted with (DecryptionError if one is malformed)."""
    return {token_key_id(token) for token in sealed.values()}


def needs_rotation(keyring: Keyring, sealed: Mapping[str, str]) -> bool:
    """Whether any token was encrypted with a key other than the keyring's primary.

    Only reads the key ids (no decryption); a malformed token raises DecryptionError.
    """
    primary = keyring.primary_id
    return any(token_key_id(token) != primary for token in sealed.values())


def reseal(keyring: Keyring, sealed: Mapping[str, str], *, namespace: str, connection: str) -> dict[str, str]:
    """The same set with every token under the primary key.

    Every token is decrypted first (with the key its id names), so the result is all or
    nothing: a KeyNotFoundError or DecryptionError leaves nothing half done. Tokens that
    are already under the primary are verified and kept unchanged, so resealing a set
    that needs no rotation returns an equal dict (no needless Secret update).
    """
    plaintexts = unseal(keyring, sealed, namespace=namespace, connection=connection)
    primary = keyring.primary_id
    return {
        field: (
            token
            if token_key_id(token) == primary
            else encrypt(keyring, plaintexts[field], namespace=namespace, connection=connection, field=field)
        )
        for field, token in sealed.items()
    }
