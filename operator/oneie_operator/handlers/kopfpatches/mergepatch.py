"""Kopf's merge patches sent by the operator's own REST client; Kopf's client when that fails.

Changes: ``kopf._cogs.clients.api.patch`` (a private function, replaced on its module;
``kopf._cogs.clients.patching`` calls it through the module attribute). Checked against Kopf 1.45.2.
``running.run_operator`` binds the operator's REST client in the task that runs Kopf (:func:`bind`).

Every handled event of an Organization or a BackendConnection ends with Kopf's merge patch of its
status. Kopf sends it through its own API client: the credentials vault walked per request, its
retry loop, a per-request timeout object, the answer parsed by aiohttp. The operator's REST client
(``kube.rest.KubeREST``: the same API server and credentials, from the same kubeconfig or service
account, with its own token refresh) sends the same request for less CPU (``benchmarks/switch.py``:
Kopf's status patch was ~12 % of the operator's CPU per switch). Here, a merge patch
(``application/merge-patch+json``) to a path of the API server is sent by the REST client, and its
decoded answer returned, as Kopf's ``api.patch`` returns it. When the REST client fails in any
way (an error status, the API server unreachable), the same request is sent again by Kopf's own
``api.patch``, so that Kopf's retries, back-offs and typed errors (``APINotFoundError`` for a
deleted object, which Kopf's ``patch_obj`` expects) apply exactly as before: a merge patch
applied twice leaves the same object. JSON patches (Kopf's finalizers, with a version test) and
anything else stay Kopf's. Kopf's debug line per patch is unchanged (``patching.patch_obj`` logs it).
"""

from __future__ import annotations

import collections
import contextvars
import logging
from typing import Any

from kopf._cogs.clients import api

from oneie_operator.kube.rest import KubeREST

logger = logging.getLogger(__name__)

#: Kopf's own ``api.patch`` (restored by :func:`uninstall`; the fallback of every failure).
KOPF_PATCH = api.patch
MERGE_PATCH = "application/merge-patch+json"

#: The REST client of the operator whose Kopf sends the patch: set by :func:`bind` in the task that
#: runs Kopf, inherited by every task Kopf starts (as Kopf's own credentials vault is); two
#: operators in one process (tests, shards in the demo) each send with their own credentials.
_rest: contextvars.ContextVar[KubeREST | None] = contextvars.ContextVar("oneie_merge_patch_rest", default=None)
#: How each merge patch went (for tests and the benchmarks' checks): "rest" or "kopf".
sent: collections.Counter[str] = collections.Counter()


async def patch(
    url: str,
    *,
    settings: Any,
    payload: object | None = None,
    headers: dict[str, str] | None = None,
    timeout: Any = None,
    logger: Any,
) -> Any:
    """Kopf's ``api.patch``, a merge patch sent by the operator's REST client (module docstring)."""
    rest = _rest.get()
    if (
        rest is not None
        and timeout is None
        and url.startswith("/")
        and isinstance(payload, dict)
        and (headers or {}).get("Content-Type") == MERGE_PATCH
        and set(headers or {}) == {"Content-Type"}
    ):
        try:
            answer = await rest.request("PATCH", url, body=payload, content_type=MERGE_PATCH)
        except Exception as exc:  # whatever failed, Kopf's own client sends it again (its retries, its errors)
            logger.debug("merge patch of %s: %s from the REST client; sent by Kopf's", url, type(exc).__name__)
        else:
            sent["rest"] += 1
            return answer
    sent["kopf"] += 1
    return await KOPF_PATCH(url, settings=settings, payload=payload, headers=headers, timeout=timeout, logger=logger)


def install() -> None:
    """Send Kopf's merge patches with the REST client bound in the context (installing twice is harmless)."""
    api.patch = patch


def bind(rest: KubeREST) -> contextvars.Token[KubeREST | None]:
    """Send the merge patches of the Kopf started from this context (task) with ``rest``."""
    return _rest.set(rest)


def unbind(token: contextvars.Token[KubeREST | None]) -> None:
    _rest.reset(token)


def uninstall() -> None:
    """Restore Kopf's own ``api.patch``."""
    api.patch = KOPF_PATCH


__all__ = ["KOPF_PATCH", "MERGE_PATCH", "bind", "install", "patch", "sent", "unbind", "uninstall"]
