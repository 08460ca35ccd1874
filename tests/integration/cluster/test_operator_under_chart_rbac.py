"""The real operator process, with a real token of the chart's ServiceAccount, converges in each RBAC mode
with no forbidden request: the chart grants everything the operator does (including every right it
passes on to the agents' Roles), as `patronus operator run` reads its settings from the chart's ConfigMap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from tests.integration.cluster.conftest import Release, service_account_kubeconfig
from tests.support.manifests import REAL_KEY, REPO
from tests.support.waiting import eventually_sync

GV = "sdwan.patronus.dev/v1alpha1"


def items(control_plane: ControlPlane, kind: str, namespace: str) -> list[dict[str, Any]]:
    result = control_plane.kubectl("get", kind, "-n", namespace, "-o", "json")
    found: list[dict[str, Any]] = json.loads(result.stdout)["items"]
    return found


def create_world(control_plane: ControlPlane, namespace: str, sites: list[str]) -> None:
    """Sites (one external, with a public key; the others with generated keys) and a full mesh."""
    objects: list[dict[str, Any]] = []
    for index, name in enumerate(sites):
        wireguard: dict[str, Any] = {"endpoints": [f"{name}.example.net:51820"]}
        if index == 0:
            wireguard["publicKey"] = REAL_KEY
        objects.append(
            {"apiVersion": GV, "kind": "Site", "metadata": {"name": name}, "spec": {"wireguard": wireguard}}
        )
    objects.append({"apiVersion": GV, "kind": "Mesh", "metadata": {"name": "m"}, "spec": {"sites": sites}})
    text = "\n---\n".join(json.dumps(obj) for obj in objects)
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", input_text=text)


def converged(control_plane: ControlPlane, namespace: str, sites: int) -> bool:
    paths = items(control_plane, "paths.sdwan.patronus.dev", namespace)
    statuses = [s.get("status") or {} for s in items(control_plane, "sites.sdwan.patronus.dev", namespace)]
    deployments = items(control_plane, "deployments.apps", namespace)
    return (
        len(paths) == sites * (sites - 1)
        and len(deployments) == sites - 1  # the external site runs no agent here
        and all(status.get("peers") == sites - 1 for status in statuses)
    )


@dataclass(frozen=True)
class Operator:
    log: Path
    metrics_port: int


@pytest.fixture
def run_operator(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Callable[[Release], Operator]]:
    """`patronus operator run` as the release's ServiceAccount."""
    processes: list[subprocess.Popen[bytes]] = []

    def run(release: Release) -> Operator:
        metrics_port, health_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(service_account_kubeconfig(control_plane, release, tmp_path)),
            # What the chart's Deployment sets; the rest comes from its ConfigMap.
            "POD_NAME": "rbac-test",
            "POD_NAMESPACE": release.namespace,
            "CONFIG_MAP_NAME": f"{release.name}-config",
            # Outside a pod: loopback ports of this test's (the environment wins over the ConfigMap).
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(metrics_port),
            "HEALTH_PROBE_PORT": str(health_port),
        }
        log = tmp_path / f"{release.name}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "patronus", "operator", "run"],
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        return Operator(log, metrics_port)

    yield run
    for process in processes:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def reconcile_errors(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "patronus_operator_reconcile_errors"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def wait_converged(control_plane: ControlPlane, operator: Operator, namespace: str, sites: int) -> None:
    try:
        eventually_sync(
            lambda: converged(control_plane, namespace, sites),
            timeout=90,
            what=f"the operator to converge in {namespace}",
        )
    except AssertionError as error:
        lines = operator.log.read_text().splitlines()
        refused = [line for line in lines if "forbidden" in line.lower()][:5]
        raise AssertionError(f"{error}\nrefused: {refused}\nlog tail: {lines[-10:]}") from None


def check_clean_run(control_plane: ControlPlane, release: Release, operator: Operator) -> None:
    text = operator.log.read_text()
    forbidden = [line for line in text.splitlines() if "forbidden" in line.lower()]
    assert not forbidden, forbidden[:3]
    assert reconcile_errors(operator.metrics_port) == 0
    lease = json.loads(
        control_plane.kubectl("get", "lease", release.name, "-n", release.namespace, "-o", "json").stdout
    )
    assert lease["spec"]["holderIdentity"] == "rbac-test"


def test_operator_converges_with_namespaced_rbac(
    control_plane: ControlPlane,
    install: Callable[..., Release],
    make_namespace: Callable[[], str],
    run_operator: Callable[[Release], Operator],
) -> None:
    east, west = make_namespace(), make_namespace()
    release = install({"watchNamespaces": [east, west]})
    create_world(control_plane, east, ["a", "b", "c"])
    create_world(control_plane, west, ["d", "e"])
    operator = run_operator(release)
    wait_converged(control_plane, operator, east, 3)
    wait_converged(control_plane, operator, west, 2)
    check_clean_run(control_plane, release, operator)


def test_operator_converges_with_cluster_rbac(
    control_plane: ControlPlane,
    install: Callable[..., Release],
    make_namespace: Callable[[], str],
    run_operator: Callable[[Release], Operator],
) -> None:
    anywhere = make_namespace()
    # Watching every namespace would also reconcile other tests' objects: list this one, as a user may.
    release = install({"rbac": {"create": True, "scope": "cluster"}, "watchNamespaces": [anywhere]})
    create_world(control_plane, anywhere, ["a", "b", "c"])
    operator = run_operator(release)
    wait_converged(control_plane, operator, anywhere, 3)
    check_clean_run(control_plane, release, operator)
