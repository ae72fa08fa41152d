"""The dashboard's defences, over real HTTP on 127.0.0.1: the per-run token, the cookie it
becomes, the CSRF token and Origin check on changes, the Host check, the CSP and the
loopback-only binding. The guarded application serves one GET and one POST route."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from oneie_operator.cli import kubectl_plugin
from oneie_operator.cli.dashboard.security import COOKIE, CSP, CSRF_HEADER, Guard, check_bind_address, guard_middleware
from oneie_operator.cli.dashboard.server import serve, url_of


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"done": True})


@pytest_asyncio.fixture()
async def served() -> AsyncIterator[tuple[str, Guard]]:
    guard = Guard()
    app = web.Application(middlewares=[guard_middleware(guard)])
    app.router.add_get("/api/thing", _ok)
    app.router.add_post("/api/thing", _ok)
    runner, port = await serve(app, guard, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}", guard
    finally:
        await runner.cleanup()


async def _session(base: str, guard: Guard) -> aiohttp.ClientSession:
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for an IP address
    async with session.get(f"{base}/api/thing?token={guard.token}", allow_redirects=True) as response:
        assert response.status == 200
        assert str(response.url) == f"{base}/api/thing"  # the token leaves the address bar
    return session


async def test_without_the_token_everything_is_refused(served: tuple[str, Guard]) -> None:
    base, guard = served
    async with aiohttp.ClientSession() as session:
        for url in (f"{base}/api/thing", f"{base}/api/thing?token=wrong", f"{base}/"):
            async with session.get(url) as response:
                assert response.status == 403, url
                assert (await response.json())["refused"] is True
        async with session.post(f"{base}/api/thing", headers={CSRF_HEADER: guard.csrf}) as response:
            assert response.status == 403  # the CSRF token alone is not enough


async def test_the_token_becomes_a_strict_http_only_cookie(served: tuple[str, Guard]) -> None:
    base, guard = served
    async with aiohttp.ClientSession() as session, session.get(
            f"{base}/api/thing?token={guard.token}", allow_redirects=False) as response:
        assert response.status == 302
        cookie = response.cookies[COOKIE]
        assert cookie.value == guard.token
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert "token" not in response.headers["Location"]


async def test_changes_need_the_csrf_token_and_the_own_origin(served: tuple[str, Guard]) -> None:
    base, guard = served
    session = await _session(base, guard)
    async with session:
        async with session.post(f"{base}/api/thing") as response:
            assert response.status == 403
            assert "CSRF" in (await response.json())["message"]
        async with session.post(f"{base}/api/thing", headers={CSRF_HEADER: "forged"}) as response:
            assert response.status == 403
        evil = {CSRF_HEADER: guard.csrf, "Origin": "http://evil.example"}
        async with session.post(f"{base}/api/thing", headers=evil) as response:
            assert response.status == 403
        own = {CSRF_HEADER: guard.csrf, "Origin": base}
        async with session.post(f"{base}/api/thing", headers=own) as response:
            assert response.status == 200


async def test_every_response_carries_a_strict_csp(served: tuple[str, Guard]) -> None:
    base, guard = served
    session = await _session(base, guard)
    async with session:
        for url in (f"{base}/api/thing", f"{base}/nothing-here"):
            async with session.get(url) as response:
                assert response.headers["Content-Security-Policy"] == CSP
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP


async def test_another_host_name_is_refused(served: tuple[str, Guard]) -> None:
    """DNS rebinding: a page on attacker.example resolving to 127.0.0.1 sends Host: attacker.example."""
    base, guard = served
    port = base.rsplit(":", 1)[1]
    session = await _session(base, guard)
    async with session, session.get(f"{base}/api/thing", headers={"Host": f"attacker.example:{port}"}) as response:
        assert response.status == 403


def test_only_loopback_unless_asked() -> None:
    check_bind_address("127.0.0.1", allow_remote=False)
    check_bind_address("::1", allow_remote=False)
    with pytest.raises(ValueError, match="--allow-remote"):
        check_bind_address("0.0.0.0", allow_remote=False)
    check_bind_address("0.0.0.0", allow_remote=True)
    args = kubectl_plugin.build_parser().parse_args(["dashboard"])
    assert (args.address, args.port, args.allow_remote) == ("127.0.0.1", 3100, False)
    assert url_of("127.0.0.1", 3100, "abc") == "http://127.0.0.1:3100/?token=abc"


def test_a_remote_address_without_the_flag_fails(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    code = kubectl_plugin.main(["dashboard", "--address", "0.0.0.0", "--kubeconfig", "/nonexistent"])
    assert code == 2
    err = capsys.readouterr().err
    assert "kubeconfig" in err or "--allow-remote" in err


def test_two_runs_have_different_tokens() -> None:
    first, second = Guard(), Guard()
    assert first.token != second.token and first.csrf != second.csrf and len(first.token) >= 40
