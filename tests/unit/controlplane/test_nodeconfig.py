"""The node's configuration: the settings without which this kind of machine runs no pod, every path
under the node's own directory, and the network's addresses consistent with each other."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path

from patronus.controlplane.nodeconfig import (
    PAUSE_IMAGE,
    NodeLayout,
    NodeNetwork,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)

LAYOUT = NodeLayout(Path("/tmp/run dir/node"))
NETWORK = NodeNetwork()


def test_containerd_keeps_everything_under_the_node_and_never_lowers_oom_score_adj() -> None:
    config = tomllib.loads(containerd_config(LAYOUT))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == PAUSE_IMAGE
    assert cri["cni"]["bin_dir"] == "/usr/lib/cni"
    paths = [
        config["root"],
        config["state"],
        config["grpc"]["address"],
        config["plugins"]["io.containerd.internal.v1.opt"]["path"],
        cri["containerd"]["runtimes"]["runc"]["options"]["Root"],
        cri["cni"]["conf_dir"],
    ]
    assert all(Path(path).is_relative_to(LAYOUT.root) for path in paths), paths


def test_kubelet_runs_on_cgroup_v1_without_touching_host_paths() -> None:
    config = kubelet_config(LAYOUT, NETWORK, client_ca=Path("/ca.crt"), cgroup_root="/patronus-node")
    assert config["failCgroupV1"] is False
    assert config["oomScoreAdj"] == 0
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["readOnlyPort"] == 0
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["address"] == NETWORK.node_address
    assert Path(config["podLogsDir"]).is_relative_to(LAYOUT.root)
    assert config["containerRuntimeEndpoint"] == f"unix://{LAYOUT.containerd_socket}"


def test_kube_proxy_uses_nftables_and_leaves_conntrack_sysctls_alone() -> None:
    config = kube_proxy_config(Path("/kp.kubeconfig"), NETWORK)
    assert config["mode"] == "nftables"
    assert config["clusterCIDR"] == NETWORK.pod_cidr
    assert set(config["conntrack"].values()) <= {0, "0s"}


def test_the_addresses_fit_together() -> None:
    link = ipaddress.ip_interface(f"{NETWORK.host_address}/{NETWORK.link_prefix}").network
    assert ipaddress.ip_address(NETWORK.node_address) in link
    pods, services = ipaddress.ip_network(NETWORK.pod_cidr), ipaddress.ip_network(NETWORK.service_cidr)
    assert not any(a.overlaps(b) for a, b in [(link, pods), (link, services), (pods, services)])
    assert ipaddress.ip_address(NETWORK.service_ip) == next(services.hosts())
    ipam = cni_conflist(LAYOUT, NETWORK)["plugins"][0]["ipam"]
    assert ipam["ranges"] == [[{"subnet": NETWORK.pod_cidr}]]
    assert Path(ipam["dataDir"]).is_relative_to(LAYOUT.root)
    assert len(NETWORK.host_link) <= 15
