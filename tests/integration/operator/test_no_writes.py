"""A resync of an unchanged world writes nothing: the operator sends no write (seen on its HTTP client),
and the API server's own request counters show none either, when nothing else in the cluster wrote."""

from __future__ import annotations

from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from patronus.controlplane.launcher import ControlPlane
from tests.integration.operator.conftest import Eventually, RunningOperator, load_example
from tests.support.manifests import EXAMPLES

WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
OUR_RESOURCES = {
    "sites",
    "paths",
    "policies",
    "meshes",
    "secrets",
    "configmaps",
    "serviceaccounts",
    "roles",
    "rolebindings",
    "deployments",
    "persistentvolumeclaims",
    "services",
    "events",
}


def write_counts(control_plane: ControlPlane) -> dict[tuple[str, str, str], float]:
    """apiserver_request_total for writes to the resources the operator manages, by (verb, resource, sub)."""
    text = control_plane.kubectl("get", "--raw", "/metrics").stdout
    counts: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "apiserver_request_total"
                and labels.get("verb") in WRITE_VERBS
                and labels.get("resource") in OUR_RESOURCES
            ):
                key = (labels["verb"], labels["resource"], labels.get("subresource", ""))
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts


def no_namespace_terminating(control_plane: ControlPlane) -> bool:
    phases = control_plane.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].status.phase}").stdout
    return "Terminating" not in phases


async def test_resync_of_unchanged_world_makes_zero_writes(
    operator: RunningOperator, namespace: str, eventually: Eventually, control_plane: ControlPlane
) -> None:
    rest = operator.rest
    sent = record_writes(operator)
    for example in ("multi-site-mesh.yaml", "complex-policy.yaml"):
        for obj in load_example(EXAMPLES / example, namespace):
            await rest.create(obj)
    # Quantities the API server rewrites in canonical form (1000m is stored as 1, 2048Mi as 2Gi): the
    # stored Deployment never equals what was applied, and must still not be written again.
    await rest.create(
        {
            "apiVersion": "sdwan.patronus.dev/v1alpha1",
            "kind": "Site",
            "metadata": {"name": "canonical", "namespace": namespace},
            "spec": {
                "wireguard": {"endpoints": ["canonical.example.net:51820"]},
                "resources": {"cpu": "1000m", "memory": "2048Mi"},
            },
        }
    )
    await operator.settle(quiet=2.0)
    assert any(path.endswith("/status") for path in sent), "the recorder sees the operator's writes"
    # The counters are cluster-wide: let kube-controller-manager finish deleting earlier tests' namespaces.
    await eventually(lambda: no_namespace_terminating(control_plane), 120, "earlier namespaces to go")
    before = write_counts(control_plane)
    assert sum(before.values()) > 0  # the counters are real and saw the operator's writes
    sent.clear()

    resynced = sum(controller.enqueue_all() for controller in operator.manager.controllers)
    assert resynced >= 4 + 6 + 2 + 3 + 1  # sites, paths, policies, meshes were all looked at again
    reconciles_before = operator.reconciles()
    await operator.settle(quiet=2.0)
    assert operator.reconciles() - reconciles_before >= resynced
    after = write_counts(control_plane)
    changed: dict[Any, float] = {
        k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)
    }
    assert sent == [], f"the operator wrote during a resync of an unchanged world: {sent} (server: {changed})"
    # kube-controller-manager's garbage collector may still be deleting an earlier test's dependents (a
    # DELETE of a Path was seen once): those are not the operator's, which it never sent (above).
    others = {k: v for k, v in changed.items() if k[0] not in ("DELETE", "DELETECOLLECTION")}
    assert others == {}, f"writes during a resync of an unchanged world: {changed}"


def record_writes(operator: RunningOperator) -> list[str]:
    """Every write request the operator's HTTP client sends from now on, as ``METHOD /path``."""
    sent: list[str] = []

    async def record(request: httpx2.Request) -> None:
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            sent.append(f"{request.method} {request.url.path}")

    http = operator.manager.client.inner.http  # type: ignore[attr-defined]
    http.event_hooks = {**http.event_hooks, "request": [*http.event_hooks["request"], record]}
    return sent
