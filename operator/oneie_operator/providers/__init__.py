"""Backend providers: the interface, the registry, the HTTP client they use, and the policy
for where they may connect. Built-in providers live in one module each and register through
the ``oneie.providers`` entry-point group, exactly like third-party plug-ins.
"""

from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings, validate_base_url
from oneie_operator.providers.http import ProviderClient, ProviderHTTP, ProviderResponse
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.redaction import redact, sanitize
from oneie_operator.providers.registry import ProviderRegistry, default_registry, validate_settings

__all__ = [
    "CheckResult",
    "DestinationPolicy",
    "Provider",
    "ProviderClient",
    "ProviderHTTP",
    "ProviderRegistry",
    "ProviderResponse",
    "ProviderSettings",
    "default_registry",
    "redact",
    "sanitize",
    "validate_base_url",
    "validate_settings",
]
