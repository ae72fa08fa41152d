"""kube/wire.py, the transport of the operator's own API requests, against real servers on 127.0.0.1:
an aiohttp application (keep-alive, chunked answers, a path prefix, slow answers) and raw TCP
servers that misbehave (garbage, a closed keep-alive connection). Every scenario runs on asyncio's
event loop and on uvloop (the operator's: it calls ``connection_made`` later than asyncio does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop
from aiohttp import web

from oneie_operator.kube.wire import Wire, WireError

Seen = list[tuple[str, str, str, int]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve_app() -> AsyncIterator[tuple[str, Seen]]:
    """An aiohttp server; records (method, path, body, client port) of every request."""
    seen: Seen = []

    async def any_route(request: web.Request) -> web.StreamResponse:
        body = await request.text()
        peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
        seen.append((request.method, request.path_qs, body, peer))
        if request.path.endswith("/chunked"):
            response = web.StreamResponse(status=200)
            response.enable_chunked_encoding()
            await response.prepare(request)
            for part in (b'{"items": [', b"1, 2,", b" 3]}"):
                await response.write(part)
            await response.write_eof()
            return response
        if request.path.endswith("/slow"):
            await asyncio.sleep(5)
        if request.path.endswith("/close"):
            return web.json_response({"closing": True}, headers={"Connection": "close"})
        if request.path.endswith("/missing"):
            return web.json_response({"reason": "NotFound"}, status=404, reason="Not Found")
        return web.json_response({"method": request.method, "auth": request.headers.get("Authorization", "")})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_route)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    finally:
        await runner.cleanup()


async def raw_server(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def wire(url: str, **kwargs: float) -> Wire:
    return Wire(url, False, timeout=kwargs.get("timeout", 5.0), connect_timeout=2.0,
                idle_seconds=kwargs.get("idle_seconds", 15.0))


async def scenario_requests_share_one_keep_alive_connection_with_the_prefix() -> None:
    async with serve_app() as app_url:
        url, seen = app_url
        client = wire(url + "/prefix/")
        try:
            bearer = {"Authorization": "Bearer t"}
            status, reason, body = await client.request("GET", "/api/v1/namespaces?limit=1", bearer)
            assert (status, reason, json.loads(body)) == (200, "OK", {"method": "GET", "auth": "Bearer t"})
            patch = json.dumps({"status": {"ready": True}}).encode()
            json_type = {"Content-Type": "application/json"}
            status, _, body = await client.request("PATCH", "/apis/one.ie/v1/x", json_type, patch)
            assert status == 200 and json.loads(body)["method"] == "PATCH"
        finally:
            client.close()
        assert [(m, p, b) for m, p, b, _ in seen] == [
            ("GET", "/prefix/api/v1/namespaces?limit=1", ""),
            ("PATCH", "/prefix/apis/one.ie/v1/x", '{"status": {"ready": true}}'),
        ]
        assert seen[0][3] == seen[1][3]  # the same client port: the connection was kept and reused


async def scenario_error_status_reason_and_chunked_answers() -> None:
    async with serve_app() as app_url:
        url, _ = app_url
        client = wire(url)
        try:
            assert (await client.request("GET", "/missing", {}))[:2] == (404, "Not Found")
            status, _, body = await client.request("GET", "/chunked", {})
            assert (status, json.loads(body)) == (200, {"items": [1, 2, 3]})
        finally:
            client.close()


async def scenario_an_answer_with_connection_close_is_not_reused() -> None:
    async with serve_app() as app_url:
        url, seen = app_url
        client = wire(url)
        try:
            assert (await client.request("GET", "/close", {}))[0] == 200
            assert (await client.request("GET", "/again", {}))[0] == 200
        finally:
            client.close()
        assert seen[0][3] != seen[1][3]


async def scenario_a_deadline_drops_the_connection() -> None:
    async with serve_app() as app_url:
        url, seen = app_url
        client = wire(url, timeout=0.3)
        try:
            with pytest.raises(TimeoutError):
                await client.request("GET", "/slow", {})
            assert (await client.request("GET", "/fast", {}))[0] == 200
        finally:
            client.close()
        assert seen[0][3] != seen[1][3]  # the timed-out connection was closed, not reused


async def scenario_idle_connections_are_closed_after_idle_seconds() -> None:
    async with serve_app() as app_url:
        url, seen = app_url
        client = wire(url, idle_seconds=0.0)
        try:
            await client.request("GET", "/one", {})
            await asyncio.sleep(0.01)
            await client.request("GET", "/two", {})
        finally:
            client.close()
        assert seen[0][3] != seen[1][3]


async def scenario_a_closed_keep_alive_connection_is_retried_for_idempotent_methods_only() -> None:
    """Each connection answers its first request (keep-alive) and closes, unanswered, at its second:
    as a server closing an idle connection just as the client reuses it."""
    connections = 0

    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server, port = await raw_server(answer_once)
    client = wire(f"http://127.0.0.1:{port}")
    try:
        assert (await client.request("GET", "/a", {}))[0] == 200
        assert (await client.request("GET", "/b", {}))[0] == 200  # reused, closed unanswered, sent again
        assert connections == 2
        with pytest.raises(WireError, match="closed before the whole answer"):
            await client.request("POST", "/c", {}, b"{}")  # not idempotent: never sent twice
        assert connections == 2
    finally:
        client.close()
        server.close()
        await server.wait_closed()


async def scenario_garbage_is_a_wire_error_without_the_answer() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.6 s3cr3t-banner\r\n\r\n")
        await writer.drain()

    server, port = await raw_server(garbage)
    client = wire(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(WireError) as caught:
            await client.request("GET", "/x", {})
        assert "s3cr3t" not in str(caught.value)
    finally:
        client.close()
        server.close()
        await server.wait_closed()


async def scenario_refused_connections_line_breaks_and_a_closed_client_are_errors() -> None:
    async with serve_app() as app_url:
        url, seen = app_url
        server, port = await raw_server(lambda r, w: asyncio.sleep(0))
        server.close()
        await server.wait_closed()
        with pytest.raises(WireError, match="cannot connect"):
            await wire(f"http://127.0.0.1:{port}").request("GET", "/x", {})
        client = wire(url)
        with pytest.raises(WireError, match="line break"):
            await client.request("GET", "/x", {"Authorization": "Bearer a\r\nX-Injected: 1"})
        client.close()
        with pytest.raises(WireError, match="closed"):
            await client.request("GET", "/x", {})
        assert seen == []
        with pytest.raises(ValueError, match="http"):
            Wire("ftp://example", False, timeout=1, connect_timeout=1)


SCENARIOS = [value for name, value in list(globals().items()) if name.startswith("scenario_")]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__.removeprefix("scenario_"))
def test_wire(scenario: Callable[[], Awaitable[None]], loop: str) -> None:
    run = uvloop.run if loop == "uvloop" else asyncio.run
    run(scenario())  # type: ignore[arg-type]
