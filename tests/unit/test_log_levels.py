"""Kopf's "Handler ... failed temporarily" line is a WARNING for our typed tenant- or provider-side
problems (the status and an Event already say so, and the operator retries by itself) and stays an
ERROR for anything else (issue 15, item 5). The demo's run (tests/e2e/test_documented_commands.py)
shows the same on the real operator: its expected failures log no ERROR line."""

from __future__ import annotations

import logging

import pytest

from oneie_operator.errors import (
    APIServerUnavailableError,
    CredentialsRejectedError,
    ProviderServerError,
    ProviderUnreachableError,
    SecretNotFoundError,
)
from oneie_operator.handlers.kopfpatches.log_lines import (
    TenantProblemsAsWarnings,
    install_log_filters,
    tenant_side_transient_reasons,
)


def test_the_tenant_side_reasons_are_the_transient_typed_errors_but_the_api_servers() -> None:
    reasons = tenant_side_transient_reasons()
    assert {ProviderServerError.reason, ProviderUnreachableError.reason, SecretNotFoundError.reason} <= reasons
    assert "DeletionBlocked" in reasons
    assert APIServerUnavailableError.reason not in reasons  # the cluster's problem, not the tenant's
    assert CredentialsRejectedError.reason not in reasons  # permanent: never a temporary failure


@pytest.mark.parametrize(
    ("message", "level"),
    [
        ("Handler 'reconcile' failed temporarily: ProviderServerError: Notion at 127.0.0.1 has a server error",
         logging.WARNING),
        ("Handler 'guard_deletion' failed temporarily: DeletionBlocked: deletion is held: Organization(s) acme ...",
         logging.WARNING),
        ("Handler 'reconcile' failed temporarily: the API server answered 503 Service Unavailable", logging.ERROR),
        ("Handler 'reconcile' failed temporarily: APIServerUnavailable: the API server is away", logging.ERROR),
        ("Handler 'reconcile' failed with an exception. Will retry.", logging.ERROR),
    ],
)
def test_kopf_failed_temporarily_lines(caplog: pytest.LogCaptureFixture, message: str, level: int) -> None:
    install_log_filters()
    install_log_filters()  # idempotent: one filter of each kind
    logger = logging.getLogger("kopf.objects")
    assert sum(isinstance(f, TenantProblemsAsWarnings) for f in logger.filters) == 1
    with caplog.at_level(logging.DEBUG, logger="kopf.objects"):
        logger.error(message)
    (record,) = [r for r in caplog.records if r.getMessage() == message]
    assert (record.levelno, record.levelname) == (level, logging.getLevelName(level))
