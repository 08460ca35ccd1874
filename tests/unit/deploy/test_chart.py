"""The Helm chart renders what the operator needs, and only that, from values its schema admits.

These run `helm template` and `helm lint` (no cluster): the chart against the operator's own
configuration model, the plain manifests in deploy/, and the CRDs generated from the models.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from patronus.api import parsers
from patronus.operator.config import ENV_ONLY_KEYS, OperatorConfig, load_config
from tests.support.helm import CHART, RENDER_MANIFESTS, Helm, by_kind, one
from tests.support.manifests import REPO

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "Namespace", "CustomResourceDefinition"}


def config_map_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = dict(one(objects, "ConfigMap")["data"])
    return data


def operator_container(objects: list[dict[str, Any]]) -> Mapping[str, Any]:
    container: Mapping[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


# -- one source of truth --------------------------------------------------------------------------


def test_lint_is_clean_in_both_modes(helm: Helm) -> None:
    for scope in ("namespaced", "cluster"):
        result = helm.run("lint", "--strict", str(CHART), "--set", f"rbac.scope={scope}")
        assert "0 chart(s) failed" in result.stdout, result.stdout


def test_plain_manifests_are_the_chart_with_default_values(tmp_path: Path) -> None:

    subprocess.run([str(RENDER_MANIFESTS), str(tmp_path)], check=True, capture_output=True)
    for name in ("rbac.yaml", "operator.yaml"):
        assert (REPO / "deploy" / "operator" / name).read_text() == (tmp_path / name).read_text(), (
            f"deploy/operator/{name} differs from the chart: run `make manifests` and commit"
        )
    assert sorted(p.name for p in (REPO / "deploy" / "operator").iterdir()) == [
        "namespace.yaml",
        "operator.yaml",
        "rbac.yaml",
    ]


def test_chart_crds_are_the_generated_crds() -> None:
    generated = {p.name: p.read_text() for p in (REPO / "deploy" / "crds").glob("*.yaml")}
    in_chart = {p.name: p.read_text() for p in (CHART / "crds").iterdir()}
    assert in_chart == generated, "the chart's crds/ differ from deploy/crds: run `make manifests`"


def test_chart_version_is_the_project_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["name"] == "patronus-operator"
    assert chart["version"] == project
    assert chart["appVersion"] == project


def test_schema_patterns_are_the_parsers_patterns() -> None:
    definitions = json.loads((CHART / "values.schema.json").read_text())["definitions"]
    assert definitions["duration"]["pattern"] == parsers.DURATION_PATTERN
    assert definitions["quantity"]["pattern"] == parsers.QUANTITY_PATTERN
    assert definitions["dnsLabel"]["pattern"] == parsers.DNS_LABEL_PATTERN


# -- the operator's configuration -------------------------------------------------------------------


def test_configmap_holds_every_operator_key(helm: Helm) -> None:
    data = config_map_data(helm.template())
    assert set(data) == set(OperatorConfig.KEYS) - ENV_ONLY_KEYS


def test_default_values_are_the_operators_defaults(helm: Helm) -> None:
    objects = helm.template()
    config = load_config({"POD_NAMESPACE": "patronus-system"}, config_map_data(objects))
    defaults = load_config({"POD_NAMESPACE": "patronus-system"})
    different = _different_keys(config, defaults)
    # Namespaced by default: the release's namespace, where the operator's default is every namespace.
    assert different == {"WATCH_NAMESPACES"}
    assert config.watch_namespaces == ("patronus-system",)
    env = {item["name"] for item in operator_container(objects)["env"]}
    assert env == ENV_ONLY_KEYS


def _different_keys(config: OperatorConfig, defaults: OperatorConfig) -> set[str]:
    fields = {str(field.alias): name for name, field in OperatorConfig.model_fields.items()}
    return {
        key
        for key in set(OperatorConfig.KEYS) - ENV_ONLY_KEYS
        if getattr(config, fields[key]) != getattr(defaults, fields[key])
    }


EVERY_VALUE = {
    "config": {
        "reconcileInterval": "1m30s",
        "maxConcurrentReconciles": 9,
        "defaultCpuRequest": "500m",
        "defaultMemoryRequest": "1Gi",
        "metricsPort": 9090,
        "healthProbePort": 9091,
        "bindAddress": "127.0.0.1",
        "logLevel": "debug",
        "logFormat": "console",
    },
    "leaderElection": {
        "enabled": False,
        "leaseDuration": "30s",
        "renewDeadline": "20s",
        "retryPeriod": "5s",
        "namespace": "elections",
        "id": "my-lease",
    },
    "watchNamespaces": ["east", "west"],
    "agent": {"image": {"repository": "registry.example/patronus-agent", "tag": "v9"}},
}


def test_every_value_reaches_the_operator(helm: Helm) -> None:
    objects = helm.template(values=EVERY_VALUE)
    config = load_config({}, config_map_data(objects))
    assert config.reconcile_interval == 90
    assert config.max_concurrent_reconciles == 9
    assert (config.default_cpu_request, config.default_memory_request) == ("500m", "1Gi")
    assert (config.metrics_port, config.health_probe_port, config.bind_address) == (9090, 9091, "127.0.0.1")
    assert (config.log_level, config.log_format) == ("debug", "console")
    assert not config.leader_election_enabled
    assert (
        config.leader_election_lease_duration,
        config.leader_election_renew_deadline,
        config.leader_election_retry_period,
    ) == (30, 20, 5)
    assert (config.leader_election_namespace, config.leader_election_id) == ("elections", "my-lease")
    assert config.watch_namespaces == ("east", "west")
    assert config.agent_image == "registry.example/patronus-agent:v9"
    ports = {port["name"]: port["containerPort"] for port in operator_container(objects)["ports"]}
    assert ports == {"metrics": 9090, "health": 9091}
    # Leader election off: no Lease rights at all.
    assert not [o for o in by_kind(objects, "Role") if "leader-election" in o["metadata"]["name"]]


def test_a_changed_value_rolls_the_operator(helm: Helm) -> None:
    def checksum(*sets: str) -> str:
        deployment = one(helm.template(sets=sets), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum() == checksum()
    assert checksum() != checksum("config.logLevel=debug")


# -- values the schema refuses ------------------------------------------------------------------------

BAD_VALUES = [
    ("config.reconcileInterval=30", "/config/reconcileInterval"),
    ("config.reconcileInterval=thirty", "/config/reconcileInterval"),
    ("config.maxConcurrentReconciles=0", "/config/maxConcurrentReconciles"),
    ("config.defaultMemoryRequest=2GB", "/config/defaultMemoryRequest"),
    ("config.metricsPort=70000", "/config/metricsPort"),
    ("config.logLevel=verbose", "/config/logLevel"),
    ("config.logFormat=xml", "/config/logFormat"),
    ("config.reconcileIntervall=30s", "reconcileIntervall"),
    ("leaderElection.leaseDuration=15", "/leaderElection/leaseDuration"),
    ("leaderElection.enabled=maybe", "/leaderElection/enabled"),
    ("rbac.scope=clusterwide", "/rbac/scope"),
    ("watchNamespaces={Bad_Name}", "/watchNamespaces/0"),
    ("replicaCount=0", "/replicaCount"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("image.tag=v1 2", "/image/tag"),
    ("replicas=3", "replicas"),
]


@pytest.mark.parametrize(("setting", "where"), BAD_VALUES, ids=[s for s, _ in BAD_VALUES])
def test_schema_refuses_bad_values(helm: Helm, setting: str, where: str) -> None:
    refusal = helm.schema_refusal(setting)
    assert where in refusal, refusal


# -- the operator's pod -------------------------------------------------------------------------------


def test_operator_runs_non_root_read_only_without_capabilities(helm: Helm) -> None:
    objects = helm.template()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "health"}
    assert container["image"] == "ghcr.io/patronus/patronus-operator:v0.1.0"


def test_labels_select_the_operators_pods(helm: Helm) -> None:
    objects = helm.template()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app"] == "patronus-operator"  # the seed's `kubectl logs -l app=patronus-operator`
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        one(objects, "Service")["spec"]["selector"],
        one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    service = one(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_disruption_budget_only_with_a_standby(helm: Helm) -> None:
    assert one(helm.template(), "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not by_kind(helm.template(sets=["replicaCount=1"]), "PodDisruptionBudget")


def test_names_follow_the_release(helm: Helm) -> None:
    objects = helm.template(release="edge", namespace="wan")
    names = {obj["metadata"]["name"] for obj in objects}
    assert "edge-patronus-operator" in names
    assert "edge-patronus-operator-config" in names
    config = load_config({"POD_NAMESPACE": "wan"}, config_map_data(objects))
    assert config.leader_election_id == "edge-patronus-operator"
    env = {item["name"]: item.get("value") for item in operator_container(objects)["env"]}
    assert env["CONFIG_MAP_NAME"] == one(objects, "ConfigMap")["metadata"]["name"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]


# -- RBAC in its two modes -----------------------------------------------------------------------------


def rules_of(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules: list[Mapping[str, Any]] = obj["rules"]
    return rules


def test_namespaced_mode_grants_nothing_cluster_wide(helm: Helm) -> None:
    objects = helm.template(values={"watchNamespaces": ["east", "west"]})
    assert not {obj["kind"] for obj in objects} & CLUSTER_SCOPED
    main_roles = [r for r in by_kind(objects, "Role") if r["metadata"]["name"] == "patronus-operator"]
    assert sorted(r["metadata"]["namespace"] for r in main_roles) == ["east", "west"]
    bindings = [b for b in by_kind(objects, "RoleBinding") if b["metadata"]["name"] == "patronus-operator"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["east", "west"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "patronus-operator", "namespace": "patronus-system"}
        ]
    assert config_map_data(objects)["WATCH_NAMESPACES"] == "east,west"


def test_cluster_mode_grants_the_same_rules_everywhere(helm: Helm) -> None:
    namespaced = helm.template()
    cluster = helm.template(sets=["rbac.scope=cluster"])
    role = next(r for r in by_kind(namespaced, "Role") if r["metadata"]["name"] == "patronus-operator")
    assert rules_of(one(cluster, "ClusterRole")) == rules_of(role)
    assert one(cluster, "ClusterRoleBinding")["roleRef"]["name"] == "patronus-operator"
    assert config_map_data(cluster)["WATCH_NAMESPACES"] == ""  # every namespace
    listed = helm.template(sets=["rbac.scope=cluster", "watchNamespaces={a,b}"])
    assert config_map_data(listed)["WATCH_NAMESPACES"] == "a,b"


def test_leader_election_rights_are_its_own_lease(helm: Helm) -> None:
    role = next(
        r for r in by_kind(helm.template(), "Role") if r["metadata"]["name"].endswith("leader-election")
    )
    assert rules_of(role) == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["patronus-operator"],
            "verbs": ["get", "update"],
        },
    ]
