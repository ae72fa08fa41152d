"""The chart lints strictly and renders valid Kubernetes objects, with defaults and every feature.

Rendered objects are validated with kubernetes-validate (the API's OpenAPI schemas, strict: an
unknown field is an error) for Kubernetes 1.30, the oldest the chart supports, and for the newest
version kubernetes-validate bundles. It has no schema for custom resources of other projects:
the kinds in NO_SCHEMA are skipped explicitly, and their shape is asserted by hand below.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_support import (
    CHART,
    NAMESPACE,
    RELEASE,
    VALUES_ALL,
    container,
    env_of,
    find,
    helm,
    one,
    render,
    render_fails,
)

#: Kinds kubernetes-validate has no schema for (custom resources of other projects).
NO_SCHEMA = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),  # Prometheus Operator
    ("monitoring.coreos.com/v1", "PrometheusRule"),  # Prometheus Operator
    ("cert-manager.io/v1", "Issuer"),  # cert-manager
    ("cert-manager.io/v1", "Certificate"),  # cert-manager
    ("kopf.dev/v1", "ClusterKopfPeering"),  # Kopf (CRD in charts/kopf-peering)
    ("kopf.dev/v1", "KopfPeering"),  # Kopf
}
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

#: Variants rendered and validated: (id, values files, --set values).
VARIANTS: list[tuple[str, list[Path], dict[str, str]]] = [
    ("defaults", [], {}),
    ("all-features", [VALUES_ALL], {}),
    ("namespaced-all-features", [VALUES_ALL], {"watch.namespaces": "{tenant-acme,tenant-globex}"}),
    ("self-signed-webhook", [], {"webhook.enabled": "true"}),
    (
        "platform-default-notion",
        [],
        {
            "platformDefault.provider": "notion",
            "platformDefault.existingSecret": "n",
            "platformDefault.settings.notionVersion": "2026-03-11",
        },
    ),
]


def rendered(variant: str, include_crds: bool = True) -> list[dict[str, Any]]:
    _, files, sets = next(v for v in VARIANTS if v[0] == variant)
    return render(values_files=files, sets=sets, include_crds=include_crds)


@pytest.mark.parametrize("values", [[], [VALUES_ALL]], ids=["defaults", "all-features"])
def test_helm_lint_strict(values: list[Path]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for path in values:
        args += ["--values", str(path)]
    result = helm(*args)
    assert "0 chart(s) failed" in result.output
    assert "[WARNING]" not in result.output and "[ERROR]" not in result.output, result.output


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS])
def test_rendered_objects_are_valid(variant: str, kube_version: str) -> None:
    docs = rendered(variant)
    assert docs, "nothing rendered"
    checked = 0
    for doc in docs:
        kind = (doc["apiVersion"], doc["kind"])
        if kind in NO_SCHEMA:
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 8


def test_validation_is_strict() -> None:
    """Sanity check of the check: an unknown field in a rendered Deployment is reported."""
    deployment = one(rendered("defaults"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[0], strict=True)


def test_every_custom_kind_is_skipped_on_purpose() -> None:
    kinds = {(d["apiVersion"], d["kind"]) for variant, _, _ in VARIANTS for d in rendered(variant)}
    unknown = {
        k
        for k in kinds
        if "." in k[0].split("/")[0]
        and not k[0].startswith(
            (
                "apps/",
                "rbac.authorization.k8s.io/",
                "networking.k8s.io/",
                "admissionregistration.k8s.io/",
                "apiextensions.k8s.io/",
            )
        )
    }
    assert unknown == NO_SCHEMA & kinds


def test_defaults_render_the_minimum() -> None:
    kinds = sorted(d["kind"] for d in rendered("defaults", include_crds=False))
    assert kinds == sorted(
        [
            "ServiceAccount",
            "Secret",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "NetworkPolicy",  # on by default (fail closed: the metrics name every tenant's connections)
            # tenant roles: platform-owner, org-owner, org-user, aggregate-to-edit, aggregate-to-view
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            # the provider catalog ConfigMap: the operator writes it, everyone signed in reads it
            "Role",
            "RoleBinding",
            "Role",
            "RoleBinding",
        ]
    )
    for doc in rendered("defaults"):
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["metadata"]["name"]


def test_all_features_render_every_optional_object() -> None:
    docs = rendered("all-features")
    for kind in (
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
        "NetworkPolicy",
        "ValidatingWebhookConfiguration",
        "Issuer",
        "Certificate",
        "ClusterKopfPeering",
    ):
        assert find(docs, kind), kind
    crds = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert crds == {
        "organizations.one.ie",
        "backendconnections.one.ie",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }


def test_kopf_peering_crds_only_when_asked() -> None:
    crds = {d["metadata"]["name"] for d in find(rendered("defaults"), "CustomResourceDefinition")}
    assert crds == {"organizations.one.ie", "backendconnections.one.ie"}


# --- peering -------------------------------------------------------------------------------


def test_single_replica_runs_standalone_with_recreate() -> None:
    docs = rendered("defaults")
    assert "PEERING_NAME" not in env_of(docs)
    assert not find(docs, "ClusterKopfPeering") and not find(docs, "KopfPeering")
    assert one(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_two_replicas_peer_cluster_wide() -> None:
    docs = rendered("all-features")
    env = env_of(docs)
    peering = one(docs, "ClusterKopfPeering")
    assert env["PEERING_NAME"] == peering["metadata"]["name"] == RELEASE
    assert env["POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


def test_two_replicas_peer_per_namespace() -> None:
    docs = rendered("namespaced-all-features")
    peerings = find(docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["tenant-acme", "tenant-globex"]
    assert {p["metadata"]["name"] for p in peerings} == {env_of(docs)["PEERING_NAME"]}
    assert not find(docs, "ClusterKopfPeering")


def test_two_replicas_without_peering_crds_is_refused() -> None:
    message = render_fails({"replicas": "2"})
    assert "replicas >= 2 needs Kopf's peering CRDs" in message
    # ... unless the cluster has them already (Capabilities, as Argo CD and `helm install` see them).
    docs = render(sets={"replicas": "2"}, api_versions=["kopf.dev/v1"])
    assert one(docs, "ClusterKopfPeering")


# --- the operator's configuration ----------------------------------------------------------


def plain_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return {k: v for k, v in env_of(docs).items() if isinstance(v, str)}


def test_rendered_environment_is_valid_operator_configuration() -> None:
    """The operator's own validation (config.py) accepts what the chart sets."""
    from oneie_operator.config import OperatorConfig, load_config

    for variant in ("defaults", "all-features", "namespaced-all-features"):
        env = plain_env(rendered(variant))
        config = load_config({**env, "ENCRYPTION_KEY": "0" * 64})
        assert config.metrics_port == 8080 and config.health_port == 8081
        known = {name.upper() for name in OperatorConfig.model_fields}
        platform = {k for k in env if k.startswith(("BACKEND_", "WORDPRESS_", "NOTION_"))}
        other = {
            "POD_ID",
            "PYTHONDONTWRITEBYTECODE",
            "ACME_PLUGIN_URL",
            "WEBHOOK_PORT",
            "WEBHOOK_CERT_FILE",
            "WEBHOOK_KEY_FILE",
        }
        assert set(env) - known - platform - other == set(), "a variable the operator does not read"
    namespaced = load_config({**plain_env(rendered("namespaced-all-features")), "ENCRYPTION_KEY": "0" * 64})
    assert namespaced.watch_namespaces == ("tenant-acme", "tenant-globex")
    assert load_config(plain_env(rendered("all-features"))).provider_timeout_seconds == 7.5


def test_platform_default_variables_follow_the_operator_naming() -> None:
    from oneie_operator.platform_default import env_name, load_platform_default
    from oneie_operator.providers.registry import default_registry

    docs = rendered("all-features")
    env = plain_env(docs)
    assert env["BACKEND_PROVIDER"] == "wordpress" and env["BACKEND_SHARE_CREDENTIALS"] == "true"
    assert env[env_name("wordpress", "restPrefix")] == "/wp-json"
    assert env[env_name("wordpress", "url")] == "https://wp.example.com"
    assert container(docs)["envFrom"] == [{"secretRef": {"name": "oneie-platform-wordpress"}}]
    # With the credentials the existing Secret would add, the operator accepts the platform default.
    creds = {"WORDPRESS_USERNAME": "admin", "WORDPRESS_APPLICATION_PASSWORD": "abcd EFGH 1234 ijkl MNOP 5678"}
    default = load_platform_default({**env, **creds}, default_registry())
    assert default is not None and default.provider.name == "wordpress" and default.share_credentials
    notion = plain_env(rendered("platform-default-notion"))
    assert notion[env_name("notion", "notion_version")] == "2026-03-11" == notion["NOTION_NOTION_VERSION"]


def test_encryption_key_from_an_existing_secret() -> None:
    docs = rendered("all-features")
    assert env_of(docs)["ENCRYPTION_KEYRING"] == {"secretKeyRef": {"name": "oneie-keys", "key": "ENCRYPTION_KEYRING"}}
    assert "ENCRYPTION_KEY" not in env_of(docs)
    assert not find(docs, "Secret", f"{RELEASE}-encryption")


def test_generated_encryption_key_is_64_hex_and_kept() -> None:
    from oneie_operator.vault import Keyring

    docs = render(sets={"commonLabels.render": "a"})
    secret = one(docs, "Secret", f"{RELEASE}-encryption")
    key = base64.b64decode(secret["data"]["ENCRYPTION_KEY"]).decode()
    assert re.fullmatch(r"[0-9a-f]{64}", key), "not 64 hex characters"
    Keyring.from_env(key, None)  # the operator accepts it
    other = one(render(sets={"commonLabels.render": "b"}), "Secret", f"{RELEASE}-encryption")
    assert other["data"]["ENCRYPTION_KEY"] != secret["data"]["ENCRYPTION_KEY"], "not random"
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert env_of(docs)["ENCRYPTION_KEY"] == {
        "secretKeyRef": {"name": f"{RELEASE}-encryption", "key": "ENCRYPTION_KEY"}
    }
    # The template reads the Secret back with lookup on upgrades (helm template cannot show it).
    template = (CHART / "templates" / "encryption-secret.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $name' in template


def test_literal_encryption_key_is_used_verbatim() -> None:
    key = "ab" * 32
    secret = one(render(sets={"encryption.key": key}), "Secret", f"{RELEASE}-encryption")
    assert base64.b64decode(secret["data"]["ENCRYPTION_KEY"]).decode() == key


# --- metrics, rules, dashboard, network policy --------------------------------------------


def test_metrics_service_and_service_monitor_agree() -> None:
    docs = rendered("all-features")
    service = one(docs, "Service", f"{RELEASE}-metrics")
    monitor = one(docs, "ServiceMonitor")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_prometheus_rule_carries_the_rules_file() -> None:
    rule = one(rendered("all-features"), "PrometheusRule")
    source = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    alerts = [r.get("alert") for g in source["groups"] for r in g["rules"]]
    assert "OneieOperatorDown" in alerts


def test_grafana_dashboard_config_map() -> None:
    config_map = one(rendered("all-features"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    (content,) = config_map["data"].values()
    dashboard = json.loads(content)
    assert dashboard == json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["panels"]


def test_network_policy(tmp_path: Path) -> None:
    docs = rendered("all-features")
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    metrics_rule, webhook_rule = policy["ingress"]
    assert {p["port"] for p in metrics_rule["ports"]} == {"metrics", "health"}
    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert webhook_rule == {"ports": [{"port": "webhook", "protocol": "TCP"}]}
    dns, api, providers = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert [t["ipBlock"]["cidr"] for t in api["to"]] == ["10.0.0.1/32", "192.168.10.0/24"]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]} in [t["ipBlock"] for t in providers["to"]]
    assert {p["port"] for p in providers["ports"]} == {443, 8443}
    # No ingress peers: only the kubelet's probes reach the pod.
    no_peers = tmp_path / "no-peers.yaml"
    no_peers.write_text(yaml.safe_dump({"networkPolicy": {"ingress": {"from": []}}}))
    closed = one(render(values_files=[no_peers]), "NetworkPolicy")["spec"]
    assert closed["ingress"] == [] and "ports" not in closed["egress"][-1]


def test_network_policy_is_on_by_default(tmp_path: Path) -> None:
    """Fail closed (issue 12, item 6): the metrics (every tenant's connection names) are open only to
    the monitoring namespace; the webhook port to any source unless its peers are given."""
    policy = one(render(), "NetworkPolicy")["spec"]
    (metrics_rule,) = policy["ingress"]  # the webhook is off by default
    assert metrics_rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert {p["port"] for p in metrics_rule["ports"]} == {"metrics", "health"}
    assert "ports" not in policy["egress"][-1], "providers are anywhere: egress to them on any port"
    api_server = [{"ipBlock": {"cidr": "172.16.0.0/28"}}]
    values = tmp_path / "webhook-from.yaml"
    values.write_text(yaml.safe_dump({"webhook": {"enabled": True, "certManager": {"enabled": True}},
                                      "networkPolicy": {"ingress": {"webhookFrom": api_server}}}))
    narrowed = one(render(values_files=[values]), "NetworkPolicy")["spec"]
    assert narrowed["ingress"][1] == {"ports": [{"port": "webhook", "protocol": "TCP"}], "from": api_server}
    assert "NetworkPolicy" not in {d["kind"] for d in render(sets={"networkPolicy.enabled": "false"})}


# --- webhook ----------------------------------------------------------------------------------


def webhook_parts(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return one(docs, "ValidatingWebhookConfiguration"), one(docs, "Service", f"{RELEASE}-webhook")


def test_webhook_configuration() -> None:
    docs = rendered("all-features")
    configuration, service = webhook_parts(docs)
    assert service["spec"]["ports"] == [{"name": "webhook", "port": 9443, "targetPort": "webhook", "protocol": "TCP"}]
    hooks = {h["rules"][0]["resources"][0]: h for h in configuration["webhooks"]}
    assert set(hooks) == {"organizations", "backendconnections"}
    for resource, hook in hooks.items():
        assert hook["failurePolicy"] == "Fail"
        assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
        assert hook["rules"] == [
            {
                "apiGroups": ["one.ie"],
                "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": [resource],
                "scope": "Namespaced",
            }
        ]
        ref = hook["clientConfig"]["service"]
        assert (ref["name"], ref["namespace"], ref["port"]) == (service["metadata"]["name"], NAMESPACE, 9443)
        assert "caBundle" not in hook["clientConfig"]  # cert-manager injects it
    annotation = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    certificate = one(docs, "Certificate")
    assert annotation == f"{NAMESPACE}/{certificate['metadata']['name']}"
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": one(docs, "Issuer")["metadata"]["name"]}
    assert one(docs, "Issuer")["spec"] == {"selfSigned": {}}
    volume = next(
        v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "webhook-tls"
    )
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert f"{service['metadata']['name']}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    env = env_of(docs)
    assert env["WEBHOOK_PORT"] == "9443" and env["WEBHOOK_CERT_FILE"] == "/etc/oneie/webhook/tls.crt"


def test_webhook_failure_policy_from_values() -> None:
    docs = render(sets={"webhook.enabled": "true", "webhook.failurePolicy.organizations": "Ignore"})
    policies = {h["name"]: h["failurePolicy"] for h in one(docs, "ValidatingWebhookConfiguration")["webhooks"]}
    assert policies == {"organizations.validate.one.ie": "Ignore", "backendconnections.validate.one.ie": "Fail"}


def test_webhook_only_in_watched_namespaces() -> None:
    configuration, _ = webhook_parts(rendered("namespaced-all-features"))
    for hook in configuration["webhooks"]:
        assert hook["namespaceSelector"] == {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["tenant-acme", "tenant-globex"]}
            ]
        }


def test_self_signed_webhook_certificate() -> None:
    from cryptography import x509

    docs = rendered("self-signed-webhook")
    configuration, service = webhook_parts(docs)
    secret = one(docs, "Secret", f"{RELEASE}-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.issuer == ca.subject
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert f"{service['metadata']['name']}.{NAMESPACE}.svc" in names
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days >= 3649
    for hook in configuration["webhooks"]:
        assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert "cert-manager.io/inject-ca-from" not in (configuration["metadata"].get("annotations") or {})
    template = (CHART / "templates" / "webhook.yaml").read_text()
    assert 'lookup "v1" "Secret" .Release.Namespace $secretName' in template


def test_notes_render() -> None:
    result = helm(
        "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", "--values", str(VALUES_ALL)
    )
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"--clusterrole={RELEASE}-org-owner" in notes and f"--clusterrole={RELEASE}-org-user" in notes
    assert "WARNING: replicas=2 uses Kopf peering" in notes
    assert "failurePolicy Fail" in notes


def test_chart_packages_with_its_crds_and_files(tmp_path: Path) -> None:
    import tarfile

    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("oneie-operator-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    for member in (
        "crds/organizations.one.ie.yaml",
        "crds/backendconnections.one.ie.yaml",
        "files/prometheus-rules.yaml",
        "files/grafana-dashboard.json",
        "values.schema.json",
        "charts/kopf-peering/crds/kopf-peering.yaml",
    ):
        assert f"oneie-operator/{member}" in names, member
    # The packaged chart renders like the directory.
    result = helm("template", RELEASE, str(archive), "--namespace", NAMESPACE)
    assert "kind: Deployment" in result.stdout
