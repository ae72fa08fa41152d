"""What the dashboard's browser tests share: Debian's chromium and its flags, the seeded
environment (the emulator with RBAC on, the real operator, Secrets, connections and ``acme``),
the wait for an organization to settle, and screenshots into ``.artifacts/dashboard/``."""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from oneie_operator.demo.environment import LocalEnvironment, local_environment, repository_root
from oneie_operator.testing.kubeapi import wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
NS = "tenant-acme"
BC = ("one.ie/v1alpha1", "BackendConnection")
ORG = ("one.ie/v1alpha1", "Organization")
SHOTS = repository_root() / ".artifacts" / "dashboard"
#: The module marks of every browser test: one event loop per module, skipped without chromium.
BROWSER_MARKS = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (.ci/chromium.sh)"),
]


@contextlib.asynccontextmanager
async def seeded_environment(workdir: Path, connections: Mapping[str, str]) -> AsyncIterator[LocalEnvironment]:
    """The emulator (RBAC on) and the real operator, with one opted-in Secret and one connection per
    ``name → provider`` in ``connections`` (the fake provider servers' good credentials), and the
    organization ``acme`` switched to the first of them."""
    async with local_environment(workdir, config_env={"PROVIDER_TIMEOUT_SECONDS": "1"}, rbac=True) as environment:
        for name, provider in connections.items():
            data = {k: base64.b64encode(v.encode()).decode()
                    for k, v in environment.providers.credentials[provider].items()}
            await environment.api.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                          "metadata": {"name": f"{name}-creds", "namespace": NS,
                                                       "labels": {"one.ie/credentials": "true"}}, "data": data})
            spec = {"provider": provider, "credentialsSecretRef": {"name": f"{name}-creds"},
                    provider: environment.providers.settings(provider)}
            await environment.api.apply({"apiVersion": BC[0], "kind": BC[1],
                                         "metadata": {"name": name, "namespace": NS}, "spec": spec})
        first = next(iter(connections))
        await environment.api.apply({"apiVersion": ORG[0], "kind": ORG[1],
                                     "metadata": {"name": "acme", "namespace": NS},
                                     "spec": {"backend": {"connectionRef": {"name": first}}}})
        await wait_for(lambda: org_on(environment, first), timeout=40, what=f"acme active on {first}")
        yield environment


async def org_on(env: LocalEnvironment, active: str) -> bool:
    """``acme`` is on ``active``, not switching, and its last switch succeeded."""
    obj = await env.api.get(*ORG, NS, "acme")
    status = (obj or {}).get("status") or {}
    return status.get("activeConnection") == active and not status.get("switching") and \
        (status.get("lastSwitch") or {}).get("result") == "Succeeded"


async def shot(page: Any, name: str) -> None:
    """A full-page screenshot into ``.artifacts/dashboard/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
