"""The seed's Installation and Troubleshooting sections, verbatim, on a cluster whose node runs the pods.

The images are given the names the chart uses by default (as a cluster pulls them from the registry;
none is reachable here), so `helm install` and `kubectl apply -f deploy/` run with no value changed.
The tests in this file share one Helm install; the last one uninstalls it (test_node_uninstall.py
checks the seed's whole uninstall list).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.seed import (
    SERVICE_ACCOUNT,
    SYSTEM,
    Shell,
    assert_operator_logs,
    default_image,
    get_json,
    is_leader,
    lease,
    operator_pods,
    preload_images,
    remove_patronus_system,
    wait_for_operator,
)
from tests.support.helm import Helm
from tests.support.manifests import REPO

SEED_HELM_INSTALL = """
helm repo add patronus {url}
helm repo update

helm install patronus-operator patronus/patronus-operator \\
  --namespace patronus-system \\
  --create-namespace

kubectl get pods -n patronus-system
"""


@pytest.fixture(scope="module")
def shell(node_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Shell:
    preload_images(node_cluster)
    helm = Helm(home=tmp_path_factory.mktemp("helm"), kubeconfig=node_cluster.kubeconfig)
    return Shell(node_cluster, helm)


@pytest.fixture(scope="module")
def installed(shell: Shell, chart_repository_module: str) -> Iterator[float]:
    """The seed's Helm install; yields the seconds from `helm install` to every replica Ready."""
    remove_patronus_system(shell.cluster)
    start = time.monotonic()
    output = shell.run(SEED_HELM_INSTALL.format(url=chart_repository_module)).stdout
    assert "STATUS: deployed" in output
    wait_for_operator(shell.cluster)
    seconds = time.monotonic() - start
    print(f"helm install to all replicas Ready: {seconds:.1f} s")
    yield seconds
    shell.run("helm uninstall patronus-operator -n patronus-system || true")
    remove_patronus_system(shell.cluster)


def test_operator_replicas_run_and_one_leads(shell: Shell, installed: float) -> None:
    cluster = shell.cluster
    table = shell.run("kubectl get pods -n patronus-system").stdout
    rows = [line.split() for line in table.splitlines()[1:]]
    assert len(rows) == 2, table
    assert all(row[1] == "1/1" and row[2] == "Running" for row in rows), table
    pods = [pod["metadata"]["name"] for pod in operator_pods(cluster)]
    for pod in operator_pods(cluster):
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        assert pod["spec"]["containers"][0]["image"] == default_image("operator")
    holder = lease(cluster)["spec"]["holderIdentity"]
    assert holder in pods
    assert [pod for pod in pods if is_leader(cluster, pod)] == [holder]


def test_operator_logs_by_label(shell: Shell, installed: float) -> None:
    assert_operator_logs(shell)
    tail = shell.run("kubectl logs -n patronus-system -l app=patronus-operator --tail=100").stdout
    assert 0 < len(tail.splitlines()) <= 200  # at most 100 per replica


def test_troubleshooting_commands_answer(shell: Shell, installed: float) -> None:
    # Operator not starting: RBAC. Creating Sites is the user's right, not the operator's (a "no" by design);
    # what it needs answers "yes".
    seed_check = shell.run(
        f"kubectl auth can-i create sites.sdwan.patronus.dev --as={SERVICE_ACCOUNT}", check=False
    )
    assert seed_check.stdout.strip() == "no"
    for needed in (
        "list sites.sdwan.patronus.dev -n patronus-system",
        "patch sites.sdwan.patronus.dev --subresource=status -n patronus-system",
        "create paths.sdwan.patronus.dev -n patronus-system",
    ):
        assert shell.run(f"kubectl auth can-i {needed} --as={SERVICE_ACCOUNT}").stdout.strip() == "yes"
    # Resources not reconciling.
    deployment = shell.run("kubectl get deployment patronus-operator -n patronus-system").stdout
    assert deployment.splitlines()[1].split()[:2] == ["patronus-operator", "2/2"], deployment
    # CRD installation issues.
    crds = shell.run("kubectl get crds | grep sdwan.patronus.dev").stdout.splitlines()
    assert sorted(line.split()[0] for line in crds) == [
        "meshes.sdwan.patronus.dev",
        "paths.sdwan.patronus.dev",
        "policies.sdwan.patronus.dev",
        "sites.sdwan.patronus.dev",
    ]
    reinstall = shell.run(f"kubectl apply -f {REPO / 'deploy' / 'crds'}/").stdout
    assert reinstall.count("unchanged") + reinstall.count("configured") == 4, reinstall


def test_kubectl_describe_site_shows_its_state(shell: Shell, installed: float) -> None:
    shell.run(QUICK_START_SITE)
    sites = shell.run("kubectl get sites -n patronus-system").stdout
    assert "my-site" in sites
    cluster = shell.cluster
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = get_json(cluster, "site", "my-site", "-n", SYSTEM).get("status") or {}
        if status.get("observedGeneration") == 1:
            break
        time.sleep(0.5)
    described = shell.run("kubectl describe site my-site -n patronus-system").stdout
    # An external site: its agent runs on a branch box, so it waits for that agent's first report.
    assert re.search(r"Phase:\s+Pending", described), described
    for condition in ("KeysReady", "AddressAssigned", "AgentReporting"):
        assert condition in described, described
    assert "Overlay Address:" in described
    assert "Events:" in described
    shell.run("kubectl delete site my-site -n patronus-system")


QUICK_START_SITE = """
kubectl apply -f - <<EOF
apiVersion: sdwan.patronus.dev/v1alpha1
kind: Site
metadata:
  name: my-site
  namespace: patronus-system
spec:
  location: "My Location"
  wireguard:
    publicKey: "$(wg genkey | wg pubkey)"
    listenPort: 51820
    endpoints:
      - "203.0.113.1:51820"
  resources:
    cpu: "2"
    memory: "4Gi"
  mesh:
    enabled: true
EOF
"""
