"""Validating admission webhook: `kubectl apply` of a bad resource fails at once, with the same
field-level messages the operator would otherwise write into status.

Only what can be judged from the object itself is checked (provider, blocks, settings, URLs,
the destination policy, references): a missing Secret or a rejected credential is the
reconcile's business, since the Secret may legitimately be created after the connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from oneie_operator.errors import SpecError
from oneie_operator.handlers.services import Services
from oneie_operator.kube.access import may_get_secret
from oneie_operator.kube.rest import KubeAPIError
from oneie_operator.names import CONNECTIONS, GROUP, ORGANIZATIONS, VERSION
from oneie_operator.reconcile.connections import ConnectionObject, validate_spec

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

#: The validating endpoints (the handler ids below, served at ``/<id>``) and the one resource each judges.
ENDPOINTS: dict[str, tuple[str, str, str]] = {
    f"validate-{CONNECTIONS}": (GROUP, VERSION, CONNECTIONS),
    f"validate-{ORGANIZATIONS}": (GROUP, VERSION, ORGANIZATIONS),
}


def refusal(request: Any, message: str, code: int) -> dict[str, Any] | None:
    """A refusing AdmissionReview answer for a review that arrived at the wrong place, or None when
    the review is for the endpoint it was sent to.

    Kopf answers ``allowed: true`` when no handler matches (an unknown path, or a review of another
    resource than the path's): the webhook fails closed instead. A body that is no review at all is
    left to Kopf, which answers it with an HTTP error."""
    payload = request.get("request") if isinstance(request, Mapping) else None
    if not isinstance(payload, Mapping):
        return None
    response = {"uid": str(payload.get("uid", "")), "allowed": False, "status": {"message": message, "code": code}}
    return ({
        "apiVersion": request.get("apiVersion", "admission.k8s.io/v1"),
        "kind": request.get("kind", "AdmissionReview"),
        "response": response,
    })


def misrouted(request: Any, webhook: str | None) -> dict[str, Any] | None:
    """The refusal for a review sent to an unknown path, or whose resource is not the path's."""
    expected = ENDPOINTS.get(webhook or "")
    if expected is None:
        known = ", ".join(f"/{path}" for path in ENDPOINTS)
        return refusal(request, f"admission webhook: unknown path /{webhook or ''}: only {known} are served;"
                       " nothing is allowed through an unknown path", 404)
    payload = request.get("request") if isinstance(request, Mapping) else None
    resource = payload.get("resource") if isinstance(payload, Mapping) else None
    if not isinstance(resource, Mapping):
        return None  # not a review: Kopf answers it with an HTTP error
    got = tuple(str(resource.get(k, "")) for k in ("group", "version", "resource"))
    if got != expected:
        return refusal(request, f"admission webhook: /{webhook} judges {'/'.join(expected)} only,"
                       f" not request.resource {'/'.join(got)}; check the webhook configuration's path", 400)
    return None


@kopf.on.validate(GROUP, VERSION, CONNECTIONS, id=f"validate-{CONNECTIONS}")
async def validate_connection(
    spec: kopf.Spec, namespace: str | None, name: str | None, memo: kopf.Memo,
    userinfo: kopf.UserInfo, **kwargs: Any
) -> None:
    services: Services = memo["services"]
    obj = ConnectionObject(
        namespace=namespace or "", name=name or "", uid="", generation=0, spec=dict(spec), status={}, labels={}
    )
    try:
        validate_spec(obj, services.registry, services.policy)
    except SpecError as exc:
        raise kopf.AdmissionError(str(exc), code=422) from None
    old = kwargs.get("old")  # the stored object on an update (Kopf passes it; not in its typed signature)
    await check_secret_access(services, userinfo, namespace or "", spec, old if isinstance(old, Mapping) else None)


def _secret_name(spec: Mapping[str, Any] | None) -> str:
    ref = spec.get("credentialsSecretRef") if isinstance(spec, Mapping) else None
    return str(ref.get("name") or "") if isinstance(ref, Mapping) else ""


async def check_secret_access(
    services: Services, userinfo: Mapping[str, Any], namespace: str, spec: Mapping[str, Any],
    old: Mapping[str, Any] | None,
) -> None:
    """Refuse a connection whose requesting user may not ``get`` the Secret it names (defence in
    depth against a confused deputy: the operator would read it and send its values to the URL
    of the spec). Asked on a create and on every update that changes the spec (a new URL sends
    the same Secret elsewhere), so the operator's own updates (finalizers, annotations) cost no
    review; fails closed."""
    secret = _secret_name(spec)
    if not secret or (old is not None and dict(old.get("spec") or {}) == dict(spec)):
        return
    username = str(userinfo.get("username") or "")
    try:
        allowed, _reason = await may_get_secret(services.rest, userinfo, namespace, secret)
    except KubeAPIError as exc:
        raise kopf.AdmissionError(
            f"spec.credentialsSecretRef.name: could not check that {username or 'the requesting user'} may read"
            f" Secret {namespace}/{secret} (SubjectAccessReview: HTTP {exc.status} {exc.reason}); refused",
            code=403,
        ) from None
    if not allowed:
        raise kopf.AdmissionError(
            f"spec.credentialsSecretRef.name: user {username!r} may not get Secret {namespace}/{secret}:"
            " a connection may only name a Secret its author can read (the operator would send its values"
            " to the connection's URL); ask someone who may read it (the namespace's org owner) to apply it",
            code=403,
        )


@kopf.on.validate(GROUP, VERSION, ORGANIZATIONS, id=f"validate-{ORGANIZATIONS}")
def validate_organization(spec: kopf.Spec, **_: Any) -> None:
    import re

    backend = spec.get("backend")
    if backend is None:
        return
    ref = backend.get("connectionRef") if isinstance(backend, Mapping) else None
    if not isinstance(ref, Mapping) or not ref.get("name"):
        raise kopf.AdmissionError(
            "spec.backend.connectionRef.name: is required when spec.backend is set"
            " (the name of a BackendConnection in this namespace); omit spec.backend for the platform default",
            code=422,
        )
    if ref.get("namespace"):
        raise kopf.AdmissionError(
            "spec.backend.connectionRef.namespace: must be omitted: the connection must be in this namespace",
            code=422,
        )
    if not re.match(DNS_LABEL, str(ref["name"])) or len(str(ref["name"])) > 63:
        raise kopf.AdmissionError(
            "spec.backend.connectionRef.name: must be a DNS label (lower-case letters, digits and '-', "
            "at most 63 characters), like acme-convex",
            code=422,
        )
