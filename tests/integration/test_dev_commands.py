"""`patronus dev up` gives a working cluster with the CRDs; `patronus dev down` leaves nothing running."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from patronus.controlplane.launcher import Binaries


def _patronus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patronus", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )


def test_dev_up_and_down(tmp_path: Path) -> None:
    # tmp_path is dev's home only: the binaries come from the shared cache, not a rebuild into tmp_path.
    env = {
        **os.environ,
        "PATRONUS_CACHE": str(tmp_path),
        "PATRONUS_CONTROLPLANE_DIR": str(Binaries.locate().directory),
    }
    up = _patronus("dev", "up", env=env)
    assert up.returncode == 0, up.stderr
    kubeconfig = tmp_path / "dev" / "kubeconfig"
    assert up.stdout.strip() == f"export KUBECONFIG={kubeconfig}"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600  # it holds the admin's key
    supervisor = int((tmp_path / "dev" / "controlplane.pid").read_text())
    try:
        again = _patronus("dev", "up", env=env)
        assert again.stdout.strip() == up.stdout.strip()
        assert "already running" in again.stderr
        crds = subprocess.run(
            [str(Binaries.locate().kubectl), f"--kubeconfig={kubeconfig}", "get", "crds", "-o", "name"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.split()
        assert sorted(crds) == [
            "customresourcedefinition.apiextensions.k8s.io/meshes.sdwan.patronus.dev",
            "customresourcedefinition.apiextensions.k8s.io/paths.sdwan.patronus.dev",
            "customresourcedefinition.apiextensions.k8s.io/policies.sdwan.patronus.dev",
            "customresourcedefinition.apiextensions.k8s.io/sites.sdwan.patronus.dev",
        ]
        children = subprocess.run(
            ["pgrep", "-P", str(supervisor)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) == 3, "expected etcd, kube-apiserver and kube-controller-manager"
    finally:
        down = _patronus("dev", "down", env=env)
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    pids = [supervisor, *map(int, children)]
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    assert not kubeconfig.exists()
    status = _patronus("dev", "status", env=env)
    assert status.returncode == 1
    assert "not running" in status.stdout
