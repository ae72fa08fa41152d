"""Kopf handlers: importing this package registers them. Keep them thin (logic is in ``reconcile``)."""

from oneie_operator.handlers import admission, connections, health, lifecycle, organizations

__all__ = ["admission", "connections", "health", "lifecycle", "organizations"]
