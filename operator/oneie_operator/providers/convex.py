"""Convex: a deployment's admin HTTP API, authenticated with a deploy key.

Documented behaviour followed here (checked 2026):

* Deployment URL — ``https://<name>.convex.cloud`` (e.g. ``https://happy-otter-123.convex.cloud``),
  regional deployments add the region: ``https://<name>.<region>.convex.cloud`` (e.g.
  ``...eu-west-1.convex.cloud``); self-hosted backends serve the same API on their own URL
  (``http://127.0.0.1:3210`` by default). ``https://<name>.convex.site`` is the *HTTP actions* URL,
  not the API. https://docs.convex.dev/http-api ,
  https://docs.convex.dev/production/hosting/ (self-hosting), convex CLI
  ``extractDeploymentNameForWorkOS`` (``^https://([a-z]+-[a-z]+-[0-9]+)\\.(?:[^.]+\\.)?convex\\.cloud$``).
* Authentication — ``Authorization: Convex <deploy key>``: "Whatever type of key, add the string
  "Convex " to the front." https://docs.convex.dev/deployment-platform-api and
  https://docs.convex.dev/streaming-export-api . Deploy keys look like
  ``prod:happy-otter-123|ey...`` / ``dev:...|...`` / ``preview:team:project|...`` /
  ``project:team:project|...`` (https://docs.convex.dev/cli/deploy-key-types); self-hosted admin keys
  look like ``<instance-name>|<hex>``.
* Credential test — ``GET /api/v1/deployment_info`` (Deployment Platform API: "Returns identity
  information about this deployment", needs a deploy key; ``{"kind":"cloud",...}`` or
  ``{"kind":"selfHosted"}``; source ``crates/local_backend/src/deployment_info.rs``). Older
  self-hosted backends without that route (404) are tested with ``GET /api/check_admin_key``.
  A bad key is ``401 {"code":"BadAdminKey","message":"The provided admin key was invalid for this
  instance"}``. (``GET /api/v1/list_environment_variables`` would also prove the key but returns the
  deployment's secrets, so it is deliberately not used.)
* Probe — ``GET /version`` (unauthenticated, plain text: the backend version; the self-hosted
  docker-compose health check uses exactly this).
* Rate limits — Convex documents no HTTP rate-limit headers; a 429 is handled generically
  (``Retry-After`` when present).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import httpx
from pydantic import Field, field_validator

from oneie_operator.errors import CredentialsError, FieldIssue, ProviderProtocolError
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderClient, ProviderResponse, describe_error_body
from oneie_operator.providers.redaction import sanitize

EXAMPLE_URL = "https://happy-otter-123.convex.cloud"
_CLOUD_HOST = re.compile(r"^[a-z]+-[a-z]+-[0-9]+(\.[a-z0-9-]+)?\.convex\.cloud$")
#: ``prod:<name>|...`` / ``dev:<name>|...`` name the deployment they belong to.
_NAMED_KEY = re.compile(r"^(prod|dev):([a-z]+-[a-z]+-[0-9]+)\|")


class ConvexSettings(ProviderSettings):
    """``spec.convex``."""

    url: str = Field(
        description=(
            "the deployment URL, like https://happy-otter-123.convex.cloud, a regional one like "
            "https://happy-otter-123.eu-west-1.convex.cloud, or a self-hosted backend's URL"
        ),
        examples=[EXAMPLE_URL],
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        url = validate_base_url(value, example=EXAMPLE_URL)
        host = httpx.URL(url).host
        if host.endswith(".convex.site"):
            raise ValueError(
                "is an HTTP actions URL (.convex.site); use the deployment URL ending in "
                f".convex.cloud, like {EXAMPLE_URL}"
            )
        if host.endswith(".convex.cloud") and not _CLOUD_HOST.match(host):
            raise ValueError(
                "is not a Convex deployment URL; expected https://<deployment-name>.convex.cloud "
                f"or https://<deployment-name>.<region>.convex.cloud, like {EXAMPLE_URL}"
            )
        return url


def _convex_error(status: int, body: object) -> str | None:
    detail = describe_error_body(status, body)
    if status == 401 and detail and "BadAdminKey" in detail:
        detail += " (is deployKey a deploy key of this deployment?)"
    return detail


class ConvexProvider(Provider[ConvexSettings]):
    name = "convex"
    display_name = "Convex"
    settings_model = ConvexSettings
    secret_fields = ("deployKey",)
    capabilities = frozenset(
        {
            "database",
            "realtime",
            "functions",
            "scheduled-functions",
            "file-storage",
            "full-text-search",
            "vector-search",
        }
    )

    def credential_issues(self, credentials: Mapping[str, str]) -> list[FieldIssue]:
        key = credentials.get("deployKey", "").strip()
        if not key:
            return []
        if key.lower().startswith("convex "):
            return [FieldIssue("deployKey", "must be the key alone, without the 'Convex ' prefix")]
        if any(c.isspace() for c in key) or "|" not in key or key.startswith("|") or key.endswith("|"):
            return [
                FieldIssue(
                    "deployKey",
                    "is not a Convex deploy key; expected the value shown by the dashboard, like "
                    "prod:happy-otter-123|<token> (or <instance-name>|<token> for a self-hosted backend)",
                )
            ]
        return []

    def _headers(self, credentials: Mapping[str, str]) -> dict[str, str]:
        return {"Authorization": f"Convex {credentials['deployKey'].strip()}"}

    async def test_credentials(
        self, settings: ConvexSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        self.check_credentials(credentials)
        key = credentials["deployKey"].strip()
        named = _NAMED_KEY.match(key)
        host = httpx.URL(settings.url).host
        if named and host.endswith(".convex.cloud") and host.split(".", 1)[0] != named.group(2):
            raise CredentialsError(
                "deployKey belongs to a different deployment than spec.convex.url "
                "(a prod:/dev: key names its deployment)"
            )

        async def get(path: str, expect: tuple[int, ...]) -> ProviderResponse:
            return await http.request(
                "GET", path, call="test_credentials", expect=expect, headers=self._headers(credentials),
                describe_error=_convex_error,
            )  # fmt: skip

        answer = await get("/api/v1/deployment_info", (200, 404))
        if answer.status == 404:  # a self-hosted backend from before the Deployment Platform API
            answer = await get("/api/check_admin_key", (200,))
            return CheckResult(answer.seconds, "deploy key accepted (self-hosted backend)", {"kind": "selfHosted"})
        info = answer.body if isinstance(answer.body, dict) else {}
        kind = str(info.get("kind", "unknown"))
        facts = {"kind": sanitize(kind, (), 40)}
        if kind == "cloud":
            for key_name in ("deploymentType", "projectSlug", "reference"):
                if isinstance(info.get(key_name), str):
                    facts[key_name] = sanitize(info[key_name], credentials.values(), 80)
            where = ", ".join(f"{k} {v}" for k, v in facts.items() if k != "kind")
            detail = f"deploy key accepted (Convex cloud{': ' + where if where else ''})"
        else:
            detail = "deploy key accepted (self-hosted backend)"
        return CheckResult(answer.seconds, detail, facts)

    async def probe(
        self, settings: ConvexSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        answer = await http.request("GET", "/version", call="probe", body="text")
        content_type = answer.headers.get("content-type", "").lower()
        text = str(answer.body).strip()
        if content_type.startswith("text/html") or not text or len(text) > 200 or "<" in text:
            raise ProviderProtocolError(
                "Convex /version did not answer with a version string (is spec.convex.url a Convex deployment URL?)"
            )
        version = sanitize(text, credentials.values(), 64)
        return CheckResult(answer.seconds, f"Convex backend {version} is up", {"version": version})
