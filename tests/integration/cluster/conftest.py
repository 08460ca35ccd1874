"""Fixtures for the chart against the real API server: helm with private homes, releases, namespaces.

Each test installs its own release (a unique name, so its ClusterRole cannot meet another's) into
namespaces of its own, and uninstalls it afterwards; the session's control plane is shared.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from patronus.controlplane.launcher import ControlPlane
from tests.support.helm import CHART, Helm
from tests.support.manifests import REPO


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str

    @property
    def user(self) -> str:
        """The operator's ServiceAccount as `kubectl --as` names it (its name is the release's)."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@pytest.fixture
def helm(control_plane: ControlPlane, tmp_path: Path) -> Helm:
    return Helm(home=tmp_path / "helm", kubeconfig=control_plane.kubeconfig)


@contextlib.contextmanager
def serve_chart_repository(directory: Path) -> Iterator[str]:
    """`make chart-repo` into ``directory``, served over HTTP on loopback; yields its URL."""
    made = subprocess.run(
        ["make", "-s", "chart-repo", f"CHART_REPO={directory}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["index.yaml", "patronus-operator-0.1.0.tgz"]
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def chart_repository(tmp_path: Path) -> Iterator[str]:
    with serve_chart_repository(tmp_path / "charts") as url:
        yield url


@pytest.fixture(scope="module")
def chart_repository_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_chart_repository(tmp_path_factory.mktemp("charts")) as url:
        yield url


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def make_namespace(control_plane: ControlPlane) -> Iterator[Callable[[], str]]:
    """Creates namespaces for the test (watched or not) and deletes them afterwards."""
    made: list[str] = []

    def make() -> str:
        name = f"test-{uuid.uuid4().hex[:10]}"
        control_plane.kubectl("create", "namespace", name)
        made.append(name)
        return name

    yield make
    for name in made:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def install(helm: Helm, namespace: str) -> Iterator[Callable[..., Release]]:
    """`helm install` of the chart in the test's namespace, uninstalled at the end."""
    installed: list[Release] = []

    def run(values: dict[str, Any] | None = None, *, chart: str = str(CHART)) -> Release:
        release = Release(f"patronus-operator-{uuid.uuid4().hex[:6]}", namespace)
        helm.run("install", release.name, chart, "--namespace", namespace, *helm.values_args(values))
        installed.append(release)
        return release

    yield run
    for release in installed:
        helm.run("uninstall", release.name, "--namespace", release.namespace, check=False)


def can_i(control_plane: ControlPlane, user: str, *args: str) -> bool:
    """`kubectl auth can-i ... --as=user`, asked of the real API server's authorizer."""
    result = control_plane.kubectl("auth", "can-i", *args, f"--as={user}", check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), result.stderr
    return answer == "yes"


def service_account_kubeconfig(control_plane: ControlPlane, release: Release, directory: Path) -> Path:
    """A kubeconfig for the release's ServiceAccount, with a real token from the TokenRequest API."""
    token = control_plane.kubectl(
        "create", "token", release.name, "-n", release.namespace, "--duration=1h"
    ).stdout.strip()
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    path = directory / f"{release.name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path
