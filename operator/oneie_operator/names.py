"""The operator's names on the Kubernetes API, in one place: API group and version, plurals and
kinds, the ``one.ie/...`` annotations and labels, the finalizer and the field managers.

The operator, the kubectl plug-in, the dashboard and the demo import them from here;
``tests/unit/test_names.py`` fails if a string literal of the group, the version or a ``one.ie/``
key appears anywhere else in the package. (The cipher's and the binding digest's domain-separation
prefixes, ``b"one.ie/v1"`` and ``b"one.ie/binding-digest/v1"``, are byte strings that must never
change with the API group: they are not names on the API and stay where they are.)
"""

from __future__ import annotations

# ---------------------------------------------------------------- API group, version, resources
GROUP = "one.ie"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ORGANIZATIONS = "organizations"
CONNECTIONS = "backendconnections"
ORGANIZATION_KIND = "Organization"
CONNECTION_KIND = "BackendConnection"
KINDS = {ORGANIZATIONS: ORGANIZATION_KIND, CONNECTIONS: CONNECTION_KIND}
#: The CustomResourceDefinition of BackendConnection (``<plural>.<group>``).
CONNECTIONS_CRD = f"{CONNECTIONS}.{GROUP}"


def qualified(kind: str, name: str) -> str:
    """``kind.group/name``, as kubectl names an object (``organization.one.ie/team-a``)."""
    return f"{kind.lower()}.{GROUP}/{name}"


# ---------------------------------------------------------------- annotations
#: On a BackendConnection: a new value requests an immediate health probe (``kubectl oneie probe``).
PROBE_ANNOTATION = f"{GROUP}/probe"
#: On an Organization: a new value retries a failed switch (``kubectl oneie retry``).
RETRY_ANNOTATION = f"{GROUP}/retry"
#: On an Organization: a rollback to ``status.previousConnection`` was requested (``kubectl oneie rollback``).
ROLLBACK_ANNOTATION = f"{GROUP}/rollback"
#: Changed by the operator itself to run an object's reconcile again (reconcile.retrigger).
TRIGGER_ANNOTATION = f"{GROUP}/reconcile-trigger"
#: On a binding Secret: the connection it serves.
BINDING_CONNECTION_ANNOTATION = f"{GROUP}/connection"
#: On a binding Secret: the keyed digest of its data (vault.digest).
BINDING_DIGEST_ANNOTATION = f"{GROUP}/binding-digest"
#: On an encrypted Secret: the version of the source Secret its values came from.
SOURCE_VERSION_ANNOTATION = f"{GROUP}/source-resource-version"
#: On an encrypted Secret: the id of the key its values are encrypted with.
KEY_ID_ANNOTATION = f"{GROUP}/key-id"
#: On what the dashboard creates: that the dashboard created it.
CREATED_BY_ANNOTATION = f"{GROUP}/created-by"
#: The demo's harmless annotation (its access check writes it).
DEMO_ANNOTATION = f"{GROUP}/demo"

# ---------------------------------------------------------------- labels
#: The one label key of every Secret the operator reads or watches (DESIGN.md §5, README
#: "Security"). A tenant opts a credentials Secret in with the value ``true``; the operator marks
#: its own Secrets ``encrypted`` (a connection's encrypted copy) and ``binding`` (an Organization's
#: Service Binding). RBAC cannot filter by label, so the operator keeps ``get/list/watch`` on
#: Secrets; this label is what narrows what it reads and caches.
CREDENTIALS_LABEL = f"{GROUP}/credentials"
OPTED_IN = "true"
ENCRYPTED = "encrypted"
BINDING = "binding"
#: The server-side selector of the operator's Secret watch: a set-based selector over the one key
#: covers the tenants' opted-in Secrets and the operator's own, and nothing else (an existence
#: selector, ``one.ie/credentials``, would also take in a Secret labelled ``false`` to say no).
#: A Secret that leaves the selection (label removed) reaches the watch as DELETED, which is how
#: a connection learns that its Secret opted out.
WATCH_SELECTOR = f"{CREDENTIALS_LABEL} in ({BINDING},{ENCRYPTED},{OPTED_IN})"
#: On an encrypted Secret: the connection it belongs to.
CONNECTION_LABEL = f"{GROUP}/connection"
#: On a binding Secret: the organization it serves.
ORGANIZATION_LABEL = f"{GROUP}/organization"
#: ``capability.one.ie/<capability>: "true"`` on a connection, one per capability of its backend.
CAPABILITY_LABEL_PREFIX = f"capability.{GROUP}/"
#: On every Secret the operator writes.
MANAGED_BY = {"app.kubernetes.io/managed-by": "oneie-operator"}

# ---------------------------------------------------------------- finalizer, field managers, other names
#: The operator's finalizer (Kopf's ``settings.persistence.finalizer``).
FINALIZER = f"{GROUP}/finalizer"
#: The field manager of the kubectl plug-in's (and the dashboard's) writes.
PLUGIN_FIELD_MANAGER = "kubectl-oneie"
#: ``provider`` in a binding Secret (the Service Binding spec's "provider of the service").
BINDING_PROVIDER = GROUP
#: The ConfigMap in the operator's namespace that lists the registered providers (reconcile.catalog).
CATALOG_NAME = "oneie-providers"
