"""The last encrypted credentials read per connection, reused while the connection says they are current.

A switch needs the target connection's encrypted credentials (the operator-owned Secret). The
connection's status names the version it verified and stored (``status.credentials.resourceVersion``),
and a switch reads that status anyway; when the version matches what was read before, the Secret
is not read again. Only ciphertext is kept (decryption happens per switch, as before), bounded
(least recently used out first). A stale entry cannot be used: the version in the connection's
status decides, and a hand-edited Secret is the connection reconcile's to detect and repair.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping


class SealedCache:
    """(namespace, connection) → (owned Secret resourceVersion, sealed values)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str], tuple[str, Mapping[str, str]]] = OrderedDict()

    def get(self, namespace: str, connection: str, version: str) -> Mapping[str, str] | None:
        """The sealed values stored at ``version``, if those are what was last read."""
        if not version:
            return None
        entry = self._entries.get((namespace, connection))
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end((namespace, connection))
        return entry[1]

    def put(self, namespace: str, connection: str, version: str, sealed: Mapping[str, str]) -> None:
        if not version:
            return
        self._entries[(namespace, connection)] = (version, dict(sealed))
        self._entries.move_to_end((namespace, connection))
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
