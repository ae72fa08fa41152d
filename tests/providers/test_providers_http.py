"""ProviderHTTP and its bound ProviderClient: status mapping, limits, redaction of what providers echo, counting."""

from __future__ import annotations

import base64
import email.utils
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from oneie_operator.errors import (
    CredentialsRejectedError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderServerError,
)
from oneie_operator.providers.http import ProviderClient, ProviderHTTP, describe_error_body, parse_retry_after
from oneie_operator.providers.netguard import DestinationPolicy

POLICY = DestinationPolicy(allow_loopback=True, allow_plain_http=True)
SECRET = "s3cr3t-Token-Value-1234567890"


async def echo_auth(request: web.Request) -> web.Response:
    """A careless provider: echoes the credentials it got in its error message."""
    auth = request.headers.get("Authorization", "")
    key = request.headers.get("apikey", "")
    return web.json_response({"code": "denied", "message": f"bad credentials {auth} / {key}"}, status=401)


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")


async def big_declared(request: web.Request) -> web.Response:
    return web.Response(body=b"{}" + b" " * (2 * 1024 * 1024), content_type="application/json")


async def not_found(request: web.Request) -> web.Response:
    return web.json_response({"code": "rest_no_route", "message": "No route"}, status=404)


async def retry_date(request: web.Request) -> web.Response:
    when = datetime.now(UTC) + timedelta(seconds=120)
    return web.Response(status=429, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)})


async def html_502(request: web.Request) -> web.Response:
    return web.Response(status=502, text="<html><body>Bad gateway</body></html>", content_type="text/html")


async def ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def sets_cookie(request: web.Request) -> web.Response:
    """A provider that answers one tenant with a session cookie."""
    response = web.json_response({"ok": True})
    response.set_cookie("session", SECRET, path="/")
    return response


async def shows_cookie(request: web.Request) -> web.Response:
    return web.json_response({"cookie": request.headers.get("Cookie", "")})


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in {
        "/echo": echo_auth,
        "/redirect": redirect,
        "/big": big_declared,
        "/missing": not_found,
        "/retry-date": retry_date,
        "/bad-gateway": html_502,
        "/ok": ok,
        "/set-cookie": sets_cookie,
        "/show-cookie": shows_cookie,
    }.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[ProviderClient]:
    async with ProviderHTTP(policy=POLICY, timeout=3.0) as transport:
        yield transport.client("demo")


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SECRET}"},
        {"Authorization": f"Convex {SECRET}"},
        {"apikey": SECRET},
    ],
)
async def test_credentials_echoed_by_the_provider_never_reach_the_message(
    headers: dict[str, str], http: ProviderClient, base_url: str
) -> None:
    with pytest.raises(CredentialsRejectedError) as caught:
        await http.request("GET", f"{base_url}/echo", call="test", headers=headers)
    message = str(caught.value)
    assert "denied" in message and "HTTP 401" in message
    assert SECRET not in message
    assert "[REDACTED]" in message


async def test_basic_auth_echoed_in_any_form_is_removed(http: ProviderClient, base_url: str) -> None:
    with pytest.raises(CredentialsRejectedError) as caught:
        await http.request("GET", f"{base_url}/echo", call="test", auth=("admin", SECRET))
    message = str(caught.value)
    basic = base64.b64encode(f"admin:{SECRET}".encode()).decode()
    assert basic not in message and SECRET not in message


async def test_a_cookie_set_for_one_tenant_never_reaches_another_request(http: ProviderClient, base_url: str) -> None:
    """One client serves every tenant: it keeps no cookies (same host, same client, next call)."""
    await http.request("GET", f"{base_url}/set-cookie", call="test")
    other = await http.request("GET", f"{base_url}/show-cookie", call="test")
    assert other.body == {"cookie": ""}


async def test_redirects_are_not_followed(http: ProviderClient, base_url: str) -> None:
    with pytest.raises(ProviderProtocolError, match="redirect, which is not followed"):
        await http.request("GET", f"{base_url}/redirect", call="probe")


async def test_a_declared_oversized_body_is_refused_before_reading(http: ProviderClient, base_url: str) -> None:
    with pytest.raises(ProviderProtocolError, match=r"too large .* more than the limit"):
        await http.request("GET", f"{base_url}/big", call="probe")
    answer = await http.request("GET", f"{base_url}/big", call="probe", max_response_bytes=4 * 1024 * 1024)
    assert answer.body == {}


async def test_other_4xx_names_the_status_and_the_provider_code(http: ProviderClient, base_url: str) -> None:
    with pytest.raises(ProviderProtocolError, match=r"HTTP 404 \(rest_no_route: No route\)"):
        await http.request("GET", f"{base_url}/missing", call="probe")
    answer = await http.request("GET", f"{base_url}/missing", call="probe", expect=(200, 404))
    assert answer.status == 404 and answer.body["code"] == "rest_no_route"


async def test_retry_after_as_an_http_date(http: ProviderClient, base_url: str) -> None:
    with pytest.raises(ProviderRateLimitedError) as caught:
        await http.request("GET", f"{base_url}/retry-date", call="probe")
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


async def test_html_error_pages_are_not_quoted(http: ProviderClient, base_url: str) -> None:
    with pytest.raises(ProviderServerError) as caught:
        await http.request("GET", f"{base_url}/bad-gateway", call="probe")
    assert "HTTP 502" in str(caught.value)
    assert "<html>" not in str(caught.value)


async def test_every_call_is_counted_and_a_broken_hook_breaks_nothing(base_url: str) -> None:
    seen: list[tuple[str, str, str, float, str]] = []
    async with ProviderHTTP(policy=POLICY, on_call=lambda *c: seen.append(c)) as http:
        await http.client("demo").request("GET", f"{base_url}/ok", call="probe")
        view = http.client("notion", display_name="Notion", base_url=base_url, namespace="tenant-a")
        with pytest.raises(CredentialsRejectedError, match=r"^Notion rejected"):
            await view.request("GET", "/echo", call="test_credentials")
        await http.client("convex").request("GET", f"{base_url}/ok", call="probe")
    assert [(p, c, o, ns) for p, c, o, _, ns in seen] == [
        ("demo", "probe", "Success", ""),
        ("notion", "test_credentials", "CredentialsRejected", "tenant-a"),  # the tenant's usage
        ("convex", "probe", "Success", ""),
    ]
    assert all(seconds >= 0 for *_, seconds, _ns in seen)

    def broken(*_: object) -> None:
        raise RuntimeError("metrics backend down")

    async with ProviderHTTP(policy=POLICY, on_call=broken) as http:
        assert (await http.client("demo").request("GET", f"{base_url}/ok", call="probe")).body == {"ok": True}


async def test_the_url_is_checked_before_sending(http: ProviderClient) -> None:
    from oneie_operator.errors import DestinationForbiddenError

    with pytest.raises(DestinationForbiddenError) as caught:
        await http.request("GET", "http://169.254.169.254/", call="probe", url_field="spec.supabase.url")
    assert caught.value.issues[0].field == "spec.supabase.url"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("999999999", 86400.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date_in_the_future() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Tue, 01 Jan 2030 12:01:30 GMT", now=now) == 90.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"code": "BadAdminKey", "message": "The provided admin key was invalid"},
            "BadAdminKey: The provided",
        ),
        (
            {"object": "error", "code": "unauthorized", "message": "API token is invalid."},
            "unauthorized: API",
        ),
        (
            {"code": 429, "error_code": "over_request_rate_limit", "msg": "slow down"},
            "over_request_rate_limit",
        ),
        ({"message": "Invalid API key", "hint": "Double check"}, "Invalid API key"),
        ({"code": "PGRST301", "message": "JWT expired"}, "PGRST301: JWT expired"),
        ({"error": "invalid_grant", "error_description": "expired"}, "invalid_grant: expired"),
        ("plain text problem", "plain text problem"),
        ([1, 2, 3], None),
        (None, None),
    ],
)
def test_describe_error_body_knows_the_providers_shapes(body: object, expected: str | None) -> None:
    described = describe_error_body(400, body)
    if expected is None:
        assert described is None
    else:
        assert described is not None and described.startswith(expected)


async def test_a_call_after_close_raises_and_opens_no_session(base_url: str) -> None:
    """A probe still running while the operator stops: a typed error, and no new session that
    nobody would close ("Unclosed client session", seen by the suite's guard in tests/conftest.py)."""
    from oneie_operator.errors import ProviderUnreachableError

    http = ProviderHTTP(policy=POLICY)
    assert (await http.client("demo").request("GET", f"{base_url}/ok", call="probe")).body == {"ok": True}
    await http.aclose()
    with pytest.raises(ProviderUnreachableError, match="closed"):
        await http.client("demo").request("GET", f"{base_url}/ok", call="probe")
    assert http._session is None
