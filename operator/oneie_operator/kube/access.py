"""May the user who sent a request read a Secret? (a ``SubjectAccessReview`` to the API server)

The admission webhook asks it for a BackendConnection's ``credentialsSecretRef`` (issue 12,
item 2): a user who may write connections but not read Secrets must not get a Secret's values
sent to a URL of theirs by the operator (a confused deputy). The opt-in label is the first
defence; this check is the second.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from oneie_operator.kube.rest import KubeREST


async def may_get_secret(rest: KubeREST, userinfo: Mapping[str, Any], namespace: str, name: str) -> tuple[bool, str]:
    """(allowed, the API server's reason) for ``get`` on ``secrets/<name>`` in ``namespace`` by the
    user of an AdmissionReview's ``request.userInfo``. Raises ``KubeAPIError`` when the API server
    cannot answer (the caller refuses: it fails closed)."""
    spec: dict[str, Any] = {
        "user": str(userinfo.get("username") or ""),
        "groups": [str(g) for g in userinfo.get("groups") or ()],
        "resourceAttributes": {"namespace": namespace, "verb": "get", "group": "", "version": "v1",
                               "resource": "secrets", "name": name},
    }
    if userinfo.get("uid"):
        spec["uid"] = str(userinfo["uid"])
    extra = userinfo.get("extra")
    if isinstance(extra, Mapping) and extra:
        spec["extra"] = {str(k): [str(v) for v in values or ()] for k, values in extra.items()}
    answer = await rest.create_subject_access_review(
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    )
    status = answer.get("status")
    if not isinstance(status, Mapping):
        return False, "the API server's answer had no status"
    return bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or "")
