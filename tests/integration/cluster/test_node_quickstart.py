"""The seed's Quick Start with in-cluster sites on a node that runs their agents, installed with Helm.

Two Sites with generated keys get agent pods that become Running and Ready with their WireGuard
interface, report heartbeats and go Active (with Events in `kubectl describe site`); in a Mesh they
handshake and their Paths report `up` with a measured latency. A Policy change reaches both agents with
no restart and shows in their nftables ruleset. The seed's uninstall list removes everything, and each
agent tears its data plane down before it exits.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.seed import (
    SYSTEM,
    Shell,
    diagnosis,
    get_json,
    is_ready,
    preload_images,
    remove_patronus_system,
    wait_for_operator,
)
from tests.integration.cluster.test_node_lifecycle import SEED_UNINSTALL, apply, leftovers
from tests.support.helm import CHART, Helm
from tests.support.manifests import REPO
from tests.support.waiting import eventually_sync

GV = "sdwan.patronus.dev/v1alpha1"
SITES = ("branch-a", "branch-b")
SEED_POLICY = """
kubectl apply -f - <<EOF
apiVersion: sdwan.patronus.dev/v1alpha1
kind: Policy
metadata:
  name: http-traffic
  namespace: patronus-system
spec:
  priority: {priority}
  match:
    protocol: tcp
    dstPortRange: "{ports}"
  action:
    type: route
    qos:
      class: business-critical
EOF
"""


MESH = {
    "apiVersion": GV,
    "kind": "Mesh",
    "metadata": {"name": "my-mesh", "namespace": SYSTEM},
    "spec": {"sites": list(SITES), "topology": "full-mesh"},
}


def in_cluster_site(name: str, endpoint: str) -> dict[str, Any]:
    """A Site with no public key: the operator generates its keys and runs its agent in a pod."""
    return {
        "apiVersion": GV,
        "kind": "Site",
        "metadata": {"name": name, "namespace": SYSTEM},
        "spec": {
            "location": f"{name} in the cluster",
            "wireguard": {"listenPort": 51820, "endpoints": [endpoint]},
            # Small enough for two agents and the operator on a 2-core node.
            "resources": {"cpu": "100m", "memory": "128Mi"},
        },
    }


def agent_pod(cluster: ControlPlane, site: str) -> dict[str, Any] | None:
    deployment = get_json(cluster, "deployment", f"{site}-agent", "-n", SYSTEM)
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    pods = [
        p
        for p in get_json(cluster, "pods", "-n", SYSTEM, "-l", selector)["items"]
        if not p["metadata"].get("deletionTimestamp")
    ]
    return pods[0] if len(pods) == 1 else None


def exec_in(cluster: ControlPlane, pod: dict[str, Any], *command: str) -> str:
    return cluster.kubectl("exec", "-n", SYSTEM, pod["metadata"]["name"], "--", *command).stdout


def site_status(cluster: ControlPlane, site: str) -> dict[str, Any]:
    status: dict[str, Any] = get_json(cluster, "site", site, "-n", SYSTEM).get("status") or {}
    return status


@pytest.fixture(scope="module")
def shell(node_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    preload_images(node_cluster)
    remove_patronus_system(node_cluster)
    shell = Shell(
        node_cluster, Helm(home=tmp_path_factory.mktemp("helm"), kubeconfig=node_cluster.kubeconfig)
    )
    shell.run(f"helm install patronus-operator {CHART} --namespace patronus-system --create-namespace")
    wait_for_operator(node_cluster)
    yield shell
    node_cluster.kubectl("delete", "namespace", SYSTEM, "--ignore-not-found", "--wait=true", "--timeout=180s")
    node_cluster.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))


@pytest.fixture(scope="module")
def agents(shell: Shell) -> dict[str, dict[str, Any]]:
    """Both sites in a Mesh with Ready agents (an agent is ready once a tunnel is up), each dialling the
    other's WireGuard Service (its ClusterIP)."""
    cluster = shell.cluster
    apply(cluster, *(in_cluster_site(site, "192.0.2.1:51820") for site in SITES))
    addresses = {
        site: eventually_sync(
            lambda site=site: get_json(cluster, "service", f"{site}-wg", "-n", SYSTEM)["spec"].get(
                "clusterIP"
            ),
            timeout=60,
            what=f"{site}'s WireGuard Service",
        )
        for site in SITES
    }
    apply(cluster, *(in_cluster_site(site, f"{addresses[site]}:51820") for site in SITES), MESH)
    pods = {}
    for site in SITES:
        try:
            pods[site] = eventually_sync(
                lambda site=site: (pod := agent_pod(cluster, site)) and is_ready(pod) and pod,
                timeout=180,
                what=f"{site}'s agent Running and Ready",
            )
        except AssertionError as error:
            agents = cluster.kubectl(
                "logs", "-n", SYSTEM, "-l", "app.kubernetes.io/name=patronus-agent", "--tail=30", check=False
            )
            raise AssertionError(f"{error}\n{diagnosis(cluster)}\n{agents.stdout}") from None
    return pods


def test_agent_pods_run_their_interface_and_report(shell: Shell, agents: dict[str, dict[str, Any]]) -> None:
    cluster = shell.cluster
    for site, pod in agents.items():
        assert exec_in(cluster, pod, "wg", "show", "interfaces").split(), f"{site} has no WireGuard interface"
        eventually_sync(
            lambda site=site: site_status(cluster, site).get("lastHeartbeatTime"),
            timeout=60,
            what=f"{site}'s heartbeat",
        )
        eventually_sync(
            lambda site=site: site_status(cluster, site).get("phase") == "Active",
            timeout=90,
            what=f"{site} Active",
        )
        described = shell.run(f"kubectl describe site {site} -n patronus-system").stdout
        assert "SiteActive" in described, described


def test_mesh_handshakes_and_paths_measure_latency(shell: Shell, agents: dict[str, dict[str, Any]]) -> None:
    cluster = shell.cluster
    apply(
        cluster,
        {
            "apiVersion": GV,
            "kind": "Mesh",
            "metadata": {"name": "my-mesh", "namespace": SYSTEM},
            "spec": {"sites": list(SITES), "topology": "full-mesh"},
        },
    )

    def paths_up() -> list[dict[str, Any]] | None:
        paths = get_json(cluster, "paths", "-n", SYSTEM)["items"]
        good = [
            p
            for p in paths
            if (p.get("status") or {}).get("state") == "up" and p["status"]["health"]["latencyMs"] > 0
        ]
        return paths if len(paths) == 2 and len(good) == 2 else None

    try:
        paths = eventually_sync(paths_up, timeout=120, what="both Paths up with a latency")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{diagnosis(cluster)}") from None
    assert all(p["status"]["health"]["latencyMs"] < 100 for p in paths)
    for site, pod in agents.items():
        handshakes = exec_in(cluster, pod, "wg", "show", "all", "latest-handshakes")
        assert any(int(line.split()[-1]) > 0 for line in handshakes.splitlines()), f"{site}: {handshakes}"


def test_policy_change_reaches_agents_without_restart(
    shell: Shell, agents: dict[str, dict[str, Any]]
) -> None:
    cluster = shell.cluster
    shell.run(SEED_POLICY.format(priority=50, ports="80,443"))
    rulesets = {
        site: lambda pod=pod: exec_in(cluster, pod, "nft", "list", "ruleset") for site, pod in agents.items()
    }
    for site, ruleset in rulesets.items():
        eventually_sync(
            lambda ruleset=ruleset: "http-traffic" in ruleset() and "443" in ruleset(),
            timeout=60,
            what=f"the policy in {site}'s ruleset",
        )
    shell.run(SEED_POLICY.format(priority=50, ports="80,443,8443"))
    for site, ruleset in rulesets.items():
        eventually_sync(
            lambda ruleset=ruleset: "8443" in ruleset(),
            timeout=60,
            what=f"the changed policy in {site}'s ruleset",
        )
    for site, before in agents.items():
        now = agent_pod(cluster, site)
        assert now is not None
        assert now["metadata"]["uid"] == before["metadata"]["uid"], f"{site}'s agent pod was replaced"
        assert now["status"]["containerStatuses"][0]["restartCount"] == 0


def test_seed_uninstall_with_agents(shell: Shell, agents: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    cluster = shell.cluster
    # Follow each agent's log to its end, to see it tear its data plane down before exiting.
    followers = {
        site: subprocess.Popen(
            [
                str(cluster.binaries.kubectl),
                f"--kubeconfig={cluster.kubeconfig}",
                "logs",
                "-f",
                "-n",
                SYSTEM,
                pod["metadata"]["name"],
            ],
            stdout=(tmp_path / f"{site}.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        for site, pod in agents.items()
    }
    try:
        shell.run(SEED_UNINSTALL, timeout=420)
        for process in followers.values():
            process.wait(60)
    finally:
        for process in followers.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    for site in agents:
        lines = [
            json.loads(line)
            for line in (tmp_path / f"{site}.log").read_text().splitlines()
            if line.startswith("{")
        ]
        events = [record.get("event") for record in lines]
        assert "agent stopped" in events, events[-10:]
        assert "tearing the data plane down failed" not in events
    assert leftovers(cluster) == []
