"""The admission webhook server: fail closed where Kopf fails open.

Changes: Kopf's answer to an AdmissionReview that no validating handler judges (an unknown path,
or a review of another resource than the path's): Kopf answers ``allowed: true``
(``kopf._core.engines.admission.build_response`` with no outcomes), this server refuses it. It
subclasses the public :class:`kopf.WebhookServer` and wraps the ``fn`` Kopf hands it, relying on
Kopf's server calling ``fn(request, webhook=<path>, ...)`` with the request path as ``webhook``.
:func:`no_webhook_server` is an admission "server" that never listens, for when the webhook is
off (Kopf requires a server once admission handlers are registered). Checked against Kopf 1.45.2.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import kopf

from oneie_operator.handlers.admission import misrouted


class FailClosedWebhookServer(kopf.WebhookServer):
    """Kopf's HTTPS webhook server, refusing (``allowed: false``) every review that no validating
    handler of ours is meant to judge, instead of Kopf's ``allowed: true``."""

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async def guarded(request: Any, *, webhook: str | None = None, **kwargs: Any) -> Any:
            refused = misrouted(request, webhook)
            if refused is not None:
                return refused
            return await fn(request, webhook=webhook, **kwargs)

        async for config in super().__call__(cast(kopf.WebhookFn, guarded)):
            yield config


async def no_webhook_server(fn: Any) -> AsyncIterator[Any]:
    """An admission "server" that never listens (Kopf requires one when admission handlers exist)."""
    await asyncio.Event().wait()
    yield {}  # pragma: no cover  (never reached)


__all__ = ["FailClosedWebhookServer", "no_webhook_server"]
