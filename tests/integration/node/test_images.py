"""The project's images as the node runs them: the operator as a non-root user with a read-only root
filesystem and no capabilities (as its Deployment runs it), the agent with its data-plane tools."""

from __future__ import annotations

import json
from typing import Any

import pytest

from patronus.controlplane import ControlPlane
from patronus.controlplane.images import OPERATOR_IMAGE

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.timeout(1500)]


def _run(cluster: ControlPlane, namespace: str, name: str, spec: dict[str, Any]) -> str:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input_text=json.dumps(pod))
    done = cluster.kubectl(
        "wait",
        "-n",
        namespace,
        f"pod/{name}",
        "--for=jsonpath={.status.phase}=Succeeded",
        "--timeout=90s",
        check=False,
    )
    log = cluster.kubectl("logs", "-n", namespace, name, check=False)
    assert done.returncode == 0, f"{name}: {done.stderr}\n{log.stdout}{log.stderr}"
    return log.stdout


def test_the_operator_image_runs_unprivileged_on_a_read_only_root(
    node_cluster: ControlPlane, node_namespace: str
) -> None:
    script = (
        "import os, patronus.operator.main; from importlib.metadata import version; "
        "print(os.getuid(), version('patronus'))"
    )
    container = {
        "name": "operator",
        "image": "patronus-operator:latest",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", f'python3 -c "{script}" && touch /probe 2>&1; exit 0'],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    spec = {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    uid_version, error = _run(node_cluster, node_namespace, "operator", spec).splitlines()
    assert uid_version.split() == ["65532", "0.1.0"]
    assert "Read-only file system" in error
    status = node_cluster.kubectl("get", "node", "patronus-node", "-o", "jsonpath={.status.images}").stdout
    assert OPERATOR_IMAGE in status


def test_the_agent_image_has_its_data_plane_tools(node_cluster: ControlPlane, node_namespace: str) -> None:
    tools = ["wireguard-go", "wg", "nft", "ip", "tc", "patronus"]
    container = {
        "name": "agent",
        "image": "patronus-agent:latest",
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", f"for t in {' '.join(tools)}; do command -v $t; done; patronus --version"],
    }
    log = _run(node_cluster, node_namespace, "agent", {"restartPolicy": "Never", "containers": [container]})
    found = log.split()
    assert [path.rsplit("/", 1)[-1] for path in found[: len(tools)]] == tools
    # The module-built wireguard-go (with TUN offloads) is the one on PATH, not Debian's.
    assert found[0] == "/usr/local/bin/wireguard-go"
    assert "0.1.0" in log
