"""The provider transport against hostile answers and unusable credentials (issue 12 items 1, 4, 5).

Real HTTP servers on 127.0.0.1; every provider call path: credential tests and probes of a built-in
provider (what a switch makes too), and the probe engine's ``run_probe`` that writes
``status.health.lastError``.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from oneie_operator.errors import CredentialsError, OneieError, ProviderProtocolError
from oneie_operator.health.assessment import HealthTracker, Thresholds
from oneie_operator.health.probing import ProbeTarget, run_probe
from oneie_operator.providers import ProviderHTTP, default_registry, validate_settings
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.redaction import redact, sanitize
from oneie_operator.testing.provider_servers import ProviderServers
from oneie_operator.vault import Keyring, seal

POLICY = DestinationPolicy(allow_loopback=True, allow_plain_http=True)
KEYRING = Keyring.from_env("00" * 32, None)
MiB = 1024 * 1024
#: Memory a call may use beyond its baseline: generous (the answer limit is 1 MiB).
MEMORY_BOUND = 64 * MiB


def _deflate_zeros(size: int, wbits: int) -> bytes:
    """``size`` zero bytes compressed, built a MiB at a time (never holding ``size`` bytes)."""
    z = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = bytes(MiB)
    parts = [z.compress(block) for _ in range(size // MiB)]
    parts.append(z.flush())
    return b"".join(parts)


def _gzip(data: bytes) -> bytes:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


@pytest.fixture(scope="module")
def bombs() -> dict[str, tuple[str, bytes]]:
    """name -> (Content-Encoding, body): tiny bodies that decode to hundreds of MiB or GiB."""
    gzip_256m = _deflate_zeros(256 * MiB, 31)
    return {
        # 1 GiB of zeros, gzipped twice: a few KiB on the wire.
        "gzip-gzip": ("gzip, gzip", _gzip(_deflate_zeros(1024 * MiB, 31))),
        "gzip": ("gzip", gzip_256m),  # one layer, 256 MiB decoded from ~250 KiB
        "deflate": ("deflate", _deflate_zeros(256 * MiB, 15)),
        "x-gzip": ("x-gzip", gzip_256m),
    }


@pytest.fixture
async def bomb_url(bombs: dict[str, tuple[str, bytes]]) -> AsyncIterator[str]:
    """``/{bomb}/{status}/...`` answers ``status`` with that bomb, whatever the rest of the path."""

    async def answer(request: web.Request) -> web.Response:
        encoding, body = bombs[request.match_info["bomb"]]
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        return web.Response(status=int(request.match_info["status"]), body=body, headers=headers)

    async def brotli(request: web.Request) -> web.Response:
        return web.Response(body=b"\x1b\x00\x00", headers={"Content-Encoding": "br"})

    app = web.Application()
    app.router.add_get("/br/{tail:.*}", brotli)
    app.router.add_get("/{bomb}/{status:\\d+}/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def peak_memory(call: Callable[[], Awaitable[Any]]) -> tuple[int, BaseException | None]:
    """Peak traced allocation while ``call`` runs, and what it raised."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    raised: BaseException | None = None
    try:
        await call()
    except Exception as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak - base, raised


DEPLOY_KEY = "dev:happy-otter-123|" + "0123456789abcdef" * 4


@pytest.mark.parametrize("bomb", ["gzip-gzip", "gzip", "deflate", "x-gzip"])
@pytest.mark.parametrize("status", [200, 401, 500])
@pytest.mark.parametrize("call", ["test_credentials", "probe"])
async def test_a_decompression_bomb_is_refused_with_bounded_memory(
    bomb_url: str, bomb: str, status: int, call: str
) -> None:
    """Credential test and probe of a provider (a switch makes both), on success and error answers."""
    convex = default_registry().get("convex")
    settings = validate_settings(convex, {"url": f"{bomb_url}/{bomb}/{status}"}, "spec.convex")
    credentials = {"deployKey": DEPLOY_KEY}
    async with ProviderHTTP(policy=POLICY, timeout=30) as http:
        client = http.bind(convex, settings, credentials)
        method = convex.test_credentials if call == "test_credentials" else convex.probe
        grown, raised = await peak_memory(lambda: method(settings, credentials, client))
    assert isinstance(raised, ProviderProtocolError), repr(raised)
    assert "too large" in str(raised)
    assert grown < MEMORY_BOUND, f"{grown / MiB:.0f} MiB allocated while refusing a {bomb} bomb"


async def test_a_probe_of_a_bomb_reports_too_large_in_health(bomb_url: str) -> None:
    convex = default_registry().get("convex")
    settings = validate_settings(convex, {"url": f"{bomb_url}/gzip-gzip/200"}, "spec.convex")
    sealed = seal(KEYRING, {"deployKey": DEPLOY_KEY}, namespace="ns", connection="c")
    target = ProbeTarget("ns", "c", convex, settings, sealed, Thresholds(timeout_seconds=30))
    async with ProviderHTTP(policy=POLICY, timeout=30) as http:
        outcomes = []
        grown, raised = await peak_memory(lambda: _append(outcomes, run_probe(target, KEYRING, http)))
    assert raised is None
    assert grown < MEMORY_BOUND
    tracker = HealthTracker(Thresholds())
    tracker.record(outcomes[0])
    assert tracker.status()["lastError"].startswith("ProviderProtocolError: ")
    assert "too large" in tracker.status()["lastError"]


async def _append(into: list[Any], result: Awaitable[Any]) -> None:
    into.append(await result)


async def test_an_encoding_we_cannot_bound_is_refused(bomb_url: str) -> None:
    async with ProviderHTTP(policy=POLICY) as http:
        with pytest.raises(ProviderProtocolError, match="Content-Encoding br, which is not accepted"):
            await http.client("demo").request("GET", f"{bomb_url}/br/x", call="probe")


async def test_identity_is_asked_for_and_a_small_gzip_answer_still_works() -> None:
    seen: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Accept-Encoding", ""))
        return web.Response(body=_gzip(b'{"ok": true}'), headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        async with ProviderHTTP(policy=POLICY) as http:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
            assert (await http.client("demo").request("GET", url, call="probe")).body == {"ok": True}
    finally:
        await runner.cleanup()
    assert seen == ["identity"]


# ------------------------------------------------------------------------ unusable header values
@pytest.fixture
async def servers() -> AsyncIterator[ProviderServers]:
    async with ProviderServers(providers=["convex", "supabase"]) as running:
        yield running


BAD_VALUES = {
    "form feed": "sb_secret_Abcdef\x0cGhijklmnop0123",
    "line break": "sb_secret_Abcdef\nX-Injected: yes",
    "non-ASCII": "sb_secret_Abcdéfghijklmnop0123",
}


@pytest.mark.parametrize("value", BAD_VALUES.values(), ids=BAD_VALUES.keys())
@pytest.mark.parametrize("call", ["test_credentials", "probe"])
async def test_a_credential_http_cannot_carry_is_a_typed_error_naming_the_field(
    servers: ProviderServers, value: str, call: str
) -> None:
    supabase = default_registry().get("supabase")
    settings = validate_settings(supabase, servers.settings("supabase"), "spec.supabase")
    credentials = {"serviceRoleKey": value}
    async with ProviderHTTP(policy=POLICY) as http:
        client = http.bind(supabase, settings, credentials)
        method = supabase.test_credentials if call == "test_credentials" else supabase.probe
        with pytest.raises(CredentialsError) as caught:
            await method(settings, credentials, client)
    message = str(caught.value)
    assert "serviceRoleKey" in message
    assert "Abcdef" not in message and "jklmnop" not in message
    assert servers["supabase"].request_count == 0  # nothing half-sent


async def test_a_non_ascii_deploy_key_is_a_typed_error(servers: ProviderServers) -> None:
    convex = default_registry().get("convex")
    settings = validate_settings(convex, servers.settings("convex"), "spec.convex")
    credentials = {"deployKey": "dev:happy-otter-123|Schlüssel0123456789"}
    async with ProviderHTTP(policy=POLICY) as http:
        with pytest.raises(CredentialsError, match="deployKey") as caught:
            await convex.test_credentials(settings, credentials, http.bind(convex, settings, credentials))
    assert "Schl" not in str(caught.value)


# ------------------------------------------------------------------------ a provider's own failure
async def test_a_provider_failing_in_its_own_code_is_a_typed_error_without_its_text(servers: ProviderServers) -> None:
    """A plug-in bug (here: a KeyError quoting a credential) must still let a switch roll back."""
    secret = "sb_secret_" + "Zz9" * 10

    class Careless(type(default_registry().get("supabase"))):  # type: ignore[misc]
        async def probe(self, settings: Any, credentials: Mapping[str, str], http: Any) -> Any:
            raise KeyError(f"no such key {credentials['serviceRoleKey']}")

    provider = Careless()
    settings = validate_settings(provider, servers.settings("supabase"), "spec.supabase")
    async with ProviderHTTP(policy=POLICY) as http:
        with pytest.raises(ProviderProtocolError, match=r"probe failed inside the provider \(KeyError\)") as caught:
            await http.probe(provider, settings, {"serviceRoleKey": secret})
    assert "Zz9Zz9" not in str(caught.value)


# ------------------------------------------------------------------------ library text never in messages
SECRET = "Tok3n-Alpha\x0cBravo-9876"


def leak_forms(secret: str, user: str = "admin") -> list[str]:
    return [
        "Tok3n-Alpha",
        "Bravo-9876",
        secret,
        repr(secret)[1:-1],
        repr(secret.encode())[2:-1],
        quote(secret, safe=""),
        base64.b64encode(f"{user}:{secret}".encode()).decode().rstrip("="),
    ]


@pytest.fixture
async def malformed_echo() -> AsyncIterator[str]:
    """A server that puts the Basic-auth password it got into an invalid header name, raw: the
    client's parser error quotes the line (``b'X-Echo-Tok3n-Alpha\\x0cBravo...'``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        password = b""
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"authorization: basic "):
                password = base64.b64decode(line.split(b" ", 2)[2]).split(b":", 1)[1]
        writer.write(b"HTTP/1.1 200 OK\r\nX-Echo-" + password + b": yes\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


async def test_library_error_text_quoting_a_secret_never_reaches_the_message(malformed_echo: str) -> None:
    async with ProviderHTTP(policy=POLICY) as http:
        client = http.client("demo", credentials={"applicationPassword": SECRET})
        with pytest.raises(OneieError) as caught:
            await client.request("GET", f"{malformed_echo}/", call="probe", auth=("admin", SECRET))
    message = str(caught.value)
    for form in leak_forms(SECRET):
        assert form not in message, message


async def test_library_error_text_never_reaches_status_health(malformed_echo: str) -> None:
    class BasicProbe(type(default_registry().get("wordpress"))):  # type: ignore[misc]
        async def probe(self, settings: Any, credentials: Mapping[str, str], http: Any) -> Any:
            await http.request("GET", "/", call="probe", auth=("admin", credentials["applicationPassword"]))

    provider = BasicProbe()
    settings = validate_settings(provider, {"url": malformed_echo}, "spec.wordpress")
    sealed = seal(KEYRING, {"username": "admin", "applicationPassword": SECRET}, namespace="ns", connection="c")
    target = ProbeTarget("ns", "c", provider, settings, sealed, Thresholds())
    async with ProviderHTTP(policy=POLICY) as http:
        outcome = await run_probe(target, KEYRING, http)
    tracker = HealthTracker(Thresholds())
    tracker.record(outcome)
    last_error = tracker.status()["lastError"]
    assert not outcome.ok
    for form in leak_forms(SECRET):
        assert form not in last_error, last_error


@pytest.mark.parametrize(
    "text",
    [
        f"Illegal header value b'{SECRET}'",
        f"Illegal header value {SECRET.encode()!r}",
        f"value {SECRET!r}",
        f"value {SECRET!a}",
        f"url ?p={quote(SECRET, safe='')}",
        "Authorization: Basic " + base64.b64encode(f"admin:{SECRET}".encode()).decode(),
    ],
)
def test_redaction_removes_repr_escaped_forms(text: str) -> None:
    for cleaned in (redact(text, [SECRET]), sanitize(text, [SECRET])):
        for form in leak_forms(SECRET):
            assert form not in cleaned, cleaned
