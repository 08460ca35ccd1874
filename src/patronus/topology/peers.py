"""WireGuard peer sets: who a site peers with, and the peer entries of each of its interfaces.

A Site object is flattened into a :class:`SiteView` first, with the values that live in status (public key,
overlay address) passed in by the caller, so the peer computation works on plain immutable values and a
site that is not ready yet (no key or no address) is simply left out rather than half-configured.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from patronus.api.mesh import Mesh
from patronus.api.site import DEFAULT_UNDERLAY, Site
from patronus.topology.mesh import site_pairs


@dataclass(frozen=True)
class UnderlayView:
    """One WAN underlay of a site: where peers reach it and the UDP port its interface listens on."""

    name: str
    endpoint: str
    listen_port: int


@dataclass(frozen=True)
class SiteView:
    """What peering needs to know about a site, spec and status together."""

    name: str
    public_key: str | None
    overlay_address: str | None
    subnets: tuple[str, ...]
    """LAN prefixes, sorted (the spec's list is a set)."""
    underlays: tuple[UnderlayView, ...]
    """Primary first."""
    persistent_keepalive: int
    listen_port: int


def site_view(site: Site, *, public_key: str | None, overlay_address: str | None) -> SiteView:
    """Flatten a Site; ``public_key`` and ``overlay_address`` come from its status (or were just made).

    Each underlay listens on its own listenPort, or on wireguard.listenPort plus its index so several
    interfaces on one host never share a port. A site without underlays has one, "default", at its first
    endpoint.
    """
    wireguard = site.spec.wireguard
    if site.spec.underlays:
        underlays = tuple(
            UnderlayView(
                name=underlay.name,
                endpoint=underlay.endpoint,
                listen_port=underlay.listen_port or wireguard.listen_port + index,
            )
            for index, underlay in enumerate(site.spec.underlays)
        )
    else:
        underlays = (UnderlayView(DEFAULT_UNDERLAY, wireguard.endpoints[0], wireguard.listen_port),)
    return SiteView(
        name=site.metadata.name,
        public_key=public_key,
        overlay_address=overlay_address,
        subnets=tuple(sorted(site.spec.subnets or ())),
        underlays=underlays,
        persistent_keepalive=wireguard.persistent_keepalive,
        listen_port=wireguard.listen_port,
    )


@dataclass(frozen=True)
class WireGuardPeer:
    """One [Peer] section of a WireGuard interface."""

    site: str
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    persistent_keepalive: int


def host_prefix(address: str) -> str:
    """``100.96.0.7`` as ``100.96.0.7/32``, ``fd00::7`` as ``fd00::7/128``."""
    parsed = ipaddress.ip_address(address)
    return f"{parsed}/{parsed.max_prefixlen}"


def _endpoint_for(remote: SiteView, underlay: str) -> str | None:
    """The remote's endpoint on the same underlay, else its primary one (better a slower link than none)."""
    for view in remote.underlays:
        if view.name == underlay:
            return view.endpoint
    return remote.underlays[0].endpoint if remote.underlays else None


def peers_for(local: SiteView, remotes: Sequence[SiteView], underlay: str) -> list[WireGuardPeer]:
    """The peer entries of ``local``'s interface for ``underlay``, sorted by site.

    Remotes without a public key or an overlay address are not ready and are left out; so is ``local``
    itself. AllowedIPs are the remote's overlay address as a host prefix, then its LAN subnets sorted. The
    keepalive is the local site's: it is the side that knows whether it sits behind NAT.
    """
    peers = {}
    for remote in remotes:
        if remote.name == local.name or remote.public_key is None or remote.overlay_address is None:
            continue
        peers[remote.name] = WireGuardPeer(
            site=remote.name,
            public_key=remote.public_key,
            endpoint=_endpoint_for(remote, underlay),
            allowed_ips=(host_prefix(remote.overlay_address), *sorted(remote.subnets)),
            persistent_keepalive=local.persistent_keepalive,
        )
    return [peers[name] for name in sorted(peers)]


def _peering_enabled(site: Site) -> bool:
    return site.spec.mesh is None or site.spec.mesh.enabled is not False


def _peer_with(site: Site) -> list[str]:
    if site.spec.mesh is None or not _peering_enabled(site):
        return []
    return list(site.spec.mesh.peer_with or ())


def peer_names(site: Site, meshes: Sequence[Mesh], *, sites: Sequence[Site] = ()) -> list[str]:
    """The names of the sites ``site`` peers with, sorted and unique, never itself.

    Those are spec.mesh.peerWith (unless spec.mesh.enabled is false) and every site that a Mesh listing
    this site pairs it with. WireGuard only works when both ends know each other, so pass the other
    ``sites`` of the namespace to also include those whose own peerWith names this site; without them a
    one-sided peerWith configures only one end.
    """
    name = site.metadata.name
    names = set(_peer_with(site))
    for other in sites:
        if name in _peer_with(other):
            names.add(other.metadata.name)
    for mesh in meshes:
        if name not in mesh.spec.sites:
            continue
        for source, destination in site_pairs(mesh.spec.sites, mesh.spec.topology, mesh.spec.hubs):
            if source == name:
                names.add(destination)
    names.discard(name)
    return sorted(names)
