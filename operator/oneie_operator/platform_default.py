"""The platform default backend: what organizations without a ``connectionRef`` use.

Configured from the operator's environment and validated at start-up::

    BACKEND_PROVIDER=convex
    CONVEX_URL=https://happy-otter-123.convex.cloud
    CONVEX_DEPLOY_KEY=prod:happy-otter-123|...

Each of the provider's settings and secret fields is read from ``<PROVIDER>_<FIELD>``, the
field name in upper snake case (``restPrefix`` → ``WORDPRESS_REST_PREFIX``,
``serviceRoleKey`` → ``SUPABASE_SERVICE_ROLE_KEY``). An invalid value stops the operator with
a message naming the variable and the expected format, never its value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from oneie_operator.errors import ConfigurationError, SpecError
from oneie_operator.providers.base import Provider, ProviderSettings
from oneie_operator.providers.registry import ProviderRegistry, validate_settings

#: The name an organization's status shows for the platform default.
PLATFORM_DEFAULT = "platform-default"


def env_name(provider: str, field_name: str) -> str:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", field_name).lower()
    return f"{provider.upper().replace('-', '_')}_{snake.upper()}"


@dataclass(frozen=True)
class PlatformDefault:
    provider: Provider[Any]
    settings: ProviderSettings
    credentials: Mapping[str, str] = field(repr=False)
    #: Whether organizations' binding Secrets receive the platform's credentials too.
    share_credentials: bool = False


def load_platform_default(environ: Mapping[str, str], registry: ProviderRegistry) -> PlatformDefault | None:
    name = (environ.get("BACKEND_PROVIDER") or "").strip()
    if not name:
        return None
    if name not in registry:
        raise ConfigurationError(f"BACKEND_PROVIDER: unknown provider (expected one of: {', '.join(registry.names())})")
    provider = registry.get(name)
    raw: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for field_name, info in provider.settings_model.model_fields.items():
        alias = info.alias or field_name
        variable = env_name(name, field_name)
        variables[alias] = variable
        variables[field_name] = variable
        if environ.get(variable):
            raw[alias] = environ[variable]
    problems: list[str] = []
    try:
        settings = validate_settings(provider, raw, "")
    except SpecError as exc:
        for issue in exc.issues:
            key = issue.field.lstrip(".").split(".")[0]
            problems.append(f"{variables.get(key, key)}: {issue.message}")
        settings = None
    credentials: dict[str, str] = {}
    for secret in (*provider.secret_fields, *provider.optional_secret_fields):
        value = environ.get(env_name(name, secret), "")
        if value:
            credentials[secret] = value
        elif secret in provider.secret_fields:
            problems.append(f"{env_name(name, secret)}: is required for BACKEND_PROVIDER={name}")
    if not problems:
        try:
            provider.check_credentials(credentials)
        except Exception as exc:  # format problems: the message names the field, never the value
            problems.append(f"{env_name(name, '')}*: {exc}")
    if problems or settings is None:
        raise ConfigurationError("invalid platform default backend: " + "; ".join(problems))
    share = (environ.get("BACKEND_SHARE_CREDENTIALS") or "false").strip().lower()
    if share not in ("true", "false"):
        raise ConfigurationError("BACKEND_SHARE_CREDENTIALS: expected true or false")
    return PlatformDefault(provider, settings, credentials, share == "true")
