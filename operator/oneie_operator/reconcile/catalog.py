"""The provider catalog: what each registered provider needs, published for forms.

At start-up the operator writes the ConfigMap ``oneie-providers`` in its own namespace
(``POD_NAMESPACE``, default ``oneie-system``). Its key ``providers.json`` lists, per provider
(built-in or plug-in, as registered in *this* operator): ``name``, ``displayName``,
``secretFields``, ``optionalSecretFields``, ``secretDescriptions`` and ``capabilities``. Key
names and descriptions only: never a value. ``kubectl oneie dashboard`` builds its "New
connection" form from it and from the BackendConnection schema the API server serves, so a
provider installed only in the operator gets its form too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from oneie_operator.names import CATALOG_NAME
from oneie_operator.providers.registry import ProviderRegistry

log = logging.getLogger(__name__)

CATALOG_KEY = "providers.json"


def catalog_of(registry: ProviderRegistry) -> list[dict[str, Any]]:
    """Each provider's form facts, sorted by name."""
    out = []
    for provider in sorted(registry, key=lambda p: p.name):
        keys = (*provider.secret_fields, *provider.optional_secret_fields)
        out.append({
            "name": provider.name,
            "displayName": provider.display_name,
            "secretFields": list(provider.secret_fields),
            "optionalSecretFields": list(provider.optional_secret_fields),
            "secretDescriptions": {k: str(v) for k, v in provider.secret_descriptions.items() if k in keys},
            "capabilities": sorted(provider.capabilities),
        })
    return out


def catalog_configmap(registry: ProviderRegistry, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": CATALOG_NAME, "namespace": namespace,
                     "labels": {"app.kubernetes.io/part-of": "oneie-operator",
                                "app.kubernetes.io/component": "provider-catalog"}},
        "data": {CATALOG_KEY: json.dumps(catalog_of(registry), indent=1, sort_keys=True)},
    }


def _publish(api_client: kubernetes.client.ApiClient, body: Any) -> str:
    """Create the ConfigMap, or bring it up to date; nothing is written when it already is (a
    restart of an unchanged operator writes nothing)."""
    core = kubernetes.client.CoreV1Api(api_client)
    namespace = body["metadata"]["namespace"]
    try:
        current = core.read_namespaced_config_map(CATALOG_NAME, namespace)
    except ApiException as exc:
        if exc.status not in (403, 404):  # 403: roles of an older chart (no get): write as before
            raise
        current = None
    if current is None:
        try:
            core.create_namespaced_config_map(namespace, body)
            return "created"
        except ApiException as exc:
            if exc.status != 409:  # created meanwhile (another replica): brought up to date below
                raise
    else:
        labels = dict((current.metadata.labels if current.metadata else None) or {})
        wanted = body["metadata"]["labels"]
        if dict(current.data or {}) == body["data"] and all(labels.get(k) == v for k, v in wanted.items()):
            return "unchanged"
    core.patch_namespaced_config_map(CATALOG_NAME, namespace, {"metadata": {"labels": body["metadata"]["labels"]},
                                                               "data": body["data"]})
    return "updated"


async def publish_catalog(api_client: kubernetes.client.ApiClient, registry: ProviderRegistry, namespace: str) -> bool:
    """Write the catalog; a failure is logged (forms then fall back to the schema alone), never fatal."""
    try:
        done = await asyncio.to_thread(_publish, api_client, catalog_configmap(registry, namespace))
    except ApiException as exc:
        log.warning("Provider catalog ConfigMap %s/%s not published: API error %s %s", namespace, CATALOG_NAME,
                    exc.status, exc.reason)
        return False
    except Exception as exc:
        log.warning("Provider catalog ConfigMap %s/%s not published: %s", namespace, CATALOG_NAME,
                    type(exc).__name__)
        return False
    log.info("Provider catalog ConfigMap %s/%s %s (%d providers).", namespace, CATALOG_NAME, done, len(registry))
    return True
