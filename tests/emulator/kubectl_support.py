"""The real ``kubectl`` binary against an emulator serving this project's CRDs (``crds/``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from oneie_operator.testing.cluster import serve_emulator, write_kubeconfig
from oneie_operator.testing.emulator import FixedKubernetesEmulator

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / 'crds').glob('*.yaml'))
EXAMPLES = ROOT / 'examples'
KUBECTL = '/usr/bin/kubectl'


@attrs.frozen
class Result:
    code: int
    out: str
    err: str


@attrs.frozen
class Kubectl:
    """Runs kubectl (own HOME and cache dir) against one served emulator."""

    emulator: FixedKubernetesEmulator
    url: str
    home: Path

    async def run(self, *args: str, stdin: str | None = None, check: bool = True) -> Result:
        env = {'KUBECONFIG': str(self.home / 'kubeconfig'), 'HOME': str(self.home),
               'PATH': os.environ.get('PATH', '')}
        process = await asyncio.create_subprocess_exec(
            KUBECTL, '--cache-dir', str(self.home / 'cache'), '--request-timeout=10s', *args, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=ROOT)
        out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), 60)
        result = Result(process.returncode or 0, out.decode(), err.decode())
        if check:
            assert result.code == 0, f'kubectl {" ".join(args)} failed: {result.err}{result.out}'
        return result

    async def __call__(self, *args: str, stdin: str | None = None) -> str:
        """The standard output of a kubectl command that must succeed."""
        return (await self.run(*args, stdin=stdin)).out


@pytest.fixture
async def kubectl(tmp_path: Path) -> AsyncIterator[Kubectl]:
    """kubectl against a fresh emulator with the project's CRDs; the context namespace is ``default``."""
    async with serve_emulator(CRDS) as (emulator, url):
        write_kubeconfig(tmp_path / 'kubeconfig', url)
        yield Kubectl(emulator, url, tmp_path)
        assert not emulator.errors, 'the emulator crashed on some requests'
