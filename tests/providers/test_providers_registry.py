"""ProviderRegistry: duplicates refused, broken plug-ins reported loudly, unknown names explained."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from oneie_operator.errors import FieldIssue, RegistryError, SpecError, UnknownProviderError
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings
from oneie_operator.providers.convex import ConvexProvider
from oneie_operator.providers.http import ProviderClient
from oneie_operator.providers.registry import ProviderRegistry, default_registry, validate_settings


class OtherConvex(ConvexProvider):
    """Another class claiming the name "convex"."""


class NoName(Provider[ProviderSettings]):
    name = "Not A Name!"
    display_name = "x"
    settings_model = ProviderSettings
    secret_fields = ("token",)

    async def test_credentials(
        self, settings: ProviderSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        return CheckResult(0.0)

    async def probe(
        self, settings: ProviderSettings, credentials: Mapping[str, str], http: ProviderClient
    ) -> CheckResult:
        return CheckResult(0.0)


class Abstract(Provider[ProviderSettings]):
    name = "abstract"
    display_name = "Abstract"
    settings_model = ProviderSettings
    secret_fields = ()


def test_duplicates_are_refused_naming_both_origins() -> None:
    registry = ProviderRegistry()
    registry.register(ConvexProvider)
    registry.register(ConvexProvider)  # the very same class again: harmless
    with pytest.raises(RegistryError) as caught:
        registry.register(OtherConvex, origin="the 'other' package")
    message = str(caught.value)
    assert "'convex' is registered twice" in message
    assert "oneie_operator.providers.convex:ConvexProvider" in message
    assert "the 'other' package" in message
    assert type(registry.get("convex")) is ConvexProvider  # the first one stays


def test_malformed_classes_are_refused() -> None:
    registry = ProviderRegistry()
    with pytest.raises(RegistryError, match="not a subclass"):
        registry.register(dict)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="name must be lower-case"):
        registry.register(NoName)
    with pytest.raises(RegistryError, match="is abstract"):
        registry.register(Abstract)  # type: ignore[type-abstract]
    assert len(registry) == 0


def test_unknown_provider_names_the_field_and_the_choices(registry: ProviderRegistry) -> None:
    with pytest.raises(UnknownProviderError) as caught:
        registry.get("firebase")
    assert isinstance(caught.value, SpecError)
    assert caught.value.issues == (
        FieldIssue(
            "spec.provider",
            "unknown provider 'firebase'; expected one of: convex, notion, supabase, wordpress",
        ),
    )
    assert caught.value.reason == "UnknownProvider"


def test_default_registry_is_cached_and_has_the_builtins() -> None:
    assert default_registry() is default_registry()
    assert set(default_registry().names()) >= {"convex", "notion", "supabase", "wordpress"}
    assert "convex" in default_registry()


# --------------------------------------------------------------------------- broken plug-ins
@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if name.startswith("broken_plugin"):
            del sys.modules[name]
    importlib.invalidate_caches()


def install_plugin(site: Path, dist: str, module_source: str, entry_points: dict[str, str]) -> None:
    module = dist.replace("-", "_")
    (site / f"{module}.py").write_text(module_source)
    info = site / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[oneie.providers]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


GOOD_ECHO = """
from oneie_operator.providers.base import CheckResult, Provider, ProviderSettings

class Echo(Provider[ProviderSettings]):
    name = "echo"
    display_name = "Echo"
    settings_model = ProviderSettings
    secret_fields = ("token",)

    async def test_credentials(self, settings, credentials, http):
        return CheckResult(0.0)

    async def probe(self, settings, credentials, http):
        return CheckResult(0.0)

class NotAProvider:
    name = "plain"
"""


def test_broken_plugins_are_all_reported_and_the_good_ones_still_load(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install_plugin(site, "broken-plugin-import", "import does_not_exist_anywhere\n", {"boom": "broken_plugin_import:X"})
    install_plugin(
        site,
        "broken-plugin-mixed",
        GOOD_ECHO,
        {
            "echo": "broken_plugin_mixed:Echo",
            "plain": "broken_plugin_mixed:NotAProvider",
            "mismatch": "broken_plugin_mixed:Echo",
            "convex": "broken_plugin_mixed:Echo",
        },
    )
    registry = ProviderRegistry()
    with caplog.at_level(logging.ERROR, logger="oneie_operator.providers.registry"):
        errors = registry.load_entry_points()

    messages = [str(e) for e in errors]
    assert len(messages) == 4, messages
    joined = "\n".join(messages)
    assert "'boom'" in joined and "cannot be loaded: ModuleNotFoundError" in joined
    assert "broken-plugin-import 1.0" in joined
    assert "'plain'" in joined and "not a subclass" in joined
    assert "entry point is named 'mismatch' but the class's name is 'echo'" in joined
    assert "entry point is named 'convex' but the class's name is 'echo'" in joined
    # Logged at ERROR, kept for the start-up gate, and the healthy providers are there.
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 4
    assert registry.errors == errors
    assert set(registry.names()) == {"convex", "echo", "notion", "supabase", "wordpress"}
    with pytest.raises(RegistryError, match="4 provider plug-in problem"):
        registry.raise_for_errors()


def test_a_plugin_claiming_a_builtin_name_is_a_duplicate(site: Path) -> None:
    source = GOOD_ECHO.replace('name = "echo"', 'name = "notion"')
    install_plugin(site, "broken-plugin-dup", source, {"notion": "broken_plugin_dup:Echo"})
    registry = ProviderRegistry()
    errors = registry.load_entry_points()
    assert len(errors) == 1
    message = str(errors[0])
    assert "'notion' is registered twice" in message
    assert "broken-plugin-dup 1.0" in message
    assert "oneie-operator" in message  # the built-in's origin names its distribution
    assert registry.get("notion").display_name == "Notion"


def test_settings_validation_reports_every_problem_at_once(registry: ProviderRegistry) -> None:
    with pytest.raises(SpecError) as caught:
        validate_settings(registry.get("wordpress"), {"restRoute": "maybe", "extra": 1}, "spec.wordpress")
    fields = [issue.field for issue in caught.value.issues]
    assert sorted(fields) == ["spec.wordpress.extra", "spec.wordpress.restRoute", "spec.wordpress.url"]
    with pytest.raises(SpecError, match=r"spec\.notion: must be an object"):
        validate_settings(registry.get("notion"), ["not", "a", "mapping"], "spec.notion")
    assert validate_settings(registry.get("notion"), None, "spec.notion").model_dump(
        by_alias=True, exclude_none=True
    ) == {
        "apiUrl": "https://api.notion.com",
        "notionVersion": "2026-03-11",
    }
