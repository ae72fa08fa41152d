"""What the handlers remember per BackendConnection between events: each fact in one owner, and
each owner with a ``forget(namespace, name)`` that the connection's deletion calls
(``Services.forget_connection``), so that a deleted connection leaves nothing behind."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

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
