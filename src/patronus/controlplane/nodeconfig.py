"""What a node's components are told: containerd, CNI, kubelet and kube-proxy configuration as values.

Pure rendering, no I/O: :mod:`patronus.controlplane.node` writes these and starts the processes. The
settings are the ones this kind of machine needs (cgroup v1 with ``failCgroupV1: false``, a root that
cannot lower ``oom_score_adj``, no registry), and every path lives under the node's own directory, so
that stopping the node can remove all of it.

The network (addresses in :class:`NodeNetwork`): the node lives in a network namespace of its own,
joined to the machine by a veth pair. The API server binds to the machine's end of it (never to
127.0.0.1 only, since pods could not reach that, nor to an external address), the kubelet serves on
the node's end, and pods sit on a CNI bridge behind the node's end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "patronus-node"
PAUSE_IMAGE = "docker.io/library/patronus-pause:latest"
CONTAINERD_NAMESPACE = "k8s.io"
CNI_BIN_DIR = Path("/usr/lib/cni")  # Debian's containernetworking-plugins


@dataclass(frozen=True, slots=True)
class NodeNetwork:
    """Names and addresses of the node's network; one node per machine at a time uses them."""

    netns: str = "patronus-node"
    host_link: str = "ptn-node"  # the machine's end of the veth pair (at most 15 characters)
    node_link: str = "eth0"  # the node's end, inside its namespace
    host_address: str = "10.250.0.1"  # where the API server binds
    node_address: str = "10.250.0.2"  # the Node's InternalIP; the kubelet serves here
    link_prefix: int = 30
    pod_cidr: str = "10.244.0.0/24"
    service_cidr: str = "10.0.0.0/24"
    service_ip: str = "10.0.0.1"  # the `kubernetes` Service: the first address of service_cidr
    bridge: str = "cni0"


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """Every file and directory of one node, under ``root``."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def runc_root(self) -> Path:
        return self.root / "containerd" / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def credentials(self) -> Path:
        return self.root / "credentials"


def _toml_string(value: str | Path) -> str:
    # A TOML basic string is a JSON string for the characters paths and names use.
    return json.dumps(str(value))


def containerd_config(layout: NodeLayout) -> str:
    """containerd 1.6 (config version 2): CRI with runc and CNI, every directory under the node's."""
    s = _toml_string
    return f"""version = 2
root = {s(layout.containerd_root)}
state = {s(layout.containerd_state)}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = {s(layout.containerd_socket)}

[plugins."io.containerd.internal.v1.opt"]
  path = {s(layout.containerd_root / "opt")}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {s(PAUSE_IMAGE)}
  # root here cannot lower oom_score_adj; without this every sandbox fails in runc's init.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {s(layout.runc_root)}

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = {s(CNI_BIN_DIR)}
  conf_dir = {s(layout.cni_conf_dir)}
  max_conf_num = 1
"""


def cni_conflist(layout: NodeLayout, network: NodeNetwork) -> dict[str, Any]:
    """A bridge with host-local addresses (state under the node's directory) and portmap for hostPorts."""
    return {
        "cniVersion": "0.4.0",
        "name": "patronus",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                # Pods only talk to each other and to the API server, which routes back to the pod CIDR.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(layout.cni_data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(
    layout: NodeLayout, network: NodeNetwork, *, client_ca: Path, cgroup_root: str
) -> dict[str, Any]:
    """KubeletConfiguration for cgroup v1, no swap check, webhook authn/authz, nothing on the host's paths."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.node_address,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        # Kubernetes 1.35+ refuses cgroup v1 unless told; this machine has nothing else.
        "failCgroupV1": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "podLogsDir": str(layout.pod_logs),
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
        "rotateCertificates": False,
        "serializeImagePulls": False,
        # Images come from archives only: never collect them, and evict only on a nearly full disk.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "maxPods": 110,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(kubeconfig: Path, network: NodeNetwork) -> dict[str, Any]:
    """kube-proxy in nftables mode; conntrack values of 0 leave the machine's sysctls alone."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": network.pod_cidr,
        "detectLocalMode": "ClusterCIDR",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "oomScoreAdj": 0,
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
