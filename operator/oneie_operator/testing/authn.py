"""Bearer-token authentication for the Kubernetes emulator (off unless a test or the demo turns it on).

A real API server authenticates every request before it authorizes it
(https://kubernetes.io/docs/reference/access-authn-authz/authentication/). This module
reproduces the parts our tests depend on:

* **Static bearer tokens** (``Authorization: Bearer <token>``), each mapped to a user name,
  groups and optionally a uid, like the API server's ``--token-auth-file``. Every
  authenticated user also gets the group ``system:authenticated``.
* **Service accounts**: a token of a service account authenticates as the user
  ``system:serviceaccount:<namespace>:<name>`` with the groups ``system:serviceaccounts``,
  ``system:serviceaccounts:<namespace>`` and ``system:authenticated``, as a service-account
  token does.
* **Rotation**: tokens can be added, revoked and replaced while the emulator runs
  (:meth:`Authenticator.add`, :meth:`~Authenticator.revoke`, :meth:`~Authenticator.rotate`),
  or a config file is re-read when it changes (:meth:`Authenticator.from_file`): a revoked
  token is refused from the next request on (a watch already open keeps streaming, as on a
  real server, until it ends).
* **Refusal**: a request with an unknown token is a 401 with the real ``Status`` body
  (``reason: Unauthorized``, ``message: Unauthorized``); so is a request without a token,
  unless ``anonymous`` is on, in which case it is the user ``system:anonymous`` in the group
  ``system:unauthenticated`` (the API server's ``--anonymous-auth``), left to authorization.

The config (a mapping, or a YAML/JSON file)::

    anonymous: false                      # optional
    users:
      - {token: t-alice, name: alice, groups: [acme-owners], uid: "1001"}
    serviceAccounts:
      - {token: t-op, namespace: oneie-system, name: oneie-operator}

Not emulated: client certificates, OIDC, webhook token authentication, TokenRequest
(``serviceaccounts/token``), bound-token expiry, ``extra`` user attributes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

__all__ = [
    'ANONYMOUS',
    'AUTHENTICATED',
    'UNAUTHENTICATED',
    'Authenticator',
    'UserInfo',
    'service_account',
]

AUTHENTICATED = 'system:authenticated'
UNAUTHENTICATED = 'system:unauthenticated'
_SA_PREFIX = 'system:serviceaccount:'


@attrs.frozen
class UserInfo:
    """An authenticated identity: what the authorizer and the reviews see."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ''

    @property
    def service_account(self) -> tuple[str, str] | None:
        """``(namespace, name)`` when this is a service account's user name."""
        if not self.name.startswith(_SA_PREFIX):
            return None
        namespace, _, name = self.name[len(_SA_PREFIX):].partition(':')
        return (namespace, name) if namespace and name else None


ANONYMOUS = UserInfo('system:anonymous', (UNAUTHENTICATED,))


def service_account(namespace: str, name: str, uid: str = '') -> UserInfo:
    """The identity of a service account's token."""
    return UserInfo(f'{_SA_PREFIX}{namespace}:{name}',
                    ('system:serviceaccounts', f'system:serviceaccounts:{namespace}', AUTHENTICATED), uid)


def user(name: str, groups: Iterable[str] = (), uid: str = '') -> UserInfo:
    """An authenticated user with its groups (``system:authenticated`` added once)."""
    listed = [g for g in groups if g != AUTHENTICATED]
    return UserInfo(name, (*listed, AUTHENTICATED), uid)


def with_groups(identity: UserInfo) -> UserInfo:
    """The identity as an authenticator reports it: service-account groups, ``system:authenticated``."""
    if identity.name == ANONYMOUS.name:
        return UserInfo(identity.name, tuple(dict.fromkeys((*identity.groups, UNAUTHENTICATED))), identity.uid)
    extra: tuple[str, ...] = ()
    if (sa := identity.service_account) is not None:
        extra = ('system:serviceaccounts', f'system:serviceaccounts:{sa[0]}')
    return UserInfo(identity.name, tuple(dict.fromkeys((*identity.groups, *extra, AUTHENTICATED))), identity.uid)


class Authenticator:
    """Maps bearer tokens to identities; thread-safe (tests rotate tokens from another thread)."""

    def __init__(self, tokens: Mapping[str, UserInfo] | None = None, *, anonymous: bool = False) -> None:
        self._tokens: dict[str, UserInfo] = dict(tokens or {})
        self.anonymous = anonymous
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._mtime: float | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Authenticator:
        """Build from the config mapping described in the module docstring."""
        authn = cls(anonymous=bool(config.get('anonymous', False)))
        authn._load(config)
        return authn

    @classmethod
    def from_file(cls, path: Path) -> Authenticator:
        """Build from a YAML/JSON file, re-read whenever it changes (rotation by rewriting it)."""
        authn = cls()
        authn._path = Path(path)
        authn._reload()
        return authn

    def _load(self, config: Mapping[str, Any]) -> None:
        tokens: dict[str, UserInfo] = {}
        for entry in config.get('users') or []:
            tokens[str(entry['token'])] = user(str(entry['name']), entry.get('groups') or [],
                                               str(entry.get('uid') or ''))
        for entry in config.get('serviceAccounts') or []:
            tokens[str(entry['token'])] = service_account(str(entry['namespace']), str(entry['name']),
                                                          str(entry.get('uid') or ''))
        with self._lock:
            self._tokens = tokens
            self.anonymous = bool(config.get('anonymous', False))

    def _reload(self) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        config = yaml.safe_load(self._path.read_text(encoding='utf-8')) if mtime is not None else {}
        if not isinstance(config, dict):
            raise ValueError(f'{self._path}: the authentication config must be a mapping')
        self._load(config)

    def add(self, token: str, identity: UserInfo) -> None:
        """Accept ``token`` as ``identity`` (groups completed as an authenticator would)."""
        with self._lock:
            self._tokens[token] = with_groups(identity)

    def revoke(self, token: str) -> None:
        """Refuse ``token`` from the next request on."""
        with self._lock:
            self._tokens.pop(token, None)

    def rotate(self, old: str, new: str) -> UserInfo:
        """Replace a token by a new one for the same identity (a rotated service-account token)."""
        with self._lock:
            identity = self._tokens.pop(old)
            self._tokens[new] = identity
        return identity

    def identity(self, token: str) -> UserInfo | None:
        with self._lock:
            return self._tokens.get(token)

    def authenticate(self, authorization: str | None) -> UserInfo | None:
        """The identity of a request's ``Authorization`` header; None means 401 Unauthorized."""
        if self._path is not None:
            self._reload()
        scheme, _, token = (authorization or '').strip().partition(' ')
        if not authorization:
            return ANONYMOUS if self.anonymous else None
        if scheme.lower() != 'bearer' or not token.strip():
            return None
        return self.identity(token.strip())
