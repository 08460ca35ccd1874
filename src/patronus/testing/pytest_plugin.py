"""pytest fixtures for tests against the real control plane.

- ``control_plane``: one etcd + kube-apiserver + kube-controller-manager per test session, with the
  Patronus CRDs installed; stopped (and its files removed) when the session ends, also on Ctrl-C or SIGTERM.
- ``kube_client``: a lightkube ``Client`` with the admin identity.
- ``namespace``: a fresh namespace per test, deleted afterwards.
- ``kubectl``: run the built kubectl against the control plane.
- ``node_cluster``: a second control plane, with a node that runs pods from the project's images
  (``patronus-operator:latest``, ``patronus-agent:latest``; root only), CRDs installed; one per session,
  started on first use. ``node_cluster.kubectl(...)``, ``node_cluster.kubeconfig``, ``node_cluster.node``.
- ``node_namespace``: a fresh namespace in ``node_cluster`` whose ``default`` ServiceAccount exists (pods
  are refused before it does), deleted afterwards with its pods.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import pytest

from patronus.controlplane import ControlPlane

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: pytest.Session) -> None:
    # A SIGTERM (CI timeout, a killed terminal) unwinds like Ctrl-C, so fixture teardown still runs.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane(controller_manager=True) as plane:
        # A thread of its own: the fixture may be first requested from inside a running event loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _install_crds(plane)).result()
        yield plane


async def _install_crds(plane: ControlPlane) -> None:
    from patronus.kube.crds import install_crds  # noqa: PLC0415
    from patronus.kube.rest import RestClient  # noqa: PLC0415

    async with RestClient.from_kubeconfig(plane.kubeconfig) as client:
        await install_crds(client)


def admin_client(plane: ControlPlane) -> Any:
    """A lightkube ``Client`` with the admin identity: tests check what Patronus did with a client that
    is not Patronus's own."""
    from lightkube import Client  # noqa: PLC0415
    from lightkube.config.kubeconfig import KubeConfig  # noqa: PLC0415

    return Client(KubeConfig.from_file(plane.kubeconfig), field_manager="patronus-test")


@pytest.fixture(scope="session")
def kube_client(control_plane: ControlPlane) -> Any:
    return admin_client(control_plane)


@pytest.fixture
def namespace(kube_client: Any) -> Iterator[str]:
    from lightkube.models.meta_v1 import ObjectMeta  # noqa: PLC0415
    from lightkube.resources.core_v1 import Namespace  # noqa: PLC0415

    name = f"test-{uuid.uuid4().hex[:10]}"
    kube_client.create(Namespace(metadata=ObjectMeta(name=name)))
    yield name
    kube_client.delete(Namespace, name)


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    return control_plane.kubectl


# Another session on this machine (a second worktree's tests, `patronus dev up --node`) may hold the node.
_NODE_LOCK_TIMEOUT_S = 1200.0


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[ControlPlane]:
    if os.geteuid() != 0:
        # As for the `root` mark: CI runs as root, so a node that cannot start is a failure, not a skip.
        message = "a node needs root (network namespace, cgroups, mounts)"
        if os.environ.get("PATRONUS_SKIP_ROOT_TESTS") == "1":
            pytest.skip(message)
        pytest.fail(message, pytrace=False)
    with ControlPlane(node=True, node_lock_timeout=_NODE_LOCK_TIMEOUT_S) as plane:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _install_crds(plane)).result()
        yield plane


@pytest.fixture
def node_namespace(node_cluster: ControlPlane) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:10]}"
    node_cluster.kubectl("create", "namespace", name)
    deadline = time.monotonic() + 60
    while node_cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no default ServiceAccount in {name} after 60 s")
        time.sleep(0.2)
    yield name
    node_cluster.kubectl("delete", "namespace", name, "--wait=false")
