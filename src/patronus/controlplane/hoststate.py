"""The machine-wide things a node changes, each made and undone here: its network namespace and veth
pair, its cgroups, the mounts under its directory, the kernel settings the kubelet writes and the host
paths it creates whatever it is told.

Each ``make`` has an ``undo`` that is safe to call when nothing (or only part) was made, so that a node
killed half-way is swept by the next one. Names and addresses are validated where they reach a command.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from patronus.controlplane.nodeconfig import NodeNetwork

CGROUP_V1 = Path("/sys/fs/cgroup")
# Written by the kubelet at start (it wants them so) and by nothing else of the node.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
# Created by the kubelet whatever its --root-dir (device plugins; a symlink per container to its log),
# and by libcni's result cache.
CONTAINER_LOG_LINKS = Path("/var/log/containers")
HOST_PATHS = (Path("/var/lib/kubelet"), Path("/var/lib/cni"), CONTAINER_LOG_LINKS)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_NETNS_DIR = Path("/run/netns")


class HostStateError(RuntimeError):
    """A change to the machine failed; the message names the command and its output."""


def _run(*args: str) -> str:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise HostStateError(f"{' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _checked_name(name: str) -> str:
    if not _NAME.match(name):
        raise HostStateError(f"not a valid interface or namespace name: {name!r}")
    return name


# -- network ----------------------------------------------------------------------------------------


def make_network(network: NodeNetwork) -> None:
    """The node's namespace, the veth pair into it with both addresses, and the routes either way."""
    netns, host, node = (_checked_name(n) for n in (network.netns, network.host_link, network.node_link))
    host_ip = ipaddress.ip_interface(f"{network.host_address}/{network.link_prefix}")
    node_ip = ipaddress.ip_interface(f"{network.node_address}/{network.link_prefix}")
    pods = ipaddress.ip_network(network.pod_cidr)
    if host_ip.network != node_ip.network:
        raise HostStateError(f"{host_ip} and {node_ip} are not on one link")
    if (
        Path(f"/sys/class/net/{host}").exists()
        or (_NETNS_DIR / netns).exists()
        or f" {host_ip.ip}/" in _run("ip", "-o", "address", "show")
    ):
        raise HostStateError(f"{host}, netns {netns} or {host_ip.ip} is in use: is another node running?")
    _run("ip", "netns", "add", netns)
    _run("ip", "link", "add", host, "type", "veth", "peer", "name", node, "netns", netns)
    _run("ip", "address", "add", str(host_ip), "dev", host)
    _run("ip", "link", "set", host, "up")
    inside = ("ip", "-n", netns)
    _run(*inside, "address", "add", str(node_ip), "dev", node)
    _run(*inside, "link", "set", node, "up")
    _run(*inside, "link", "set", "lo", "up")
    _run(*inside, "route", "add", "default", "via", str(host_ip.ip))
    # Replies from the API server to pods; the route goes with the link.
    _run("ip", "route", "add", str(pods), "via", str(node_ip.ip), "dev", host)


def undo_network(network: NodeNetwork) -> None:
    """Delete the namespace (with the bridge, pod links and nftables tables inside) and the veth pair."""
    netns, host = _checked_name(network.netns), _checked_name(network.host_link)
    if (_NETNS_DIR / netns).exists():
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, check=False, timeout=60)
    if Path(f"/sys/class/net/{host}").exists():
        subprocess.run(["ip", "link", "delete", host], capture_output=True, check=False, timeout=60)


def in_netns(netns: str, args: list[str]) -> list[str]:
    """``args`` run in the namespace, but in the machine's mount namespace (unlike ``ip netns exec``),
    so that the kubelet's and containerd's mounts are seen by each other."""
    return ["nsenter", f"--net={_NETNS_DIR / _checked_name(netns)}", "--", *args]


# -- cgroups ----------------------------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (cpu, memory, ..., and the named systemd one)."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return sorted({Path(line.split()[1]) for line in mounts if line.split()[2] == "cgroup"})


def make_cgroups(name: str) -> None:
    """``/<name>`` in every hierarchy; cpuset needs its cpus and mems before a task may join."""
    for hierarchy in cgroup_hierarchies():
        group = hierarchy / _checked_name(name)
        group.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (group / knob).exists() and not (group / knob).read_text().strip():
                (group / knob).write_text((hierarchy / knob).read_text())


def join_cgroups(name: str, pid: int, child: str = "system") -> None:
    """Move ``pid`` into ``/<name>/<child>`` everywhere, so that its descendants are found there later."""
    for hierarchy in cgroup_hierarchies():
        group = hierarchy / _checked_name(name) / child
        group.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (group / knob).exists() and not (group / knob).read_text().strip():
                (group / knob).write_text((group.parent / knob).read_text())
        (group / "cgroup.procs").write_text(f"{pid}\n")


def _walk_bottom_up(top: Path) -> Iterator[Path]:
    for directory, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
        yield Path(directory)


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / _checked_name(name)
        if top.is_dir():
            for group in _walk_bottom_up(top):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return pids


def undo_cgroups(name: str, timeout: float = 20.0) -> None:
    """SIGKILL every process left in the node's cgroups, then remove them, deepest first."""
    deadline = time.monotonic() + timeout
    while (pids := cgroup_pids(name)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    if pids:
        raise HostStateError(f"processes {sorted(pids)} did not die in cgroup {name}")
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / _checked_name(name)
        if top.is_dir():
            for group in _walk_bottom_up(top):
                _rmdir_cgroup(group, deadline)


def _rmdir_cgroup(group: Path, deadline: float) -> None:
    # A cgroup whose last task just died can be busy for a moment.
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- mounts -----------------------------------------------------------------------------------------


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first (mountinfo escapes spaces as \\040)."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(Path(point))
    return sorted(points, key=lambda p: -len(p.parts))


def undo_mounts(directory: Path) -> None:
    """Unmount everything below ``directory``: overlay roots, volume tmpfs, sandbox netns and shm."""
    for _ in range(5):
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "--lazy", str(point)], capture_output=True, check=False)
    if points := mounts_under(directory):
        raise HostStateError(f"still mounted: {', '.join(map(str, points))}")


# -- kernel settings and host paths -----------------------------------------------------------------


def undo_log_links(directory: Path) -> None:
    """The kubelet's ``/var/log/containers`` links into ``directory`` (its pod logs), which it removes
    only when it collects the container, so not when the node stops."""
    if CONTAINER_LOG_LINKS.is_dir():
        for link in CONTAINER_LOG_LINKS.iterdir():
            if link.is_symlink() and Path(os.readlink(link)).is_relative_to(directory):
                link.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    """What the kubelet may change, as it was before the node started."""

    sysctls: Mapping[str, str]
    absent_paths: tuple[Path, ...]


def snapshot(sysctls: Iterable[str] = KUBELET_SYSCTLS, paths: Iterable[Path] = HOST_PATHS) -> HostSnapshot:
    values = {key: (Path("/proc/sys") / key).read_text().strip() for key in sysctls}
    return HostSnapshot(values, tuple(path for path in paths if not path.exists()))


def restore(before: HostSnapshot) -> None:
    for key, value in before.sysctls.items():
        path = Path("/proc/sys") / key
        if path.read_text().strip() != value:
            path.write_text(value)
    for path in before.absent_paths:
        shutil.rmtree(path, ignore_errors=True)
