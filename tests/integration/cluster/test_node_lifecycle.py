"""The seed's Upgrading and Uninstallation sections on a cluster whose node runs the operator.

`helm upgrade` to a new image tag with a changed value rolls the operator one replica at a time; the
leader releases its Lease on SIGTERM, so a new replica leads within seconds (not after the 15 s lease), and
every object created or changed during the roll is reconciled. Applying the CRDs again keeps every
object. The seed's uninstall list, in order, leaves nothing of Patronus in the cluster.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from patronus.controlplane.images import OPERATOR_IMAGE
from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.seed import (
    SYSTEM,
    Shell,
    get_json,
    lease,
    operator_pods,
    preload_images,
    remove_patronus_system,
    wait_for_operator,
)
from tests.support.helm import Helm
from tests.support.manifests import REAL_KEY, REPO
from tests.support.waiting import eventually_sync

GV = "sdwan.patronus.dev/v1alpha1"
NEW_TAG = "v0.1.1-test"
SEED_UNINSTALL = """
kubectl delete sites --all -n patronus-system
kubectl delete policies --all -n patronus-system
kubectl delete paths --all -n patronus-system
kubectl delete meshes --all -n patronus-system

helm uninstall patronus-operator -n patronus-system

kubectl delete crd sites.sdwan.patronus.dev
kubectl delete crd policies.sdwan.patronus.dev
kubectl delete crd paths.sdwan.patronus.dev
kubectl delete crd meshes.sdwan.patronus.dev

kubectl delete namespace patronus-system
"""


def external_site(name: str, location: str = "somewhere") -> dict[str, Any]:
    """A branch-box site (a public key of its own): the operator reconciles it without running an agent."""
    return {
        "apiVersion": GV,
        "kind": "Site",
        "metadata": {"name": name, "namespace": SYSTEM},
        "spec": {
            "location": location,
            "wireguard": {"publicKey": REAL_KEY, "endpoints": [f"{name}.example.net:51820"]},
        },
    }


def apply(cluster: ControlPlane, *objects: dict[str, Any]) -> None:
    text = "\n---\n".join(json.dumps(obj) for obj in objects)
    cluster.kubectl("apply", "-f", "-", input_text=text)


def all_reconciled(cluster: ControlPlane) -> list[str]:
    """Names of the Sites whose status is not yet for their current spec (empty: all reconciled)."""
    sites = get_json(cluster, "sites", "-n", SYSTEM)["items"]
    return [
        site["metadata"]["name"]
        for site in sites
        if (site.get("status") or {}).get("observedGeneration") != site["metadata"]["generation"]
    ]


@dataclass
class Churn:
    """Creates a Site and edits an old one every half second, from a thread, while the operator rolls."""

    cluster: ControlPlane
    created: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    holders: list[tuple[float, str]] = field(default_factory=list)

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            name = f"late-{index}"
            apply(self.cluster, external_site(name), external_site(f"site-{index % 4}", f"edit {index}"))
            self.created.append(name)
            holder = lease(self.cluster)["spec"].get("holderIdentity") or ""
            if not self.holders or self.holders[-1][1] != holder:
                self.holders.append((time.monotonic(), holder))
            index += 1
            self.stop.wait(0.5)


@pytest.fixture
def shell(node_cluster: ControlPlane, tmp_path: Path) -> Iterator[Shell]:
    preload_images(node_cluster)
    remove_patronus_system(node_cluster)
    yield Shell(node_cluster, Helm(home=tmp_path / "helm", kubeconfig=node_cluster.kubeconfig))
    # Whatever happened, the session's cluster gets its CRDs back and no Patronus install.
    node_cluster.kubectl("delete", "namespace", SYSTEM, "--ignore-not-found", "--wait=true", "--timeout=180s")
    node_cluster.kubectl("apply", "-f", str(REPO / "deploy" / "crds"))


def test_upgrade_crds_and_uninstall(shell: Shell, chart_repository: str) -> None:
    cluster = shell.cluster
    shell.run(
        f"""
        helm repo add patronus {chart_repository}
        helm repo update
        helm install patronus-operator patronus/patronus-operator \\
          --namespace patronus-system --create-namespace
        """
    )
    wait_for_operator(cluster)
    apply(cluster, *(external_site(f"site-{i}") for i in range(4)))
    apply(
        cluster,
        {
            "apiVersion": GV,
            "kind": "Mesh",
            "metadata": {"name": "m", "namespace": SYSTEM},
            "spec": {"sites": [f"site-{i}" for i in range(4)]},
        },
    )
    eventually_sync(lambda: not all_reconciled(cluster), timeout=60, what="the first Sites reconciled")
    before = lease(cluster)["spec"]
    old_pods = {pod["metadata"]["name"] for pod in operator_pods(cluster)}

    # The seed's upgrade command, to a new image tag and a changed value, while objects keep changing.
    assert cluster.node is not None
    cluster.node.tag_image(OPERATOR_IMAGE, f"ghcr.io/patronus/patronus-operator:{NEW_TAG}")
    churn = Churn(cluster)
    thread = threading.Thread(target=churn.run, daemon=True)
    thread.start()
    try:
        shell.run(
            f"""
            helm upgrade patronus-operator patronus/patronus-operator \\
              --namespace patronus-system --set image.tag={NEW_TAG} --set config.logLevel=debug
            """
        )
        wait_for_operator(cluster, timeout=240)
        eventually_sync(
            lambda: not set(_names(operator_pods(cluster))) & old_pods, timeout=120, what="old pods gone"
        )
        # The last old leader released the Lease as it stopped; a new replica takes it on its next try.
        eventually_sync(
            lambda: lease(cluster)["spec"].get("holderIdentity") in _names(operator_pods(cluster)),
            timeout=30,
            what="a new replica leading",
        )
        eventually_sync(
            lambda: churn.holders[-1][1] in _names(operator_pods(cluster)), timeout=5, what="sampled"
        )
    finally:
        churn.stop.set()
        thread.join(30)
    pods = operator_pods(cluster)
    assert all(pod["spec"]["containers"][0]["image"].endswith(f":{NEW_TAG}") for pod in pods)
    config = get_json(cluster, "configmap", "patronus-operator-config", "-n", SYSTEM)
    assert config["data"]["LOG_LEVEL"] == "debug"
    after = lease(cluster)["spec"]
    assert after["holderIdentity"] in _names(pods)
    assert after["leaseTransitions"] > before.get("leaseTransitions", 0)
    assert handover_seconds(churn.holders, old_pods) < 10, churn.holders  # a release, not a 15 s expiry
    # No reconcile lost: every Site made or edited during the roll has a status for its latest spec.
    assert len(churn.created) >= 3
    eventually_sync(lambda: not all_reconciled(cluster), timeout=60, what="every Site reconciled")
    mesh = get_json(cluster, "mesh", "m", "-n", SYSTEM)
    assert mesh["status"]["totalPaths"] == 12

    # The seed's Upgrade CRDs: every object is kept.
    uids = _uids(cluster)
    shell.run(f"kubectl apply -f {REPO / 'deploy' / 'crds'}/")
    assert _uids(cluster) == uids

    assert leftovers(cluster)  # the scan sees an install
    shell.run(SEED_UNINSTALL, timeout=420)
    assert leftovers(cluster) == []


def _names(pods: list[dict[str, Any]]) -> list[str]:
    return [pod["metadata"]["name"] for pod in pods]


def _uids(cluster: ControlPlane) -> dict[str, str]:
    objects = get_json(cluster, "sites,meshes,paths,policies", "-n", SYSTEM)["items"]
    return {f"{obj['kind']}/{obj['metadata']['name']}": obj["metadata"]["uid"] for obj in objects}


def handover_seconds(holders: list[tuple[float, str]], old_pods: set[str]) -> float:
    """From the last moment an old pod held the Lease to the first a new pod held it."""
    last_old = max(t for t, holder in holders if holder in old_pods)
    first_new = min(t for t, holder in holders if holder and holder not in old_pods and t >= last_old)
    return first_new - last_old


# What marks an object as Patronus's: the chart's and the operator's labels, its namespace, its API group.
PATRONUS_MARKS = (
    '"app.kubernetes.io/part-of": "patronus"',
    "patronus-operator",
    SYSTEM,
    "sdwan.patronus.dev",
)


def leftovers(cluster: ControlPlane) -> list[str]:
    """Every object in the cluster that is Patronus's (by name, namespace or labels), Events aside."""
    kinds = cluster.kubectl("api-resources", "--verbs=list", "-o", "name").stdout.split()
    found = []
    for kind in kinds:
        if kind in ("events", "events.events.k8s.io"):
            continue
        result = cluster.kubectl("get", kind, "-A", "-o", "json", check=False)
        if result.returncode != 0:
            continue
        for item in json.loads(result.stdout)["items"]:
            meta = item["metadata"]
            text = json.dumps(
                {"name": meta.get("name"), "ns": meta.get("namespace"), "labels": meta.get("labels")}
            )
            if any(mark in text for mark in PATRONUS_MARKS):
                found.append(f"{kind}/{meta.get('namespace') or ''}/{meta['name']}")
    return found
