"""The provider catalog the operator publishes (ConfigMap ``oneie-providers``): every registered
provider, a plug-in included, with its Secret keys and their descriptions, and nothing else."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from oneie_operator.providers.registry import ProviderRegistry
from oneie_operator.reconcile.catalog import CATALOG_KEY, CATALOG_NAME, catalog_configmap, catalog_of

PLUGIN_SRC = Path(__file__).parents[1] / "providers" / "plugin_pkg" / "src"


def _registry_with_plugin() -> ProviderRegistry:
    registry = ProviderRegistry()
    registry.load_entry_points()
    sys.path.insert(0, str(PLUGIN_SRC))
    try:
        echo = importlib.import_module("oneie_echo_provider").EchoProvider
    finally:
        sys.path.remove(str(PLUGIN_SRC))
    registry.register(echo, origin="test")
    return registry


def test_every_provider_with_its_secret_keys_and_descriptions() -> None:
    catalog = {p["name"]: p for p in catalog_of(_registry_with_plugin())}
    assert set(catalog) == {"convex", "notion", "supabase", "wordpress", "echo"}
    assert catalog["echo"]["secretFields"] == ["token"]  # a plug-in known only to this process
    assert catalog["echo"]["secretDescriptions"] == {}  # it declares none: the field is optional
    supabase = catalog["supabase"]
    assert (supabase["secretFields"], supabase["optionalSecretFields"]) == (["serviceRoleKey"], ["anonKey"])
    for provider in catalog.values():
        keys = set(provider["secretFields"]) | set(provider["optionalSecretFields"])
        assert set(provider["secretDescriptions"]) <= keys
        if provider["name"] != "echo":
            assert set(provider["secretDescriptions"]) == keys, "each built-in describes each of its keys"


def test_the_configmap_holds_the_catalog_as_json() -> None:
    registry = _registry_with_plugin()
    body = catalog_configmap(registry, "ops")
    assert (body["kind"], body["metadata"]["name"], body["metadata"]["namespace"]) == ("ConfigMap", CATALOG_NAME, "ops")
    assert json.loads(body["data"][CATALOG_KEY]) == catalog_of(registry)


async def test_published_at_start_up_and_replaced_on_the_next(tmp_path: Path) -> None:
    """Against the emulator: the first start creates the ConfigMap, a later start (another set of
    providers) patches the same object, a start with the same providers writes nothing (a restart
    at fleet scale writes nothing it need not: issue 14, item 6)."""
    from oneie_operator.demo.environment import local_environment
    from oneie_operator.reconcile.catalog import publish_catalog
    from oneie_operator.testing.requestlog import RequestLog

    async with local_environment(tmp_path, start_operator=False) as env:
        client = env.services.api_client
        assert await publish_catalog(client, ProviderRegistry(), "oneie-system")
        first = await env.api.get("v1", "ConfigMap", "oneie-system", CATALOG_NAME)
        assert first is not None and json.loads(first["data"][CATALOG_KEY]) == []
        registry = _registry_with_plugin()
        assert await publish_catalog(client, registry, "oneie-system")
        again = await env.api.get("v1", "ConfigMap", "oneie-system", CATALOG_NAME)
        assert again is not None and json.loads(again["data"][CATALOG_KEY]) == catalog_of(registry)
        assert again["metadata"]["uid"] == first["metadata"]["uid"]  # patched, not recreated
        log = RequestLog.install(env.emulator)
        assert await publish_catalog(client, registry, "oneie-system")
        assert [str(w) for w in log.writes()] == [], "an unchanged catalog was written again"
        assert any(r.path.endswith(f"/configmaps/{CATALOG_NAME}") for r in log.reads())
