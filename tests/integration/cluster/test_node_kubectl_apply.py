"""The seed's Installation, Option 2, from this repository's deploy/ (the seed's URLs do not exist), on a
cluster whose node runs the pods: the operator's replicas Ready, one leader, its logs by label."""

from __future__ import annotations

import time
from pathlib import Path

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.seed import (
    Shell,
    assert_operator_logs,
    lease,
    operator_pods,
    preload_images,
    remove_patronus_system,
    wait_for_operator,
)
from tests.support.helm import Helm
from tests.support.manifests import REPO


def test_kubectl_apply_of_deploy_runs_the_operator(node_cluster: ControlPlane, tmp_path: Path) -> None:
    preload_images(node_cluster)
    shell = Shell(node_cluster, Helm(home=tmp_path / "helm", kubeconfig=node_cluster.kubeconfig))
    remove_patronus_system(node_cluster)
    try:
        start = time.monotonic()
        shell.run(f"cd {REPO} && kubectl apply -f deploy/crds/ -f deploy/operator/")
        wait_for_operator(node_cluster)
        print(f"kubectl apply to all replicas Ready: {time.monotonic() - start:.1f} s")
        pods = [pod["metadata"]["name"] for pod in operator_pods(node_cluster)]
        assert lease(node_cluster)["spec"]["holderIdentity"] in pods
        assert_operator_logs(shell)
        shell.run(f"cd {REPO} && kubectl delete -f deploy/operator/ --wait=true")
        assert not operator_pods(node_cluster)
    finally:
        remove_patronus_system(node_cluster)
