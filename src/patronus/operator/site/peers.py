"""The sites a site peers with, and what it may trust about them.

Peers come from the Meshes that list the site and from ``mesh.peerWith`` (both ways: WireGuard works
only when both ends know each other), found through indexes rather than by walking the namespace. A
peer's public key comes from its spec or from the operator's own key Secret, and its overlay address
from the operator's allocation (``site.addresses``): never from a status its agent can write. A peer
whose key or address is not known yet is left out of the configuration until it is.
"""

from __future__ import annotations

from patronus.api import Mesh, Site
from patronus.kube.resource import SECRET
from patronus.operator.context import Caches
from patronus.operator.indexes import BY_MESH_SITE, BY_PEER, ref
from patronus.operator.reconcile.parsed import parsed
from patronus.operator.site.addresses import OverlayAddresses
from patronus.operator.site.children.names import child_names
from patronus.operator.site.keys import public_key_of
from patronus.topology import SiteView, peer_names, site_view


def peer_sites(caches: Caches, namespace: str, site: Site) -> list[Site]:
    """The sites ``site`` peers with that exist and parse, sorted by name."""
    me = ref(namespace, site.metadata.name)
    meshes = [m for m in (parsed(Mesh, obj) for obj in caches.meshes.by_index(BY_MESH_SITE, me)) if m]
    others = [s for s in (parsed(Site, obj) for obj in caches.sites.by_index(BY_PEER, me)) if s]
    found = []
    for peer_name in peer_names(site, meshes, sites=others):
        peer = parsed(Site, caches.sites.get(namespace, peer_name))
        if peer is not None:
            found.append(peer)
    return found


def trusted_view(caches: Caches, addresses: OverlayAddresses, namespace: str, peer: Site) -> SiteView:
    """``peer`` as its peers' configurations see it, from operator-owned data only."""
    name = peer.metadata.name
    secret = caches.child(SECRET).get(namespace, child_names(name).secret)
    return site_view(
        peer,
        public_key=public_key_of(peer, secret),
        overlay_address=addresses.current(namespace, name),
    )


def peer_views(caches: Caches, addresses: OverlayAddresses, namespace: str, site: Site) -> list[SiteView]:
    """Every peer of ``site``, as its configuration sees it."""
    return [trusted_view(caches, addresses, namespace, peer) for peer in peer_sites(caches, namespace, site)]
