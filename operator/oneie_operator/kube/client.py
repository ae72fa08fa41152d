"""Building the synchronous ``kubernetes`` API client used (from threads) for Secrets and patches.

Kopf talks to the API with its own client; this one serves the objects Kopf does not
hand to a handler (Secrets, other custom objects). It is synchronous, so every call goes
through :func:`asyncio.to_thread` and never blocks the operator's event loop.
"""

from __future__ import annotations

import os

import kubernetes.client
import kubernetes.config


def load_api_client(kubeconfig: str | None = None, context: str | None = None) -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (``KUBECONFIG`` or ``~/.kube``)."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        return kubernetes.client.ApiClient(configuration)
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=path, context=context
    )
    return client
