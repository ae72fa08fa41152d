"""Reading tenants' credential Secrets and writing the operator-owned encrypted ones."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oneie_operator.errors import SecretNameTakenError
from oneie_operator.kube.rest import KubeAPIError, KubeREST
from oneie_operator.names import CREDENTIALS_LABEL, ENCRYPTED, MANAGED_BY, OPTED_IN

#: The only Secret type read as credentials: service-account tokens, TLS keys, registry
#: credentials and the like are never a connection's credentials, even if labelled.
CREDENTIALS_TYPE = "Opaque"


@dataclass(frozen=True)
class OwnerRef:
    """The object that owns (and garbage-collects) an operator-written Secret."""

    api_version: str
    kind: str
    name: str
    uid: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class SecretSnapshot:
    """A Secret as read: decoded text values (undecodable keys listed apart), version, metadata."""

    name: str
    namespace: str
    resource_version: str
    data: Mapping[str, str] = field(repr=False)
    undecodable: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    owner_uids: tuple[str, ...] = ()
    type: str = CREDENTIALS_TYPE


@dataclass(frozen=True)
class SecretRefusal:
    """A Secret that exists but has not opted in to be read: what it lacks (its values unread)."""

    name: str
    namespace: str
    #: The value of the opt-in label (None: absent).
    label: str | None
    type: str

    @property
    def labelled(self) -> bool:
        return self.label == OPTED_IN


def _decode(raw: Mapping[str, str] | None) -> tuple[dict[str, str], tuple[str, ...]]:
    data: dict[str, str] = {}
    bad: list[str] = []
    for key, value in (raw or {}).items():
        try:
            data[key] = base64.b64decode(value or "", validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            bad.append(key)
    return data, tuple(sorted(bad))


def _encode(data: Mapping[str, str]) -> dict[str, str]:
    return {key: base64.b64encode(value.encode("utf-8")).decode("ascii") for key, value in data.items()}


def _version_of(secret: Mapping[str, Any]) -> str:
    return str((secret.get("metadata") or {}).get("resourceVersion") or "")


def _snapshot(raw: Mapping[str, Any], namespace: str, name: str) -> SecretSnapshot:
    data, bad = _decode({str(k): str(v or "") for k, v in (raw.get("data") or {}).items()})
    meta = raw.get("metadata") or {}
    return SecretSnapshot(
        name=name,
        namespace=namespace,
        resource_version=str(meta.get("resourceVersion") or ""),
        data=data,
        undecodable=bad,
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        owner_uids=tuple(str(ref.get("uid", "")) for ref in (meta.get("ownerReferences") or [])),
        type=str(raw.get("type") or CREDENTIALS_TYPE),
    )


@dataclass(frozen=True)
class WatchedSecret:
    """A Secret as the operator last listed or watched it (``handlers.memory.WatchedSecrets``): what says
    whether it changed since the operator last used it. The data only of the operator's encrypted
    copies (ciphertext); never a tenant's values."""

    resource_version: str
    label: str | None
    type: str
    owner_uids: tuple[str, ...] = ()
    sealed: Mapping[str, str] | None = field(default=None, repr=False)


def watched_secret(raw: Mapping[str, Any]) -> WatchedSecret:
    meta = raw.get("metadata") or {}
    label = (meta.get("labels") or {}).get(CREDENTIALS_LABEL)
    sealed = None
    if label == ENCRYPTED:
        data, bad = _decode({str(k): str(v or "") for k, v in (raw.get("data") or {}).items()})
        sealed = None if bad else data
    return WatchedSecret(
        resource_version=str(meta.get("resourceVersion") or ""),
        label=None if label is None else str(label),
        type=str(raw.get("type") or CREDENTIALS_TYPE),
        owner_uids=tuple(str(ref.get("uid", "")) for ref in (meta.get("ownerReferences") or [])),
        sealed=sealed,
    )


class SecretStore:
    """Secrets through the operator's asynchronous REST client."""

    def __init__(self, api: KubeREST, on_written: Callable[[Mapping[str, Any]], None] | None = None) -> None:
        self._core = api
        #: Called with the API server's answer to each write of :meth:`write_owned` (the Secret as
        #: written, which its watch will send back), before the write returns.
        self._on_written = on_written

    def _written(self, answer: Mapping[str, Any]) -> str:
        if self._on_written is not None:
            self._on_written(answer)
        return _version_of(answer)

    async def read(self, namespace: str, name: str) -> SecretSnapshot | None:
        """The Secret, or None when it does not exist (for the operator's own Secrets)."""
        try:
            raw = await self._core.read_namespaced_secret(name, namespace)
        except KubeAPIError as exc:
            if exc.status == 404:
                return None
            raise
        return _snapshot(raw, namespace, name)

    async def read_credentials(self, namespace: str, name: str) -> SecretSnapshot | SecretRefusal | None:
        """A tenant's credentials Secret, only if it opted in (label ``one.ie/credentials: "true"``,
        type Opaque); a :class:`SecretRefusal` if it exists but did not; None if it does not exist.

        The API server does the selecting (a list by label and name), so the values of a Secret
        that did not opt in are not even sent to the operator. Only when nothing matches is the
        Secret's metadata asked for, to say why; a server without metadata-only answers sends the
        whole Secret, whose values are dropped here, undecoded."""
        answer = await self._core.list_namespaced_secret(
            namespace, label_selector=f"{CREDENTIALS_LABEL}={OPTED_IN}", field_selector=f"metadata.name={name}"
        )
        items = [i for i in answer.get("items") or [] if (i.get("metadata") or {}).get("name") == name]
        if items:
            raw = items[0]
            if str(raw.get("type") or CREDENTIALS_TYPE) != CREDENTIALS_TYPE:
                return SecretRefusal(name, namespace, OPTED_IN, str(raw.get("type")))
            return _snapshot(raw, namespace, name)
        try:
            answer = await self._core.read_namespaced_secret_metadata(name, namespace)
        except KubeAPIError as exc:
            if exc.status == 404:
                return None
            raise
        labels = (answer.get("metadata") or {}).get("labels") or {}
        label = labels.get(CREDENTIALS_LABEL)
        return SecretRefusal(name, namespace, None if label is None else str(label), str(answer.get("type") or ""))

    async def delete(self, namespace: str, name: str) -> None:
        try:
            await self._core.delete_namespaced_secret(name, namespace)
        except KubeAPIError as exc:
            if exc.status != 404:
                raise

    async def delete_owned(self, namespace: str, name: str, owner_uid: str) -> None:
        """Delete the Secret only if it is ours (an owner reference carries ``owner_uid``): a Secret
        of that name that belongs to someone else is left as it is."""
        current = await self.read(namespace, name)
        if current is None or owner_uid not in current.owner_uids:
            return
        await self.delete(namespace, name)

    async def write_owned(
        self,
        namespace: str,
        name: str,
        *,
        data: Mapping[str, str],
        owner: OwnerRef,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        secret_type: str = "Opaque",  # noqa: S107  (a Secret type, not a password)
        current: SecretSnapshot | None = None,
        patch_first: bool = False,
    ) -> str:
        """Create or replace (one atomic write) an operator-owned Secret; return its resourceVersion.

        A Secret of that name that is not ours (no owner reference with ``owner``'s uid) is never
        replaced: :class:`SecretNameTakenError`, nothing written. Usually one request: a create,
        or, when the caller read the Secret (``current``), a replace conditioned on that read's
        resourceVersion; with ``patch_first`` (the Secret usually exists: a switch rewriting a
        binding) a JSON patch whose ``test`` op requires our owner reference, so the check and the
        write are one atomic request. A create answered 409 (or a patch whose test failed) reads
        the Secret, checks it is ours, and replaces it conditioned on what was read (a concurrent
        change answers 409: try again later)."""
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": secret_type,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {**MANAGED_BY, **labels},
                "annotations": dict(annotations),
                "ownerReferences": [owner.as_dict()],
            },
            "data": _encode(data),
        }
        if current is not None:
            return await self._replace_ours(current, owner, body)
        if patch_first:
            ops = [
                {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": owner.uid},
                {"op": "add", "path": "/metadata/labels", "value": body["metadata"]["labels"]},
                {"op": "add", "path": "/metadata/annotations", "value": body["metadata"]["annotations"]},
                {"op": "add", "path": "/data", "value": body["data"]},
            ]
            try:
                return self._written(await self._core.patch_namespaced_secret(name, namespace, ops))
            except KubeAPIError as exc:
                # 404: not there yet (created below). A failed test op or a missing path is a 422
                # on the emulator, 400, 409 or 500 on API server versions: read and decide below.
                if exc.status not in (400, 404, 409, 422, 500):
                    raise
        try:
            return self._written(await self._core.create_namespaced_secret(namespace, body))
        except KubeAPIError as exc:
            if exc.status != 409:
                raise
        existing = await self.read(namespace, name)
        if existing is None:  # deleted meanwhile: create it (a 409 now is a real conflict)
            return self._written(await self._core.create_namespaced_secret(namespace, body))
        return await self._replace_ours(existing, owner, body)

    async def _replace_ours(self, current: SecretSnapshot, owner: OwnerRef, body: dict[str, Any]) -> str:
        if owner.uid not in current.owner_uids:
            raise SecretNameTakenError(current.namespace, current.name, owner.kind, owner.name)
        conditioned = {**body, "metadata": {**body["metadata"], "resourceVersion": current.resource_version}}
        try:
            return self._written(
                await self._core.replace_namespaced_secret(current.name, current.namespace, conditioned)
            )
        except KubeAPIError as exc:
            if exc.status != 404:
                raise  # 409: changed since it was read (by someone else, maybe): try again later
        # Deleted since it was read: create it (a 409 now is a real conflict, tried again later).
        return self._written(await self._core.create_namespaced_secret(current.namespace, body))


class SetUpdateConflict(KubeAPIError):
    """:meth:`CustomObjects.update_set` met a conflict (409) on every attempt: nothing was written,
    the caller keeps the change and tries again later (it must not be dropped)."""

    def __init__(self, plural: str, namespace: str, name: str, field: str, attempts: int) -> None:
        super().__init__(409, "Conflict", f"status.{field} of {plural} {namespace}/{name} not written:"
                         f" the object changed under each of {attempts} read-modify-writes")
        self.plural, self.namespace, self.name, self.field, self.attempts = plural, namespace, name, field, attempts


class CustomObjects:
    """Patches to our own custom objects outside of a Kopf handler (e.g. trigger annotations)."""

    def __init__(self, api: KubeREST, group: str, version: str) -> None:
        self._api = api
        self._group = group
        self._version = version

    async def annotate(self, plural: str, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            await self._api.patch_namespaced_custom_object(self._group, self._version, namespace, plural, name, body)
        except KubeAPIError as exc:
            if exc.status != 404:  # gone meanwhile: nothing to trigger
                raise

    async def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj = await self._api.get_namespaced_custom_object(self._group, self._version, namespace, plural, name)
        except KubeAPIError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(obj) if isinstance(obj, Mapping) else None

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge ``status`` into the status subresource (progress outside of Kopf's own patch)."""
        try:
            await self._api.patch_namespaced_custom_object_status(
                self._group, self._version, namespace, plural, name, {"status": dict(status)}
            )
        except KubeAPIError as exc:
            if exc.status != 404:
                raise

    async def update_status(
        self, plural: str, namespace: str, name: str,
        build: Callable[[Mapping[str, Any]], Mapping[str, Any] | None], *, attempts: int = 5,
    ) -> None:
        """Read the object, ``build`` the status fields to merge from its current status (None:
        nothing to write), write them with the read's resourceVersion (409 → read again). For
        fields computed from others (a condition list), so a concurrent write is never undone."""
        if not await self._compare_and_patch_status(plural, namespace, name, build, attempts):
            raise KubeAPIError(
                409, "Conflict", f"{plural} {namespace}/{name}: status changed {attempts} times meanwhile"
            )

    async def update_set(
        self, plural: str, namespace: str, name: str, field: str, changes: Mapping[str, bool], *,
        attempts: int = 5,
    ) -> None:
        """Put items in (True) or out (False) of a list-as-set in status: one read and one write
        with the read's resourceVersion (409 → read again); nothing written when nothing changes.
        Raises :class:`SetUpdateConflict` when every one of ``attempts`` met a conflict."""

        def build(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
            current = list(status.get(field) or [])
            gone = {item for item, present in changes.items() if not present}
            wanted = sorted({*current, *(item for item, present in changes.items() if present)} - gone)
            return None if wanted == sorted(current) else {field: wanted}

        if not await self._compare_and_patch_status(plural, namespace, name, build, attempts):
            raise SetUpdateConflict(plural, namespace, name, field, attempts)

    async def _compare_and_patch_status(
        self, plural: str, namespace: str, name: str,
        build: Callable[[Mapping[str, Any]], Mapping[str, Any] | None], attempts: int,
    ) -> bool:
        """The read-build-write loop of :meth:`update_status` and :meth:`update_set`: True when
        written, when nothing needed writing or the object is gone; False when every one of
        ``attempts`` met a conflict (409)."""
        for _ in range(attempts):
            obj = await self.get(plural, namespace, name)
            if obj is None:
                return True
            changes = build(obj.get("status") or {})
            if not changes:
                return True
            body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": dict(changes)}
            try:
                await self._api.patch_namespaced_custom_object_status(
                    self._group, self._version, namespace, plural, name, body
                )
                return True
            except KubeAPIError as exc:
                if exc.status == 404:
                    return True
                if exc.status != 409:
                    raise
        return False
