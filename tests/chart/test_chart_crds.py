"""The chart ships exactly the CRDs of crds/ (byte for byte), and Kopf's peering CRDs apart.

Refresh after changing crds/:  cp crds/*.yaml charts/oneie-operator/crds/
(a symlink would not survive `helm package`).
"""

from __future__ import annotations

from chart_support import CHART, REPO, load_yaml_documents

SOURCE = REPO / "crds"
SHIPPED = CHART / "crds"
REFRESH = "refresh with: cp crds/*.yaml charts/oneie-operator/crds/"


def test_chart_crds_are_byte_identical_copies() -> None:
    source = {p.name: p.read_bytes() for p in SOURCE.glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in SHIPPED.iterdir()}
    assert source, "crds/ is empty"
    assert sorted(shipped) == sorted(source), REFRESH
    for name, content in source.items():
        assert shipped[name] == content, f"charts/oneie-operator/crds/{name} differs from crds/{name}; {REFRESH}"
    assert not any(p.is_symlink() for p in SHIPPED.iterdir()), "copies, not symlinks (helm package)"


def test_kopf_peering_crds_live_in_the_optional_subchart() -> None:
    subchart = CHART / "charts" / "kopf-peering"
    docs = load_yaml_documents(subchart / "crds" / "kopf-peering.yaml")
    assert {(d["metadata"]["name"], d["spec"]["scope"]) for d in docs} == {
        ("clusterkopfpeerings.kopf.dev", "Cluster"),
        ("kopfpeerings.kopf.dev", "Namespaced"),
    }
    for doc in docs:
        (version,) = doc["spec"]["versions"]
        assert version["name"] == "v1" and "subresources" not in version  # Kopf patches .status directly
    chart = load_yaml_documents(CHART / "Chart.yaml")[0]
    assert {"name": "kopf-peering", "version": "1.0.0", "condition": "peering.crds.install"} in chart["dependencies"]
