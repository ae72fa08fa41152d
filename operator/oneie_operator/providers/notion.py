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
  bearer tokens too. Notion asks integrations not to validate token formats, so the token's
  format is not checked here (only a pasted ``Bearer `` prefix is refused): the API answers.
* Credential test — ``GET /v1/users/me`` ("Retrieve your token's bot user"): the cheapest call,
  it needs no shared page. https://developers.notion.com/reference/get-self . With
  ``databaseId`` set, also ``GET /v1/databases/{id}``
  (https://developers.notion.com/reference/database , https://developers.notion.com/reference/retrieve-a-database):
  a database not shared with the integration is ``404 object_not_found`` ("Make sure the relevant
  pages and databases are shared with your integration"), reported as rejected credentials; from
  Notion-Version 2025-09-03 the answer lists the database's ``data_sources`` (``[{"id","name"}]``),
  reported in the result (https://developers.notion.com/docs/upgrade-guide-2025-09-03). Database
  IDs are 32 hex digits, shown with or without dashes; they are normalised to the dashed UUID form.
* Probe — the same call: Notion has no unauthenticated health endpoint. Authenticated health check
  — the credential test (``/v1/users/me``, plus ``/v1/databases/{id}`` when ``databaseId`` is set).
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

from oneie_operator.errors import CredentialsRejectedError, FieldIssue, ProviderProtocolError
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderClient, ProviderResponse
from oneie_operator.providers.redaction import sanitize

DEFAULT_API_URL = "https://api.notion.com"
#: The latest Notion-Version documented at https://developers.notion.com/reference/versioning .
LATEST_NOTION_VERSION = "2026-03-11"
#: The first Notion-Version in which a database lists its data sources.
DATA_SOURCES_VERSION = "2025-09-03"
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def normalise_database_id(value: str) -> str:
    """32 hex digits, with or without dashes, as the dashed lower-case UUID form Notion answers with."""
    compact = value.strip().replace("-", "")
    if not _HEX32.match(compact):
        raise ValueError(
            "must be a Notion database ID: 32 hex digits with or without dashes, like "
            "1429989fe8ac4effbc8f57f56486db54 (the part of the database's URL before the '?')"
        )
    h = compact.lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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

    database_id: str | None = Field(
        default=None,
        alias="databaseId",
        description=(
            "optional: a database the integration must be able to read (32 hex digits with or without "
            "dashes); checked by the credential test"
        ),
    )

    @field_validator("database_id")
    @classmethod
    def _check_database_id(cls, value: str | None) -> str | None:
        return None if value is None else normalise_database_id(value)

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
    secret_descriptions = {"token": "The integration's internal secret (ntn_… or, if older, secret_…)."}
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
        return []

    @staticmethod
    def _headers(settings: NotionSettings, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {credentials['token'].strip()}", "Notion-Version": settings.notion_version}

    async def _me(
        self, settings: NotionSettings, credentials: Mapping[str, str], http: ProviderClient, call: str
    ) -> ProviderResponse:
        return await http.request(
            "GET",
            "/v1/users/me",
            call=call,
            headers=self._headers(settings, credentials),
            rate_limit_statuses=(429, 529),
        )

    async def _database(
        self, settings: NotionSettings, credentials: Mapping[str, str], http: ProviderClient, database_id: str
    ) -> str:
        """Check the integration can read ``databaseId``; a detail naming its data sources (≥ 2025-09-03)."""
        answer = await http.request(
            "GET",
            f"/v1/databases/{database_id}",
            call="test_credentials",
            headers=self._headers(settings, credentials),
            expect=(200, 404),
            rate_limit_statuses=(429, 529),
        )
        if answer.status == 404:
            raise CredentialsRejectedError(
                f"Notion cannot find database {database_id} for this integration (object_not_found): "
                "share the database with the integration (the database's ••• menu → Connections), "
                "or check spec.notion.databaseId"
            )
        database = answer.body
        if not isinstance(database, dict) or database.get("object") != "database":
            raise ProviderProtocolError("Notion answered /v1/databases/{id} without a database object")
        sources = database.get("data_sources")
        if settings.notion_version < DATA_SOURCES_VERSION or not isinstance(sources, list):
            return f"database {database_id} is shared with the integration"
        secrets = list(credentials.values())
        names = [
            sanitize(str(s.get("name") or s.get("id") or "?"), secrets, 80) for s in sources if isinstance(s, dict)
        ]
        listed = ", ".join(repr(n) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        return f"database {database_id} is shared with the integration; data sources: {listed or 'none'}"

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
        result = self._result(answer, credentials, "token accepted for")
        if settings.database_id is None:
            return result
        database = await self._database(settings, credentials, http, settings.database_id)
        return CheckResult(result.latency_seconds, f"{result.detail}; {database}", result.facts)

    async def probe(
        self, settings: NotionSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        answer = await self._me(settings, credentials, http, "probe")
        return self._result(answer, credentials, "Notion API is up; it answered for")
