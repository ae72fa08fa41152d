"""Notion: the public REST API at https://api.notion.com, authenticated with a bearer token.

Documented behaviour followed here (checked 2026):

* Base URL — ``https://api.notion.com/v1/...``; there are no regional or self-hosted forms
  (``apiUrl`` exists for tests and egress proxies). https://developers.notion.com/reference/intro
* Version — every request must carry ``Notion-Version``; the latest documented version is
  ``2026-03-11`` (previous: ``2025-09-03``, ``2022-06-28``); a request without it is
  ``400 missing_version``. https://developers.notion.com/reference/versioning ,
  https://developers.notion.com/reference/changes-by-version
* Credentials — ``Authorization: Bearer <token>``
  (https://developers.notion.com/reference/authentication). Internal connection tokens start with
  ``ntn_`` (older ones with ``secret_``); OAuth access tokens and personal access tokens are
  bearer tokens too, so the format check is loose.
* Credential test — ``GET /v1/users/me`` ("Retrieve your token's bot user"): the cheapest call,
  it needs no shared page. https://developers.notion.com/reference/get-self
* Probe — the same call: Notion has no unauthenticated health endpoint.
* Errors — ``{"object":"error","status":401,"code":"unauthorized","message":"..."}``;
  ``restricted_resource`` (403), ``rate_limited`` (429, ``additional_data.rate_limit_reason``),
  ``service_overload`` (529). https://developers.notion.com/reference/status-codes
* Rate limits — 429 ``rate_limited`` and 529 ``service_overload`` both carry ``Retry-After`` in
  whole seconds; both are reported as rate limiting with that delay.
  https://developers.notion.com/reference/request-limits
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import Field, field_validator

from oneie_operator.errors import FieldIssue, ProviderProtocolError
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderClient, ProviderResponse
from oneie_operator.providers.redaction import sanitize

DEFAULT_API_URL = "https://api.notion.com"
#: The latest Notion-Version documented at https://developers.notion.com/reference/versioning .
LATEST_NOTION_VERSION = "2026-03-11"
_TOKEN = re.compile(r"^[A-Za-z0-9_\-.]{20,}$")


class NotionSettings(ProviderSettings):
    """``spec.notion``."""

    api_url: str = Field(
        default=DEFAULT_API_URL,
        alias="apiUrl",
        description=f"the API base URL, {DEFAULT_API_URL} (the default; change only for a proxy)",
    )
    notion_version: str = Field(
        default=LATEST_NOTION_VERSION,
        alias="notionVersion",
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        description=(
            f"the Notion-Version header, a date like {LATEST_NOTION_VERSION} (the latest documented "
            "version and the default) or 2025-09-03"
        ),
    )

    @field_validator("api_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = validate_base_url(value, example=DEFAULT_API_URL)
        if url.endswith("/v1"):
            raise ValueError(f"must not end in /v1; expected the base URL, like {DEFAULT_API_URL}")
        return url


class NotionProvider(Provider[NotionSettings]):
    name = "notion"
    display_name = "Notion"
    settings_model = NotionSettings
    secret_fields = ("token",)
    capabilities = frozenset({"documents", "databases", "comments", "search", "users"})
    base_url_field = "apiUrl"

    def base_url(self, settings: NotionSettings) -> str:
        return settings.api_url

    def credential_issues(self, credentials: Mapping[str, str]) -> list[FieldIssue]:
        token = credentials.get("token", "").strip()
        if not token:
            return []
        if token.lower().startswith("bearer "):
            return [FieldIssue("token", "must be the token alone, without the 'Bearer ' prefix")]
        if not _TOKEN.match(token):
            return [
                FieldIssue(
                    "token",
                    "is not a Notion token; expected an integration token like ntn_… (older ones: "
                    "secret_…) or an OAuth/personal access token, with no spaces",
                )
            ]
        return []

    async def _me(
        self, settings: NotionSettings, credentials: Mapping[str, str], http: ProviderClient, call: str
    ) -> ProviderResponse:
        return await http.request(
            "GET",
            "/v1/users/me",
            call=call,
            headers={
                "Authorization": f"Bearer {credentials['token'].strip()}",
                "Notion-Version": settings.notion_version,
            },
            rate_limit_statuses=(429, 529),
        )

    def _result(self, answer: ProviderResponse, credentials: Mapping[str, str], verb: str) -> CheckResult:
        user = answer.body
        if not isinstance(user, dict) or user.get("object") != "user":
            raise ProviderProtocolError("Notion answered /v1/users/me without a user object")
        secrets = list(credentials.values())
        name = sanitize(str(user.get("name") or ""), secrets, 80)
        facts = {"user": name, "type": sanitize(str(user.get("type", "")), secrets, 20)}
        bot = user.get("bot")
        workspace = bot.get("workspace_name") if isinstance(bot, dict) else None
        if isinstance(workspace, str) and workspace:
            facts["workspace"] = sanitize(workspace, secrets, 80)
        who = f"{facts['type'] or 'user'} {name!r}" if name else "the token's user"
        where = f" in workspace {facts['workspace']!r}" if "workspace" in facts else ""
        return CheckResult(answer.seconds, f"{verb} {who}{where}", facts)

    async def test_credentials(
        self, settings: NotionSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        answer = await self._me(settings, credentials, http, "test_credentials")
        return self._result(answer, credentials, "token accepted for")

    async def probe(
        self, settings: NotionSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        answer = await self._me(settings, credentials, http, "probe")
        return self._result(answer, credentials, "Notion API is up; it answered for")
