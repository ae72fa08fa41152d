"""The emulator with authentication and the chart's RBAC on: who is who in the demo and the tests.

:func:`secure_emulator` turns on :mod:`~oneie_operator.testing.rbac` for an emulator, loads the
chart's rendered roles (``chart-rbac.yaml``, checked against ``helm template`` by the chart
tests) and the example tenant's bindings (``examples/tenant/rbac.yaml``), and gives each
identity a fresh random token:

========================  ==========================================  =================================
context                   user (groups)                               what binds it
========================  ==========================================  =================================
``emulator`` (default)    ``cluster-admin`` (``system:masters``)      bootstrap ``cluster-admin``
``platform-owner``        ``platform-owner`` (``platform-owners``)    chart ``rbac.platformOwner.groups``
``org-owner``             ``acme-owner`` (``acme-owners``)            ``examples/tenant/rbac.yaml``
``org-user``              ``acme-user`` (``acme-users``)              ``examples/tenant/rbac.yaml``
operator (own kubeconfig) ``system:serviceaccount:oneie-system:oneie-operator``  chart ClusterRoleBinding
========================  ==========================================  =================================

The operator's kubeconfig gets its token from an exec credential plug-in that reads
``operator.token`` and says it expires at once, so the ``kubernetes`` client runs it again
whenever it refreshes (as with expiring cloud tokens): :meth:`SecureCluster.rotate_operator_token`
revokes the old token in the emulator and writes the new one there.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from oneie_operator.testing.authn import Authenticator, UserInfo, service_account, user
from oneie_operator.testing.cluster import write_kubeconfig
from oneie_operator.testing.emulator import FixedKubernetesEmulator
from oneie_operator.testing.rbac import AccessControl, enable_access_control

__all__ = ['CHART_RBAC', 'OPERATOR', 'SecureCluster', 'load_objects', 'secure_emulator']

CHART_RBAC = Path(__file__).with_name('chart-rbac.yaml')
OPERATOR = service_account('oneie-system', 'oneie-operator')
#: context name -> identity (the default context ``emulator`` is the cluster admin).
IDENTITIES: Mapping[str, UserInfo] = {
    'emulator': user('cluster-admin', ['system:masters']),
    'platform-owner': user('platform-owner', ['platform-owners']),
    'org-owner': user('acme-owner', ['acme-owners']),
    'org-user': user('acme-user', ['acme-users']),
}
_RESOURCES = {'Role': 'roles', 'ClusterRole': 'clusterroles', 'RoleBinding': 'rolebindings',
              'ClusterRoleBinding': 'clusterrolebindings'}


def load_objects(emulator: FixedKubernetesEmulator, paths: list[Path]) -> list[dict[str, Any]]:
    """Create the RBAC objects of YAML files in the emulator (other kinds are ignored)."""
    created = []
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text(encoding='utf-8')):
            if isinstance(doc, dict) and doc.get('kind') in _RESOURCES:
                resource = f'rbac.authorization.k8s.io/v1/{_RESOURCES[doc["kind"]]}'
                created.append(emulator.create_object(resource, doc, doc['metadata'].get('namespace')))
    return created


@attrs.define
class SecureCluster:
    """The emulator's access control, the tokens of each identity and the kubeconfigs that use them."""

    access: AccessControl
    tokens: dict[str, str]  # context name -> token
    kubeconfig: Path  # default context: the cluster admin; one context per identity
    operator_kubeconfig: Path
    operator_token_file: Path
    operator_token: str

    def rotate_operator_token(self) -> str:
        """A new token for the operator's service account: the old one is refused from now on."""
        new = secrets.token_urlsafe(24)
        self.operator_token_file.write_text(new, encoding='utf-8')
        self.access.authenticator.rotate(self.operator_token, new)
        self.operator_token = new
        return new


def _exec_kubeconfig(path: Path, url: str, ca_file: Path, token_file: Path) -> Path:
    """A kubeconfig whose token comes from an exec plug-in reading ``token_file`` (expiring at once)."""
    script = ('printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
              '"status":{"token":"%s","expirationTimestamp":"%s"}}\' '
              f'"$(cat {shlex.quote(str(token_file))})" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"')
    config = {
        'apiVersion': 'v1', 'kind': 'Config',
        'clusters': [{'name': 'emulator', 'cluster': {'server': url, 'certificate-authority': str(ca_file)}}],
        'users': [{'name': 'oneie-operator', 'user': {'exec': {
            'apiVersion': 'client.authentication.k8s.io/v1', 'command': '/bin/sh', 'args': ['-c', script],
            'interactiveMode': 'Never'}}}],
        'contexts': [{'name': 'oneie-operator', 'context': {'cluster': 'emulator', 'user': 'oneie-operator'}}],
        'current-context': 'oneie-operator',
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding='utf-8')
    return path


def secure_emulator(emulator: FixedKubernetesEmulator, url: str, ca_file: Path, workdir: Path,
                    extra_rbac: list[Path] | None = None, *, chart_rbac: Path = CHART_RBAC,
                    namespace: str = 'default') -> SecureCluster:
    """Turn on authentication and RBAC with the chart's roles (``chart_rbac``: the rendered file)
    and the ``extra_rbac`` files; write the kubeconfigs into ``workdir`` (``namespace``: its
    contexts' namespace)."""
    authn = Authenticator()
    tokens = {context: secrets.token_urlsafe(24) for context in IDENTITIES}
    for context, identity in IDENTITIES.items():
        authn.add(tokens[context], identity)
    operator_token = secrets.token_urlsafe(24)
    authn.add(operator_token, OPERATOR)
    access = enable_access_control(emulator, authn)
    load_objects(emulator, [chart_rbac, *(extra_rbac or [])])
    token_file = workdir / 'operator.token'
    token_file.write_text(operator_token, encoding='utf-8')
    token_file.chmod(0o600)
    kubeconfig = write_kubeconfig(workdir / 'kubeconfig', url, token=tokens['emulator'], ca_file=ca_file,
                                  users={c: t for c, t in tokens.items() if c != 'emulator'}, namespace=namespace)
    kubeconfig.chmod(0o600)
    operator_kubeconfig = _exec_kubeconfig(workdir / 'operator-kubeconfig', url, ca_file, token_file)
    return SecureCluster(access, tokens, kubeconfig, operator_kubeconfig, token_file, operator_token)
