"""Fixtures for the emulator's own tests: a served emulator with two tiny test CRDs."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from oneie_operator.testing.cluster import serve_emulator
from oneie_operator.testing.emulator import FixedKubernetesEmulator

# A namespaced resource with a status subresource, and a cluster-scoped one without it.
TEST_CRDS = textwrap.dedent("""
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: widgets.test.example.com}
    spec:
      group: test.example.com
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wdg], categories: [tests]}
      versions:
        - name: v1
          served: true
          storage: true
          subresources: {status: {}}
          schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
    ---
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata: {name: gadgets.test.example.com}
    spec:
      group: test.example.com
      scope: Cluster
      names: {plural: gadgets, singular: gadget, kind: Gadget}
      versions:
        - name: v1
          served: true
          storage: true
          schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
""")

@pytest.fixture
def crd_path(tmp_path: Path) -> Path:
    path = tmp_path / 'crds.yaml'
    path.write_text(TEST_CRDS)
    return path


@pytest.fixture
def emulator_factory() -> Callable[[], FixedKubernetesEmulator]:
    """Overridable per test (e.g. with a small watch history)."""
    return FixedKubernetesEmulator


@pytest.fixture
async def cluster(
        crd_path: Path, emulator_factory: Callable[[], FixedKubernetesEmulator],
) -> AsyncIterator[tuple[FixedKubernetesEmulator, str]]:
    async with serve_emulator([crd_path], emulator=emulator_factory()) as (emulator, url):
        yield emulator, url
        assert not emulator.errors, 'the emulator crashed on some requests'


@pytest.fixture
def emulator(cluster: tuple[FixedKubernetesEmulator, str]) -> FixedKubernetesEmulator:
    return cluster[0]


@pytest.fixture
def url(cluster: tuple[FixedKubernetesEmulator, str]) -> str:
    return cluster[1]


@pytest.fixture
async def http(url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(url, timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


from kubectl_support import kubectl  # noqa: E402,F401  (the fixture of the tests that run kubectl)
