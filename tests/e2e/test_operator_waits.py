"""What the operator does while nothing changes (issue 15, item 5).

* A missing credentials Secret is waited for, not retried on a timer: Kopf's bookkeeping in
  ``status.kopf`` holds no delayed retry, the connection says ``Reconciling=True``, and the Secret
  appearing (the Secret watch) makes it Ready.
* One probe engine loop, however many connections (its task was kept in Kopf's per-object copy of
  the memo, so every connection's first reconcile started another loop).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from e2e_support import Tenant

from oneie_operator.demo.environment import LocalEnvironment
from oneie_operator.testing.kubeapi import condition

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_missing_secret_is_waited_for_not_polled(tenant: Tenant) -> None:
    await tenant.env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.ns}})
    await tenant.connection("db", "supabase", secret="db-creds")
    obj = await tenant.wait_ready("db", "False", "SecretNotFound")
    assert condition(obj, "Reconciling").get("status") == "True"
    progress: dict[str, Any] = ((obj.get("status") or {}).get("kopf") or {}).get("progress") or {}
    assert not any(state.get("delayed") for state in progress.values()), progress
    assert not [line for line in tenant.env.logs.lines if "failed temporarily: SecretNotFound" in line]
    credentials = dict(tenant.env.providers.credentials["supabase"])
    tenant.plaintexts.update(credentials.values())
    await tenant.env.api.create({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "stringData": credentials,
        "metadata": {"name": "db-creds", "namespace": tenant.ns, "labels": {"one.ie/credentials": "true"}},
    })
    await tenant.wait_ready("db", "True")


async def test_one_probe_engine_however_many_connections(env: LocalEnvironment, tenant: Tenant) -> None:
    await env.api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": tenant.ns}})
    for name, provider in (("a", "convex"), ("b", "notion"), ("c", "supabase"), ("d", "wordpress")):
        await tenant.good(name, provider)
    engines = [t for t in asyncio.all_tasks() if t.get_name() == "probe engine" and not t.done()]
    assert len(engines) == 1, engines
