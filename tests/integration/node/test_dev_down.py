"""`patronus dev up --node` runs pods; `patronus dev down` leaves nothing of the node behind: no process,
mount, cgroup, network namespace, link, route, nftables table, file or changed kernel setting."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from patronus.controlplane import Binaries, ImageSet
from patronus.controlplane.hoststate import KUBELET_SYSCTLS, cgroup_hierarchies
from patronus.controlplane.launcher import RUNS_ROOT
from patronus.controlplane.node import CGROUP_NAME

# Long enough to wait for another session's node on a shared machine.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.root,
    pytest.mark.node_exclusive,
    pytest.mark.timeout(1500),
]

_WATCHED_DIRS = ("/var/lib", "/run", "/var/run", "/etc", "/opt", "/var/log")
# Other sessions on a shared machine (the lab's site namespaces and WireGuard sockets, image builds'
# overlay mounts) come and go during the test; a node makes none of these (its pods' namespaces live
# under its own directory).
_OTHERS = re.compile(
    r"^(/var)?/run/(netns|wireguard|patronus-lab)/(?!patronus-node)|^(?!patronus-node|cni-)[^/]+$"
    r"|/\.cache/patronus/buildah/"
)


@contextlib.contextmanager
def _no_node_running() -> Iterator[None]:
    """Hold the machine's node lock, so that no other session's node is in the picture."""
    RUNS_ROOT.mkdir(parents=True, exist_ok=True)
    fd = os.open(RUNS_ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _listing(top: str, depth: int = 2) -> set[str]:
    found: set[str] = set()
    for directory, subdirs, files in os.walk(top):
        level = directory[len(top) :].count("/")
        found.update(os.path.join(directory, name) for name in (*subdirs, *files))
        if level + 1 >= depth:
            subdirs.clear()
    return found


def _processes(run_prefix: str) -> set[str]:
    """The run's processes (they name its directory) and any process left in a node's cgroups (pods)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cgroups = (entry / "cgroup").read_text()
            except OSError:
                continue
            if run_prefix in command or f"/{CGROUP_NAME}/" in cgroups:
                found.add(f"{entry.name} {command}")
    return found


def _host_state(run_prefix: str) -> dict[str, set[str]]:
    def command(*args: str) -> set[str]:
        return set(subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines())

    return {
        "processes": _processes(run_prefix),
        "mounts": {
            point
            for point in (line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
            if not _OTHERS.match(point)
        },
        "cgroups": {
            str(path) for hierarchy in cgroup_hierarchies() for path in hierarchy.iterdir() if path.is_dir()
        },
        "netns": {name for name in os.listdir("/run/netns") if not _OTHERS.match(name)}
        if os.path.isdir("/run/netns")
        else set(),
        "links": set(os.listdir("/sys/class/net")),
        "routes": command("ip", "route", "show", "table", "all"),
        "nftables": command("nft", "list", "tables"),
        "files": {path for top in _WATCHED_DIRS for path in _listing(top) if not _OTHERS.match(path)},
        "sysctls": {
            f"{key}={(Path('/proc/sys') / key).read_text().strip()}"
            for key in (*KUBELET_SYSCTLS, "net/ipv4/ip_forward")
        },
    }


def _patronus(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patronus", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        check=False,
    )


def _kubectl(kubeconfig: Path, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Binaries.locate().kubectl), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        input=input_text,
        timeout=120,
        check=False,
    )


def _run_a_pod(kubeconfig: Path) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "patronus-agent:latest",
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }
    deadline = time.monotonic() + 60
    while _kubectl(kubeconfig, "get", "serviceaccount", "default").returncode:
        assert time.monotonic() < deadline, "no default ServiceAccount"
        time.sleep(0.2)
    applied = _kubectl(kubeconfig, "apply", "-f", "-", input_text=json.dumps(pod))
    assert applied.returncode == 0, applied.stderr
    ready = _kubectl(kubeconfig, "wait", "pod/sleeper", "--for=condition=Ready", "--timeout=90s")
    assert ready.returncode == 0, ready.stderr


def test_dev_down_leaves_nothing_of_the_node(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATRONUS_CACHE": str(tmp_path),
        # Built (or found) here, in the shared cache: tmp_path is only dev's home.
        "PATRONUS_CONTROLPLANE_DIR": str(Binaries.locate().directory),
        "PATRONUS_IMAGES_DIR": str(ImageSet.locate().directory),
        "PATRONUS_NODE_LOCK_TIMEOUT": "1200",
    }
    kubeconfig = tmp_path / "dev" / "kubeconfig"
    # The run's directory is named after the process `dev up` starts; other sessions' runs are not ours.
    run_prefix = f"{RUNS_ROOT}/{{pid}}-"
    with _no_node_running():
        before = _host_state(run_prefix)
    up = _patronus(env, "dev", "up", "--node")
    try:
        assert up.returncode == 0, up.stderr + (tmp_path / "dev" / "controlplane.log").read_text()[-3000:]
        run_prefix = run_prefix.format(pid=int((tmp_path / "dev" / "controlplane.pid").read_text()))
        server = _kubectl(kubeconfig, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}")
        assert server.stdout.startswith("https://10.250.0.1:"), "the API server binds to the node's link"
        _run_a_pod(kubeconfig)
        during = _host_state(run_prefix)
        assert during["processes"] - before["processes"], "the node's processes run"
        assert during["mounts"] - before["mounts"], "the pod's mounts exist"
    finally:
        down = _patronus(env, "dev", "down")
    assert down.returncode == 0, down.stderr
    with _no_node_running():
        after = _host_state(run_prefix)
    left = {kind: sorted(after[kind] - before[kind]) for kind in before if after[kind] - before[kind]}
    assert not left, f"left behind: {json.dumps(left, indent=1)}"
