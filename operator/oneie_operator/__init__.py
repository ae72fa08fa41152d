"""oneie-operator: a Kubernetes operator for tenants' data backends.

The public front door for plug-in authors and embedders is this module's ``__all__``;
everything else is internal and may change. Submodules hold the parts, layered downward:
``cli`` → ``demo`` → ``running`` → ``handlers`` (Kopf glue) → ``reconcile`` → ``config`` →
``kube | vault | providers | testing | observability`` → ``errors``.
"""

from importlib.metadata import PackageNotFoundError, version

from oneie_operator.config import OperatorConfig, load_config
from oneie_operator.errors import (
    ConfigurationError,
    CredentialsError,
    CredentialsRejectedError,
    DecryptionError,
    DestinationForbiddenError,
    FieldIssue,
    KeyNotFoundError,
    OneieError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderServerError,
    ProviderTimeoutError,
    ProviderUnreachableError,
    RegistryError,
    SecretKeyMissingError,
    SecretNotFoundError,
    SpecError,
    UnknownProviderError,
    VaultError,
)
from oneie_operator.providers import CheckResult, Provider, ProviderClient, ProviderHTTP, ProviderSettings

try:
    __version__ = version("oneie-operator")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "CheckResult",
    "ConfigurationError",
    "CredentialsError",
    "CredentialsRejectedError",
    "DecryptionError",
    "DestinationForbiddenError",
    "FieldIssue",
    "KeyNotFoundError",
    "OneieError",
    "OperatorConfig",
    "Provider",
    "ProviderClient",
    "ProviderError",
    "ProviderHTTP",
    "ProviderProtocolError",
    "ProviderRateLimitedError",
    "ProviderServerError",
    "ProviderSettings",
    "ProviderTimeoutError",
    "ProviderUnreachableError",
    "RegistryError",
    "SecretKeyMissingError",
    "SecretNotFoundError",
    "SpecError",
    "UnknownProviderError",
    "VaultError",
    "__version__",
    "load_config",
]
