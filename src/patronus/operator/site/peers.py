"""The sites a site peers with, and what it may trust about them.

Peers come from the Meshes that list the site and from ``mesh.peerWith`` (both ways: WireGuard works
only when both ends know each other), found through indexes rather than by walking the namespace. A
peer's public key comes from its spec or from the operator's own key Secret, and its overlay address
from the operator's allocation (``site.addresses``): never from a status its agent can write. A peer
whose key or address is not known yet is left out of the configuration until it is.
"""

from __future__ import annotations

from dataclasses import replace

from patronus.api import Mesh, Site
from patronus.kube.resource import SECRET
from patronus.operator.context import Caches
from patronus.operator.indexes import BY_MESH_SITE, BY_PEER, ref
from patronus.operator.reconcile.parsed import parsed
from patronus.operator.site.addresses import OverlayAddresses
from patronus.operator.site.children.names import child_names
from patronus.operator.site.conflicts import key_rival, routes
from patronus.operator.site.keys import public_key_of
from patronus.runtime.cache import Object
from patronus.topology import SiteView, peer_names, site_view


def peer_sites(caches: Caches, namespace: str, site: Site) -> list[tuple[Object, Site]]:
    """The sites ``site`` peers with that exist and parse, sorted by name (as cached, and parsed)."""
    me = ref(namespace, site.metadata.name)
    meshes = [m for m in (parsed(Mesh, obj) for obj in caches.meshes.by_index(BY_MESH_SITE, me)) if m]
    others = [s for s in (parsed(Site, obj) for obj in caches.sites.by_index(BY_PEER, me)) if s]
    found = []
    for peer_name in peer_names(site, meshes, sites=others):
        peer_obj = caches.sites.get(namespace, peer_name)
        peer = parsed(Site, peer_obj)
        if peer_obj is not None and peer is not None:
            found.append((peer_obj, peer))
    return found


def trusted_view(
    caches: Caches, addresses: OverlayAddresses, namespace: str, peer_obj: Object, peer: Site
) -> SiteView:
    """``peer`` as its peers' configurations see it, from operator-owned data only, without what another
    site claimed first (its key: then it is left out; a LAN prefix: then that prefix is)."""
    name = peer.metadata.name
    public_key = public_key_of(peer, caches.child(SECRET).get(namespace, child_names(name).secret))
    if key_rival(caches, peer_obj, public_key) is not None:
        public_key = None
    view = site_view(peer, public_key=public_key, overlay_address=addresses.current(namespace, name))
    return replace(view, subnets=routes(caches, peer_obj, view.subnets).usable)


def peer_views(caches: Caches, addresses: OverlayAddresses, namespace: str, site: Site) -> list[SiteView]:
    """Every peer of ``site``, as its configuration sees it."""
    return [
        trusted_view(caches, addresses, namespace, peer_obj, peer)
        for peer_obj, peer in peer_sites(caches, namespace, site)
    ]
