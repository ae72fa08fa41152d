"""The operator's Deployment is hardened, probed and sized as documented."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import CHART, VALUES_ALL, container, load_yaml_documents, one, render

POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


@pytest.fixture(params=["defaults", "all-features"])
def docs(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(values_files=[VALUES_ALL] if request.param == "all-features" else [])


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(one(docs, "Deployment")["spec"]["template"]["spec"])


@pytest.mark.parametrize("field", sorted(POD_SECURITY))
def test_pod_security_context(docs: list[dict[str, Any]], field: str) -> None:
    assert pod_spec(docs)["securityContext"][field] == POD_SECURITY[field]


@pytest.mark.parametrize("field", sorted(CONTAINER_SECURITY))
def test_container_security_context(docs: list[dict[str, Any]], field: str) -> None:
    assert container(docs)["securityContext"][field] == CONTAINER_SECURITY[field]


def test_no_host_access_and_token_mounted(docs: list[dict[str, Any]]) -> None:
    spec = pod_spec(docs)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(field)
    assert spec["automountServiceAccountToken"] is True  # the operator calls the API with it
    assert all("hostPath" not in v for v in spec["volumes"])
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"]  # the only writable path besides the webhook certificate (read-only)
    mounts = {m["mountPath"]: m for m in container(docs)["volumeMounts"]}
    assert set(mounts) <= {"/tmp", "/etc/oneie/webhook"}
    assert mounts.get("/etc/oneie/webhook", {"readOnly": True})["readOnly"] is True


def test_command_probes_and_ports(docs: list[dict[str, Any]]) -> None:
    c = container(docs)
    assert c["command"] == ["oneie-operator", "run"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == 8080 and ports["health"] == 8081
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert c["livenessProbe"]["failureThreshold"] >= 3


def test_resources_come_from_values(docs: list[dict[str, Any]]) -> None:
    values = load_yaml_documents(CHART / "values.yaml")[0]
    assert container(docs)["resources"] == values["resources"]
    assert container(docs)["resources"]["limits"]["memory"]


def test_image_is_pinned_to_the_app_version() -> None:
    chart = load_yaml_documents(CHART / "Chart.yaml")[0]
    image = container(render())["image"]
    assert image == f"ghcr.io/one-ie/oneie-operator:{chart['appVersion']}"
    assert not image.endswith(":latest")
    pinned = container(render(values_files=[VALUES_ALL]))["image"]
    assert pinned.startswith(f"ghcr.io/one-ie/oneie-operator:{chart['appVersion']}@sha256:")
    assert container(render(sets={"image.tag": "0.2.0"}))["image"].endswith(":0.2.0")


def test_json_logs_flag() -> None:
    assert container(render())["args"] == ["--json-logs"]
    assert "args" not in container(render(values_files=[VALUES_ALL]))
