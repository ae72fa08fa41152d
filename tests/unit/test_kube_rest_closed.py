"""The operator's REST client once closed (kube/rest.py): a late request (the operator stopping)
raises a typed error and opens no session that nobody would close ("Unclosed client session")."""

from __future__ import annotations

import kubernetes
import pytest
from aiohttp import web

from oneie_operator.kube.rest import KubeConnectionError, KubeREST


async def test_a_request_after_close_raises_and_opens_no_session() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Namespace"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rest = KubeREST(cfg, timeout=5)
    try:
        assert await rest.request("GET", "/api/v1/namespaces/x") == {"kind": "Namespace"}
        await rest.aclose()
        with pytest.raises(KubeConnectionError):
            await rest.request("GET", "/api/v1/namespaces/x")
        assert rest._session is None
    finally:
        await rest.aclose()
        await runner.cleanup()
