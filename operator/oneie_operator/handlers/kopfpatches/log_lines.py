"""Kopf's log lines, re-levelled or dropped by filters on its loggers.

Changes: what Kopf logs on ``kopf.objects`` for a handler: ``f"{handler} succeeded."`` of the
watch-only handlers is dropped, and so are both success lines of an Organization's reconcile
(its handler logs what it did); ``f"{handler} failed temporarily: {error}"`` becomes a WARNING
for our typed tenant- or provider-side problems; and the demo's ``"Unprocessed streams left for
..."`` warning on ``kopf._core.reactor.queueing`` when it stops. The filters match Kopf's own
message texts, the string of its handlers (``Handler 'id'``) and its logger names.
Checked against Kopf 1.45.2.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from oneie_operator.errors import APIServerError, OneieError
from oneie_operator.names import ORGANIZATION_KIND

#: The logger of Kopf's per-object lines (handler successes and failures).
KOPF_OBJECTS_LOGGER = "kopf.objects"
#: The (private) logger of Kopf's queueing, where it reports streams left when it stops.
KOPF_QUEUEING_LOGGER = "kopf._core.reactor.queueing"


class QuietWatchHandlers(logging.Filter):
    """Drop Kopf's "Handler '...' succeeded." line for the watch-only handlers.

    ``secret_changed`` runs on every event of every labelled Secret in the watched namespaces and
    ``connection_changed`` on every connection event: a success line each is noise in the logs
    (and a measurable share of the operator's CPU in a burst of switches). Their failures, and
    every line of the reconcile handlers, are still logged."""

    QUIET = frozenset(f"Handler {name!r} succeeded." for name in ("secret_changed", "connection_changed"))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.QUIET


class QuietOrganizationSuccesses(logging.Filter):
    """Drop Kopf's two success lines of an Organization's reconcile, "Handler 'reconcile'
    succeeded." and "Updating is processed: 1 succeeded; 0 failed." (or Creation, Resuming).

    They say only that the handler returned; the handler logs one line of its own for what it
    did (a switch or a rollback: from, to, result, time and reason, ``handlers/organizations.py``).
    In a burst of switches the two lines were ~3 % of the operator's CPU. Kopf's lines of a
    failure, and every line of other kinds, are kept."""

    SUCCESS = re.compile(r"^(Handler '[^']+' succeeded\.|[A-Z][a-z]+ is processed: \d+ succeeded; 0 failed\.)$")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        ref = getattr(record, "k8s_ref", None)
        if not isinstance(ref, dict) or ref.get("kind") != ORGANIZATION_KIND:
            return True
        return not self.SUCCESS.match(record.getMessage())


def tenant_side_transient_reasons() -> frozenset[str]:
    """The reasons of our typed errors that are the tenant's or the provider's side and retried:
    a missing Secret, a provider that is down, slow or rate-limiting (not the API server's), and
    a deletion held because an organization uses the connection."""
    found: set[str] = set()
    pending: list[type[OneieError]] = [OneieError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.transient and not issubclass(cls, APIServerError):
            found.add(cls.reason)
    return frozenset(found | {"DeletionBlocked"})  # a held deletion: an organization still uses it


class TenantProblemsAsWarnings(logging.Filter):
    """Log Kopf's "Handler '...' failed temporarily: <Reason>: ..." as a WARNING, not an ERROR,
    when the reason is one of our typed tenant- or provider-side problems.

    The connection handler raises ``kopf.TemporaryError("<Reason>: <message>")`` for them
    (``handlers/connections.py``); the status and an Event already say so, and the operator
    retries by itself: nothing is wrong with the operator. Any other temporary failure (the API
    server's, an unexpected one) stays an ERROR."""

    PATTERN = re.compile(r"^Handler '[^']+' failed temporarily: (?P<reason>[A-Za-z]+): ")

    def __init__(self, reasons: Iterable[str] | None = None) -> None:
        super().__init__()
        self.reasons = frozenset(reasons) if reasons is not None else tenant_side_transient_reasons()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR:
            match = self.PATTERN.match(record.getMessage())
            if match and match["reason"] in self.reasons:
                record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def install_log_filters() -> None:
    """Our filters on Kopf's per-object logger (once, however often the operator starts)."""
    objects_logger = logging.getLogger(KOPF_OBJECTS_LOGGER)
    for kind in (QuietWatchHandlers, QuietOrganizationSuccesses, TenantProblemsAsWarnings):
        if not any(isinstance(f, kind) for f in objects_logger.filters):
            objects_logger.addFilter(kind())


class DroppedRetriesNotice(logging.Filter):
    """The demo's Ctrl-C drops retries that were waiting for their time (a connection pointed at
    a provider it cannot reach, say): its cluster is the emulator's memory, gone with the demo.
    Kopf does not wake such a waiting worker when it stops and says so ("Unprocessed streams
    left for ..."): expected there, so not shown (installed by the demo only)."""

    PREFIX = "Unprocessed streams left for"

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.PREFIX)


def install_demo_filters() -> None:
    """The demo's filter on Kopf's queueing logger (once)."""
    queueing = logging.getLogger(KOPF_QUEUEING_LOGGER)
    if not any(isinstance(f, DroppedRetriesNotice) for f in queueing.filters):
        queueing.addFilter(DroppedRetriesNotice())


__all__ = [
    "KOPF_OBJECTS_LOGGER", "KOPF_QUEUEING_LOGGER", "DroppedRetriesNotice", "QuietOrganizationSuccesses",
    "QuietWatchHandlers",
    "TenantProblemsAsWarnings", "install_demo_filters", "install_log_filters", "tenant_side_transient_reasons",
]
