"""Run :class:`~oneie_operator.testing.emulator.FixedKubernetesEmulator` as a local "cluster".

Typical use in tests, benchmarks and the demo::

    async with serve_emulator(Path('crds').glob('*.yaml')) as (emulator, url):
        write_kubeconfig(tmp_path / 'kubeconfig', url)   # for kubectl, kubernetes, kopf run
        ...                                              # or kopf.ConnectionInfo(server=url, ...)
        assert not emulator.errors                       # no request crashed the emulator

    with serve_emulator_in_thread(crd_paths) as (emulator, url):  # own loop, e.g. for kopf.operator()
        ...

With authentication on (:func:`oneie_operator.testing.rbac.enable_access_control`), serve over
TLS (``tls=TLSFiles.create(dir)``; ``write_kubeconfig(..., ca_file=tls.cert)``): kubectl (client-go)
sends no bearer token to a plain ``http://`` server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import ipaddress
import ssl
import threading
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import attrs
import kmock
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oneie_operator.testing.emulator import FixedKubernetesEmulator

__all__ = ['TLSFiles', 'load_crds', 'serve_emulator', 'serve_emulator_in_thread', 'write_kubeconfig']

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


@attrs.frozen
class TLSFiles:
    """A self-signed serving certificate for 127.0.0.1/localhost (it is its own CA) and its key."""

    cert: Path
    key: Path

    @classmethod
    def create(cls, directory: Path) -> TLSFiles:
        """Write ``emulator.crt`` and ``emulator.key`` (a new EC P-256 key) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'oneie-emulator')])
        now = datetime.datetime.now(tz=datetime.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address('127.0.0.1')), x509.DNSName('localhost')]), critical=False)
            .sign(key, hashes.SHA256())
        )
        files = cls(directory / 'emulator.crt', directory / 'emulator.key')
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        files.key.chmod(0o600)
        return files

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


class _TLSServer(aiohttp.test_utils.RawTestServer):
    """kmock's server class, listening with TLS."""

    def __init__(self, handler: Any, *, ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._tls = ssl_context

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        await super().start_server(loop=loop, ssl=self._tls, **kwargs)


@contextlib.asynccontextmanager
async def serve_emulator(
        crd_paths: Iterable[Path] = (),
        *,
        port: int = 0,
        host: str = '127.0.0.1',
        emulator: FixedKubernetesEmulator | None = None,
        tls: TLSFiles | None = None,
) -> AsyncIterator[tuple[FixedKubernetesEmulator, str]]:
    """Serve an emulator (a new one unless given) over HTTP (HTTPS with ``tls``); yield it and its URL.

    ``port=0`` picks a free port. The server runs in the current event loop: run blocking
    clients (``kubectl``, the synchronous ``kubernetes`` client) in subprocesses or threads.
    """
    emulator = emulator if emulator is not None else FixedKubernetesEmulator()
    load_crds(emulator, crd_paths)
    extra: dict[str, Any] = {}
    if tls is not None:
        extra['server_cls'] = functools.partial(_TLSServer, ssl_context=tls.server_context())
    async with emulator, kmock.Server(emulator, host=host, port=port or None, **extra) as server:
        try:
            yield emulator, f'{"https" if tls else "http"}://{server.host}:{server.port}'
        finally:
            emulator.close_watches()


@contextlib.contextmanager
def serve_emulator_in_thread(
        crd_paths: Iterable[Path] = (),
        *,
        port: int = 0,
        host: str = '127.0.0.1',
        emulator: FixedKubernetesEmulator | None = None,
        tls: TLSFiles | None = None,
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
            async with serve_emulator(crd_paths, port=port, host=host, emulator=emulator, tls=tls) as result:
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


def write_kubeconfig(path: Path, url: str, namespace: str = 'default', token: str = 'emulator',  # noqa: S107
                     *, ca_file: Path | None = None, users: Mapping[str, str] | None = None) -> Path:
    """Write a kubeconfig for ``url`` usable by kubectl, kubernetes and Kopf.

    Its current context ``emulator`` uses the bearer ``token``; ``users`` (context name ->
    token) adds one more context per identity (``kubectl --context NAME``). ``ca_file`` is the
    CA of an HTTPS emulator (:class:`TLSFiles`).
    """
    cluster: dict[str, Any] = {'server': url}
    if ca_file is not None:
        cluster['certificate-authority'] = str(Path(ca_file).resolve())
    identities = {'emulator': token, **(users or {})}
    config = {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': 'emulator', 'cluster': cluster}],
        'users': [{'name': name, 'user': {'token': secret}} for name, secret in identities.items()],
        'contexts': [{'name': name, 'context': {'cluster': 'emulator', 'user': name, 'namespace': namespace}}
                     for name in identities],
        'current-context': 'emulator',
        'preferences': {},
    }
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding='utf-8')
    return path
