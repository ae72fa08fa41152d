"""The package's shape: its public front door, and the standard library left alone."""

from __future__ import annotations

import importlib
import inspect
import pathlib
import subprocess
import sys

import oneie_operator
from oneie_operator import errors

EXPECTED_PUBLIC = {
    "CheckResult", "ConfigurationError", "CredentialsError", "CredentialsRejectedError", "DecryptionError",
    "DestinationForbiddenError", "FieldIssue", "KeyNotFoundError", "OneieError", "OperatorConfig", "Provider",
    "ProviderClient", "ProviderError", "ProviderHTTP", "ProviderProtocolError", "ProviderRateLimitedError",
    "ProviderServerError",
    "ProviderSettings", "ProviderTimeoutError", "ProviderUnreachableError", "RegistryError",
    "SecretKeyMissingError", "SecretNotFoundError", "SpecError", "UnknownProviderError", "VaultError",
    "__version__", "load_config",
}


def test_import_operator_is_still_the_standard_library() -> None:
    code = "import operator, oneie_operator, sys; print(operator.__file__); print(operator.itemgetter)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    path = pathlib.Path(out.splitlines()[0])
    assert path.parent == pathlib.Path(inspect.getfile(pathlib)).parent  # the stdlib directory
    assert "oneie" not in str(path)


def test_public_front_door_is_exactly_all() -> None:
    assert set(oneie_operator.__all__) == EXPECTED_PUBLIC
    for name in oneie_operator.__all__:
        assert hasattr(oneie_operator, name), name
    # Nothing else public leaks out of the front door (submodules and import helpers aside).
    public = {n for n, v in vars(oneie_operator).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert public - {"version", "PackageNotFoundError"} == set(oneie_operator.__all__) - {"__version__"}


def test_every_error_is_drawn_in_the_tree_docstring() -> None:
    doc = errors.__doc__ or ""
    classes = [c for c in vars(errors).values()
               if inspect.isclass(c) and issubclass(c, errors.OneieError)]
    assert len(classes) >= 15
    for cls in classes:
        assert cls.__name__ in doc, f"{cls.__name__} missing from the exception tree in errors.py"
        assert cls.reason and cls.reason[0].isupper() and " " not in cls.reason


def test_modules_import_cleanly() -> None:
    for name in ("oneie_operator.cli.main", "oneie_operator.cli.kubectl_plugin", "oneie_operator.handlers",
                 "oneie_operator.demo.scenario"):
        importlib.import_module(name)
