"""End-to-end fixtures: the cluster is whatever KUBECONFIG names; kubectl comes from PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def cluster_kubectl() -> Kubectl:
    if not os.environ.get("KUBECONFIG"):
        pytest.skip("end-to-end tests need KUBECONFIG (run them with scripts/e2e-tests.sh)")
    binary = shutil.which("kubectl")
    if binary is None:
        pytest.skip("end-to-end tests need kubectl on PATH (scripts/e2e-tests.sh provides it)")

    def kubectl(
        *args: str, check: bool = True, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [binary, *args], check=check, capture_output=True, text=True, input=input_text, timeout=120
        )

    return kubectl


@pytest.fixture
def e2e_namespace(cluster_kubectl: Kubectl) -> Iterator[str]:
    name = f"patronus-e2e-{uuid.uuid4().hex[:8]}"
    cluster_kubectl("create", "namespace", name)
    yield name
    cluster_kubectl("delete", "namespace", name, "--wait=false")
