"""Each built-in provider against its local server (oneie_operator.testing.provider_servers)."""

from __future__ import annotations

import base64
import string
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from oneie_operator.errors import (
    CredentialsError,
    CredentialsRejectedError,
    OneieError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    SecretKeyMissingError,
    SpecError,
)
from oneie_operator.providers.base import CheckResult, Provider
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.registry import ProviderRegistry, validate_settings
from oneie_operator.providers.supabase import api_key_headers
from oneie_operator.testing.provider_servers import PROVIDERS, ProviderServers, fake_jwt

LOCAL_POLICY = DestinationPolicy(allow_loopback=True, allow_plain_http=True)

#: The provider's own error code, as its real API reports a wrong credential.
REJECTION_CODES = {
    "convex": "BadAdminKey",
    "wordpress": "incorrect_password",
    "notion": "unauthorized",
    "supabase": "Invalid API key",
}


def wrong_credentials(name: str, good: Mapping[str, str]) -> dict[str, str]:
    """Well-formed credentials that the fake server does not accept."""
    wrong = dict(good)
    if name == "convex":
        wrong["deployKey"] = "dev:happy-otter-123|" + "Wr0ngKeyWr0ngKey" * 4
    elif name == "wordpress":
        wrong["applicationPassword"] = "Zq7X w2Lp 9Rt4 Vb6N m1Kc 3Hd8"
    elif name == "notion":
        wrong["token"] = "ntn_" + "W" * 46
    else:
        wrong["serviceRoleKey"] = "sb_secret_" + "Wr0ng" * 8
    return wrong


def leak_forms(credentials: Mapping[str, str]) -> list[str]:
    """The secret values as they could leak: raw, without spaces, base64, in Basic auth."""
    forms: list[str] = []
    for field, value in credentials.items():
        if field == "username":
            continue
        compact = "".join(value.split())
        forms += [value, compact, base64.b64encode(compact.encode()).decode().rstrip("=")]
        user = credentials.get("username")
        if user:
            forms.append(base64.b64encode(f"{user}:{compact}".encode()).decode().rstrip("="))
    return forms


def assert_no_secret(text: str, credentials: Mapping[str, str]) -> None:
    for form in leak_forms(credentials):
        assert form not in text, f"secret leaked into: {text}"


def settings_of(registry: ProviderRegistry, servers: ProviderServers, name: str, **extra: Any) -> Any:
    return validate_settings(registry.get(name), {**servers.settings(name), **extra}, f"spec.{name}")


@pytest.mark.parametrize("name", PROVIDERS)
async def test_good_credentials_pass_test_and_probe(
    name: str,
    registry: ProviderRegistry,
    servers: ProviderServers,
    http: ProviderHTTP,
    calls: list[tuple[str, str, str, float, str]],
) -> None:
    provider = registry.get(name)
    settings = settings_of(registry, servers, name)
    credentials = servers.credentials[name]

    tested = await http.test_credentials(provider, settings, credentials)
    probed = await http.probe(provider, settings, credentials)

    for result in (tested, probed):
        assert isinstance(result, CheckResult)
        assert result.latency_seconds >= 0
        assert result.detail
        assert_no_secret(f"{result.detail} {dict(result.facts)}", credentials)
    assert servers[name].request_count >= 2
    assert [(p, c, o) for p, c, o, *_ in calls][-1] == (name, "probe", "Success")
    assert (name, "test_credentials", "Success") in [(p, c, o) for p, c, o, *_ in calls]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_wrong_credentials_are_rejected_with_the_provider_code_and_no_secret(
    name: str,
    registry: ProviderRegistry,
    servers: ProviderServers,
    http: ProviderHTTP,
    calls: list[tuple[str, str, str, float, str]],
) -> None:
    provider = registry.get(name)
    wrong = wrong_credentials(name, servers.credentials[name])
    with pytest.raises(CredentialsRejectedError) as caught:
        await http.test_credentials(provider, settings_of(registry, servers, name), wrong)
    message = str(caught.value)
    assert REJECTION_CODES[name] in message
    assert len(message) <= 300
    assert_no_secret(message, wrong)
    assert_no_secret(message, servers.credentials[name])
    assert calls[-1][:3] == (name, "test_credentials", "CredentialsRejected")


@pytest.mark.parametrize("name", PROVIDERS)
async def test_missing_secret_field_is_reported_without_a_request(
    name: str, registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    provider = registry.get(name)
    with pytest.raises(SecretKeyMissingError) as caught:
        await http.test_credentials(provider, settings_of(registry, servers, name), {})
    assert provider.secret_fields[0] in str(caught.value)
    assert servers[name].request_count == 0


# --------------------------------------------------------------------------- fault modes
FAULTS: list[tuple[str, type[OneieError]]] = [
    ("500", ProviderServerError),
    ("503", ProviderServerError),
    ("429", ProviderRateLimitedError),
    ("reset", ProviderUnreachableError),
    ("notjson", ProviderProtocolError),
    ("huge", ProviderProtocolError),
]


@pytest.mark.parametrize("call", ["test_credentials", "probe"])
@pytest.mark.parametrize(("fault", "expected"), FAULTS, ids=[f for f, _ in FAULTS])
@pytest.mark.parametrize("name", PROVIDERS)
async def test_fault_modes_map_to_the_right_error(
    name: str,
    fault: str,
    expected: type[OneieError],
    call: str,
    registry: ProviderRegistry,
    servers: ProviderServers,
    http: ProviderHTTP,
) -> None:
    if name == "supabase" and call == "test_credentials" and fault == "huge":
        pytest.skip("the Supabase credential test reads only the status: a large schema is fine")
    provider = registry.get(name)
    servers[name].fault = fault
    with pytest.raises(expected) as caught:
        await http.run(provider, call, settings_of(registry, servers, name), servers.credentials[name])
    assert_no_secret(str(caught.value), servers.credentials[name])


@pytest.mark.parametrize("name", PROVIDERS)
async def test_rate_limit_reports_retry_after(
    name: str, registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    servers[name].fault = "429:7"
    with pytest.raises(ProviderRateLimitedError) as caught:
        await http.test_credentials(registry.get(name), settings_of(registry, servers, name), servers.credentials[name])
    assert caught.value.retry_after == 7.0
    assert "retry after 7s" in str(caught.value)


@pytest.mark.parametrize("name", PROVIDERS)
async def test_hang_with_a_small_timeout_is_a_timeout(
    name: str, registry: ProviderRegistry, servers: ProviderServers, calls: list[tuple[str, str, str, float, str]]
) -> None:
    servers[name].fault = "hang"
    async with ProviderHTTP(policy=LOCAL_POLICY, timeout=0.3, on_call=lambda *c: calls.append(c)) as http:
        with pytest.raises(ProviderTimeoutError):
            await http.probe(registry.get(name), settings_of(registry, servers, name), servers.credentials[name])
    provider, call, outcome, seconds, _namespace = calls[-1]
    assert (provider, call, outcome) == (name, "probe", "ProviderTimeout")
    assert 0.25 < seconds < 2.0


async def test_slow_answers_within_the_deadline_succeed_and_beyond_it_time_out(
    registry: ProviderRegistry, servers: ProviderServers
) -> None:
    provider = registry.get("notion")
    settings = settings_of(registry, servers, "notion")
    servers["notion"].fault = "slow:0.2"
    async with ProviderHTTP(policy=LOCAL_POLICY, timeout=3.0) as http:
        result = await http.probe(provider, settings, servers.credentials["notion"])
    assert result.latency_seconds >= 0.2
    servers["notion"].fault = "slow:5"
    async with ProviderHTTP(policy=LOCAL_POLICY, timeout=0.3) as http:
        with pytest.raises(ProviderTimeoutError):
            await http.probe(provider, settings, servers.credentials["notion"])


async def test_a_timeout_says_whether_the_answer_had_begun() -> None:
    """A server that never answers, and one that sends its headers and part of its body, then
    stalls: both time out, and the message tells which (no answer at all / a stalled answer)."""
    import asyncio

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if stall[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhappy-")
            await writer.drain()
        await done.wait()
        writer.close()

    stall, done = [False], asyncio.Event()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = ProviderHTTP(policy=LOCAL_POLICY, timeout=0.3)
    client = http.client("convex", display_name="Convex", base_url=f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(ProviderTimeoutError, match=r"did not answer in time \(deadline 0.3s\)"):
            await client.request("GET", "/instance_name", call="probe", body="text")
        stall[0] = True
        with pytest.raises(ProviderTimeoutError, match=r"timed out sending the rest of its answer \(deadline 0.3s\)"):
            await client.request("GET", "/instance_name", call="probe", body="text")
    finally:
        await http.aclose()
        done.set()
        server.close()
        await server.wait_closed()


async def test_fault_mode_can_be_switched_over_http_from_another_process(servers: ProviderServers) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=servers["convex"].base_url) as client:
        assert (await client.put("/__fault__", content="500")).status_code == 200
        assert servers["convex"].fault == "500"
        assert (await client.get("/version")).status_code == 500
        assert (await client.put("/__fault__", content="nonsense")).status_code == 400
        assert (await client.get("/__requests__")).json() == {"count": 1}
    with pytest.raises(ValueError, match="unknown fault mode"):
        servers["convex"].fault = "explode"


# --------------------------------------------------------------------------- Convex specifics
async def test_convex_full_key_keeps_every_capability_and_probes_instance_name(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    provider = registry.get("convex")
    settings = settings_of(registry, servers, "convex")
    result = await http.test_credentials(provider, settings, servers.credentials["convex"])
    assert result.capabilities == provider.capabilities
    assert "database-write" in provider.capabilities
    probe = await http.probe(provider, settings, servers.credentials["convex"])
    assert probe.facts["deployment"] == "happy-otter-123"
    assert [r.path for r in servers["convex"].requests] == ["/api/check_admin_key", "/instance_name"]


async def test_convex_read_only_key_narrows_the_capabilities(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    servers["convex"].read_only = True  # type: ignore[attr-defined]
    provider = registry.get("convex")
    result = await http.test_credentials(
        provider, settings_of(registry, servers, "convex"), servers.credentials["convex"]
    )
    assert result.capabilities == provider.capabilities - {"database-write"}
    assert "read-only" in result.detail
    assert result.facts["readOnly"] == "true"


async def test_convex_probe_refuses_a_backend_that_is_another_deployment(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    servers["convex"].instance_name = "tidy-seal-42"  # type: ignore[attr-defined]
    with pytest.raises(CredentialsRejectedError, match="deployKey belongs to deployment 'happy-otter-123'") as caught:
        await http.probe(
            registry.get("convex"), settings_of(registry, servers, "convex"), servers.credentials["convex"]
        )
    assert_no_secret(str(caught.value), servers.credentials["convex"])


async def test_convex_refuses_a_deploy_key_of_another_deployment_without_sending_it(
    registry: ProviderRegistry, http: ProviderHTTP
) -> None:
    provider = registry.get("convex")
    settings = validate_settings(provider, {"url": "https://tidy-seal-42.convex.cloud"}, "spec.convex")
    with pytest.raises(CredentialsError, match="different deployment"):
        await http.test_credentials(provider, settings, {"deployKey": "prod:happy-otter-123|abcdefabcdef"})


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("Convex prod:happy-otter-123|abc", "without the 'Convex ' prefix"),
        ("just-a-token-without-separator", "is not a Convex deploy key"),
        ("prod:happy otter|abc", "is not a Convex deploy key"),
    ],
)
async def test_convex_malformed_deploy_key_is_refused_before_any_request(
    key: str, problem: str, registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    with pytest.raises(CredentialsError) as caught:
        await http.test_credentials(
            registry.get("convex"),
            settings_of(registry, servers, "convex"),
            {"deployKey": key},
        )
    assert problem in str(caught.value)
    assert "deployKey" in str(caught.value)
    assert key not in str(caught.value)
    assert servers["convex"].request_count == 0


# --------------------------------------------------------------------------- WordPress specifics
@pytest.mark.parametrize("rest_route", [False, True])
@pytest.mark.parametrize("with_spaces", [False, True])
async def test_wordpress_both_url_forms_and_password_spacing(
    rest_route: bool,
    with_spaces: bool,
    registry: ProviderRegistry,
    servers: ProviderServers,
    http: ProviderHTTP,
) -> None:
    credentials = dict(servers.credentials["wordpress"])
    if not with_spaces:
        credentials["applicationPassword"] = credentials["applicationPassword"].replace(" ", "")
    settings = settings_of(registry, servers, "wordpress", restRoute=rest_route)
    provider = registry.get("wordpress")
    await http.test_credentials(provider, settings, credentials)
    await http.probe(provider, settings, credentials)
    requests = servers["wordpress"].requests
    if rest_route:
        assert {r.path for r in requests} == {"/"}
        assert all("rest_route=" in r.query for r in requests)
    else:
        assert {r.path for r in requests} == {"/wp-json/wp/v2/users/me", "/wp-json/"}


@pytest.mark.parametrize("suffix", ["/wp-json", "/wp-json/"])
async def test_wordpress_url_ending_in_wp_json_is_normalised_to_the_site_url(
    suffix: str, registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    provider = registry.get("wordpress")
    settings = settings_of(registry, servers, "wordpress", url=servers["wordpress"].base_url + suffix)
    assert provider.base_url(settings) == servers["wordpress"].base_url
    await http.test_credentials(provider, settings, servers.credentials["wordpress"])
    await http.probe(provider, settings, servers.credentials["wordpress"])
    assert {r.path for r in servers["wordpress"].requests} == {"/wp-json/wp/v2/users/me", "/wp-json/"}


async def test_wordpress_unknown_user_is_reported_with_its_code(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    credentials = {**servers.credentials["wordpress"], "username": "nobody"}
    with pytest.raises(CredentialsRejectedError, match="invalid_username"):
        await http.test_credentials(
            registry.get("wordpress"),
            settings_of(registry, servers, "wordpress"),
            credentials,
        )


async def test_wordpress_login_password_instead_of_application_password_is_refused(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    credentials = {"username": "admin", "applicationPassword": "correct horse battery staple!"}
    with pytest.raises(CredentialsError) as caught:
        await http.test_credentials(
            registry.get("wordpress"),
            settings_of(registry, servers, "wordpress"),
            credentials,
        )
    assert "applicationPassword" in str(caught.value)
    assert "24 letters and digits" in str(caught.value)
    assert "horse" not in str(caught.value)
    assert servers["wordpress"].request_count == 0


async def test_wordpress_wrong_rest_prefix_is_a_protocol_error_naming_the_status(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    with pytest.raises(ProviderProtocolError, match="HTTP 404"):
        await http.probe(registry.get("wordpress"), settings_of(registry, servers, "wordpress", restPrefix="/api"), {})


# --------------------------------------------------------------------------- Notion specifics
async def test_notion_overload_529_is_rate_limiting_with_retry_after(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    servers["notion"].fault = "529:3"
    with pytest.raises(ProviderRateLimitedError) as caught:
        await http.probe(
            registry.get("notion"),
            settings_of(registry, servers, "notion"),
            servers.credentials["notion"],
        )
    assert caught.value.retry_after == 3.0
    assert "service_overload" in str(caught.value)


async def test_notion_rate_limit_message_carries_the_documented_reason(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    servers["notion"].fault = "429:1"
    with pytest.raises(ProviderRateLimitedError, match="rate_limited") as caught:
        await http.probe(
            registry.get("notion"),
            settings_of(registry, servers, "notion"),
            servers.credentials["notion"],
        )
    assert "connection_limit" in str(caught.value)


async def test_notion_bearer_prefix_is_refused_before_any_request(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    token = "Bearer ntn_" + "a" * 40
    with pytest.raises(CredentialsError, match="without the 'Bearer ' prefix") as caught:
        await http.test_credentials(registry.get("notion"), settings_of(registry, servers, "notion"), {"token": token})
    assert token not in str(caught.value)
    assert servers["notion"].request_count == 0


async def test_notion_token_format_is_left_to_the_api(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    """Notion asks integrations not to validate token formats: an unusual token is sent, the API answers."""
    token = "an.unusual-token"
    with pytest.raises(CredentialsRejectedError, match="unauthorized") as caught:
        await http.test_credentials(registry.get("notion"), settings_of(registry, servers, "notion"), {"token": token})
    assert token not in str(caught.value)
    assert [r.path for r in servers["notion"].requests] == ["/v1/users/me"]


SHARED_DATABASE = "1429989fe8ac4effbc8f57f56486db54"


@pytest.mark.parametrize("form", [SHARED_DATABASE, SHARED_DATABASE.upper(), "1429989f-e8ac-4eff-bc8f-57f56486db54"])
def test_notion_database_id_is_normalised_to_the_dashed_form(form: str, registry: ProviderRegistry) -> None:
    settings = validate_settings(registry.get("notion"), {"databaseId": form}, "spec.notion")
    assert settings.database_id == "1429989f-e8ac-4eff-bc8f-57f56486db54"


@pytest.mark.parametrize(
    "bad", ["1429989fe8ac4effbc8f57f56486db5", "z429989fe8ac4effbc8f57f56486db54", "https://notion.so/x"]
)
def test_notion_malformed_database_id_is_a_field_error(bad: str, registry: ProviderRegistry) -> None:
    with pytest.raises(SpecError) as caught:
        validate_settings(registry.get("notion"), {"databaseId": bad}, "spec.notion")
    issues = {issue.field: issue.message for issue in caught.value.issues}
    assert "32 hex digits" in issues["spec.notion.databaseId"]


@pytest.mark.parametrize(("version", "listed"), [("2026-03-11", True), ("2025-09-03", True), ("2022-06-28", False)])
async def test_notion_shared_database_passes_and_reports_its_data_sources(
    version: str, listed: bool, registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    settings = settings_of(registry, servers, "notion", databaseId=SHARED_DATABASE, notionVersion=version)
    result = await http.test_credentials(registry.get("notion"), settings, servers.credentials["notion"])
    assert "is shared with the integration" in result.detail
    assert ("data sources: 'Tasks', 'Archive'" in result.detail) is listed
    assert [r.path for r in servers["notion"].requests] == [
        "/v1/users/me",
        "/v1/databases/1429989f-e8ac-4eff-bc8f-57f56486db54",
    ]


async def test_notion_database_not_shared_is_rejected_with_the_remedy(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    settings = settings_of(registry, servers, "notion", databaseId="0" * 32)
    with pytest.raises(CredentialsRejectedError, match="share the database with the integration") as caught:
        await http.test_credentials(registry.get("notion"), settings, servers.credentials["notion"])
    assert caught.value.reason == "CredentialsRejected"
    assert_no_secret(str(caught.value), servers.credentials["notion"])


# --------------------------------------------------------------------------- Supabase specifics
@pytest.fixture
async def legacy_supabase() -> AsyncIterator[ProviderServers]:
    keys = {"serviceRoleKey": fake_jwt("service_role"), "anonKey": fake_jwt("anon")}
    async with ProviderServers({"supabase": keys}, providers=["supabase"]) as running:
        yield running


async def test_supabase_legacy_jwt_keys_work(
    registry: ProviderRegistry, legacy_supabase: ProviderServers, http: ProviderHTTP
) -> None:
    provider = registry.get("supabase")
    settings = settings_of(registry, legacy_supabase, "supabase")
    result = await http.test_credentials(provider, settings, legacy_supabase.credentials["supabase"])
    assert result.facts["keyType"] == "service_role"
    await http.probe(provider, settings, legacy_supabase.credentials["supabase"])


def test_supabase_new_keys_are_never_sent_as_bearer_tokens() -> None:
    assert api_key_headers("sb_secret_abc") == {"apikey": "sb_secret_abc"}
    assert api_key_headers("sb_publishable_abc") == {"apikey": "sb_publishable_abc"}
    jwt = fake_jwt("service_role")
    assert api_key_headers(jwt) == {"apikey": jwt, "Authorization": f"Bearer {jwt}"}


async def test_supabase_unprivileged_key_gets_403_with_a_hint(http: ProviderHTTP, registry: ProviderRegistry) -> None:
    # The server knows this sb_secret_-shaped value as its *anon* key: valid, but not privileged.
    unprivileged = "sb_secret_" + "u" * 32
    keys = {"serviceRoleKey": "sb_secret_" + "s" * 32, "anonKey": unprivileged}
    async with ProviderServers({"supabase": keys}, providers=["supabase"]) as running:
        with pytest.raises(CredentialsRejectedError) as caught:
            await http.test_credentials(
                registry.get("supabase"),
                settings_of(registry, running, "supabase"),
                {"serviceRoleKey": unprivileged},
            )
    assert "HTTP 403" in str(caught.value)
    assert "not privileged" in str(caught.value)
    assert unprivileged not in str(caught.value)


@pytest.mark.parametrize(
    ("credentials", "field", "problem"),
    [
        ({"serviceRoleKey": "sb_publishable_" + "p" * 30}, "serviceRoleKey", "is a publishable key"),
        ({"serviceRoleKey": fake_jwt("anon")}, "serviceRoleKey", "legacy anon key"),
        ({"serviceRoleKey": "not-a-key"}, "serviceRoleKey", "is not a Supabase secret key"),
        (
            {"serviceRoleKey": "sb_secret_" + "s" * 30, "anonKey": fake_jwt("service_role")},
            "anonKey",
            "holds a privileged key",
        ),
    ],
)
async def test_supabase_key_mixups_are_refused_before_any_request(
    credentials: dict[str, str],
    field: str,
    problem: str,
    registry: ProviderRegistry,
    servers: ProviderServers,
    http: ProviderHTTP,
) -> None:
    with pytest.raises(CredentialsError) as caught:
        await http.test_credentials(registry.get("supabase"), settings_of(registry, servers, "supabase"), credentials)
    message = str(caught.value)
    assert f"{field}: " in message and problem in message
    assert_no_secret(message, credentials)
    assert servers["supabase"].request_count == 0


# --------------------------------------------------------------------------- settings, capabilities
@pytest.mark.parametrize(
    ("name", "block", "field", "expected"),
    [
        (
            "convex",
            {},
            "spec.convex.url",
            "is required; expected the deployment URL, like https://happy-otter-123",
        ),
        ("convex", {"url": "https://happy-otter-123.convex.site"}, "spec.convex.url", "HTTP actions URL"),
        ("convex", {"url": "https://x.convex.cloud"}, "spec.convex.url", "is not a Convex deployment URL"),
        ("convex", {"url": "ftp://SENSITIVE.example"}, "spec.convex.url", "must start with https://"),
        (
            "convex",
            {"url": "https://a.example", "region": "eu"},
            "spec.convex.region",
            "is not a known field",
        ),
        (
            "wordpress",
            {"url": "https://b.example", "restPrefix": "wp-json?x"},
            "spec.wordpress.restPrefix",
            "/wp-json",
        ),
        (
            "wordpress",
            {"url": "https://b.example", "restRoute": "sometimes"},
            "spec.wordpress.restRoute",
            "valid boolean",
        ),
        ("notion", {"notionVersion": "latest"}, "spec.notion.notionVersion", "a date like 2026-03-11"),
        ("notion", {"apiUrl": "https://api.notion.com/v1"}, "spec.notion.apiUrl", "must not end in /v1"),
        ("supabase", {"url": "https://supabase.com/dashboard/project/x"}, "spec.supabase.url", "dashboard"),
        ("supabase", {"url": "https://abc.supabase.co"}, "spec.supabase.url", "20-character project ref"),
        (
            "supabase",
            {"url": "https://abcdefghijklmnopqrst.supabase.co/rest/v1"},
            "spec.supabase.url",
            "/rest/v1",
        ),
    ],
)
def test_settings_errors_name_the_field_and_the_expected_format(
    name: str, block: dict[str, Any], field: str, expected: str, registry: ProviderRegistry
) -> None:
    with pytest.raises(SpecError) as caught:
        validate_settings(registry.get(name), block, f"spec.{name}")
    issues = {issue.field: issue.message for issue in caught.value.issues}
    assert field in issues, issues
    assert expected in issues[field]
    assert "SENSITIVE" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "block"),
    [
        ("convex", {"url": "https://happy-otter-123.convex.cloud"}),
        ("convex", {"url": "https://happy-otter-123.eu-west-1.convex.cloud/"}),
        ("convex", {"url": "https://convex.internal.example:3210"}),
        ("wordpress", {"url": "https://example.com/blog/", "restPrefix": "/api/"}),
        ("notion", {}),
        ("supabase", {"url": "https://abcdefghijklmnopqrst.supabase.co"}),
        ("supabase", {"url": "http://localhost:8000"}),
    ],
)
def test_documented_url_forms_are_accepted(name: str, block: dict[str, Any], registry: ProviderRegistry) -> None:
    settings = validate_settings(registry.get(name), block, f"spec.{name}")
    assert not registry.get(name).base_url(settings).endswith("/")


def test_every_builtin_declares_secret_fields_and_capabilities(registry: ProviderRegistry) -> None:
    allowed = set(string.ascii_lowercase + string.digits + "-")
    for provider in registry:
        assert isinstance(provider, Provider)
        assert provider.secret_fields
        assert provider.capabilities
        assert all(set(c) <= allowed for c in provider.capabilities)
    assert registry.get("notion").settings_model.model_validate({}).notion_version == "2026-03-11"  # type: ignore[attr-defined]


async def test_a_credential_test_can_narrow_but_never_widen_the_capabilities(
    registry: ProviderRegistry, servers: ProviderServers, http: ProviderHTTP
) -> None:
    convex = registry.get("convex")

    class Boasting(type(convex)):  # type: ignore[misc]
        async def test_credentials(self, settings: Any, credentials: Mapping[str, str], client: Any) -> CheckResult:
            return CheckResult(0.0, "ok", capabilities=frozenset({"database", "teleportation"}))

    result = await http.test_credentials(
        Boasting(), settings_of(registry, servers, "convex"), servers.credentials["convex"]
    )
    assert result.capabilities == frozenset({"database"})
