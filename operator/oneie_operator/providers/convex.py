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
* Credential test — ``GET /api/check_admin_key`` with the key: the route Convex's dashboard uses
  to check a key ("checks if the admin key included in the header is valid for this instance.
  Returns the allowed operations and read-only status for the key"):
  ``{"success": true, "allowedOps": [...], "isReadOnly": false}``; an empty ``allowedOps`` means
  every operation (``operations_for_deploy_key``). Source: ``crates/local_backend/src/dashboard.rs``
  (``check_admin_key``), ``crates/keybroker/src/operations.rs`` (``DeploymentOp``,
  ``read_only_operations``) in https://github.com/get-convex/convex-backend . A read-only key, or one
  whose ``allowedOps`` lack ``WriteData``, narrows the connection's capabilities: no
  ``database-write``. A key that does not decrypt for the deployment is ``401 {"code": "BadAdminKey",
  "message": "The provided admin key was invalid for this instance"}``
  (``crates/authentication/src/application_auth.rs``); no key, or one that is not a deployment admin,
  is ``403 {"code": "BadDeployKey", "message": "The provided deploy key was invalid for deployment
  '<name>'. ..."}`` (``keybroker::bad_admin_key_error``). Both mean rejected credentials.
* Probe (liveness) — ``GET /instance_name`` (unauthenticated, plain text: the deployment's name),
  the route Convex's own CLI uses to check that a backend is up and is the expected one
  (``npm-packages/convex/src/cli/lib/networkTest.ts``, ``localDeployment/run.ts``; served by
  ``health_check_routes`` in ``crates/local_backend/src/router.rs``). The answer must be the
  deployment named by the cloud URL (``<name>.convex.cloud``) and by a ``prod:<name>|``/``dev:<name>|``
  or self-hosted ``<name>|`` key. ``/version`` is not used: a cloud deployment need not serve it.
* Authenticated health check — the credential test's call, ``GET /api/check_admin_key``.
* Rate limits — Convex documents no HTTP rate-limit headers; a 429 is handled generically
  (``Retry-After`` when present).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import httpx
from pydantic import Field, field_validator

from oneie_operator.errors import CredentialsError, CredentialsRejectedError, FieldIssue, ProviderProtocolError
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderClient, describe_error_body

EXAMPLE_URL = "https://happy-otter-123.convex.cloud"
_CLOUD_HOST = re.compile(r"^[a-z]+-[a-z]+-[0-9]+(\.[a-z0-9-]+)?\.convex\.cloud$")
#: ``prod:<name>|...`` / ``dev:<name>|...`` name the deployment they belong to.
_NAMED_KEY = re.compile(r"^(prod|dev):([a-z]+-[a-z]+-[0-9]+)\|")
#: A self-hosted admin key ``<instance-name>|<hex>`` names its instance.
_INSTANCE_KEY = re.compile(r"^([a-z0-9][a-z0-9-]*)\|")
_INSTANCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: The capability a key without ``WriteData`` (a read-only key) does not get.
WRITE_CAPABILITY = "database-write"


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
    if status in (401, 403) and detail and ("BadDeployKey" in detail or "BadAdminKey" in detail):
        detail += " (is deployKey a deploy key of this deployment?)"
    return detail


def _key_deployment(key: str) -> str | None:
    """The deployment a key names: ``prod:<name>|``, ``dev:<name>|`` or self-hosted ``<name>|``."""
    named = _NAMED_KEY.match(key)
    if named:
        return named.group(2)
    instance = _INSTANCE_KEY.match(key)
    return instance.group(1) if instance else None


@functools.lru_cache(maxsize=4096)  # every probe asks; parsing the URL each time cost ~3 % of a probe's CPU
def _url_deployment(url: str) -> str | None:
    host = httpx.URL(url).host
    return host.split(".", 1)[0] if host.endswith(".convex.cloud") else None


class ConvexProvider(Provider[ConvexSettings]):
    name = "convex"
    display_name = "Convex"
    settings_model = ConvexSettings
    secret_fields = ("deployKey",)
    secret_descriptions = {"deployKey": "The deployment's deploy key (Convex dashboard → Settings → Deploy key)."}
    capabilities = frozenset(
        {
            "database",
            WRITE_CAPABILITY,
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

        answer = await http.request(
            "GET", "/api/check_admin_key", call="test_credentials", headers=self._headers(credentials),
            describe_error=_convex_error,
        )  # fmt: skip
        body = answer.body if isinstance(answer.body, dict) else {}
        if body.get("success") is not True:
            raise ProviderProtocolError("Convex answered /api/check_admin_key without success: true")
        read_only = body.get("isReadOnly") is True
        ops = body.get("allowedOps")
        allowed = [str(op) for op in ops] if isinstance(ops, list) else []
        # An empty allowedOps means every operation (keybroker operations_for_deploy_key).
        writable = not read_only and (not allowed or "WriteData" in allowed)
        capabilities = self.capabilities if writable else self.capabilities - {WRITE_CAPABILITY}
        facts = {
            "readOnly": "true" if read_only else "false",
            "allowedOps": "all" if not allowed else str(len(allowed)),
        }
        if writable:
            detail = (
                "deploy key accepted (all operations)" if not allowed else "deploy key accepted (restricted operations)"
            )
        else:
            detail = "deploy key accepted, read-only: no database-write capability"
        return CheckResult(answer.seconds, detail, facts, capabilities=capabilities)

    async def probe(
        self, settings: ConvexSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        answer = await http.request("GET", "/instance_name", call="probe", body="text")
        content_type = answer.headers.get("content-type", "").lower()
        name = str(answer.body).strip()
        if content_type.startswith("text/html") or not _INSTANCE_NAME.match(name):
            raise ProviderProtocolError(
                "Convex /instance_name did not answer with a deployment name "
                "(is spec.convex.url a Convex deployment URL?)"
            )
        expected_by_url = _url_deployment(settings.url)
        if expected_by_url is not None and name != expected_by_url:
            raise ProviderProtocolError(
                f"the deployment at spec.convex.url answers as {name!r}, not {expected_by_url!r} as its URL names"
            )
        by_key = _key_deployment(credentials.get("deployKey", "").strip())
        if by_key is not None and name != by_key:
            raise CredentialsRejectedError(
                f"deployKey belongs to deployment {by_key!r}, but spec.convex.url serves deployment {name!r}"
            )
        return CheckResult(answer.seconds, f"Convex deployment {name} is up", {"deployment": name})
