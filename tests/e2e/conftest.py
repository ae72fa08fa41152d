"""End-to-end fixtures: the real operator (Kopf) over real HTTP against the Kubernetes emulator.

What the emulator cannot check (and these tests therefore do not claim): CRD schema and CEL
validation (see tests/crds), admission, watch bookmarks/expiry. RBAC is off here; the operator
under the chart's RBAC is test_rbac_operator.py. Everything else here is
the real operator code path: watches, patches, finalizers, Events, Secrets, owner references.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from e2e_support import Tenant

from oneie_operator.demo.environment import LocalEnvironment, local_environment
from oneie_operator.demo.scenario import leak_scan


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, plaintexts: set[str]) -> AsyncIterator[LocalEnvironment]:
    """The operator environment of one test module; at its end, everything the operator emitted
    (log lines, Events, statuses, annotations, encrypted Secrets, metrics) is scanned for every
    credential the module used, accepted or rejected."""
    workdir = Path(tmp_path_factory.mktemp("e2e"))
    async with local_environment(workdir, config_env={"PROVIDER_TIMEOUT_SECONDS": "1"}) as environment:
        yield environment
        plaintexts.update(v for creds in environment.providers.credentials.values() for v in creds.values())
        await leak_scan(environment, plaintexts)


@pytest.fixture(scope="module")
def plaintexts() -> set[str]:
    """Every credential value the module's tests used (accepted or rejected)."""
    return set()


@pytest.fixture()
def tenant(env: LocalEnvironment, plaintexts: set[str], request: pytest.FixtureRequest) -> Tenant:
    """A fresh namespace named after the test."""
    raw = request.node.name.lower().replace("_", "-")
    name = "".join(c if c.isalnum() or c == "-" else "-" for c in raw)[-50:].strip("-")
    plaintexts.update(v for creds in env.providers.credentials.values() for v in creds.values())
    return Tenant(env, f"t-{name}", plaintexts)
