"""The launcher: starts fast once built, serves RBAC-enforcing Kubernetes, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from patronus.controlplane import processes
from patronus.controlplane.launcher import RUNS_ROOT, Binaries, ControlPlane, sweep_abandoned_runs


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # A zombie is dead for our purposes; /proc says so.
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "State:\tZ" not in status.read_text():
            alive.append(pid)
    return alive


def test_starts_quickly_and_stops_without_leftovers() -> None:
    started = time.monotonic()
    plane = ControlPlane(controller_manager=True).start()
    startup = time.monotonic() - started
    pids = [process.pid for process in plane.processes()]
    ports = [plane.etcd_port, plane.apiserver_port, plane.controller_manager_port]
    workdir = plane.workdir
    assert workdir is not None
    try:
        assert len(pids) == 3
        assert startup < 45, f"control plane took {startup:.1f}s to start"
        version = plane.kubectl("version", "-o", "json").stdout
        assert '"gitVersion": "v1.36' in version
        namespaces = plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
        assert "namespace/default" in namespaces
    finally:
        plane.stop()
    assert _pids_alive(pids) == []
    assert [port for port in ports if processes.port_is_listening(port)] == []
    assert not workdir.exists()


def test_rbac_is_enforced(control_plane: ControlPlane, namespace: str) -> None:
    denied = control_plane.kubectl(
        "get", "secrets", "-n", namespace, "--as=system:serviceaccount:default:nobody", check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    allowed = control_plane.kubectl("auth", "can-i", "get", "secrets", "-n", namespace)
    assert allowed.stdout.strip() == "yes"


def test_interrupted_run_leaves_nothing_behind(tmp_path: Path) -> None:
    """A process killed with SIGKILL takes its components with it; the next run sweeps its files."""
    script = textwrap.dedent(
        """
        import sys
        from patronus.controlplane.launcher import ControlPlane
        plane = ControlPlane().start()
        print(plane.workdir, *[p.pid for p in plane.processes()], flush=True)
        sys.stdin.read()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    assert line, "the child did not start a control plane"
    workdir, pids = Path(line[0]), [int(pid) for pid in line[1:]]
    assert _pids_alive(pids) == pids
    child.kill()
    child.wait(10)
    deadline = time.monotonic() + 15
    while _pids_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pids_alive(pids) == [], "components outlived a SIGKILLed parent"
    assert workdir.exists()
    assert workdir in sweep_abandoned_runs()
    assert not workdir.exists()
    assert workdir.parent == RUNS_ROOT


def test_binaries_report_missing_files(tmp_path: Path) -> None:
    assert sorted(Binaries(tmp_path).missing()) == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kubectl",
    ]


@pytest.mark.parametrize("component", ["etcd", "kube-apiserver"])
def test_startup_failure_names_the_component(tmp_path: Path, component: str) -> None:
    real = Binaries.locate()
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl"):
        target = fake_dir / binary
        if binary == component:
            target.write_text("#!/bin/sh\necho 'broken on purpose' >&2\nexit 3\n")
            target.chmod(0o755)
        else:
            target.symlink_to(real.directory / binary)
    plane = ControlPlane(Binaries(fake_dir), startup_timeout=20)
    with pytest.raises(Exception, match=r"exited with code 3(.|\n)*broken on purpose"):
        plane.start()
    assert plane.workdir is None
