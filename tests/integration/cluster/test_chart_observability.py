"""The chart's optional observability objects against the real API server (no node: nothing runs).

prometheus-operator is not part of this cluster, so its ServiceMonitor, PodMonitor and PrometheusRule
CRDs are installed for this module from upstream's own files (the Go module pinned in
tools/prometheus-operator, see scripts/prometheus-operator-crds.sh) and removed afterwards: the API
server then validates the chart's objects against upstream's schemas, strictly (unknown fields fail).
The dashboard's RBAC is asked of the API server's authorizer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.conftest import Release, can_i
from tests.support.helm import Helm
from tests.support.manifests import REPO

MONITORING_CRDS = ("servicemonitors", "podmonitors", "prometheusrules")
EVERY_OPTION = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "30s", "scrapeTimeout": "10s", "labels": {"a": "b"}},
        "podMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "dashboard": {"enabled": True, "prometheusUrl": "http://prometheus-operated.monitoring:9090"},
}
SITES = "sites.sdwan.patronus.dev"


def upstream_crds() -> Path:
    result = subprocess.run(
        [str(REPO / "scripts" / "prometheus-operator-crds.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def monitoring_crds(control_plane: ControlPlane) -> Iterator[list[str]]:
    """prometheus-operator's three CRDs, established, for this module only."""
    directory = upstream_crds()
    files = [directory / f"monitoring.coreos.com_{plural}.yaml" for plural in MONITORING_CRDS]
    names = [f"{plural}.monitoring.coreos.com" for plural in MONITORING_CRDS]
    # Server-side: the CRDs are too large for client-side apply's last-applied annotation.
    control_plane.kubectl("apply", "--server-side", *[arg for f in files for arg in ("-f", str(f))])
    try:
        control_plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names]
        )
        yield names
    finally:
        control_plane.kubectl("delete", "crd", *names, "--ignore-not-found", "--wait=true")


def dry_run(control_plane: ControlPlane, text: str) -> subprocess.CompletedProcess[str]:
    """Strict server-side validation (unknown or misplaced fields fail), without creating anything."""
    return control_plane.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-f", "-", input_text=text, check=False
    )


@pytest.mark.parametrize("scope", ["namespaced", "cluster"])
def test_every_option_passes_the_api_servers_validation(
    control_plane: ControlPlane, monitoring_crds: list[str], namespace: str, scope: str, tmp_path: Path
) -> None:
    helm = Helm(home=tmp_path / "helm")
    text = helm.template_text(
        release="patronus-operator-dry",
        namespace=namespace,
        values={**EVERY_OPTION, "rbac": {"create": True, "scope": scope}},
    )
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    kinds = {doc["kind"] for doc in documents}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "Deployment", "ClusterRoleBinding"} <= kinds
    result = dry_run(control_plane, text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(documents), result.stdout


MISSPELT = [
    ("ServiceMonitor", ["spec", "endpoints", 0], "spec.endpoints[0].intervall"),
    ("PodMonitor", ["spec", "podMetricsEndpoints", 0], "spec.podMetricsEndpoints[0].scrape_timeout"),
    ("PrometheusRule", ["spec", "groups", 0, "rules", 0], "spec.groups[0].rules[0].expression"),
]


@pytest.mark.parametrize("case", MISSPELT, ids=[kind for kind, _, _ in MISSPELT])
def test_upstream_schemas_refuse_what_they_do_not_know(
    control_plane: ControlPlane,
    monitoring_crds: list[str],
    namespace: str,
    tmp_path: Path,
    case: tuple[str, list[str | int], str],
) -> None:
    """The validation above has teeth: one misspelt field in a rendered object fails it."""
    kind, path, field_path = case
    helm = Helm(home=tmp_path / "helm")
    objects = helm.template(release="patronus-operator-dry", namespace=namespace, values=EVERY_OPTION)
    target = next(obj for obj in objects if obj["kind"] == kind)
    node = target
    for step in path:
        node = node[step]
    node[field_path.rpartition(".")[2]] = "5s"
    result = dry_run(control_plane, yaml.safe_dump(target))
    assert result.returncode != 0
    assert f'unknown field "{field_path}"' in result.stderr, result.stderr


@pytest.mark.usefixtures("monitoring_crds")
def test_install_with_every_option_creates_what_the_dashboard_needs(
    control_plane: ControlPlane,
    helm: Helm,
    install: Callable[..., Release],
    make_namespace: Callable[[], str],
    namespace: str,
) -> None:
    release = install(EVERY_OPTION)
    status = json.loads(helm.run("status", release.name, "-n", namespace, "-o", "json").stdout)
    notes = status["info"]["notes"]
    assert f"kubectl port-forward -n {namespace} svc/{release.name}-dashboard 8090:8090" in notes
    assert "a ServiceMonitor (the operator), a PodMonitor (the site agents), a PrometheusRule" in notes
    dashboard = f"system:serviceaccount:{namespace}:{release.name}-dashboard"

    def can(*args: str) -> bool:
        return can_i(control_plane, dashboard, *args)

    # Who a token is, and what it may do: the API server answers (system:auth-delegator).
    assert can("create", "tokenreviews.authentication.k8s.io")
    assert can("create", "subjectaccessreviews.authorization.k8s.io")
    # What it shows, read-only, in its namespace only.
    for kind in ("sites", "paths", "policies", "meshes"):
        for verb in ("get", "list", "watch"):
            assert can(verb, f"{kind}.sdwan.patronus.dev", "-n", namespace)
        assert not can("patch", f"{kind}.sdwan.patronus.dev", "-n", namespace)
        assert not can("patch", f"{kind}.sdwan.patronus.dev", "--subresource=status", "-n", namespace)
    assert can("watch", "events", "-n", namespace)
    assert not can("create", "events", "-n", namespace)
    assert not can("get", "secrets", "-n", namespace)
    assert not can("list", SITES, "-n", make_namespace())
    assert not can("list", SITES, "--all-namespaces")
    # The monitoring objects exist as rendered; the PrometheusRule holds the rule file.
    rule = json.loads(
        control_plane.kubectl("get", "prometheusrule", release.name, "-n", namespace, "-o", "json").stdout
    )
    assert rule["spec"] == yaml.safe_load((REPO / "deploy" / "monitoring" / "rules.yaml").read_text())
    for kind, name in (("servicemonitor", release.name), ("podmonitor", f"{release.name}-agents")):
        control_plane.kubectl("get", kind, name, "-n", namespace)


def test_cluster_mode_dashboard_may_read_any_namespace_and_nothing_more(
    control_plane: ControlPlane,
    install: Callable[..., Release],
    make_namespace: Callable[[], str],
    namespace: str,
) -> None:
    release = install({"rbac": {"create": True, "scope": "cluster"}, "dashboard": {"enabled": True}})
    dashboard = f"system:serviceaccount:{namespace}:{release.name}-dashboard"
    elsewhere = make_namespace()
    for where in (namespace, elsewhere):
        assert can_i(control_plane, dashboard, "list", SITES, "-n", where)
        assert can_i(control_plane, dashboard, "watch", "events", "-n", where)
        assert not can_i(control_plane, dashboard, "get", "secrets", "-n", where)
        assert not can_i(control_plane, dashboard, "patch", SITES, "-n", where)
    assert can_i(control_plane, dashboard, "create", "tokenreviews.authentication.k8s.io")
