"""Mappers: which objects of a controller's kind a change to another object concerns.

Each is a function of the caches and one changed object, returning the keys to reconcile; the wiring
binds the caches. They look up indexes (never walk a namespace), so a change costs what it concerns.
"""

from __future__ import annotations

from patronus.kube.resource import SECRET, ObjectKey
from patronus.operator import indexes
from patronus.operator.context import Caches
from patronus.operator.site import conflicts
from patronus.operator.site.children.names import child_names
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
        return caches.sites.keys(_namespace(obj))  # 250 such policies x 5,000 sites: no object touched
    return indexes.keys_from_refs(refs)


def meshes_of_site(caches: Caches, obj: Object) -> list[ObjectKey]:
    site = indexes.ref(_namespace(obj), obj["metadata"]["name"])
    return _keys(caches.meshes.by_index(indexes.BY_MESH_SITE, site))


def meshes_of_path(caches: Caches, obj: Object) -> list[ObjectKey]:
    """The Mesh that owns a Path; for a Path no Mesh owns, the meshes listing its source site, since
    its name may be one they need (they report it, and take the name once it is free)."""
    owners = [o["name"] for o in obj["metadata"].get("ownerReferences") or [] if o.get("kind") == "Mesh"]
    if owners:
        return [ObjectKey(_namespace(obj), name) for name in owners]
    sources = indexes.path_source(obj)
    return _keys(caches.meshes.by_index(indexes.BY_MESH_SITE, sources[0])) if sources else []


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


def site_of_key_secret(caches: Caches, obj: Object) -> list[ObjectKey]:
    """A site-labelled Secret changed: the site its label names looks again (a user's Secret for
    ``privateKeySecretRef`` has no owner reference; its label is what ties it to the site)."""
    labels = indexes.secret_site_label(obj)
    return _keys(caches.sites.by_index(indexes.BY_LABEL_VALUE, labels[0])) if labels else []


def _with_their_peers(caches: Caches, sites: list[Object]) -> list[ObjectKey]:
    """The sites, and the sites that peer with them (their configurations hold what was contested)."""
    found = set(_keys(sites))
    for site in sites:
        found |= set(sites_related_to_site(caches, site))
    return sorted(found)


def sites_sharing_secret_key(caches: Caches, obj: Object) -> list[ObjectKey]:
    """A key Secret came or went: the sites whose spec claims the same public key, and their peers."""
    claimants = [
        site
        for value in indexes.secret_public_key(obj)
        for site in caches.sites.by_index(indexes.BY_PUBLIC_KEY, value)
    ]
    return _with_their_peers(caches, claimants)


def sites_in_conflict(caches: Caches, obj: Object) -> list[ObjectKey]:
    """A site came, went or changed its key, prefixes or endpoints: the sites whose claims that may
    decide (see ``site.conflicts``), and their peers. Only the new claims are known here: a site whose
    claim stopped contesting another's lets that one win at the next resync."""
    namespace, name = _namespace(obj), obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    key = (spec.get("wireguard") or {}).get("publicKey")
    secret = caches.child(SECRET).get(namespace, child_names(name).secret)
    keys = (
        [key] if key else [v.partition("/")[2] for v in indexes.secret_public_key(secret or {"metadata": {}})]
    )
    rivals = [s for k in keys for s in conflicts.key_claimants(caches, namespace, k)]
    contested = conflicts.contested_with(
        caches, obj, spec.get("subnets") or [], (spec.get("wireguard") or {}).get("endpoints") or []
    )
    rivals += [site for other in contested if (site := caches.sites.get(namespace, other)) is not None]
    rivals = [site for site in rivals if site["metadata"]["name"] != name]
    return [k for k in _with_their_peers(caches, rivals) if k != ObjectKey(namespace, name)]
