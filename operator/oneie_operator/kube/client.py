"""Loading the Kubernetes connection settings (kubeconfig or in-cluster service account).

The ``kubernetes`` client's ``Configuration`` is the one source of truth for where the API is and
how to authenticate: Kopf logs in with it (``handlers.lifecycle.login``), the operator's own
asynchronous calls go through :class:`~oneie_operator.kube.rest.KubeREST` built on it, and the
``kubectl oneie`` plug-in uses the synchronous client it returns.
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
