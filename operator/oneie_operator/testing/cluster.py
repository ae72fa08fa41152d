"""Run :class:`~oneie_operator.testing.emulator.FixedKubernetesEmulator` as a local "cluster".

Typical use in tests, benchmarks and the demo::

    async with serve_emulator(Path('crds').glob('*.yaml')) as (emulator, url):
        write_kubeconfig(tmp_path / 'kubeconfig', url)   # for kubectl, kubernetes, kopf run
        ...                                              # or kopf.ConnectionInfo(server=url, ...)
        assert not emulator.errors                       # no request crashed the emulator

    with serve_emulator_in_thread(crd_paths) as (emulator, url):  # own loop, e.g. for kopf.operator()
        ...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import kmock
import yaml

from oneie_operator.testing.emulator import FixedKubernetesEmulator

__all__ = ['load_crds', 'serve_emulator', 'serve_emulator_in_thread', 'write_kubeconfig']

_CRDS = 'apiextensions.k8s.io/v1/customresourcedefinitions'


def load_crds(emulator: FixedKubernetesEmulator, paths: Iterable[Path]) -> None:
    """Declare the custom resources of the ``CustomResourceDefinition`` documents in YAML files.

    Each CRD's served versions become resources of the emulator (group, plural, kind, singular,
    short names, categories, scope, status subresource), and the CRD object itself is stored,
    so that ``kubectl get crd`` shows it. Other documents in the files are ignored.
    """
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text(encoding='utf-8')):
            if isinstance(doc, dict) and doc.get('kind') == 'CustomResourceDefinition':
                emulator.declare_crd(doc)
                if emulator.get_object(_CRDS, None, doc['metadata']['name']) is None:
                    emulator.create_object(_CRDS, doc)


@contextlib.asynccontextmanager
async def serve_emulator(
        crd_paths: Iterable[Path] = (),
        *,
        port: int = 0,
        host: str = '127.0.0.1',
        emulator: FixedKubernetesEmulator | None = None,
) -> AsyncIterator[tuple[FixedKubernetesEmulator, str]]:
    """Serve an emulator (a new one unless given) over HTTP; yield it and its URL.

    ``port=0`` picks a free port. The server runs in the current event loop: run blocking
    clients (``kubectl``, the synchronous ``kubernetes`` client) in subprocesses or threads.
    """
    emulator = emulator if emulator is not None else FixedKubernetesEmulator()
    load_crds(emulator, crd_paths)
    async with emulator, kmock.Server(emulator, host=host, port=port or None) as server:
        try:
            yield emulator, f'http://{server.host}:{server.port}'
        finally:
            emulator.close_watches()


@contextlib.contextmanager
def serve_emulator_in_thread(
        crd_paths: Iterable[Path] = (),
        *,
        port: int = 0,
        host: str = '127.0.0.1',
        emulator: FixedKubernetesEmulator | None = None,
) -> Iterator[tuple[FixedKubernetesEmulator, str]]:
    """Like :func:`serve_emulator`, but in a thread with its own event loop.

    Use it when the emulator must not share the caller's loop: e.g. with ``kopf.operator()``
    run in-process, which on exit waits 5 s for (then cancels) every task created while it
    ran -- the server's connection tasks included. Reading the emulator's state from the
    caller's thread (``get_object``, ``list_objects``) is safe: each read is atomic.
    """
    served: concurrent.futures.Future[tuple[FixedKubernetesEmulator, str]] = concurrent.futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with serve_emulator(crd_paths, port=port, host=host, emulator=emulator) as result:
                served.set_result(result)
                await stop.wait()
        except BaseException as e:
            if not served.done():
                served.set_exception(e)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name='emulator', daemon=True)
    thread.start()
    try:
        yield served.result(timeout=30)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


def write_kubeconfig(path: Path, url: str, namespace: str = 'default', token: str = 'emulator') -> Path:  # noqa: S107
    """Write a kubeconfig for ``url`` (plain http, any bearer token) usable by kubectl, kubernetes, Kopf."""
    config = {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': 'emulator', 'cluster': {'server': url}}],
        'users': [{'name': 'emulator', 'user': {'token': token}}],
        'contexts': [{'name': 'emulator',
                      'context': {'cluster': 'emulator', 'user': 'emulator', 'namespace': namespace}}],
        'current-context': 'emulator',
        'preferences': {},
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding='utf-8')
    return path
