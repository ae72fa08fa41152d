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
from oneie_operator.reconcile.connections import GROUP, VERSION, ConnectionObject, validate_spec

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


@kopf.on.validate(GROUP, VERSION, "backendconnections", id="validate-backendconnections")
def validate_connection(
    spec: kopf.Spec, namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    services: Services = memo["services"]
    obj = ConnectionObject(
        namespace=namespace or "", name=name or "", uid="", generation=0, spec=dict(spec), status={}, labels={}
    )
    try:
        validate_spec(obj, services.registry, services.policy)
    except SpecError as exc:
        raise kopf.AdmissionError(str(exc), code=422) from None


@kopf.on.validate(GROUP, VERSION, "organizations", id="validate-organizations")
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
