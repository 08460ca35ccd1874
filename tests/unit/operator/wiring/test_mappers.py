"""The mappers: which objects a change concerns, looked up in the operator's own caches."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.kube.resource import CONFIG_MAP, SECRET, ObjectKey
from patronus.operator.site.children.names import site_label_value
from patronus.operator.wiring import mappers
from tests.unit.operator.world import NS, World, mesh, path, policy, secret, site


def keys(*names: str) -> list[ObjectKey]:
    return [ObjectKey(NS, name) for name in names]


def owned_by(obj: dict[str, Any], kind: str, name: str, uid: str) -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [{"kind": kind, "name": name, "uid": uid, "apiVersion": "x"}]
    return obj


@pytest.fixture
def world() -> World:
    return World(
        site("a", mesh={"peerWith": ["b"]}),
        site("b"),
        site("c"),
        site("d", mesh={"peerWith": ["a"]}),
        site("e", status={"policies": [{"name": "web"}, {"name": "voice"}]}),
        mesh("m", ["a", "c"]),
        mesh("n", ["c", "e"]),
        path("a-c", "a", "c"),
        path("c-a", "c", "a"),
        policy("voice", primary=("a", "a-c")),
        policy("web"),
        policy("dns"),
    )


def test_sites_related_to_a_site_are_its_peers_either_way_and_its_mesh_mates(world: World) -> None:
    a = world.caches.sites.get(NS, "a")
    assert a is not None
    assert mappers.sites_related_to_site(world.caches, a) == keys("b", "c", "d")
    c = world.caches.sites.get(NS, "c")
    assert c is not None
    assert mappers.sites_related_to_site(world.caches, c) == keys("a", "e")


def test_peers_of_the_site_owning_a_key_secret_or_config_map(world: World) -> None:
    a = world.caches.sites.get(NS, "a")
    assert a is not None
    secret = owned_by(
        {"metadata": {"name": "a-wireguard", "namespace": NS}}, "Site", "a", a["metadata"]["uid"]
    )
    assert mappers.peers_of_owning_site(world.caches, secret) == keys("b", "c", "d")
    impostor = owned_by({"metadata": {"name": "x", "namespace": NS}}, "Site", "a", "another-uid")
    assert mappers.peers_of_owning_site(world.caches, impostor) == [], "an owner reference must match the uid"
    assert mappers.peers_of_owning_site(world.caches, {"metadata": {"name": "y", "namespace": NS}}) == []
    assert SECRET.kind != CONFIG_MAP.kind


def test_sites_of_a_mesh_and_the_source_of_a_path(world: World) -> None:
    assert mappers.sites_of_mesh(mesh("m", ["a", "c"])) == keys("a", "c")
    assert mappers.source_site_of_path(path("a-c", "a", "c")) == keys("a")


def test_sites_of_a_policy_are_the_one_it_names_or_all(world: World) -> None:
    assert mappers.sites_of_policy(world.caches, policy("voice", primary=("a", "a-c"))) == keys("a")
    assert sorted(mappers.sites_of_policy(world.caches, policy("web"))) == keys("a", "b", "c", "d", "e")


def test_meshes_and_paths_of_a_site(world: World) -> None:
    c = world.caches.sites.get(NS, "c")
    assert c is not None
    assert sorted(mappers.meshes_of_site(world.caches, c)) == keys("m", "n")
    assert sorted(mappers.paths_of_site(world.caches, c)) == keys("a-c", "c-a")


def test_the_meshes_of_a_path(world: World) -> None:
    owned = owned_by(path("m.a.c.default", "a", "c"), "Mesh", "m", "uid-m")
    assert mappers.meshes_of_path(world.caches, owned) == keys("m")
    # A Path no mesh owns may hold a name a mesh needs: the meshes listing its source look again.
    assert sorted(mappers.meshes_of_path(world.caches, path("by-hand", "c", "a"))) == keys("m", "n")
    assert mappers.meshes_of_path(world.caches, path("by-hand", "b", "a")) == []


def test_policies_of_a_path_and_of_a_site(world: World) -> None:
    a_c = world.caches.paths.get(NS, "a-c")
    assert a_c is not None
    assert mappers.policies_of_path(world.caches, a_c) == keys("voice")
    a, e = world.caches.sites.get(NS, "a"), world.caches.sites.get(NS, "e")
    assert a is not None
    assert e is not None
    assert mappers.policies_of_site(world.caches, a) == keys("voice")
    assert mappers.policies_of_site(world.caches, e) == keys("voice", "web"), "what its agent reports on"


def test_a_site_coming_or_going_concerns_the_namespace_wide_policies_someone_reports_on(world: World) -> None:
    b = world.caches.sites.get(NS, "b")
    assert b is not None
    assert mappers.namespace_wide_policies(world.caches, b) == keys("web"), "dns: nobody reports on it"


def test_a_labelled_key_secret_finds_its_site() -> None:
    long_name = "s" * 70
    world = World(site("a"), site(long_name))
    labelled = secret("k", {"privateKey": "x"}, {"sdwan.patronus.dev/site": "a"})
    assert mappers.site_of_key_secret(world.caches, labelled) == keys("a")
    value = site_label_value(long_name)
    assert mappers.site_of_key_secret(
        world.caches, secret("k", {}, {"sdwan.patronus.dev/site": value})
    ) == keys(long_name)
    assert mappers.site_of_key_secret(world.caches, secret("k", {})) == []


def test_a_site_with_a_contested_claim_requeues_its_rivals_and_their_peers() -> None:
    shared = {"publicKey": "K6uSA8RBK4jdVwrDas/kO9Dhh+Gx/XA+1XGahbrl7zs=", "endpoints": ["a.example.net:1"]}
    world = World(
        site("a", wireguard=shared),
        site("b", wireguard=shared),
        site("c", subnets=["10.1.0.0/16"]),
        site("d", wireguard={"endpoints": ["10.1.2.3:51820"]}),
        site("e"),
        mesh("m", ["b", "e"]),
    )
    a, d = world.caches.sites.get(NS, "a"), world.caches.sites.get(NS, "d")
    assert a is not None
    assert d is not None
    assert mappers.sites_in_conflict(world.caches, a) == keys("b", "e"), "b shares the key; e peers with b"
    assert mappers.sites_in_conflict(world.caches, d) == keys("c"), "c's subnet holds d's endpoint"
    newcomer = site("f", subnets=["10.1.128.0/17"])
    assert mappers.sites_in_conflict(world.caches, newcomer) == keys("c")
