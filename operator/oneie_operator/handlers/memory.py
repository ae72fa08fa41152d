"""What the handlers remember per BackendConnection between events: each fact in one owner, and
each owner with a ``forget(namespace, name)`` that the connection's deletion calls
(``Services.forget_connection``), so that a deleted connection leaves nothing behind."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from oneie_operator.kube.secrets import WatchedSecret, watched_secret
from oneie_operator.names import CREDENTIALS_LABEL, ENCRYPTED, OPTED_IN

Key = tuple[str, str]


class ProbeRequests:
    """The last ``one.ie/probe`` annotation value acted on, per connection: a new value requests an
    immediate probe, and the health report that answers it echoes the value (``lastRequest``)."""

    def __init__(self) -> None:
        self._values: dict[Key, str] = {}

    def get(self, namespace: str, name: str) -> str | None:
        return self._values.get((namespace, name))

    def take(self, namespace: str, name: str, value: str) -> bool:
        """Whether ``value`` is a new request (and remember it)."""
        if self._values.get((namespace, name)) == value:
            return False
        self._values[(namespace, name)] = value
        return True

    def forget(self, namespace: str, name: str) -> None:
        self._values.pop((namespace, name), None)

    def __len__(self) -> int:
        return len(self._values)


class ConnectionWatch:
    """Connections as the watch last delivered them.

    ``known``: metadata, spec and status of each (the organizations' reconciles read it, see
    ``reconcile.organizations``); ``states``: the part of each state that organizations react to
    (readiness, the verified credentials' version, health), to tell a change from a repeat."""

    def __init__(self) -> None:
        self.known: dict[Key, dict[str, Any]] = {}
        self._states: dict[Key, Hashable] = {}

    def seen(self, namespace: str, name: str, meta: Mapping[str, Any], spec: Mapping[str, Any],
             status: Mapping[str, Any]) -> None:
        self.known[(namespace, name)] = {"metadata": dict(meta), "spec": dict(spec), "status": dict(status)}

    def used_by(self, namespace: str, name: str) -> list[str] | None:
        """The connection's ``status.usedBy`` as the watch delivered it; None when not seen."""
        seen = self.known.get((namespace, name))
        return None if seen is None else list((seen.get("status") or {}).get("usedBy") or [])

    def state_changed(self, namespace: str, name: str, state: Hashable) -> bool:
        """Remember ``state``; whether it differs from an earlier one (False when first seen)."""
        previous = self._states.get((namespace, name))
        self._states[(namespace, name)] = state
        return previous is not None and previous != state

    def forget(self, namespace: str, name: str) -> None:
        self.known.pop((namespace, name), None)
        self._states.pop((namespace, name), None)

    def __len__(self) -> int:
        return len(self.known.keys() | self._states.keys())


class WatchedSecrets:
    """Secrets as the operator's Secret watch last delivered them (filled by one list at start-up,
    then kept by the watch's events): the tenants' opted-in Secrets and the operator's encrypted
    copies, not the bindings (rewritten by every switch). An unchanged connection is decided from
    here without reading its Secrets (a resume after a restart; ``reconcile.connections``).

    Keyed by Secret: an entry goes when the watch delivers the Secret's deletion (or its leaving the
    selection), and a deleted connection's encrypted copy goes with the connection
    (``Services.forget_connection``); a tenant's Secret stays while it exists."""

    def __init__(self) -> None:
        self._secrets: dict[Key, WatchedSecret] = {}

    def get(self, namespace: str, name: str) -> WatchedSecret | None:
        return self._secrets.get((namespace, name))

    def seen(self, namespace: str, name: str, body: Mapping[str, Any], deleted: bool = False) -> None:
        """A Secret as listed or watched (``deleted``: the watch's DELETED event)."""
        label = ((body.get("metadata") or {}).get("labels") or {}).get(CREDENTIALS_LABEL)
        if deleted or label not in (OPTED_IN, ENCRYPTED):
            self._secrets.pop((namespace, name), None)
        else:
            self._secrets[(namespace, name)] = watched_secret(body)

    def forget(self, namespace: str, name: str) -> None:
        self._secrets.pop((namespace, name), None)

    def encrypted_copies(self) -> int:
        """How many of the operator's encrypted copies are held (one per live connection)."""
        return sum(1 for secret in self._secrets.values() if secret.label == ENCRYPTED)

    def __len__(self) -> int:
        return len(self._secrets)
