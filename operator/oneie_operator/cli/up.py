"""``oneie-operator up``: the operator on the cluster of the current kube context, else the demo.

Three cases, decided before anything starts:

* a local demo already runs (its kubeconfig in the demo directory reaches its emulator) and the
  current context is that demo or no cluster at all: say so and how to reach it; start nothing
  (a second demo would overwrite the first one's kubeconfig; a second operator on the demo's
  emulator would fight the demo's own);
* an API server answers in the current context: run the operator against it (``run``);
* otherwise: run the local demo.

"An API server answers" means ``GET /version`` answered (401/403 count: a server is there and the
operator will report its credentials problem). The ``kubernetes`` client's own ``VersionApi`` asks
``/version/``, which some servers (the demo's emulator) answer 404: not used.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import kubernetes.client

logger = logging.getLogger(__name__)

#: Seconds to wait for an API server's answer.
PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Decision:
    action: str  # "run" / "demo" / "demo-running"
    message: str


def api_server(kubeconfig: str | None, context: str | None = None) -> str | None:
    """The URL of the API server of ``kubeconfig``'s context when it answers, else None."""
    from oneie_operator.kube.client import load_api_client

    try:
        client = load_api_client(kubeconfig, context)
    except Exception as exc:  # no kubeconfig, no in-cluster config: no cluster
        logger.debug("no Kubernetes configuration: %s", type(exc).__name__)
        return None
    host = str(client.configuration.host).rstrip("/")
    try:
        answered = asyncio.run(_answers(client.configuration))
    finally:
        client.close()  # type: ignore[no-untyped-call]
    return host if answered else None


async def _answers(configuration: kubernetes.client.Configuration) -> bool:
    from oneie_operator.kube.rest import KubeAPIError, KubeREST

    rest = KubeREST(configuration, timeout=PROBE_TIMEOUT_SECONDS)
    try:
        await rest.request("GET", "/version")
    except KubeAPIError as exc:  # (KubeConnectionError, status 0, too: nothing answered)
        logger.debug("%s answered /version with %s", configuration.host, exc.status or "nothing")
        return exc.status in (401, 403)
    except Exception as exc:  # a TLS or credentials-plugin failure: no usable cluster
        logger.debug("%s: %s", configuration.host, type(exc).__name__)
        return False
    finally:
        await rest.aclose()
    return True


def decide(kubeconfig: str | None, context: str | None, workdir: Path) -> Decision:
    demo_kubeconfig = workdir / "kubeconfig"
    demo = api_server(str(demo_kubeconfig)) if demo_kubeconfig.is_file() else None
    current = api_server(kubeconfig, context)
    if demo is not None and current in (None, demo):
        return Decision(
            "demo-running",
            "oneie-operator: a local demo is already running (emulator at "
            f"{demo}, with its operator); not starting another one. Reach it with:\n"
            f"  export KUBECONFIG={demo_kubeconfig.resolve()}\n"
            "  kubectl get bconn,org -A\n"
            "Stop it with Ctrl-C in its terminal.",
        )
    if current is not None:
        return Decision("run", f"oneie-operator: the API server at {current} answers; running the operator there.")
    return Decision("demo", "oneie-operator: no reachable cluster in the current context; running the local demo.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default=".oneie-demo", help="the demo's directory (kubeconfig, logs)")
    parser.add_argument("--port", type=int, default=0, help="emulator port of a demo (0: any free port)")
