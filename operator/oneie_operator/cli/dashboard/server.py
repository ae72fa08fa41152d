"""The dashboard's aiohttp application and ``kubectl oneie dashboard`` itself."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from importlib import resources
from pathlib import Path

from aiohttp import web

from oneie_operator.cli.dashboard.api import Backend, routes
from oneie_operator.cli.dashboard.events import Hub, sse_route
from oneie_operator.cli.dashboard.security import Guard, check_bind_address, guard_middleware
from oneie_operator.cli.plugin_common import ExitCode, PluginError, say
from oneie_operator.cli.plugin_kube import Cluster

DEFAULT_PORT = 3100
STATIC = Path(str(resources.files("oneie_operator.cli.dashboard") / "static"))


def build_app(cluster: Cluster, guard: Guard, *, pinned_namespace: str | None, all_namespaces: bool,
              operator_namespace: str = "oneie-system") -> web.Application:
    backend = Backend(cluster, namespace=pinned_namespace, all_namespaces=all_namespaces,
                      operator_namespace=operator_namespace)
    hub = Hub(cluster, namespace=cluster.namespace, cluster_wide=pinned_namespace is None)
    app = web.Application(middlewares=[guard_middleware(guard)])

    async def session(request: web.Request) -> web.Response:
        return web.json_response({"csrf": guard.csrf, "namespace": cluster.namespace,
                                  "scope": "all namespaces" if pinned_namespace is None else cluster.namespace})

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def start(app: web.Application) -> None:
        hub.start()

    async def stop(app: web.Application) -> None:
        hub.stop()

    app.router.add_get("/", index)
    app.router.add_get("/api/session", session)
    app.router.add_routes(routes(backend))
    app.router.add_routes(sse_route(hub))
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


async def serve(app: web.Application, guard: Guard, address: str, port: int) -> tuple[web.AppRunner, int]:
    """Start listening; the port actually bound (``port`` 0: any free one) and the runner."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, address, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    guard.allow_host(address, bound)
    return runner, bound


def url_of(address: str, port: int, token: str) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}/?token={token}"


def cmd_dashboard(args: argparse.Namespace, cluster: Cluster) -> int:
    try:
        check_bind_address(args.address, args.allow_remote)
    except ValueError as exc:
        raise PluginError(str(exc)) from None
    guard = Guard()
    app = build_app(cluster, guard, pinned_namespace=None if args.all_namespaces or not args.namespace
                    else args.namespace, all_namespaces=args.all_namespaces,
                    operator_namespace=getattr(args, "operator_namespace", "oneie-system"))

    async def main() -> None:
        runner, port = await serve(app, guard, args.address, args.port)
        say(f"kubectl oneie dashboard: open {url_of(args.address, port, guard.token)}")
        say("It acts with your kubeconfig identity; Ctrl-C stops it.")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(main())
    except OSError as exc:
        raise PluginError(f"cannot listen on {args.address}:{args.port}: {exc.strerror or exc}") from None
    return ExitCode.OK
