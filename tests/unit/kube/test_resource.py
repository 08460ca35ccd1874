"""ResourceKind paths and the kind registry."""

from __future__ import annotations

import pytest

from patronus.api.meta import GROUP_VERSION
from patronus.kube.resource import (
    CONFIG_MAP,
    DEPLOYMENT,
    LEASE,
    MESH,
    NAMESPACE,
    POLICY,
    SITE,
    ObjectKey,
    ResourceKind,
    kind_of,
    register,
)


def test_core_group_paths() -> None:
    assert CONFIG_MAP.api_version == "v1"
    assert CONFIG_MAP.collection_path() == "/api/v1/configmaps"
    assert CONFIG_MAP.collection_path("ns") == "/api/v1/namespaces/ns/configmaps"
    assert CONFIG_MAP.object_path("ns", "a") == "/api/v1/namespaces/ns/configmaps/a"


def test_named_group_paths_and_subresources() -> None:
    assert DEPLOYMENT.api_version == "apps/v1"
    assert DEPLOYMENT.object_path("ns", "d", "scale") == "/apis/apps/v1/namespaces/ns/deployments/d/scale"
    assert (
        LEASE.collection_path("kube-system") == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
    )
    assert SITE.api_version == GROUP_VERSION
    assert SITE.object_path("ns", "hq", "status") == f"/apis/{GROUP_VERSION}/namespaces/ns/sites/hq/status"
    assert POLICY.plural == "policies"
    assert MESH.plural == "meshes"
    assert str(SITE) == "sites.sdwan.patronus.dev"


def test_scope_is_enforced() -> None:
    assert NAMESPACE.object_path(None, "default") == "/api/v1/namespaces/default"
    with pytest.raises(ValueError, match="cluster-scoped"):
        NAMESPACE.collection_path("x")
    with pytest.raises(ValueError, match="namespace is required"):
        CONFIG_MAP.object_path(None, "a")


def test_kind_of_and_register() -> None:
    assert kind_of({"apiVersion": "v1", "kind": "ConfigMap"}) is CONFIG_MAP
    assert kind_of({"apiVersion": GROUP_VERSION, "kind": "Path"}).plural == "paths"
    widget = ResourceKind("example.com", "v1", "Widget", "widgets")
    with pytest.raises(LookupError, match="Widget"):
        kind_of({"apiVersion": "example.com/v1", "kind": "Widget"})
    register(widget)
    assert kind_of({"apiVersion": "example.com/v1", "kind": "Widget"}) is widget


def test_object_key() -> None:
    key = ObjectKey.of({"metadata": {"name": "a", "namespace": "ns"}})
    assert key == ("ns", "a")
    assert key.namespace == "ns"
    assert ObjectKey.of({"metadata": {"name": "n"}}) == ObjectKey("", "n")
