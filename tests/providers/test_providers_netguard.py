"""The destination policy: URL checks, connect-time address checks, TLS still verifying the name."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oneie_operator.errors import DestinationForbiddenError, ProviderUnreachableError, SpecError
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.testing.provider_servers import ProviderServers

STRICT = DestinationPolicy()
EVERYTHING = DestinationPolicy(allow_loopback=True, allow_private=True, allow_plain_http=True)


def issue_field(error: SpecError) -> str:
    assert len(error.issues) == 1
    return error.issues[0].field


# --------------------------------------------------------------------------- URL checks
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.10.20/",
        "https://[fe80::1]/",
        "https://[fd00:ec2::254]/",
        "https://100.100.100.200/",
        "https://168.63.129.16/",
        "https://metadata.google.internal/computeMetadata/v1/",
        "https://METADATA.GOOGLE.INTERNAL./",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://224.0.0.1/",
        "https://255.255.255.255/",
        "https://[::ffff:169.254.169.254]/",
    ],
)
def test_link_local_metadata_and_non_unicast_are_always_refused(url: str) -> None:
    for policy in (
        STRICT,
        EVERYTHING,
        DestinationPolicy(allow_private=True, allowed_cidrs=("0.0.0.0/0", "::/0")),
    ):
        with pytest.raises(DestinationForbiddenError) as caught:
            policy.check_url(url, field="spec.convex.url")
        assert issue_field(caught.value) == "spec.convex.url"
        assert "never allowed" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://127.8.9.10:8443/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://[2002:7f00:1::1]/",
    ],
)
def test_loopback_only_when_allowed(url: str) -> None:
    with pytest.raises(DestinationForbiddenError, match="loopback"):
        STRICT.check_url(url)
    DestinationPolicy(allow_loopback=True).check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",
        "https://[fd12::1]/",
    ],
)
def test_private_ranges_only_when_allowed(url: str) -> None:
    with pytest.raises(DestinationForbiddenError, match="private"):
        STRICT.check_url(url)
    with pytest.raises(DestinationForbiddenError):
        DestinationPolicy(allow_loopback=True).check_url(url)
    DestinationPolicy(allow_private=True).check_url(url)


def test_allowed_cidrs_open_one_network_only() -> None:
    policy = DestinationPolicy(allowed_cidrs=("10.20.0.0/16",))
    policy.check_url("https://10.20.3.4/")
    with pytest.raises(DestinationForbiddenError):
        policy.check_url("https://10.21.3.4/")
    with pytest.raises(ValueError, match="not a CIDR"):
        DestinationPolicy(allowed_cidrs=("ten-dot-something",))


def test_public_addresses_and_names_pass_the_url_check() -> None:
    for url in ("https://8.8.8.8/", "https://[2606:4700::1111]/", "https://happy-otter-123.convex.cloud/"):
        STRICT.check_url(url)


def test_plain_http_only_when_allowed_and_other_schemes_never() -> None:
    with pytest.raises(DestinationForbiddenError, match="plain http") as caught:
        STRICT.check_url("http://api.example.com/", field="spec.notion.apiUrl")
    assert issue_field(caught.value) == "spec.notion.apiUrl"
    DestinationPolicy(allow_plain_http=True).check_url("http://api.example.com/")
    for url in ("ftp://api.example.com/", "file:///etc/passwd", "gopher://x/"):
        with pytest.raises(DestinationForbiddenError):
            EVERYTHING.check_url(url)


def test_credentials_in_the_url_are_refused_without_repeating_them() -> None:
    with pytest.raises(DestinationForbiddenError) as caught:
        EVERYTHING.check_url("https://admin:hunter2secret@blog.example.com/")
    assert "hunter2secret" not in str(caught.value)


def test_embedded_ipv4_is_judged_by_its_stricter_verdict() -> None:
    assert STRICT.classify("::ffff:8.8.8.8") == "allowed"
    assert STRICT.classify("::ffff:10.0.0.1") == "private"
    assert EVERYTHING.classify("64:ff9b::a9fe:a9fe") == "metadata"  # NAT64 of 169.254.169.254


# --------------------------------------------------------------------------- connect time
@pytest.fixture
async def convex() -> AsyncIterator[ProviderServers]:
    async with ProviderServers(providers=["convex"]) as running:
        yield running


async def test_a_name_resolving_to_loopback_is_refused_at_connect_time(convex: ProviderServers) -> None:
    """``localhost`` passes the URL check (it is a name) and is stopped when it resolves."""
    url = f"http://localhost:{convex['convex'].port}/instance_name"
    async with ProviderHTTP(policy=DestinationPolicy(allow_plain_http=True)) as http:
        with pytest.raises(DestinationForbiddenError) as caught:
            await http.client("convex").request("GET", url, call="probe", body="text", url_field="spec.convex.url")
    assert issue_field(caught.value) == "spec.convex.url"
    assert "localhost resolves to" in str(caught.value)
    assert "loopback" in str(caught.value)
    assert convex["convex"].request_count == 0
    async with ProviderHTTP(policy=DestinationPolicy(allow_plain_http=True, allow_loopback=True)) as http:
        answer = await http.client("convex").request("GET", url, call="probe", body="text")
    assert answer.status == 200


async def test_numeric_host_forms_are_judged_on_what_they_resolve_to(convex: ProviderServers) -> None:
    # 2130706433 == 127.0.0.1: not an IP literal for the URL check, but getaddrinfo resolves it.
    url = f"http://2130706433:{convex['convex'].port}/instance_name"
    async with ProviderHTTP(policy=DestinationPolicy(allow_plain_http=True)) as http:
        with pytest.raises(DestinationForbiddenError, match="loopback"):
            await http.client("convex").request("GET", url, call="probe", body="text")
    assert convex["convex"].request_count == 0


def fixed_resolver(table: dict[str, Sequence[str]]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


async def test_every_resolved_address_must_pass() -> None:
    policy = DestinationPolicy(allow_loopback=True, allow_plain_http=True)
    resolver = fixed_resolver({"mixed.test": ["127.0.0.1", "169.254.169.254"]})
    async with ProviderHTTP(policy=policy, resolver=resolver) as http:
        with pytest.raises(DestinationForbiddenError, match=r"mixed\.test resolves to 169\.254\.169\.254"):
            await http.client("demo").request("GET", "http://mixed.test/", call="probe")


async def test_dns_failure_is_unreachable() -> None:
    async with ProviderHTTP(policy=DestinationPolicy(allow_plain_http=True), resolver=fixed_resolver({})) as http:
        with pytest.raises(ProviderUnreachableError, match=r"cannot resolve nowhere\.test"):
            await http.client("demo").request("GET", "http://nowhere.test/", call="probe")


async def test_connection_refused_is_unreachable() -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ProviderHTTP(policy=EVERYTHING) as http:
        with pytest.raises(ProviderUnreachableError, match=r"cannot reach .*: connection refused"):
            await http.client("demo").request("GET", f"http://127.0.0.1:{port}/", call="probe")


# --------------------------------------------------------------------------- TLS uses the name
def make_certificate(tmp_path: Path, hostname: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{hostname}.crt", tmp_path / f"{hostname}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.mark.parametrize(("cert_name", "ok"), [("provider.test", True), ("someone-else.test", False)])
async def test_tls_verifies_the_host_name_while_connecting_to_the_checked_ip(
    tmp_path: Path, cert_name: str, ok: bool
) -> None:
    cert, key = make_certificate(tmp_path, cert_name)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda _sock, name, _ctx: seen_sni.append(name)

    async def version(request: web.Request) -> web.Response:
        return web.Response(text="1.0")

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        policy = DestinationPolicy(allow_loopback=True)
        resolver = fixed_resolver({"provider.test": ["127.0.0.1"]})
        async with ProviderHTTP(policy=policy, verify=client_ctx, resolver=resolver) as http:
            client = http.client("demo", base_url=f"https://provider.test:{port}")
            if ok:
                answer = await client.request("GET", "/version", call="probe", body="text")
                assert answer.body == "1.0"
            else:
                with pytest.raises(ProviderUnreachableError, match=r"(?i)certificate"):
                    await client.request("GET", "/version", call="probe", body="text")
    finally:
        await runner.cleanup()
    assert seen_sni and set(seen_sni) == {"provider.test"}  # SNI carried the name, not 127.0.0.1


def test_the_policy_is_a_value() -> None:
    assert DestinationPolicy(allowed_cidrs=("10.0.0.0/8",)) == DestinationPolicy(allowed_cidrs=("10.0.0.0/8",))
    assert ipaddress.ip_address("127.0.0.1") not in {ipaddress.ip_address("::1")}
