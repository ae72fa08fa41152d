"""The operator's REST client through a kubeconfig's ``proxy-url`` (kube/rest.py keeps aiohttp for it;
kube/wire.py speaks to the API server directly): the request goes to the proxy, in absolute form."""

from __future__ import annotations

import kubernetes
from aiohttp import web

from oneie_operator.kube.rest import KubeREST


async def test_a_configured_proxy_gets_the_request() -> None:
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(str(request.url) if request.url.is_absolute() else request.path_qs)
        return web.json_response({"kind": "Namespace", "via": "proxy"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    cfg = kubernetes.client.Configuration()
    cfg.host = "http://kube-api.invalid:6443"  # never resolved: only the proxy is connected to
    cfg.proxy = f"http://127.0.0.1:{port}"
    rest = KubeREST(cfg, timeout=5)
    try:
        assert await rest.request("GET", "/api/v1/namespaces/x") == {"kind": "Namespace", "via": "proxy"}
    finally:
        await rest.aclose()
        await runner.cleanup()
    assert seen == ["http://kube-api.invalid:6443/api/v1/namespaces/x"]
