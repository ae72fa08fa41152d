"""Sharding across Helm releases: each release serves namespace patterns, two releases coexist.

Two releases in one namespace, one per shard (``tenant-a-*``, ``tenant-b-*``), render no object
twice: every cluster-scoped object (ClusterRoles, bindings, the webhook configuration) and every
namespaced one carries its release's name. What they do share is documented in the chart README
("Sharding"): the CRDs (Helm installs them once and skips them for the second release) and the
operator-written provider catalog ConfigMap ``oneie-providers`` of the namespace.
tests/e2e/test_sharding.py runs two operators with exactly these renders.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import yaml
from chart_support import CHART, NAMESPACE, env_of, expand, helm, one, render, render_fails
from test_chart_rbac import ACCESS_REVIEWS, OPERATOR_CONTRACT, operator_grants

NAMESPACES = expand([""], ["namespaces"], ["list", "watch"])
CRDS = expand(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["list", "watch"])
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration",
                  "CustomResourceDefinition", "ClusterKopfPeering", "Namespace", "PriorityClass"}


def release(name: str, pattern: str, *extra: str) -> list[dict[str, Any]]:
    out = helm("template", name, str(CHART), "--namespace", NAMESPACE, "--set", f"watch.namespaces={{{pattern}}}",
               "--set", "webhook.enabled=true", *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def key(doc: dict[str, Any]) -> tuple[str, str, str]:
    namespace = "" if doc["kind"] in CLUSTER_SCOPED else doc["metadata"].get("namespace", NAMESPACE)
    return doc["kind"], namespace, doc["metadata"]["name"]


def test_globs_get_cluster_wide_rules_and_namespace_listing() -> None:
    docs = render(sets={"watch.namespaces": "{tenant-a-*,!tenant-a-test}"})
    assert operator_grants(docs) == {None: OPERATOR_CONTRACT | ACCESS_REVIEWS | NAMESPACES | CRDS}
    assert env_of(docs)["WATCH_NAMESPACES"] == "tenant-a-*,!tenant-a-test"


def test_globs_with_replicas_are_refused_clearly() -> None:
    message = render_fails({"watch.namespaces": "{tenant-a-*}", "replicas": "2"})
    assert "replicas >= 2 with globs or exclusions in watch.namespaces" in message


def test_bad_namespace_entries_are_refused_by_the_schema() -> None:
    message = render_fails({"watch.namespaces": "{Tenant-A}"})
    assert "/watch/namespaces/0" in message


def test_two_releases_render_no_object_twice() -> None:
    a = release("shard-a", "tenant-a-*")
    b = release("shard-b", "tenant-b-*")
    counts = Counter(key(d) for d in a + b)
    assert not [k for k, n in counts.items() if n > 1], [k for k, n in counts.items() if n > 1]
    assert any(k[0] == "ValidatingWebhookConfiguration" for k in counts)  # the webhook is among them
    assert {env_of(a)["WATCH_NAMESPACES"], env_of(b)["WATCH_NAMESPACES"]} == {"tenant-a-*", "tenant-b-*"}
    assert one(a, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] != (
        one(b, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"])


def test_each_release_webhook_can_be_narrowed_to_its_shard() -> None:
    hooks = one(release("shard-a", "tenant-a-*"), "ValidatingWebhookConfiguration")["webhooks"]
    assert all("namespaceSelector" not in h for h in hooks)  # a glob is no label selector: all
    narrowed = release("shard-a", "tenant-a-*", "--set", "webhook.namespaceSelector.matchLabels.one\\.ie/shard=a")
    hooks = one(narrowed, "ValidatingWebhookConfiguration")["webhooks"]
    assert all(h["namespaceSelector"] == {"matchLabels": {"one.ie/shard": "a"}} for h in hooks)
