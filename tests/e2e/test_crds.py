"""The CRDs install into the cluster, the examples apply, bad objects are refused."""

from __future__ import annotations

import yaml

from tests.e2e.conftest import Kubectl
from tests.support.manifests import REPO, example_files, example_objects


def test_crds_install_and_are_established(cluster_kubectl: Kubectl) -> None:
    applied = cluster_kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "deploy" / "crds")
    )
    assert applied.stdout.count("serverside-applied") == 4, applied.stdout
    waited = cluster_kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/sites.sdwan.patronus.dev",
        "crd/paths.sdwan.patronus.dev",
        "crd/policies.sdwan.patronus.dev",
        "crd/meshes.sdwan.patronus.dev",
    )
    assert waited.stdout.count("condition met") == 4


def test_examples_apply_and_list(cluster_kubectl: Kubectl, e2e_namespace: str) -> None:
    expected = 0
    for path in example_files():
        documents = example_objects(path)
        for doc in documents:
            doc["metadata"]["namespace"] = e2e_namespace
        expected += len(documents)
        cluster_kubectl("apply", "-f", "-", input_text=yaml.safe_dump_all(documents))
    names = cluster_kubectl("get", "patronus", "-n", e2e_namespace, "-o", "name").stdout.split()
    assert len(set(names)) == len(
        {(d["kind"], d["metadata"]["name"]) for p in example_files() for d in example_objects(p)}
    )
    assert expected >= len(set(names)) > 0


def test_invalid_site_is_refused(cluster_kubectl: Kubectl, e2e_namespace: str) -> None:
    bad = {
        "apiVersion": "sdwan.patronus.dev/v1alpha1",
        "kind": "Site",
        "metadata": {"name": "bad", "namespace": e2e_namespace},
        "spec": {"wireguard": {"publicKey": "not-a-key", "endpoints": ["203.0.113.1:51820"]}},
    }
    result = cluster_kubectl("apply", "-f", "-", input_text=yaml.safe_dump(bad), check=False)
    assert result.returncode != 0
    assert "spec.wireguard.publicKey" in result.stderr
