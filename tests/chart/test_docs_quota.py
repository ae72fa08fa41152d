"""The ResourceQuota the docs give platforms (docs/quota/resourcequota.yaml) is a valid object
that caps both of our kinds, and the install guide points at it."""

from __future__ import annotations

import kubernetes_validate
from chart_support import REPO, load_yaml_documents

QUOTA = REPO / "docs" / "quota" / "resourcequota.yaml"


def test_the_quota_is_valid_and_counts_our_kinds() -> None:
    (doc,) = load_yaml_documents(QUOTA)
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(doc, version, strict=True)
    assert doc["kind"] == "ResourceQuota"
    hard = doc["spec"]["hard"]
    # object count quotas for custom resources: count/<plural>.<group>
    assert int(hard["count/backendconnections.one.ie"]) > 0
    assert int(hard["count/organizations.one.ie"]) > 0
    assert "namespace" not in doc["metadata"], "applied per tenant namespace with -n"


def test_install_guide_names_the_quota_and_the_uninstall_order() -> None:
    text = (REPO / "docs" / "install.md").read_text(encoding="utf-8")
    assert "docs/quota/resourcequota.yaml" in text
    assert "kubectl oneie uninstall-cleanup" in text
    assert "kubectl oneie migrate-labels" in (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
