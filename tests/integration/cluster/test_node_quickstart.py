"""The seed's Quick Start on a node that runs the agents, installed with Helm, step by step.

1. The seed's Site, verbatim (`$(wg genkey | wg pubkey)`: an external site, its agent on a branch box):
   listed and described, Pending, no agent in the cluster.
2. Two Sites with generated keys: each gets an agent pod that becomes Running and Ready with its
   WireGuard interface, reports heartbeats and goes Active, with Events in `kubectl describe site`.
3. The seed's Mesh over those two (the seed's lists `another-site`, which does not exist): each Site's
   endpoint is its own WireGuard Service's ClusterIP (no cluster DNS here; the peer pod reaches it
   through kube-proxy on this node, and it stays when a pod is replaced), so they handshake and their
   Paths report `up` with a measured latency.
4. The seed's Policy, then a change to it: both reach the agents' nftables ruleset with no pod restart.
5. Both agent pods deleted at once come back Ready with their Paths up (peers reach an agent through
   its Service before it is Ready, which it becomes only once a tunnel is up).
6. The seed's uninstall list: nothing of Patronus is left, and each agent logs that it removed its
   interface before it exits.

The seconds each step took (pod Ready after the Site was created, handshake and Paths up after the Mesh,
new pods Ready after the old ones were deleted) are printed (`-s` shows them). Every wait is bounded,
names what it waited for, and on failure prints the pods, the events and each agent's last log lines.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.seed import (
    SYSTEM,
    Shell,
    diagnosis,
    is_ready,
    preload_images,
    remove_patronus_system,
    wait_for_operator,
)
from tests.integration.cluster.test_node_install import QUICK_START_SITE
from tests.integration.cluster.test_node_lifecycle import SEED_UNINSTALL, apply, leftovers
from tests.support.helm import CHART, Helm
from tests.support.manifests import REPO
from tests.support.waiting import eventually_sync

# The node's start, the images' import and the bounded waits below can pass 300 s on a loaded machine.
pytestmark = pytest.mark.timeout(600)
GV = "sdwan.patronus.dev/v1alpha1"
SITES = ("branch-a", "branch-b")
AGENT_SELECTOR = "app.kubernetes.io/name=patronus-agent"
UNREACHABLE = "192.0.2.1:51820"  # TEST-NET-1: a placeholder until the Services have addresses
SEED_POLICY = """
kubectl apply -f - <<EOF
apiVersion: sdwan.patronus.dev/v1alpha1
kind: Policy
metadata:
  name: http-traffic
  namespace: patronus-system
spec:
  priority: 50
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
TIMINGS: dict[str, float] = {}


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


def maybe_json(cluster: ControlPlane, *args: str) -> Any:
    """`kubectl get ... -o json`, or None while the object does not exist (yet)."""
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def agent_pod(cluster: ControlPlane, site: str) -> dict[str, Any] | None:
    """The site's one agent pod that is not being deleted, if there is exactly one."""
    pods = maybe_json(
        cluster, "pods", "-n", SYSTEM, "-l", f"app.kubernetes.io/instance={site},{AGENT_SELECTOR}"
    )
    live = [p for p in (pods or {"items": []})["items"] if not p["metadata"].get("deletionTimestamp")]
    return live[0] if len(live) == 1 else None


def exec_in(cluster: ControlPlane, pod: dict[str, Any], *command: str) -> str:
    return cluster.kubectl("exec", "-n", SYSTEM, pod["metadata"]["name"], "--", *command).stdout


def site_status(cluster: ControlPlane, site: str) -> dict[str, Any]:
    found = maybe_json(cluster, "site", site, "-n", SYSTEM) or {}
    status: dict[str, Any] = found.get("status") or {}
    return status


def agent_logs(cluster: ControlPlane, tail: int = 40) -> str:
    """Each agent pod's last lines, current and previous container, prefixed with the pod's name."""
    parts = []
    for previous in ("--previous=false", "--previous=true"):
        result = cluster.kubectl(
            "logs", "-n", SYSTEM, "-l", AGENT_SELECTOR, f"--tail={tail}", "--prefix", previous, check=False
        )
        parts.append(f"-- agent logs {previous}:\n{result.stdout}{result.stderr}")
    return "\n".join(parts)


def wait(cluster: ControlPlane, check: Callable[[], Any], timeout: float, what: str) -> Any:
    """``eventually_sync`` that, on timeout, adds what a user would look at: pods, events, logs."""
    try:
        return eventually_sync(check, timeout=timeout, what=what, interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{diagnosis(cluster)}\n{agent_logs(cluster)}") from None


def timed(name: str, start: float) -> None:
    TIMINGS[name] = round(time.monotonic() - start, 1)
    print(f"{name}: {TIMINGS[name]} s")


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
    print(f"timings: {TIMINGS}")
    node_cluster.kubectl("delete", "namespace", SYSTEM, "--ignore-not-found", "--wait=true", "--timeout=180s")
    node_cluster.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))


@pytest.fixture(scope="module")
def agents(shell: Shell) -> dict[str, dict[str, Any]]:
    """The in-cluster Sites (endpoints not yet reachable, no Mesh), each with its agent Running and Ready."""
    cluster = shell.cluster
    start = time.monotonic()
    apply(cluster, *(in_cluster_site(site, UNREACHABLE) for site in SITES))
    pods = {}
    for site in SITES:
        pods[site] = wait(
            cluster,
            lambda site=site: (pod := agent_pod(cluster, site)) and is_ready(pod) and pod,
            timeout=180,
            what=f"{site}'s agent Running and Ready",
        )
        timed(f"{site} agent Ready after the Site was created", start)
    return pods


@pytest.fixture(scope="module")
def mesh(shell: Shell, agents: dict[str, dict[str, Any]]) -> float:
    """Each Site's endpoint set to its WireGuard Service's ClusterIP, then the Mesh; when it was applied."""
    cluster = shell.cluster
    addresses = {
        site: wait(
            cluster,
            lambda site=site: (
                (maybe_json(cluster, "service", f"{site}-wg", "-n", SYSTEM) or {}).get("spec") or {}
            ).get("clusterIP"),
            timeout=60,
            what=f"{site}'s WireGuard Service with a ClusterIP",
        )
        for site in SITES
    }
    start = time.monotonic()
    apply(cluster, *(in_cluster_site(site, f"{addresses[site]}:51820") for site in SITES), MESH)
    return start


def test_the_seed_site_is_external_and_waits_for_its_agent(shell: Shell) -> None:
    cluster = shell.cluster
    shell.run(QUICK_START_SITE)
    assert "my-site" in shell.run("kubectl get sites -n patronus-system").stdout
    wait(
        cluster,
        lambda: site_status(cluster, "my-site").get("observedGeneration") == 1,
        60,
        "my-site reconciled",
    )
    described = shell.run("kubectl describe site my-site -n patronus-system").stdout
    assert re.search(r"Phase:\s+Pending", described), described
    assert "AgentReporting" in described, described
    # Its agent runs on the branch box: nothing runs for it in the cluster.
    assert maybe_json(cluster, "deployment", "my-site-agent", "-n", SYSTEM) is None


def test_agent_pods_run_their_interface_and_report(shell: Shell, agents: dict[str, dict[str, Any]]) -> None:
    cluster = shell.cluster
    for site, pod in agents.items():
        assert "wg-default" in exec_in(cluster, pod, "wg", "show", "interfaces").split(), site
        assert "wg-default" in exec_in(cluster, pod, "ip", "-brief", "link", "show", "type", "tun"), site
        wait(
            cluster,
            lambda site=site: site_status(cluster, site).get("lastHeartbeatTime"),
            60,
            f"{site}'s heartbeat",
        )
        wait(
            cluster,
            lambda site=site: site_status(cluster, site).get("phase") == "Active",
            90,
            f"{site} Active",
        )
        described = shell.run(f"kubectl describe site {site} -n patronus-system").stdout
        events = described.split("Events:", 1)[-1]
        assert "SiteActive" in events, described


def handshakes(cluster: ControlPlane, pod: dict[str, Any]) -> list[int]:
    lines = exec_in(cluster, pod, "wg", "show", "all", "latest-handshakes").splitlines()
    return [int(line.split()[-1]) for line in lines]


def paths_up(cluster: ControlPlane) -> list[dict[str, Any]] | None:
    paths = (maybe_json(cluster, "paths", "-n", SYSTEM) or {"items": []})["items"]
    good = [
        p
        for p in paths
        if (p.get("status") or {}).get("state") == "up" and p["status"]["health"].get("latencyMs", 0) > 0
    ]
    return paths if len(paths) == 2 and len(good) == 2 else None


def test_mesh_handshakes_and_paths_measure_latency(
    shell: Shell, agents: dict[str, dict[str, Any]], mesh: float
) -> None:
    cluster = shell.cluster
    for site, pod in agents.items():
        wait(
            cluster, lambda pod=pod: any(t > 0 for t in handshakes(cluster, pod)), 120, f"{site}'s handshake"
        )
        timed(f"{site} handshake after the Mesh", mesh)
    paths = wait(cluster, lambda: paths_up(cluster), 120, "both Paths up with a latency")
    timed("both Paths up after the Mesh", mesh)
    assert all(0 < p["status"]["health"]["latencyMs"] < 100 for p in paths), paths
    assert {(p["spec"]["source"]["siteRef"], p["spec"]["destination"]["siteRef"]) for p in paths} == {
        ("branch-a", "branch-b"),
        ("branch-b", "branch-a"),
    }
    for site in SITES:
        wait(
            cluster,
            lambda site=site: is_ready(agent_pod(cluster, site) or {"status": {}}),
            60,
            f"{site} Ready",
        )


def ruleset(cluster: ControlPlane, pod: dict[str, Any]) -> str:
    return exec_in(cluster, pod, "nft", "list", "table", "inet", "patronus")


def test_policy_change_reaches_agents_without_restart(
    shell: Shell, agents: dict[str, dict[str, Any]], mesh: float
) -> None:
    cluster = shell.cluster
    shell.run(SEED_POLICY.format(ports="80,443"))
    for site, pod in agents.items():
        wait(
            cluster,
            lambda pod=pod: "http-traffic" in (text := ruleset(cluster, pod)) and "443" in text,
            60,
            f"the policy in {site}'s ruleset",
        )
    shell.run(SEED_POLICY.format(ports="80,443,8443"))
    for site, pod in agents.items():
        wait(
            cluster,
            lambda pod=pod: "8443" in ruleset(cluster, pod),
            60,
            f"the changed policy in {site}'s ruleset",
        )
    for site, before in agents.items():
        now = agent_pod(cluster, site)
        assert now is not None, site
        assert now["metadata"]["uid"] == before["metadata"]["uid"], f"{site}'s agent pod was replaced"
        assert now["status"]["containerStatuses"][0]["restartCount"] == 0, now["status"]


def test_agents_restarted_together_find_each_other_again(shell: Shell, mesh: float) -> None:
    """Both agent pods replaced at once (a node reboot, say): each new agent is Ready only once a tunnel
    is up, and peers reach it through its Service before that, so the pair comes back on its own."""
    cluster = shell.cluster
    old = {site: (agent_pod(cluster, site) or {}).get("metadata", {}).get("uid") for site in SITES}
    start = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", SYSTEM, "-l", AGENT_SELECTOR, "--wait=false")
    for site in SITES:
        wait(
            cluster,
            lambda site=site: (
                (pod := agent_pod(cluster, site)) and pod["metadata"]["uid"] != old[site] and is_ready(pod)
            ),
            180,
            f"{site}'s new agent Running and Ready",
        )
        timed(f"{site} new agent Ready after both pods were deleted", start)
    wait(cluster, lambda: paths_up(cluster), 120, "both Paths up again")


def follow_logs(cluster: ControlPlane, pod: dict[str, Any], path: Path) -> subprocess.Popen[bytes]:
    command = [str(cluster.binaries.kubectl), f"--kubeconfig={cluster.kubeconfig}", "logs", "-f"]
    return subprocess.Popen(
        [*command, "-n", SYSTEM, pod["metadata"]["name"]],
        stdout=path.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_seed_uninstall_with_agents(shell: Shell, mesh: float, tmp_path: Path) -> None:
    cluster = shell.cluster
    pods = {
        site: wait(cluster, lambda site=site: agent_pod(cluster, site), 60, f"{site}'s agent")
        for site in SITES
    }
    # Follow each agent's log to its end, to see it tear its data plane down before exiting.
    followers = {site: follow_logs(cluster, pod, tmp_path / f"{site}.log") for site, pod in pods.items()}
    try:
        shell.run(SEED_UNINSTALL, timeout=420)
        for process in followers.values():
            process.wait(60)
    finally:
        for process in followers.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)
    for site in SITES:
        text = (tmp_path / f"{site}.log").read_text()
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        events = [record.get("event") for record in records]
        assert "tearing the data plane down failed" not in events, text[-3000:]
        removed = [r for r in records if r.get("event") == "data plane removed"]
        assert removed, text[-3000:]
        assert "wg-default" in removed[-1]["interfaces"], removed
        assert "agent stopped" in events[events.index("data plane removed") :], text[-3000:]
    assert leftovers(cluster) == []
