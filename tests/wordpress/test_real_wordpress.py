"""The WordPress provider against a real WordPress (Debian 12's WordPress 6.1, MariaDB, ``php -S``).

The fixture ``real_wordpress`` (conftest.py) starts it with ``.ci/wordpress.sh`` when needed. Both
URL forms are exercised: ``?rest_route=`` (works on every WordPress) and ``/wp-json/`` (pretty
permalinks; our ``php -S`` router sends unknown paths to ``index.php`` like Apache's rewrite rules).

Observed on this WordPress (6.1): a wrong application password on ``users/me`` answers
``401 {"code":"rest_not_logged_in"}``, not ``incorrect_password``: 6.1 only records the
application-password failure while the ``rest_authentication_errors`` filter runs (after the
application-password check at priority 90); newer WordPress determines the user earlier and answers
``incorrect_password``. Both are 401, and the provider must treat both as rejected credentials.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import pytest

from oneie_operator.errors import CredentialsRejectedError
from oneie_operator.health.probing import ProbeTarget, run_probe
from oneie_operator.providers.base import CheckResult
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.wordpress import WordPressProvider
from oneie_operator.vault import Keyring, generate_key, seal

pytestmark = pytest.mark.wordpress


class RealWordPress(Protocol):
    """What the ``real_wordpress`` fixture (conftest.py) returns."""

    url: str
    username: str
    app_password: str

    def rest(self, route: str, query: str = "") -> str: ...


#: What WordPress answers (401) to a wrong application password or user name, by version.
WORDPRESS_AUTH_CODES = ("incorrect_password", "invalid_username", "invalid_email", "rest_not_logged_in")
KEYRING = Keyring.from_env(generate_key(), None)

#: Same shape as a real application password (24 letters and digits), but not one.
WRONG_PASSWORD = "Zq7Xw2Lp9Rt4Vb6Nm1Kc3Hd8"

URL_FORMS = [pytest.param(True, id="rest_route"), pytest.param(False, id="wp-json")]


def chunked(password: str) -> str:
    """The form WordPress displays (``abcd efgh ...``); it ignores the spaces."""
    return " ".join(password[i : i + 4] for i in range(0, len(password), 4))


def leak_forms(username: str, password: str) -> list[str]:
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    return [password, chunked(password), basic]


@pytest.fixture
async def http() -> AsyncIterator[ProviderHTTP]:
    policy = DestinationPolicy(allow_loopback=True, allow_plain_http=True)
    async with ProviderHTTP(policy=policy, timeout=20.0) as client:
        yield client


@pytest.fixture(scope="module")
def provider() -> WordPressProvider:
    return WordPressProvider()


def settings_for(wp: RealWordPress, rest_route: bool) -> Any:
    return WordPressProvider.settings_model.model_validate({"url": wp.url, "restRoute": rest_route})


def credentials(username: str, password: str) -> dict[str, str]:
    return {"username": username, "applicationPassword": password}


# --------------------------------------------------------------------------- the server itself
def test_the_real_wordpress_answers_like_wordpress(real_wordpress: RealWordPress) -> None:
    """The environment: REST index, an authenticated users/me, and a JSON 401 for a wrong password."""
    wp = real_wordpress
    with httpx.Client(timeout=20.0) as client:
        index = client.get(wp.rest("/"))
        assert index.status_code == 200
        assert index.headers["content-type"].startswith("application/json")
        assert "wp/v2" in index.json()["namespaces"]
        assert "application-passwords" in index.json()["authentication"]

        pretty = f"{wp.url}/wp-json/wp/v2/users/me?context=edit"
        for url in (wp.rest("/wp/v2/users/me", "context=edit"), pretty):
            me = client.get(url, auth=(wp.username, wp.app_password))
            assert me.status_code == 200, url
            assert me.json()["username"] == wp.username
            assert "administrator" in me.json()["roles"]

        wrong = client.get(wp.rest("/wp/v2/users/me", "context=edit"), auth=(wp.username, WRONG_PASSWORD))
        assert wrong.status_code == 401
        assert wrong.headers["content-type"].startswith("application/json")
        assert wrong.json()["code"] in WORDPRESS_AUTH_CODES
        assert wrong.json()["data"]["status"] == 401


# --------------------------------------------------------------------------- the provider
@pytest.mark.parametrize("rest_route", URL_FORMS)
async def test_good_application_password_passes_the_credential_test(
    real_wordpress: RealWordPress, provider: WordPressProvider, http: ProviderHTTP, rest_route: bool
) -> None:
    wp = real_wordpress
    result = await http.test_credentials(
        provider, settings_for(wp, rest_route), credentials(wp.username, wp.app_password)
    )
    assert isinstance(result, CheckResult)
    assert result.latency_seconds >= 0
    shown = f"{result.detail} {dict(result.facts)}"
    for form in leak_forms(wp.username, wp.app_password):
        assert form not in shown


async def test_application_password_as_displayed_with_spaces_is_accepted(
    real_wordpress: RealWordPress, provider: WordPressProvider, http: ProviderHTTP
) -> None:
    """Users paste the password the way WordPress shows it (``abcd efgh ...``)."""
    wp = real_wordpress
    result = await http.test_credentials(
        provider, settings_for(wp, True), credentials(wp.username, chunked(wp.app_password))
    )
    assert isinstance(result, CheckResult)


@pytest.mark.parametrize("rest_route", URL_FORMS)
async def test_wrong_application_password_is_rejected_with_wordpress_code_and_no_secret(
    real_wordpress: RealWordPress, provider: WordPressProvider, http: ProviderHTTP, rest_route: bool
) -> None:
    wp = real_wordpress
    with pytest.raises(CredentialsRejectedError) as caught:
        await http.test_credentials(provider, settings_for(wp, rest_route), credentials(wp.username, WRONG_PASSWORD))
    message = str(caught.value)
    assert any(code in message for code in WORDPRESS_AUTH_CODES), message
    for text in (message, repr(caught.value.args)):
        for form in leak_forms(wp.username, WRONG_PASSWORD):
            assert form not in text
        assert wp.app_password not in text


async def test_unknown_user_is_rejected(
    real_wordpress: RealWordPress, provider: WordPressProvider, http: ProviderHTTP
) -> None:
    wp = real_wordpress
    with pytest.raises(CredentialsRejectedError) as caught:
        await http.test_credentials(provider, settings_for(wp, True), credentials("nobody-here", wp.app_password))
    message = str(caught.value)
    assert any(code in message for code in WORDPRESS_AUTH_CODES), message
    for form in leak_forms("nobody-here", wp.app_password):
        assert form not in message


@pytest.mark.parametrize("rest_route", URL_FORMS)
async def test_health_probe_succeeds(
    real_wordpress: RealWordPress, provider: WordPressProvider, http: ProviderHTTP, rest_route: bool
) -> None:
    wp = real_wordpress
    creds = credentials(wp.username, wp.app_password)
    result = await http.probe(provider, settings_for(wp, rest_route), creds)
    assert isinstance(result, CheckResult)
    assert result.latency_seconds >= 0
    for form in leak_forms(wp.username, wp.app_password):
        assert form not in f"{result.detail} {dict(result.facts)}"


@pytest.mark.parametrize("rest_route", URL_FORMS)
async def test_health_check_with_a_wrong_application_password_fails(
    real_wordpress: RealWordPress, provider: WordPressProvider, http: ProviderHTTP, rest_route: bool
) -> None:
    """The REST index answers "site is up" whatever the password: the health check proves it too."""
    wp = real_wordpress
    settings = settings_for(wp, rest_route)
    wrong = credentials(wp.username, WRONG_PASSWORD)
    await http.probe(provider, settings, wrong)  # liveness alone cannot tell
    ns, name = "wp-tenant", "site"
    target = ProbeTarget(namespace=ns, name=name, provider=provider, settings=settings,
                         sealed=seal(KEYRING, wrong, namespace=ns, connection=name))
    outcome = await run_probe(target, KEYRING, http)
    assert not outcome.ok and outcome.reason == "CredentialsRejected" and outcome.credentials_checked
    assert any(code in outcome.message for code in WORDPRESS_AUTH_CODES), outcome.message
    for form in leak_forms(wp.username, WRONG_PASSWORD):
        assert form not in outcome.message
    good = ProbeTarget(namespace=ns, name=name, provider=provider, settings=settings,
                       sealed=seal(KEYRING, credentials(wp.username, wp.app_password), namespace=ns, connection=name))
    assert (await run_probe(good, KEYRING, http)).ok
