"""Everything the operator needs, on this machine, in one event loop: the Kubernetes emulator
(with our CRDs), local servers that behave like the providers, and the real operator (Kopf)
talking to the emulator over HTTP. The demo and the end-to-end tests both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import kopf

from oneie_operator.config import load_config
from oneie_operator.handlers.services import Services
from oneie_operator.kube.client import load_api_client
from oneie_operator.platform_default import env_name
from oneie_operator.running import build_services, run_operator
from oneie_operator.testing.cluster import TLSFiles, serve_emulator_in_thread, write_kubeconfig
from oneie_operator.testing.emulator import FixedKubernetesEmulator
from oneie_operator.testing.identities import CHART_RBAC, SecureCluster, secure_emulator
from oneie_operator.testing.kubeapi import KubeAPI
from oneie_operator.testing.provider_servers import ProviderServers
from oneie_operator.testing.repository import EXAMPLES_DIR, crd_files
from oneie_operator.vault import generate_key


def repository_root() -> Path:
    """The checkout this package runs from (the tests read its docs; the demo itself loads the CRDs
    and examples through :mod:`oneie_operator.testing.repository`, which a wheel carries too)."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3], Path.cwd()):
        if (candidate / "crds").is_dir() and (candidate / "examples").is_dir():
            return candidate
    raise FileNotFoundError("cannot find the repository's crds/ and examples/ (run from the checkout)")


class LogCapture(logging.Handler):
    """Keeps every formatted log line the operator produced (for the credential leak scan)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a broken record must not break the operator
            self.lines.append(f"<unformattable record from {record.name}>")


@dataclass
class LocalEnvironment:
    workdir: Path
    url: str
    kubeconfig: Path
    emulator: FixedKubernetesEmulator
    providers: ProviderServers
    api: KubeAPI
    services: Services
    logs: LogCapture
    #: With ``rbac=True``: the access control, tokens and kubeconfigs of each identity.
    secure: SecureCluster | None = None
    operator: asyncio.Task[None] | None = None
    keepalive_releaser: asyncio.Task[None] | None = None
    #: The running operator's Kopf settings (set by :func:`env_start_operator`).
    kopf_settings: kopf.OperatorSettings = field(default_factory=kopf.OperatorSettings)
    stop_flag: asyncio.Event = field(default_factory=asyncio.Event)
    #: The operator's configuration variables (a restart as a new process starts with the same).
    environ: dict[str, str] = field(default_factory=dict)

    def everything_emitted(self) -> list[str]:
        """Log lines, and (via the emulator) every stored object: Events, statuses, Secrets' metadata."""
        return list(self.logs.lines)


def demo_config_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "ENCRYPTION_KEY": generate_key(),
        "ALLOW_LOOPBACK": "true",  # the fake providers listen on 127.0.0.1
        "ALLOW_PLAIN_HTTP": "true",
        "BIND_ADDRESS": "127.0.0.1",
        "METRICS_PORT": "0",
        "HEALTH_PORT": "0",
        "RETRY_DELAY_SECONDS": "2",
        "PROVIDER_TIMEOUT_SECONDS": "3",
        # Live switch steps for any switch slower than 0.2 s (the deployed default is 1 s): the
        # demo's and the tests' hanging providers fail within about a second.
        "SWITCH_PROGRESS_DELAY_SECONDS": "0.2",
        "PROBE_INITIAL_JITTER_SECONDS": "0.5",  # first health probes at once, not within a minute
    }
    env.update(overrides or {})
    return env


def platform_default_env(providers: ProviderServers, provider: str | None) -> dict[str, str]:
    """The environment variables that make a fake provider the platform default."""
    if provider is None:
        return {}
    env = {"BACKEND_PROVIDER": provider}
    for key, value in {**providers.settings(provider), **providers.credentials[provider]}.items():
        env[env_name(provider, key)] = str(value)
    return env


@contextlib.asynccontextmanager
async def local_environment(
    workdir: Path,
    *,
    port: int = 0,
    config_env: Mapping[str, str] | None = None,
    start_operator: bool = True,
    platform_default: str | None = None,
    rbac: bool = False,
    chart_rbac: Path | None = None,
    namespace: str = "default",
) -> AsyncIterator[LocalEnvironment]:
    """Start everything; ``platform_default`` names a provider whose fake server becomes the
    operator's platform default backend (``BACKEND_PROVIDER`` and its variables).

    ``rbac=True`` serves the emulator over HTTPS with authentication and RBAC on, the chart's
    roles and the example tenant's bindings loaded (:mod:`oneie_operator.testing.identities`):
    ``kubeconfig``'s default context is a cluster admin (also the test client ``api``), with one
    more context per identity, and the operator runs as its service account with the chart's
    ClusterRole (its own ``operator-kubeconfig``); ``chart_rbac`` replaces the chart's rendered
    roles (e.g. rendered with ``watch.namespaces``). ``namespace`` is the kubeconfig contexts'
    namespace (kubectl's default ``-n``)."""
    crds = crd_files()
    # Absolute from here on: the kubeconfigs name files in it (certificate, token) and are read
    # from other directories (kubectl, the operator's credential plug-in, `up`).
    workdir = workdir.resolve()  # noqa: ASYNC240  (once, at start-up)
    workdir.mkdir(parents=True, exist_ok=True)
    logs = LogCapture()
    logging.getLogger().addHandler(logs)
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(logging.getLogger().removeHandler, logs)
        # The emulator serves from its own thread and loop, like a real API server would:
        # Kopf's shutdown then has no server tasks of ours to wait for.
        tls = TLSFiles.create(workdir / "tls") if rbac else None
        emulator, url = stack.enter_context(serve_emulator_in_thread(crds, port=port, tls=tls))
        providers = await stack.enter_async_context(ProviderServers())
        secure = None
        if tls is not None:
            secure = secure_emulator(emulator, url, tls.cert, workdir, [EXAMPLES_DIR / "tenant" / "rbac.yaml"],
                                     chart_rbac=chart_rbac or CHART_RBAC, namespace=namespace)
            kubeconfig, operator_kubeconfig = secure.kubeconfig, secure.operator_kubeconfig
        else:
            kubeconfig = operator_kubeconfig = write_kubeconfig(workdir / "kubeconfig", url, namespace)
        environ = demo_config_env({**platform_default_env(providers, platform_default), **(config_env or {})})
        config = load_config(environ)
        if secure is not None:
            api = KubeAPI(url, token=secure.tokens["emulator"], verify=str(tls.cert) if tls else True)
        else:
            api = KubeAPI(url)
        stack.push_async_callback(api.aclose)
        services = build_services(config, load_api_client(str(operator_kubeconfig)), environ=environ)
        env = LocalEnvironment(
            workdir=workdir,
            url=url,
            kubeconfig=kubeconfig,
            emulator=emulator,
            providers=providers,
            api=api,
            services=services,
            logs=logs,
            secure=secure,
            environ=dict(environ),
        )
        # The services in use at the end (a restart may have replaced the first ones), not those of now.
        stack.push_async_callback(_close_services, env)
        stack.push_async_callback(env_stop_operator, env)
        if start_operator:
            await env_start_operator(env)
        yield env


async def _close_services(env: LocalEnvironment) -> None:
    await env.services.close()


async def env_start_operator(env: LocalEnvironment, timeout: float = 30.0) -> None:
    """Start the operator in this loop and wait until Kopf says it is ready."""
    env.stop_flag = asyncio.Event()
    ready = asyncio.Event()
    # Created before Kopf starts, so Kopf does not count it among the tasks it waits for on exit.
    env.keepalive_releaser = asyncio.create_task(_release_keepalives(env.providers, env.stop_flag))
    env.kopf_settings = kopf.OperatorSettings()
    env.operator = asyncio.create_task(
        run_operator(env.services, stop_flag=env.stop_flag, ready_flag=ready, settings=env.kopf_settings)
    )
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({waiter, env.operator}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if waiter not in done:
        waiter.cancel()
        if env.operator.done():
            env.operator.result()  # re-raise the operator's start-up error
        raise TimeoutError("the operator did not become ready in time")


async def _release_keepalives(providers: ProviderServers, stop_flag: asyncio.Event) -> None:
    """Once the operator stops, keep closing its keep-alive connections to the provider servers:
    Kopf waits up to 5 s on exit for every task created while it ran, and a server's connection
    task ends only when its connection closes."""
    await stop_flag.wait()
    while True:
        providers.close_keepalive_connections()
        await asyncio.sleep(0.05)


async def env_stop_operator(env: LocalEnvironment) -> None:
    task, env.operator = env.operator, None
    if task is None:
        return
    env.stop_flag.set()
    releaser, env.keepalive_releaser = env.keepalive_releaser, None
    try:
        await asyncio.wait_for(task, timeout=20)
    except (asyncio.CancelledError, TimeoutError):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    finally:
        if releaser is not None:
            releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await releaser


async def restart_operator(
    env: LocalEnvironment, config_env: Mapping[str, str] | None = None, *, new_process: bool = False
) -> None:
    """Stop the operator and start it again, optionally with a new configuration (e.g. keys).

    ``new_process``: start from nothing held in memory, as a restarted process does (new services,
    metrics in a new registry); the configuration stays the same unless ``config_env`` is given."""
    await env_stop_operator(env)
    if config_env is not None or new_process:
        old = env.services
        environ = {**demo_config_env(), **config_env} if config_env is not None else dict(env.environ)
        config = load_config(environ)
        kubeconfig = env.secure.operator_kubeconfig if env.secure is not None else env.kubeconfig
        env.services = build_services(config, load_api_client(str(kubeconfig)),
                                      metrics=None if new_process else old.metrics, environ=environ)
        env.environ = dict(environ)
        await old.close()
    await env_start_operator(env)
