"""Any exception of a dependency (provider, vault, API server, library) as a typed error."""

from __future__ import annotations

from oneie_operator.errors import (
    APIServerUnavailableError,
    APIWriteRefusedError,
    OneieError,
)
from oneie_operator.errors import as_typed_error as _as_typed_error
from oneie_operator.kube.rest import KubeAPIError

#: Answers after which the same request may succeed later.
TRANSIENT_STATUSES = frozenset({0, 408, 409, 429, 500, 502, 503, 504})


def as_typed_error(exc: BaseException) -> OneieError:
    """``exc`` typed: ours as is, the API server's by status, anything else by its type only."""
    if isinstance(exc, KubeAPIError):
        text = f"the API server answered {exc.status} {exc.reason}" if exc.status else "the API server is unreachable"
        if exc.status in TRANSIENT_STATUSES:
            return APIServerUnavailableError(text, exc.status)
        return APIWriteRefusedError(text, exc.status)
    return _as_typed_error(exc)
