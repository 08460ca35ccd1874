"""The chart's optional observability: prometheus-operator objects and the dashboard, all off by default.

Rendered with `helm template` (no cluster). What they select is checked against the objects they must
find as the code makes them: the operator's metrics Service from the chart, the agents' pods from the
operator's own Deployment builder; the dashboard's Role against the kinds its watcher lists; the
PrometheusRule against deploy/monitoring/rules.yaml, which promtool checks.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from patronus.api import GROUP_VERSION, Site
from patronus.dashboard.watcher import KINDS as DASHBOARD_KINDS
from patronus.operator.config import load_config
from patronus.operator.site.children import workload
from tests.support.helm import CHART, Helm, by_kind, one
from tests.support.manifests import REPO

RULES = REPO / "deploy" / "monitoring" / "rules.yaml"
MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
EVERYTHING_ON = [
    "metrics.serviceMonitor.enabled=true",
    "metrics.podMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "dashboard.enabled=true",
]
READ_VERBS = {"get", "list", "watch"}


def named(objects: Sequence[Mapping[str, Any]], kind: str, name: str) -> Mapping[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    spec: Mapping[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return selector.items() <= labels.items()


def dashboard_objects(objects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [o for o in objects if o["metadata"].get("labels", {}).get("app") == "patronus-dashboard"]


# -- off by default, lint-clean when on ------------------------------------------------------------------


def test_everything_is_off_by_default(helm: Helm) -> None:
    for scope in ("namespaced", "cluster"):
        objects = helm.template(sets=[f"rbac.scope={scope}"])
        assert not {o["kind"] for o in objects} & MONITORING_KINDS
        assert not dashboard_objects(objects)
        assert all("dashboard" not in o["metadata"]["name"] for o in objects)


def test_lint_is_clean_with_every_option_in_both_modes(helm: Helm) -> None:
    for scope in ("namespaced", "cluster"):
        sets = [arg for s in [*EVERYTHING_ON, f"rbac.scope={scope}"] for arg in ("--set", s)]
        result = helm.run("lint", "--strict", str(CHART), *sets)
        assert "0 chart(s) failed" in result.stdout, result.stdout


# -- PrometheusRule: deploy/monitoring/rules.yaml, one source of truth --------------------------------------


def test_chart_rules_are_the_monitoring_rules() -> None:
    assert (CHART / "monitoring" / "rules.yaml").read_text() == RULES.read_text(), (
        "the chart's monitoring/rules.yaml differs from deploy/monitoring/rules.yaml: run `make manifests`"
    )


def prometheus_rule(helm: Helm, *sets: str) -> Mapping[str, Any]:
    return one(helm.template(sets=["metrics.prometheusRule.enabled=true", *sets]), "PrometheusRule")


def test_prometheus_rule_holds_the_rule_file_as_written(helm: Helm) -> None:
    rule = prometheus_rule(helm, "metrics.prometheusRule.labels.release=monitoring")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "patronus-system"
    assert rule["metadata"]["labels"]["release"] == "monitoring"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # Prometheus' templates reach Prometheus, not Helm.
    annotations = [
        r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r
    ]
    assert "{{ $labels.path }}" in annotations[0]


def test_prometheus_rules_pass_promtool(helm: Helm, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package")
    spec = prometheus_rule(helm)["spec"]
    rule_file = tmp_path / "rules.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in spec["groups"])
    assert count >= 13
    assert f"SUCCESS: {count} rules found" in result.stdout, result.stdout


# -- ServiceMonitor: the operator's metrics Service -------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service(helm: Helm) -> None:
    objects = helm.template(
        release="edge",
        namespace="wan",
        sets=[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.interval=30s",
            "metrics.serviceMonitor.scrapeTimeout=10s",
            "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
        ],
    )
    monitor = one(objects, "ServiceMonitor")
    service = named(objects, "Service", "edge-patronus-operator-metrics")
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    # Only that Service: no other Service of the chart carries its labels.
    others = [s for s in by_kind(objects, "Service") if s is not service]
    assert not [
        s for s in others if selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["wan"]}
    port_names = [port["name"] for port in service["spec"]["ports"]]
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert "metrics" in port_names
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_leaves_intervals_to_prometheus_by_default(helm: Helm) -> None:
    monitor = one(helm.template(sets=["metrics.serviceMonitor.enabled=true"]), "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics"}]


def test_service_monitor_needs_the_metrics_service(helm: Helm) -> None:
    result = helm.run(
        "template",
        "x",
        str(CHART),
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.service.enabled=false",
        check=False,
    )
    assert result.returncode != 0
    assert "metrics.serviceMonitor.enabled needs metrics.service.enabled" in result.stderr


# -- PodMonitor: the site agents' pods, as the operator makes them -------------------------------------------


def agent_pod_template() -> Mapping[str, Any]:
    site_obj = {
        "apiVersion": GROUP_VERSION,
        "kind": "Site",
        "metadata": {"name": "branch-nyc", "namespace": "wan", "uid": "6f1c2d3e-0000-4000-8000-000000000001"},
        "spec": {"wireguard": {"endpoints": ["203.0.113.10:51820"]}},
    }
    site = Site.model_validate(site_obj)
    deployment = workload.agent_deployment(
        site_obj, site, load_config({}), secret_name="branch-nyc-wireguard"
    )
    template: Mapping[str, Any] = deployment["spec"]["template"]
    return template


def test_pod_monitor_scrapes_the_agents_metrics_port(helm: Helm) -> None:
    objects = helm.template(sets=["metrics.podMonitor.enabled=true", "dashboard.enabled=true"])
    monitor = one(objects, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    agent = agent_pod_template()
    assert selects(selector, agent["metadata"]["labels"])
    ports = {port["name"]: port for port in agent["spec"]["containers"][0]["ports"]}
    assert ports["metrics"]["containerPort"] == 9102
    assert ports["metrics"]["protocol"] == "TCP"
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics"}]
    # Neither the operator's pods nor the dashboard's.
    for deployment in by_kind(objects, "Deployment"):
        assert not selects(selector, deployment["spec"]["template"]["metadata"]["labels"])


@pytest.mark.parametrize(
    ("sets", "namespaces"),
    [
        ([], {"matchNames": ["patronus-system"]}),
        (["watchNamespaces={east,west}"], {"matchNames": ["east", "west"]}),
        (["rbac.scope=cluster"], {"any": True}),
        (["rbac.scope=cluster", "watchNamespaces={east}"], {"matchNames": ["east"]}),
    ],
)
def test_pod_monitor_looks_where_the_operator_watches(
    helm: Helm, sets: list[str], namespaces: dict[str, Any]
) -> None:
    monitor = one(helm.template(sets=["metrics.podMonitor.enabled=true", *sets]), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == namespaces


# -- the dashboard -----------------------------------------------------------------------------------------


def test_dashboard_runs_patronus_dashboard_like_the_operator(helm: Helm) -> None:
    objects = helm.template(
        sets=["dashboard.enabled=true", "dashboard.prometheusUrl=http://prometheus-operated.monitoring:9090"]
    )
    operator = named(objects, "Deployment", "patronus-operator")
    dashboard = named(objects, "Deployment", "patronus-operator-dashboard")
    pod = pod_spec(dashboard)
    container = pod["containers"][0]
    assert container["image"] == pod_spec(operator)["containers"][0]["image"]
    assert container["args"] == [
        "dashboard",
        "--namespace=patronus-system",
        "--bind=0.0.0.0",
        "--port=8090",
        "--prometheus-url=http://prometheus-operated.monitoring:9090",
    ]
    # Non-root, read-only root filesystem, no capabilities: the operator's own settings.
    assert pod["securityContext"] == pod_spec(operator)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["ports"] == [{"name": "http", "containerPort": 8090, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["resources"]["limits"]["memory"]
    assert pod["serviceAccountName"] == "patronus-operator-dashboard"
    service = named(objects, "Service", "patronus-operator-dashboard")
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8090, "targetPort": "http", "protocol": "TCP"}
    ]


def test_dashboard_history_is_its_own_without_prometheus(helm: Helm) -> None:
    dashboard = named(
        helm.template(sets=["dashboard.enabled=true"]), "Deployment", "patronus-operator-dashboard"
    )
    assert not [arg for arg in pod_spec(dashboard)["containers"][0]["args"] if "prometheus" in arg]


@pytest.mark.parametrize(
    ("sets", "namespace"),
    [
        ([], "patronus-system"),
        (["watchNamespaces={east,west}"], "east"),
        (["watchNamespaces={east,west}", "dashboard.namespace=west"], "west"),
        (["rbac.scope=cluster"], "patronus-system"),
    ],
)
def test_dashboard_shows_one_namespace_and_may_read_it(helm: Helm, sets: list[str], namespace: str) -> None:
    objects = helm.template(sets=["dashboard.enabled=true", *sets])
    dashboard = named(objects, "Deployment", "patronus-operator-dashboard")
    assert f"--namespace={namespace}" in pod_spec(dashboard)["containers"][0]["args"]
    if "rbac.scope=cluster" not in sets:
        role = named(objects, "Role", "patronus-operator-dashboard")
        binding = named(objects, "RoleBinding", "patronus-operator-dashboard")
        assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == namespace


def test_operator_and_dashboard_select_only_their_own_pods(helm: Helm) -> None:
    objects = helm.template(sets=["dashboard.enabled=true"])
    operator = named(objects, "Deployment", "patronus-operator")
    dashboard = named(objects, "Deployment", "patronus-operator-dashboard")
    operator_pods = operator["spec"]["template"]["metadata"]["labels"]
    dashboard_pods = dashboard["spec"]["template"]["metadata"]["labels"]
    operator_selectors = [
        operator["spec"]["selector"]["matchLabels"],
        named(objects, "Service", "patronus-operator-metrics")["spec"]["selector"],
        one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    dashboard_selectors = [
        dashboard["spec"]["selector"]["matchLabels"],
        named(objects, "Service", "patronus-operator-dashboard")["spec"]["selector"],
    ]
    for selector in operator_selectors:
        assert selects(selector, operator_pods)
        assert not selects(selector, dashboard_pods)
    for selector in dashboard_selectors:
        assert selects(selector, dashboard_pods)
        assert not selects(selector, operator_pods)


def subject(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    account = named(objects, "ServiceAccount", "patronus-operator-dashboard")
    return [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "patronus-system"}]


def assert_read_only_for_what_it_watches(rules: Sequence[Mapping[str, Any]]) -> None:
    granted = {
        (group, resource) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]
    }
    watched = {(kind.group, kind.plural) for kind in DASHBOARD_KINDS.values()}
    assert watched <= granted
    assert granted == watched | {("sdwan.patronus.dev", "meshes")}
    for rule in rules:
        assert set(rule["verbs"]) == READ_VERBS, rule
        assert "resourceNames" not in rule


def test_dashboard_rbac_namespaced(helm: Helm) -> None:
    objects = helm.template(sets=["dashboard.enabled=true"])
    mine = dashboard_objects(objects)
    kinds = sorted(o["kind"] for o in mine)
    assert kinds == ["ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]
    delegator = one(objects, "ClusterRoleBinding")
    assert delegator["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:auth-delegator",
    }
    assert delegator["subjects"] == subject(objects)
    # Cluster-scoped, so named after the release's namespace too: one release per namespace never clash.
    assert delegator["metadata"]["name"] == "patronus-system:patronus-operator-dashboard:auth-delegator"
    assert_read_only_for_what_it_watches(named(objects, "Role", "patronus-operator-dashboard")["rules"])
    binding = named(objects, "RoleBinding", "patronus-operator-dashboard")
    assert binding["roleRef"]["name"] == "patronus-operator-dashboard"
    assert binding["subjects"] == subject(objects)


def test_dashboard_rbac_cluster(helm: Helm) -> None:
    objects = helm.template(sets=["dashboard.enabled=true", "rbac.scope=cluster"])
    kinds = sorted(o["kind"] for o in dashboard_objects(objects))
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    name = "patronus-system:patronus-operator-dashboard"
    assert_read_only_for_what_it_watches(named(objects, "ClusterRole", name)["rules"])
    binding = named(objects, "ClusterRoleBinding", name)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": name,
    }
    assert binding["subjects"] == subject(objects)
    delegator = named(objects, "ClusterRoleBinding", f"{name}:auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"


def test_dashboard_without_rbac_or_its_own_account(helm: Helm) -> None:
    objects = helm.template(
        sets=[
            "dashboard.enabled=true",
            "rbac.create=false",
            "dashboard.serviceAccount.create=false",
            "dashboard.serviceAccount.name=viewer",
        ]
    )
    assert sorted(o["kind"] for o in dashboard_objects(objects)) == ["Deployment", "Service"]
    dashboard = named(objects, "Deployment", "patronus-operator-dashboard")
    assert pod_spec(dashboard)["serviceAccountName"] == "viewer"
    result = helm.run(
        "template",
        "x",
        str(CHART),
        "--set",
        "dashboard.enabled=true",
        "--set",
        "dashboard.serviceAccount.create=false",
        check=False,
    )
    assert result.returncode != 0
    assert "dashboard.serviceAccount.name is required" in result.stderr


# -- values the schema refuses -------------------------------------------------------------------------------

BAD_VALUES = [
    ("metrics.serviceMonitor.enabled=maybe", "/metrics/serviceMonitor/enabled"),
    ("metrics.serviceMonitor.interval=30", "/metrics/serviceMonitor/interval"),
    ("metrics.podMonitor.scrapeTimeout=ten", "/metrics/podMonitor/scrapeTimeout"),
    ("metrics.podMonitor.labels.release=1", "/metrics/podMonitor/labels/release"),
    ("metrics.prometheusRule.groups=x", "groups"),
    ("dashboard.enabled=yes", "/dashboard/enabled"),
    ("dashboard.prometheusUrl=prometheus:9090", "/dashboard/prometheusUrl"),
    ("dashboard.prometheusUrl=http://p:9090/a b", "/dashboard/prometheusUrl"),
    ("dashboard.namespace=Bad_Name", "/dashboard/namespace"),
    ("dashboard.port=0", "/dashboard/port"),
    ("dashboard.replicaCount=0", "/dashboard/replicaCount"),
    ("dashboard.resources.limits.memory=1GB", "/dashboard/resources/limits/memory"),
    ("dashboard.auth=false", "auth"),
]


@pytest.mark.parametrize(("setting", "where"), BAD_VALUES, ids=[s for s, _ in BAD_VALUES])
def test_schema_refuses_bad_values(helm: Helm, setting: str, where: str) -> None:
    refusal = helm.schema_refusal(setting)
    assert where in refusal, refusal
