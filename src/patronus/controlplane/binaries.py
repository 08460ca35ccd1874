"""Where the control plane's and the node's binaries are, and how the build scripts are run.

``scripts/build-controlplane.sh`` and ``scripts/build-images.sh`` build into a cache keyed by their
inputs and print the output directory on their last line; this module runs them (a no-op when current)
or takes a directory from the environment.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_LOG_TAIL_LINES = 40


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, found or started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Binaries:
    """Where the built etcd, kube-apiserver, kube-controller-manager, kubectl and the node's binaries are."""

    directory: Path

    @property
    def etcd(self) -> Path:
        return self.directory / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.directory / "kube-apiserver"

    @property
    def kube_controller_manager(self) -> Path:
        return self.directory / "kube-controller-manager"

    @property
    def kubectl(self) -> Path:
        return self.directory / "kubectl"

    @property
    def kubelet(self) -> Path:
        return self.directory / "kubelet"

    @property
    def kube_proxy(self) -> Path:
        return self.directory / "kube-proxy"

    @property
    def kube_scheduler(self) -> Path:
        return self.directory / "kube-scheduler"

    def missing_for_node(self) -> list[str]:
        wanted = (self.kubelet, self.kube_proxy, self.kube_scheduler)
        return [path.name for path in wanted if not os.access(path, os.X_OK)]

    def missing(self) -> list[str]:
        wanted = (self.etcd, self.kube_apiserver, self.kube_controller_manager, self.kubectl)
        return [path.name for path in wanted if not os.access(path, os.X_OK)]

    @classmethod
    def locate(cls, *, build: bool = True) -> Binaries:
        """Find the binaries: ``$PATRONUS_CONTROLPLANE_DIR``, else build (or reuse) them from the checkout."""
        configured = os.environ.get("PATRONUS_CONTROLPLANE_DIR")
        if configured:
            binaries = cls(Path(configured))
            if missing := binaries.missing():
                raise ControlPlaneError(f"PATRONUS_CONTROLPLANE_DIR={configured} lacks {', '.join(missing)}")
            return binaries
        binaries = cls(
            run_build_script(
                "build-controlplane.sh",
                build=build,
                alternative="set PATRONUS_CONTROLPLANE_DIR to a directory with etcd, kube-apiserver, "
                "kube-controller-manager and kubectl",
            )
        )
        if missing := binaries.missing():
            raise ControlPlaneError(f"scripts/build-controlplane.sh did not produce {', '.join(missing)}")
        return binaries


def run_build_script(name: str, *, build: bool = True, alternative: str) -> Path:
    """Run ``scripts/<name>`` of the checkout and return the directory it prints last."""
    script = source_root() / "scripts" / name
    if not script.exists():
        raise ControlPlaneError(f"{alternative} (scripts/{name} of a checkout builds it)")
    if not build:
        raise ControlPlaneError(f"not built yet; run {script}")
    # The script is a no-op when the cache is current; progress of a cold build goes to stderr.
    result = subprocess.run(["bash", str(script)], check=False, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise ControlPlaneError(f"{script} failed with exit code {result.returncode}")
    return Path(result.stdout.strip().splitlines()[-1])


def source_root() -> Path:
    """The repository root when running from a checkout (src layout, editable install)."""
    return Path(__file__).resolve().parents[3]


def tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines of a log, for error messages."""
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
