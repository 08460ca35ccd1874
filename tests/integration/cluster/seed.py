"""The seed README's commands, run as a user runs them: in bash, with kubectl and helm on PATH.

``Shell`` runs a block of the README verbatim (heredocs, ``$(wg genkey | wg pubkey)`` and pipes included)
against one cluster; the other helpers read what the operator's install looks like from the API.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import yaml

from patronus.controlplane.images import AGENT_IMAGE, OPERATOR_IMAGE
from patronus.controlplane.launcher import ControlPlane
from tests.support.helm import CHART, Helm

SYSTEM = "patronus-system"
RELEASE = "patronus-operator"
SERVICE_ACCOUNT = f"system:serviceaccount:{SYSTEM}:{RELEASE}"


def chart_app_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


def default_image(component: str) -> str:
    """The image the chart names by default, as a cluster would pull it from the registry."""
    return f"ghcr.io/patronus/patronus-{component}:v{chart_app_version()}"


@dataclass(frozen=True)
class Shell:
    cluster: ControlPlane
    helm: Helm

    def run(
        self, script: str, *, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with `set -euo pipefail` in bash; kubectl and helm are the built ones."""
        env = self.helm.env()
        path = f"{self.cluster.binaries.kubectl.parent}:{self.helm.binary.parent}:{env['PATH']}"
        env.update(PATH=path, KUBECONFIG=str(self.cluster.kubeconfig))
        result = subprocess.run(
            ["bash", "-c", "set -euo pipefail\n" + script],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{script}\nexited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result


def get_json(cluster: ControlPlane, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def operator_pods(cluster: ControlPlane) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = get_json(cluster, "pods", "-n", SYSTEM, "-l", "app=patronus-operator")[
        "items"
    ]
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def wait_for_operator(cluster: ControlPlane, replicas: int = 2, timeout: float = 180) -> float:
    """Wait until the Deployment has rolled out and ``replicas`` pods are Running and Ready; the seconds."""
    start = time.monotonic()

    def rolled_out() -> bool:
        deployment = get_json(cluster, "deployment", RELEASE, "-n", SYSTEM)
        status = deployment.get("status") or {}
        pods = operator_pods(cluster)
        return (
            status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("updatedReplicas") == replicas
            and status.get("readyReplicas") == replicas
            and len(pods) == replicas
            and all(is_ready(pod) for pod in pods)
        )

    while not rolled_out():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"the operator did not roll out in {timeout:g}s:\n{diagnosis(cluster)}")
        time.sleep(0.5)
    return time.monotonic() - start


def diagnosis(cluster: ControlPlane, namespace: str = SYSTEM) -> str:
    """What a user would look at when pods do not come up: pods, events, the last log lines."""
    parts = [
        cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout,
        cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout[
            -4000:
        ],
        cluster.kubectl(
            "logs", "-n", namespace, "-l", "app=patronus-operator", "--tail=20", check=False
        ).stdout,
    ]
    return "\n".join(parts)


def lease(cluster: ControlPlane) -> dict[str, Any]:
    found: dict[str, Any] = get_json(cluster, "lease", RELEASE, "-n", SYSTEM)
    return found


def metrics_of(cluster: ControlPlane, pod: str) -> str:
    """A replica's /metrics, read inside its pod (the image has Python; the pod network is the node's)."""
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/metrics').read().decode())"
    return cluster.kubectl("exec", "-n", SYSTEM, pod, "--", "python3", "-c", script).stdout


def is_leader(cluster: ControlPlane, pod: str) -> bool:
    for line in metrics_of(cluster, pod).splitlines():
        if line.startswith("patronus_operator_leader "):
            return float(line.split()[1]) == 1.0
    raise AssertionError(f"no patronus_operator_leader metric in {pod}")


def preload_images(cluster: ControlPlane) -> None:
    """The project's images under the chart's default names (no registry can be reached here)."""
    assert cluster.node is not None
    cluster.node.tag_image(OPERATOR_IMAGE, default_image("operator"))
    cluster.node.tag_image(AGENT_IMAGE, default_image("agent"))


def remove_patronus_system(cluster: ControlPlane) -> None:
    cluster.kubectl("delete", "namespace", SYSTEM, "--ignore-not-found", "--wait=true", "--timeout=180s")


def assert_operator_logs(shell: Shell) -> None:
    """The seed's `kubectl logs -l app=patronus-operator` shows both replicas' structured lines (a label
    selector shows the last 10 of each), and the whole log shows one of them winning the Lease."""
    recent = shell.run("kubectl logs -n patronus-system -l app=patronus-operator").stdout
    records = [json.loads(line) for line in recent.splitlines() if line.startswith("{")]
    assert len(records) >= 4, recent
    assert all({"event", "level", "logger", "timestamp"} <= record.keys() for record in records), recent
    everything = shell.run("kubectl logs -n patronus-system -l app=patronus-operator --tail=-1").stdout
    assert everything.count('"event":"acquired the leader lease"') >= 1, everything[-3000:]
