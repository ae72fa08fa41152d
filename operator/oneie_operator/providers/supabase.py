"""Supabase: a project's API gateway (Data API, Auth), authenticated with API keys.

Documented behaviour followed here (checked 2026):

* Project URL — ``https://<project-ref>.supabase.co`` (the ref is 20 lower-case letters/digits),
  a custom domain, or a self-hosted gateway (Kong/Envoy, ``http://localhost:8000`` by default).
  The dashboard address (``supabase.com/dashboard/project/<ref>``) is not the API.
  https://supabase.com/docs/guides/api
* Keys — https://supabase.com/docs/guides/api/api-keys and
  https://supabase.com/docs/guides/getting-started/migrating-to-new-api-keys :
  publishable ``sb_publishable_…`` (replaces the legacy ``anon`` JWT) and secret ``sb_secret_…``
  (replaces the legacy ``service_role`` JWT; bypasses Row Level Security). Legacy keys are JWTs
  (``eyJ…``) whose ``role`` claim is ``anon`` or ``service_role``; they remain usable until their
  announced retirement (end of 2026). The new keys are **not JWTs**: they go in the ``apikey``
  header only and must not be sent as ``Authorization: Bearer`` (the gateway rejects that); legacy
  JWT keys are sent in both ``apikey`` and ``Authorization: Bearer``. Secret keys are refused when
  the request looks like it comes from a browser (``User-Agent``), which ours never does.
* Credential test — ``GET /rest/v1/`` (the Data API's OpenAPI root): the platform serves it only to
  privileged keys (secret / service_role; a publishable or anon key gets 403 — the self-hosted
  gateways do the same since supabase/supabase#45462), so a 200 proves ``serviceRoleKey`` is both
  valid and privileged. Only the status is used; the (schema-sized) body is never downloaded.
* Probe — ``GET /auth/v1/health`` with an ``apikey`` (``{"version","name","description"}``),
  https://supabase.com/docs/guides/troubleshooting/how-do-i-check-gotrueapi-version-of-a-supabase-project-lQAnOR
  (uses ``anonKey`` when given, else ``serviceRoleKey``).
* Authenticated health check — the credential test's ``GET /rest/v1/`` with ``serviceRoleKey``
  (the probe's key is not the privileged one), run by the operator with the probe.
* Errors — gateway ``401 {"message":"Invalid API key","hint":"..."}`` / ``{"message":"No API key
  found in request"}``; PostgREST ``{"code":"PGRST…","message":...}``; Auth
  ``{"code":<status>,"error_code":"...","msg":"..."}`` (429 ``over_request_rate_limit``).
* Rate limits — 429 with ``Retry-After`` when given, handled generically.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import Field, field_validator

from oneie_operator.errors import FieldIssue, ProviderProtocolError
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderClient, describe_error_body
from oneie_operator.providers.redaction import sanitize

EXAMPLE_URL = "https://abcdefghijklmnopqrst.supabase.co"
_PROJECT_HOST = re.compile(r"^[a-z0-9]{20}\.supabase\.co$")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
SECRET_PREFIX = "sb_secret_"
PUBLISHABLE_PREFIX = "sb_publishable_"


class SupabaseSettings(ProviderSettings):
    """``spec.supabase``."""

    url: str = Field(
        description=(
            f"the project URL, like {EXAMPLE_URL} (https://<project-ref>.supabase.co), a custom "
            "domain, or a self-hosted gateway's URL"
        ),
        examples=[EXAMPLE_URL],
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = validate_base_url(value, example=EXAMPLE_URL)
        parsed = httpx.URL(url)
        host = parsed.host
        if host in ("supabase.com", "www.supabase.com", "app.supabase.com"):
            raise ValueError(
                f"is the Supabase dashboard, not the project API; expected {EXAMPLE_URL} "
                "(Project Settings → Data API → Project URL)"
            )
        if host.endswith(".supabase.co") and not _PROJECT_HOST.match(host):
            raise ValueError("is not a project URL; expected https://<20-character project ref>.supabase.co")
        if re.search(r"/(rest|auth|storage|realtime|functions)/v1(/|$)", parsed.path):
            raise ValueError(f"must be the project URL without an API path like /rest/v1; expected {EXAMPLE_URL}")
        return url


def jwt_role(key: str) -> str | None:
    """The ``role`` claim of a legacy JWT API key (not verified: only to catch mix-ups)."""
    if not _JWT.match(key):
        return None
    payload = key.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        return None
    role = claims.get("role") if isinstance(claims, dict) else None
    return role if isinstance(role, str) else None


def key_kind(key: str) -> str:
    """``secret`` / ``publishable`` / ``service_role`` / ``anon`` / ``jwt:<role>`` / ``unknown``."""
    if key.startswith(SECRET_PREFIX):
        return "secret"
    if key.startswith(PUBLISHABLE_PREFIX):
        return "publishable"
    role = jwt_role(key)
    if role is None:
        return "unknown"
    return role if role in ("service_role", "anon") else f"jwt:{role}"


def api_key_headers(key: str) -> dict[str, str]:
    """Headers for one API key: new keys in ``apikey`` only, legacy JWTs in both headers."""
    key = key.strip()
    if key.startswith(("sb_secret_", "sb_publishable_")):
        return {"apikey": key}
    return {"apikey": key, "Authorization": f"Bearer {key}"}


def _supabase_error(status: int, body: Any) -> str | None:
    detail = describe_error_body(status, body)
    if isinstance(body, dict) and isinstance(body.get("hint"), str) and detail and "hint" not in detail:
        detail = f"{detail} — {body['hint']}"
    if status == 403:
        detail = (detail + " " if detail else "") + (
            "(the key is not privileged: serviceRoleKey must be a secret key sb_secret_… or the "
            "legacy service_role key)"
        )
    return detail


class SupabaseProvider(Provider[SupabaseSettings]):
    name = "supabase"
    display_name = "Supabase"
    settings_model = SupabaseSettings
    secret_fields = ("serviceRoleKey",)
    optional_secret_fields = ("anonKey",)
    secret_descriptions = {
        "serviceRoleKey": "The project's service_role key (Project settings → API).",
        "anonKey": "The project's anon (public) key, optional.",
    }
    capabilities = frozenset(
        {"database", "auth", "realtime", "file-storage", "functions", "vector-search", "full-text-search"}
    )

    def credential_issues(self, credentials: Mapping[str, str]) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        service = credentials.get("serviceRoleKey", "").strip()
        if service:
            kind = key_kind(service)
            if kind == "publishable":
                issues.append(
                    FieldIssue(
                        "serviceRoleKey",
                        "is a publishable key (sb_publishable_…); a secret key (sb_secret_…) or the "
                        "legacy service_role JWT is needed",
                    )
                )
            elif kind == "anon":
                issues.append(
                    FieldIssue(
                        "serviceRoleKey",
                        "is the legacy anon key (role anon); the service_role key or a secret key "
                        "(sb_secret_…) is needed",
                    )
                )
            elif kind not in ("secret", "service_role"):
                issues.append(
                    FieldIssue(
                        "serviceRoleKey",
                        "is not a Supabase secret key: expected sb_secret_… or the legacy service_role "
                        "JWT (eyJ…) from Project Settings → API Keys",
                    )
                )
        anon = credentials.get("anonKey", "").strip()
        if anon:
            kind = key_kind(anon)
            if kind in ("secret", "service_role"):
                issues.append(
                    FieldIssue(
                        "anonKey",
                        "holds a privileged key; anonKey is handed to applications and must be the "
                        "publishable key (sb_publishable_…) or the legacy anon JWT",
                    )
                )
            elif kind not in ("publishable", "anon"):
                issues.append(
                    FieldIssue(
                        "anonKey",
                        "is not a Supabase publishable key: expected sb_publishable_… or the legacy anon JWT (eyJ…)",
                    )
                )
        return issues

    async def test_credentials(
        self, settings: SupabaseSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        service = credentials["serviceRoleKey"].strip()
        answer = await http.request(
            "GET",
            "/rest/v1/",
            call="test_credentials",
            headers={**api_key_headers(service), "Accept": "application/openapi+json"},
            body="none",
            describe_error=_supabase_error,
        )
        content_type = answer.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.endswith("json"):
            raise ProviderProtocolError(
                f"Supabase answered /rest/v1/ with {content_type or 'no content type'}, not the Data "
                "API's OpenAPI document (is spec.supabase.url the project URL?)"
            )
        kind = key_kind(service)
        label = "secret key" if kind == "secret" else "service_role key"
        return CheckResult(
            answer.seconds,
            f"{label} accepted with privileged access to the Data API",
            {"keyType": kind},
        )

    async def probe(
        self, settings: SupabaseSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        key = (credentials.get("anonKey") or credentials["serviceRoleKey"]).strip()
        answer = await http.request(
            "GET",
            "/auth/v1/health",
            call="probe",
            headers={"apikey": key},
            describe_error=_supabase_error,
        )
        health = answer.body
        if not isinstance(health, dict):
            raise ProviderProtocolError("Supabase Auth health answered without a JSON object")
        version = sanitize(str(health.get("version", "")), credentials.values(), 40)
        name = sanitize(str(health.get("name", "Auth")), credentials.values(), 40)
        detail = " ".join(part for part in ("Supabase", name, version, "is up") if part)
        return CheckResult(answer.seconds, detail, {"authVersion": version})
