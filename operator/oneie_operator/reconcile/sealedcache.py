"""The last encrypted credentials read per connection, reused while the connection says they are current.

A switch needs the target connection's encrypted credentials (the operator-owned Secret). The
connection's status names the version it verified and stored (``status.credentials.resourceVersion``),
and a switch reads that status anyway; when the version matches what was read before, the Secret
is not read again. Only ciphertext is kept (decryption happens per switch, as before), bounded
(least recently used out first). A stale entry cannot be used: the version in the connection's
status decides, and a hand-edited Secret is the connection reconcile's to detect and repair.
"""

from __future__ import annotations

from collections.abc import Mapping

from oneie_operator.lru import LRU


class SealedCache:
    """(namespace, connection) → (owned Secret resourceVersion, sealed values)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._entries: LRU[tuple[str, str], tuple[str, Mapping[str, str]]] = LRU(capacity)

    def get(self, namespace: str, connection: str, version: str) -> Mapping[str, str] | None:
        """The sealed values stored at ``version``, if those are what was last read."""
        entry = self._entries.get((namespace, connection)) if version else None
        return entry[1] if entry is not None and entry[0] == version else None

    def put(self, namespace: str, connection: str, version: str, sealed: Mapping[str, str]) -> None:
        if version:
            self._entries.put((namespace, connection), (version, dict(sealed)))

    def forget(self, namespace: str, connection: str) -> None:
        """The connection is deleted."""
        self._entries.discard((namespace, connection))

    def __len__(self) -> int:
        return len(self._entries)
