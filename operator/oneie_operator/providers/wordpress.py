"""WordPress: the core REST API, authenticated with an application password over HTTP Basic.

Documented behaviour followed here (checked 2026):

* Site URL — any WordPress site URL, including one in a subdirectory (``https://example.com/blog``).
  A ``url`` ending in ``/wp-json`` (the REST API root, often copied instead of the site URL) is
  normalised to the site URL, so requests never go to ``/wp-json/wp-json/...``.
  The REST API lives under ``/wp-json`` (``rest_get_url_prefix()``, filterable, hence
  ``restPrefix``); on sites without pretty permalinks the same routes are reached with
  ``?rest_route=/wp/v2/...`` ("the REST API can be accessed at ``?rest_route=``"), which is what
  ``restRoute: true`` uses. https://developer.wordpress.org/rest-api/extending-the-rest-api/routes-and-endpoints/
  and https://developer.wordpress.org/rest-api/key-concepts/ .
* Credentials — a user name and an application password (WordPress ≥ 5.6), sent as HTTP Basic
  auth: https://developer.wordpress.org/rest-api/using-the-rest-api/authentication/ ,
  https://make.wordpress.org/core/2020/11/05/application-passwords-integration-guide/ . Application
  passwords are 24 letters and digits (``wp_generate_password(24, false)``), shown in groups of
  four; WordPress strips everything but letters and digits before checking
  (``wp_authenticate_application_password``), so they are sent without spaces here. Application
  passwords need https unless ``WP_ENVIRONMENT_TYPE`` is ``local``.
* Credential test — ``GET {prefix}/wp/v2/users/me?context=edit`` (only a logged-in user can read
  itself in the edit context); ``_fields=id,name,roles`` keeps the answer small
  (https://developer.wordpress.org/rest-api/reference/users/#retrieve-a-user and the global
  ``_fields`` parameter, https://developer.wordpress.org/rest-api/using-the-rest-api/global-parameters/).
* Probe — ``GET {prefix}/`` (the API index, public), with ``_fields`` so plugins' route lists are
  not downloaded; it also says whether application passwords are available
  (``authentication.application-passwords``).
* Authenticated health check — the credential test's ``users/me`` call (the index is public, and a
  wrong application password does not change its answer), run by the operator with the probe.
* Errors — ``{"code": "...", "message": "...", "data": {"status": 401}}``: ``invalid_username``,
  ``incorrect_password``, ``application_passwords_disabled``, ``rest_not_logged_in`` (credentials
  missing or ignored — a server that strips ``Authorization`` — and, on older WordPress
  (seen on 6.1), a wrong application password), ``rest_no_route`` (404). Every 401/403 means
  rejected credentials.
* Rate limits — core WordPress has none; hosts and security plugins may answer 429 with
  ``Retry-After``, handled generically.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from oneie_operator.errors import FieldIssue, ProviderProtocolError
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderClient, ProviderResponse, describe_error_body
from oneie_operator.providers.redaction import sanitize

EXAMPLE_URL = "https://blog.example.com"
_PREFIX = re.compile(r"^/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*$")
_APP_PASSWORD = re.compile(r"^[A-Za-z0-9]{24}$")


class WordPressSettings(ProviderSettings):
    """``spec.wordpress``."""

    url: str = Field(
        description=f"the site URL, like {EXAMPLE_URL} or https://example.com/blog",
        examples=[EXAMPLE_URL],
    )
    rest_prefix: str = Field(
        default="/wp-json",
        alias="restPrefix",
        description="the REST API path prefix, like /wp-json (the default)",
    )
    rest_route: bool = Field(
        default=False,
        alias="restRoute",
        description="true for sites without pretty permalinks: call the API as ?rest_route=/...",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = validate_base_url(value, example=EXAMPLE_URL)
        # The site URL, not the API root: a URL copied from the REST API index
        # (``https://example.com/wp-json/``) is normalised, so calls never go to /wp-json/wp-json/...
        while url.endswith("/wp-json"):
            url = url[: -len("/wp-json")]
        return url

    @field_validator("rest_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not _PREFIX.match(value):
            raise ValueError("must be a path like /wp-json (a leading slash, no query)")
        return value


def _clean_password(password: str) -> str:
    """What WordPress itself compares: letters and digits only."""
    return re.sub(r"[^A-Za-z0-9]", "", password)


def _wordpress_error(status: int, body: Any) -> str | None:
    detail = describe_error_body(status, body)
    if detail and detail.startswith("rest_not_logged_in"):
        detail += (
            " (wrong credentials on older WordPress, Authorization header stripped by the web server,"
            " or application passwords off: they need https or WP_ENVIRONMENT_TYPE=local)"
        )
    elif status == 404:
        hint = "check restPrefix, or set restRoute: true for sites without pretty permalinks"
        detail = f"{detail} ({hint})" if detail else hint
    return detail


class WordPressProvider(Provider[WordPressSettings]):
    name = "wordpress"
    display_name = "WordPress"
    settings_model = WordPressSettings
    secret_fields = ("username", "applicationPassword")
    secret_descriptions = {
        "username": "The WordPress user name.",
        "applicationPassword": "An application password of that user (Users → Profile → Application passwords).",
    }
    capabilities = frozenset({"cms", "content", "media", "users", "comments"})

    def credential_issues(self, credentials: Mapping[str, str]) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        username = credentials.get("username", "")
        if ":" in username:
            issues.append(FieldIssue("username", "must not contain ':' (HTTP Basic auth cannot carry it)"))
        password = credentials.get("applicationPassword", "")
        if password and not _APP_PASSWORD.match(_clean_password(password)):
            issues.append(
                FieldIssue(
                    "applicationPassword",
                    "is not a WordPress application password: expected 24 letters and digits, "
                    "optionally in groups of four separated by spaces (Users → Profile → Application "
                    "Passwords), not the account's login password",
                )
            )
        return issues

    def endpoint(self, settings: WordPressSettings, route: str) -> tuple[str, dict[str, str]]:
        """Path under the site URL and query parameters for a REST route like ``/wp/v2/users/me``."""
        if settings.rest_route:
            return "/", {"rest_route": route}
        return f"{settings.rest_prefix}{route}", {}

    async def _get(
        self,
        http: ProviderClient,
        settings: WordPressSettings,
        credentials: Mapping[str, str],
        route: str,
        params: dict[str, str],
        *,
        call: str,
        authenticated: bool,
    ) -> ProviderResponse:
        path, query = self.endpoint(settings, route)
        auth = None
        if authenticated:
            auth = (credentials["username"], _clean_password(credentials["applicationPassword"]))
        return await http.request(
            "GET",
            path,
            call=call,
            params={**query, **params},
            auth=auth,
            secrets=[_clean_password(credentials.get("applicationPassword", ""))],
            describe_error=_wordpress_error,
        )

    async def test_credentials(
        self, settings: WordPressSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        answer = await self._get(
            http,
            settings,
            credentials,
            "/wp/v2/users/me",
            {"context": "edit", "_fields": "id,name,roles"},
            call="test_credentials",
            authenticated=True,
        )
        user = answer.body
        if not isinstance(user, dict) or "id" not in user:
            raise ProviderProtocolError("WordPress answered users/me without a user object")
        secrets = list(credentials.values())
        name = sanitize(str(user.get("name", "")), secrets, 80)
        roles = user.get("roles")
        role_text = ", ".join(str(r) for r in roles) if isinstance(roles, list) else ""
        facts = {"user": name, "roles": sanitize(role_text, secrets, 120)}
        detail = f"application password accepted for {name or 'the user'}"
        if role_text:
            detail += f" (roles: {facts['roles']})"
        return CheckResult(answer.seconds, detail, facts)

    async def probe(
        self, settings: WordPressSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        answer = await self._get(
            http,
            settings,
            credentials,
            "/",
            {"_fields": "name,description,url,namespaces,authentication"},
            call="probe",
            authenticated=False,
        )
        index = answer.body
        namespaces = index.get("namespaces") if isinstance(index, dict) else None
        if not isinstance(index, dict) or not isinstance(namespaces, list) or "wp/v2" not in namespaces:
            raise ProviderProtocolError(
                "the WordPress REST API index does not list the wp/v2 namespace "
                "(is this a WordPress site, and is restPrefix right?)"
            )
        secrets = list(credentials.values())
        site = sanitize(str(index.get("name", "")), secrets, 80)
        auth = index.get("authentication")
        app_passwords = isinstance(auth, dict) and "application-passwords" in auth
        facts = {"site": site, "applicationPasswords": "available" if app_passwords else "unavailable"}
        detail = f"WordPress site {site!r} is up" if site else "WordPress site is up"
        if not app_passwords:
            detail += "; application passwords are not available on it"
        return CheckResult(answer.seconds, detail, facts)
