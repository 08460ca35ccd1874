"""What the chart's RBAC lets the operator do, asked of the real API server's authorizer.

Namespaced mode (the default) must grant nothing outside the watched namespaces and the Lease and
ConfigMap in the release's namespace; cluster mode grants the same rules in every namespace and still
nothing beyond them (no pods, no ClusterRoles, no escalate or bind).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from patronus.controlplane.launcher import ControlPlane
from tests.integration.cluster.conftest import Release, can_i

SITES = "sites.sdwan.patronus.dev"
PATHS = "paths.sdwan.patronus.dev"


def bindings_of(control_plane: ControlPlane, release: Release) -> list[dict[str, Any]]:
    """Every RoleBinding and ClusterRoleBinding in the cluster whose subject is the operator."""

    found = []
    for kind, scope in (("rolebindings", ["-A"]), ("clusterrolebindings", [])):
        items = json.loads(control_plane.kubectl("get", kind, *scope, "-o", "json").stdout)["items"]
        for binding in items:
            for subject in binding.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount" and (
                    subject.get("name"),
                    subject.get("namespace"),
                ) == (release.name, release.namespace):
                    found.append(binding)
    return found


def test_namespaced_mode_grants_only_the_watched_namespaces(
    control_plane: ControlPlane, install: Callable[..., Release], make_namespace: Callable[[], str]
) -> None:
    east, west, elsewhere = make_namespace(), make_namespace(), make_namespace()
    release = install({"watchNamespaces": [east, west]})
    user = release.user

    def can(*args: str) -> bool:
        return can_i(control_plane, user, *args)

    for watched in (east, west):
        assert can("list", SITES, "-n", watched)
        assert can("patch", SITES, "--subresource=status", "-n", watched)
        assert can("create", PATHS, "-n", watched)
        assert can("create", "secrets", "-n", watched)
        assert can("create", "roles.rbac.authorization.k8s.io", "-n", watched)
        assert not can("patch", SITES, "-n", watched)  # users own the specs
        assert not can("delete", SITES, "-n", watched)
        assert not can("create", "pods", "-n", watched)
        assert not can("escalate", "roles", "-n", watched)
        assert not can("bind", "roles", "-n", watched)
    for outside in (elsewhere, "kube-system", "default"):
        assert not can("list", SITES, "-n", outside)
        assert not can("get", "secrets", "-n", outside)
        assert not can("create", "deployments.apps", "-n", outside)
    # Nothing cluster-wide: not across namespaces, not cluster-scoped kinds.
    assert not can("list", SITES, "--all-namespaces")
    assert not can("list", "secrets", "--all-namespaces")
    assert not can("list", "namespaces")
    assert not can("create", "clusterroles")
    # Its own Lease and settings, in its own namespace.
    own = release.namespace
    assert can("create", "leases.coordination.k8s.io", "-n", own)
    assert can("update", f"leases.coordination.k8s.io/{release.name}", "-n", own)
    assert not can("update", "leases.coordination.k8s.io/someone-else", "-n", own)
    # In a watched namespace it makes each agent's heartbeat Lease (and patches it), and deletes none.
    assert can("create", "leases.coordination.k8s.io", "-n", east)
    assert not can("delete", "leases.coordination.k8s.io", "-n", east)
    assert not can("update", "leases.coordination.k8s.io/someone-else", "-n", east)
    assert can("get", f"configmaps/{release.name}-config", "-n", own)
    assert not can("get", "secrets", "-n", own)
    # The API server agrees: the ServiceAccount is bound in those namespaces only, never cluster-wide.
    bound = {(b["kind"], b["metadata"].get("namespace")) for b in bindings_of(control_plane, release)}
    assert bound == {("RoleBinding", east), ("RoleBinding", west), ("RoleBinding", own)}


def test_cluster_mode_grants_the_rules_everywhere_and_nothing_more(
    control_plane: ControlPlane, install: Callable[..., Release], make_namespace: Callable[[], str]
) -> None:
    anywhere = make_namespace()
    release = install({"rbac": {"create": True, "scope": "cluster"}})

    def can(*args: str) -> bool:
        return can_i(control_plane, release.user, *args)

    assert can("list", SITES, "--all-namespaces")
    assert can("patch", SITES, "--subresource=status", "-n", anywhere)
    # What the documentation warns about: Secrets and workloads in every namespace.
    assert can("create", "secrets", "-n", "kube-system")
    assert can("patch", "deployments.apps", "-n", anywhere)
    # Server-side apply only, and garbage collection deletes a Site's children: no update, no delete.
    assert not can("update", "secrets", "-n", anywhere)
    assert not can("delete", "deployments.apps", "-n", anywhere)
    assert can("delete", PATHS, "-n", anywhere)  # the Paths a Mesh prunes
    assert not can("patch", SITES, "-n", anywhere)
    assert not can("create", "pods", "-n", anywhere)
    assert not can("create", "clusterroles")
    assert not can("delete", "namespaces")
    assert not can("escalate", "roles", "-n", anywhere)
    assert not can("bind", "roles", "-n", anywhere)
    assert not can("update", "leases.coordination.k8s.io", "-n", anywhere)
    kinds = sorted(b["kind"] for b in bindings_of(control_plane, release))
    assert kinds == ["ClusterRoleBinding", "RoleBinding", "RoleBinding"]  # + Lease and ConfigMap
