"""Mappers: which objects of a controller's kind a change to another object concerns.

Each is a function of the caches and one changed object, returning the keys to reconcile; the wiring
binds the caches. They look up indexes (never walk a namespace), so a change costs what it concerns.
"""

from __future__ import annotations

from patronus.kube.resource import ObjectKey
from patronus.operator import indexes
from patronus.operator.context import Caches
from patronus.runtime.cache import Object


def _namespace(obj: Object) -> str:
    return str(obj["metadata"].get("namespace") or "")


def _keys(objects: list[Object]) -> list[ObjectKey]:
    return [ObjectKey.of(obj) for obj in objects]


def sites_related_to_site(caches: Caches, obj: Object) -> list[ObjectKey]:
    """A site's key, address or endpoints changed: every site that peers with it renders again."""
    namespace, name = _namespace(obj), obj["metadata"]["name"]
    me = indexes.ref(namespace, name)
    related = {
        ObjectKey(namespace, peer)
        for peer in ((obj.get("spec") or {}).get("mesh") or {}).get("peerWith") or []
    }
    related |= set(_keys(caches.sites.by_index(indexes.BY_PEER, me)))
    for mesh in caches.meshes.by_index(indexes.BY_MESH_SITE, me):
        related |= {ObjectKey(namespace, site) for site in (mesh.get("spec") or {}).get("sites") or []}
    related.discard(ObjectKey(namespace, name))
    return sorted(related)


def peers_of_owning_site(caches: Caches, obj: Object) -> list[ObjectKey]:
    """A site's key Secret or ConfigMap changed what peers read from it (the public key, the overlay
    address): the sites that peer with its owner render again."""
    namespace = _namespace(obj)
    related: set[ObjectKey] = set()
    for owner in obj["metadata"].get("ownerReferences") or []:
        site = caches.sites.get(namespace, owner.get("name", "")) if owner.get("kind") == "Site" else None
        if site is not None and site["metadata"].get("uid") == owner.get("uid"):
            related |= set(sites_related_to_site(caches, site))
    return sorted(related)


def sites_of_mesh(obj: Object) -> list[ObjectKey]:
    return indexes.keys_from_refs(indexes.mesh_sites(obj))


def source_site_of_path(obj: Object) -> list[ObjectKey]:
    return indexes.keys_from_refs(indexes.path_source(obj))


def sites_of_policy(caches: Caches, obj: Object) -> list[ObjectKey]:
    """The sites whose configuration holds the policy: the one it names, or every site."""
    refs = indexes.policy_sites(obj)
    if refs == [indexes.ref(_namespace(obj), indexes.ALL_SITES)]:
        return _keys(caches.sites.list(_namespace(obj)))
    return indexes.keys_from_refs(refs)


def meshes_of_site(caches: Caches, obj: Object) -> list[ObjectKey]:
    site = indexes.ref(_namespace(obj), obj["metadata"]["name"])
    return _keys(caches.meshes.by_index(indexes.BY_MESH_SITE, site))


def owning_mesh_of_path(obj: Object) -> list[ObjectKey]:
    return [
        ObjectKey(_namespace(obj), owner["name"])
        for owner in obj["metadata"].get("ownerReferences") or []
        if owner.get("kind") == "Mesh"
    ]


def paths_of_site(caches: Caches, obj: Object) -> list[ObjectKey]:
    site = indexes.ref(_namespace(obj), obj["metadata"]["name"])
    found = caches.paths.by_index(indexes.BY_SOURCE, site) + caches.paths.by_index(
        indexes.BY_DESTINATION, site
    )
    return _keys(found)


def policies_of_path(caches: Caches, obj: Object) -> list[ObjectKey]:
    path = indexes.ref(_namespace(obj), obj["metadata"]["name"])
    return _keys(caches.policies.by_index(indexes.BY_PATH, path))


def policies_of_site(caches: Caches, obj: Object) -> list[ObjectKey]:
    """The policies a site enforces by name, and those its agent reports on."""
    namespace, name = _namespace(obj), obj["metadata"]["name"]
    named = _keys(caches.policies.by_index(indexes.BY_ENFORCING_SITE, indexes.ref(namespace, name)))
    reported = indexes.keys_from_refs(indexes.site_reported_policies(obj))
    return sorted(set(named) | set(reported))


def namespace_wide_policies(caches: Caches, obj: Object) -> list[ObjectKey]:
    """A site came or went: the namespace-wide policies some site reports on count their sites again
    (those nobody reports on yet have nothing to count)."""
    namespace = _namespace(obj)
    everywhere = caches.policies.by_index(
        indexes.BY_ENFORCING_SITE, indexes.ref(namespace, indexes.ALL_SITES)
    )
    return [
        ObjectKey.of(policy)
        for policy in everywhere
        if caches.sites.by_index(
            indexes.BY_REPORTED_POLICY, indexes.ref(namespace, policy["metadata"]["name"])
        )
    ]
