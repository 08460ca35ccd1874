"""A node that runs pods beside the local control plane: containerd (with runc and the CNI bridge),
kubelet, kube-proxy (nftables mode) and kube-scheduler, in a network namespace of its own.

The control plane drives it in three steps, because the API server must bind to the node's link::

    node = Node(binaries, images)
    node.prepare()                      # lock, sweep a killed run, namespace + veth (before the API server)
    node.start(server, pki, kubeconfig) # the processes, the images imported; returns when the Node is Ready
    node.stop()                         # pods, processes, mounts, cgroups, namespace, sysctls: all undone
    node.release()                      # the lock, once the API server on the node's link has stopped

One node runs on a machine at a time (it owns fixed names: namespace, link, cgroup); ``prepare`` waits
up to ``lock_timeout`` seconds for another to finish, and removes what a killed one left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from patronus.controlplane import hoststate, processes
from patronus.controlplane.binaries import Binaries, ControlPlaneError, tail
from patronus.controlplane.certs import PkiFiles, issue_client_cert
from patronus.controlplane.images import ImageSet
from patronus.controlplane.kubeconfig import file_kubeconfig
from patronus.controlplane.nodeconfig import (
    CONTAINERD_NAMESPACE,
    NODE_NAME,
    NodeLayout,
    NodeNetwork,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
)

CGROUP_NAME = "patronus-node"
_POD_DRAIN_TIMEOUT_S = 30.0
# The node's component identities; RBAC binds each to the ClusterRole Kubernetes ships for it.
_IDENTITIES = {
    "kubelet": (f"system:node:{NODE_NAME}", "system:nodes"),
    "kube-proxy": ("system:kube-proxy", None),
    "kube-scheduler": ("system:kube-scheduler", None),
}


def node_lock_timeout_s() -> float:
    """How long a node waits for another on this machine to stop: ``$PATRONUS_NODE_LOCK_TIMEOUT``, or 0."""
    return float(os.environ.get("PATRONUS_NODE_LOCK_TIMEOUT") or 0)


class Node:
    """The node's processes and the machine state they need; see the module docstring for the order."""

    def __init__(
        self,
        binaries: Binaries,
        images: ImageSet,
        *,
        network: NodeNetwork | None = None,
        lock_path: Path,
        lock_timeout: float = 0.0,
        startup_timeout: float = 120.0,
        tie_to_parent: bool = True,
    ) -> None:
        self.binaries = binaries
        self.images = images
        self.network = network or NodeNetwork()
        self.lock_path = lock_path
        self.lock_timeout = lock_timeout
        self.startup_timeout = startup_timeout
        self.tie_to_parent = tie_to_parent
        self.layout: NodeLayout | None = None
        self._lock_fd: int | None = None
        self._before: hoststate.HostSnapshot | None = None
        self._admin_kubeconfig: Path | None = None
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # -- lifecycle ----------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Take the machine's node lock, sweep what a killed node left, and make the network."""
        self._lock()
        sweep(self.network)
        self._before = hoststate.snapshot()
        hoststate.make_network(self.network)

    def start(self, directory: Path, server: str, pki: PkiFiles, admin_kubeconfig: Path) -> None:
        """Start containerd, import the images, then kubelet, kube-proxy and the scheduler; wait for Ready."""
        self.layout = layout = NodeLayout(directory)
        self._admin_kubeconfig = admin_kubeconfig
        configs = self._write_configs(layout, server, pki)
        hoststate.make_cgroups(CGROUP_NAME)
        self._start_containerd(layout)
        self.images.import_into(self.ctr_args())
        self._spawn(
            "kubelet",
            [
                self.binaries.kubelet,
                f"--config={layout.kubelet_config}",
                f"--kubeconfig={configs['kubelet']}",
                f"--root-dir={layout.kubelet_root}",
                f"--cert-dir={layout.kubelet_root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.network.node_address}",
                "--v=1",
            ],
        )
        self._spawn("kube-proxy", [self.binaries.kube_proxy, f"--config={layout.kube_proxy_config}", "--v=1"])
        self._spawn(
            "kube-scheduler",
            [
                self.binaries.kube_scheduler,
                f"--kubeconfig={configs['kube-scheduler']}",
                f"--authentication-kubeconfig={configs['kube-scheduler']}",
                f"--authorization-kubeconfig={configs['kube-scheduler']}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--v=1",
            ],
        )
        self._wait_for(self._ready, f"Node {NODE_NAME} Ready and schedulable", "kubelet")

    def stop(self) -> None:
        """Undo everything ``prepare`` and ``start`` did but the lock; safe to call at any point, and twice.

        The owner calls ``release`` once the API server bound to the node's link has stopped too.
        """
        try:
            if self._processes.get("kubelet") is not None and self._admin_kubeconfig is not None:
                with contextlib.suppress(Exception):
                    self._drain()
            for name in ("kube-scheduler", "kube-proxy", "kubelet", "containerd"):
                if (process := self._processes.pop(name, None)) is not None:
                    processes.stop(process)
            if self.layout is not None:
                _undo_node_state(self.layout.root, self.network)
            elif self._lock_fd is not None:
                hoststate.undo_network(self.network)
            if self._before is not None:
                hoststate.restore(self._before)
                self._before = None
        finally:
            self.layout = None

    def release(self) -> None:
        """Let the next node on this machine start (closing the descriptor releases the flock)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return list(self._processes.values())

    # -- for tests and tools ------------------------------------------------------------------------

    def ctr_args(self) -> list[str]:
        """``ctr`` against this node's containerd, in the CRI's namespace."""
        return ["ctr", f"--address={self._layout.containerd_socket}", f"--namespace={CONTAINERD_NAMESPACE}"]

    def tag_image(self, source: str, target: str) -> None:
        """Give an imported image another name (a new tag to upgrade to, say)."""
        _check(_capture([*self.ctr_args(), "images", "tag", "--force", source, target]))

    @property
    def log_dir(self) -> Path:
        return self._layout.root / "logs"

    # -- internals ----------------------------------------------------------------------------------

    @property
    def _layout(self) -> NodeLayout:
        if self.layout is None:
            raise ControlPlaneError("the node is not running")
        return self.layout

    def _lock(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDONLY | os.O_DIRECTORY)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_fd = fd
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ControlPlaneError(
                        "another node runs on this machine (patronus dev up --node, or a test session); "
                        "stop it first (patronus dev down)"
                    ) from None
                time.sleep(1.0)

    def _write_configs(self, layout: NodeLayout, server: str, pki: PkiFiles) -> dict[str, Path]:
        for directory in (
            layout.cni_conf_dir,
            layout.credentials,
            layout.pod_logs,
            layout.kubelet_root,
            layout.containerd_config.parent,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        configs: dict[str, Path] = {}
        for name, (user, group) in _IDENTITIES.items():
            cert, key = issue_client_cert(pki, layout.credentials, name, user, group)
            configs[name] = layout.credentials / f"{name}.kubeconfig"
            configs[name].write_text(yaml.safe_dump(file_kubeconfig(server, pki.ca_cert, cert, key, user)))
        layout.containerd_config.write_text(containerd_config(layout))
        (layout.cni_conf_dir / "10-patronus.conflist").write_text(
            json.dumps(cni_conflist(layout, self.network), indent=2)
        )
        kubelet = kubelet_config(layout, self.network, client_ca=pki.ca_cert, cgroup_root=f"/{CGROUP_NAME}")
        layout.kubelet_config.write_text(yaml.safe_dump(kubelet))
        layout.kube_proxy_config.write_text(
            yaml.safe_dump(kube_proxy_config(configs["kube-proxy"], self.network))
        )
        return configs

    def _start_containerd(self, layout: NodeLayout) -> None:
        self._spawn("containerd", ["containerd", f"--config={layout.containerd_config}", "--log-level=warn"])
        self._wait_for(
            lambda: _capture([*self.ctr_args(), "version"]).returncode == 0,
            "containerd",
            "containerd",
        )

    def _spawn(self, name: str, args: Sequence[str | os.PathLike[str]]) -> None:
        command = hoststate.in_netns(self.network.netns, [os.fspath(arg) for arg in args])
        process = processes.spawn(command, self.log_dir / f"{name}.log", tie_to_parent=self.tie_to_parent)
        self._processes[name] = process
        # In the node's cgroups, so that stop() finds every process they start (shims, containers).
        hoststate.join_cgroups(CGROUP_NAME, process.pid)

    def _kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self._admin_kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            _check(result)
        return result

    def _ready(self) -> bool:
        node = json.loads(self._kubectl("get", "node", NODE_NAME, "-o", "json", check=False).stdout or "{}")
        conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
        return conditions.get("Ready") == "True" and not node.get("spec", {}).get("taints")

    def _drain(self) -> None:
        """Delete every pod while the kubelet runs, so that it stops them and tears their network down."""
        self._kubectl("cordon", NODE_NAME)
        self._kubectl("delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--wait=false")
        deadline = time.monotonic() + _POD_DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            pods = self._kubectl(
                "get", "pods", "-A", f"--field-selector=spec.nodeName={NODE_NAME}", "-o", "name"
            ).stdout
            if not pods.strip():
                return
            time.sleep(0.5)

    def _wait_for(self, ready: Callable[[], bool], what: str, log_name: str) -> None:
        deadline = time.monotonic() + self.startup_timeout
        log = self.log_dir / f"{log_name}.log"
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    raise ControlPlaneError(
                        f"{what}: {name} exited with code {process.returncode}; last lines of its log:\n"
                        f"{tail(self.log_dir / f'{name}.log')}"
                    )
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.2)
        raise ControlPlaneError(f"timed out waiting for {what}; last lines of {log.name}:\n{tail(log)}")


def _capture(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        raise ControlPlaneError(f"{' '.join(map(str, result.args))}: {result.stderr.strip()}")


def _undo_node_state(directory: Path, network: NodeNetwork) -> None:
    # Processes first (containers and shims too), then what they held: mounts, then the namespace.
    hoststate.undo_cgroups(CGROUP_NAME)
    hoststate.undo_mounts(directory)
    hoststate.undo_log_links(directory)
    hoststate.undo_network(network)


def sweep(network: NodeNetwork | None = None) -> None:
    """Remove what a node killed before its clean-up left: processes in its cgroups, its namespace, link."""
    hoststate.undo_cgroups(CGROUP_NAME)
    hoststate.undo_network(network or NodeNetwork())


def remove_tree(directory: Path) -> None:
    """``rm -rf`` that first unmounts what is mounted below, so it never deletes through a bind mount."""
    hoststate.undo_mounts(directory)
    shutil.rmtree(directory, ignore_errors=True)
