"""A third-party provider plug-in is found through its entry point, without touching our code.

The plug-in (tests/providers/plugin_pkg) is "installed" the way pip lays out a wheel: its package
plus a ``.dist-info`` directory (METADATA, entry_points.txt generated from the plug-in's own
pyproject.toml) in a temporary directory put on ``sys.path``. No network, no pip.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from oneie_operator.errors import CredentialsRejectedError
from oneie_operator.providers.http import ProviderHTTP
from oneie_operator.providers.netguard import DestinationPolicy
from oneie_operator.providers.registry import ProviderRegistry, validate_settings

PLUGIN = Path(__file__).parent / "plugin_pkg"


def install(pyproject: Path, site: Path) -> str:
    """Lay out the distribution of ``pyproject`` in ``site`` like a wheel install; return its name."""
    meta = tomllib.loads(pyproject.read_text())["project"]
    source = pyproject.parent / "src"
    for package in source.iterdir():
        if package.is_dir() and (package / "__init__.py").exists():
            shutil.copytree(package, site / package.name)
    dist_info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, entries in meta.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return str(meta["name"])


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))  # also invalidates import caches
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if name.startswith(("oneie_echo_provider", "broken_plugin")):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
async def echo_service() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer echo-token-123456":
            return web.json_response({"code": "bad_token", "message": "who are you?"}, status=401)
        return web.json_response({"said": request.query.get("say")})

    app = web.Application()
    app.router.add_get("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_an_installed_plugin_is_found_and_works(site: Path, echo_service: str) -> None:
    assert install(PLUGIN / "pyproject.toml", site) == "oneie-echo-provider"

    registry = ProviderRegistry()
    errors = registry.load_entry_points()

    assert errors == []
    assert registry.names() == ("convex", "echo", "notion", "supabase", "wordpress")
    assert "oneie-echo-provider 0.1.0" in registry.origin("echo")
    echo = registry.get("echo")
    assert echo.capabilities == frozenset({"echo"})

    settings = validate_settings(echo, {"url": echo_service, "greeting": "hi"}, "spec.echo")
    policy = DestinationPolicy(allow_loopback=True, allow_plain_http=True)
    calls: list[tuple[str, str, str, float, str]] = []
    async with ProviderHTTP(policy=policy, on_call=lambda *c: calls.append(c)) as http:
        good = {"token": "echo-token-123456"}
        result = await echo.test_credentials(settings, good, http.bind(echo, settings, good))
        assert result.detail == "echo said 'hi'"
        wrong = {"token": "wrong-token-654321"}
        with pytest.raises(CredentialsRejectedError, match="bad_token") as caught:
            await echo.test_credentials(settings, wrong, http.bind(echo, settings, wrong))
        assert "wrong-token-654321" not in str(caught.value)
    # The plug-in named neither itself nor its credentials: the bound client did.
    assert [c[:3] for c in calls] == [
        ("echo", "test_credentials", "Success"),
        ("echo", "test_credentials", "CredentialsRejected"),
    ]


def test_the_plugin_settings_errors_use_its_field_paths(site: Path) -> None:
    install(PLUGIN / "pyproject.toml", site)
    registry = ProviderRegistry()
    registry.load_entry_points()
    with pytest.raises(Exception) as caught:
        validate_settings(registry.get("echo"), {"greting": "typo"}, "spec.echo")
    text = str(caught.value)
    assert "spec.echo.url: is required; expected the echo service URL" in text
    assert "spec.echo.greting: is not a known field; known fields: url, greeting" in text
