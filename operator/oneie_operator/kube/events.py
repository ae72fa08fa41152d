"""Kubernetes Events posted from the operator's background work, outside any Kopf handler.

``kopf.event`` hands an Event to Kopf's poster through a context variable that Kopf sets only in a
resource handler's task. The probe engine is started once at start-up and runs on its own, so the
Events of its health reports (``BackendOnline``, ``BackendOffline``, ``CredentialsRejected``, ...)
are posted here instead: the same core/v1 Event Kopf would post (its reporting component, instance
and name prefix are passed in from Kopf's settings), written with the operator's own API client.
As with Kopf, an Event is auxiliary: one the API server refuses is logged and dropped.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from oneie_operator.kube.rest import KubeAPIError, KubeREST

logger = logging.getLogger(__name__)

#: Longer messages are cut in the middle (as Kopf does), so that the API server accepts them.
MAX_MESSAGE_LENGTH = 1024


@dataclass(frozen=True)
class EventSource:
    """Who posts: ``reportingComponent`` (also ``source.component``, kubectl's "From"), ``reportingInstance``."""

    component: str
    instance: str
    name_prefix: str


def shortened(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    infix = "..."
    head = MAX_MESSAGE_LENGTH // 2 - len(infix) // 2
    tail = MAX_MESSAGE_LENGTH - head - len(infix)
    return f"{message[:head]}{infix}{message[-tail:]}"


class EventRecorder:
    def __init__(self, rest: KubeREST, source: EventSource) -> None:
        self._rest = rest
        self._source = source

    async def post(self, involved: Mapping[str, str], type: str, reason: str, message: str) -> None:
        """Post one Event about ``involved`` (apiVersion, kind, namespace, name, uid)."""
        namespace = involved.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).isoformat()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": namespace, "generateName": self._source.name_prefix},
            "action": "Action?",
            "type": type,
            "reason": reason,
            "message": shortened(message),
            "reportingComponent": self._source.component,
            "reportingInstance": self._source.instance,
            "source": {"component": self._source.component},
            "involvedObject": {**involved, "namespace": namespace},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": now,
        }
        try:
            await self._rest.request("POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", body=body)
        except KubeAPIError as exc:
            logger.warning(
                "Event %s about %s/%s not posted (%s %s); continuing",
                reason, namespace, involved.get("name"), exc.status or "", exc.reason,
            )
