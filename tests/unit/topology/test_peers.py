"""Site views, WireGuard peer entries, and who peers with whom."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from patronus.api import Mesh, Site
from patronus.topology.peers import SiteView, UnderlayView, WireGuardPeer, peer_names, peers_for, site_view


def key(name: str) -> str:
    return base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()


def make_site(name: str, **spec: Any) -> Site:
    body: dict[str, Any] = {"wireguard": {"endpoints": [f"{name}.example.com:51820"]}}
    body.update(spec)
    return Site.model_validate({"metadata": {"name": name, "namespace": "ns"}, "spec": body})


def make_mesh(name: str, sites: list[str], **spec: Any) -> Mesh:
    return Mesh.model_validate({"metadata": {"name": name}, "spec": {"sites": sites, **spec}})


def view(
    name: str,
    underlays: tuple[tuple[str, str], ...] = (("default", "{name}:51820"),),
    *,
    ready: bool = True,
    subnets: tuple[str, ...] = (),
    keepalive: int = 25,
) -> SiteView:
    return SiteView(
        name=name,
        public_key=key(name) if ready else None,
        overlay_address=f"100.96.0.{len(name)}" if ready else None,
        subnets=subnets,
        underlays=tuple(
            UnderlayView(u, endpoint.format(name=name), 51820 + i)
            for i, (u, endpoint) in enumerate(underlays)
        ),
        persistent_keepalive=keepalive,
        listen_port=51820,
    )


def test_site_view_without_underlays() -> None:
    site = make_site(
        "nyc",
        wireguard={
            "publicKey": key("nyc"),
            "listenPort": 51000,
            "endpoints": ["203.0.113.100:51820", "198.51.100.1:51820"],
            "persistentKeepalive": 10,
        },
        subnets=["10.1.0.0/16"],
    )
    result = site_view(site, public_key=key("nyc"), overlay_address="100.96.0.1")
    assert result == SiteView(
        name="nyc",
        public_key=key("nyc"),
        overlay_address="100.96.0.1",
        subnets=("10.1.0.0/16",),
        underlays=(UnderlayView("default", "203.0.113.100:51820", 51000),),
        persistent_keepalive=10,
        listen_port=51000,
    )


def test_site_view_with_underlays() -> None:
    site = make_site(
        "nyc",
        wireguard={"endpoints": ["203.0.113.100:51820", "198.51.100.1:4500"]},
        underlays=[
            {"name": "fiber", "endpoint": "203.0.113.100:51820"},
            {"name": "lte", "endpoint": "198.51.100.1:4500", "listenPort": 4500},
            {"name": "dsl", "endpoint": "203.0.113.100:51820"},
        ],
    )
    result = site_view(site, public_key=None, overlay_address=None)
    assert result.underlays == (
        UnderlayView("fiber", "203.0.113.100:51820", 51820),
        UnderlayView("lte", "198.51.100.1:4500", 4500),
        UnderlayView("dsl", "203.0.113.100:51820", 51822),  # listenPort + index
    )
    assert result.public_key is None
    assert result.subnets == ()


def test_peers_for_matches_underlays_by_name() -> None:
    local = view("nyc", (("fiber", "a:1"), ("lte", "b:2")))
    remotes = [
        view("sf", (("lte", "sf-lte:2"), ("fiber", "sf-fiber:1"))),
        view("sea", (("dsl", "sea-dsl:3"), ("cable", "sea-cable:4"))),
    ]
    fiber = peers_for(local, remotes, "fiber")
    assert [peer.site for peer in fiber] == ["sea", "sf"]  # sorted by site
    assert fiber[1].endpoint == "sf-fiber:1"  # same underlay name
    assert fiber[0].endpoint == "sea-dsl:3"  # none of that name: the remote's primary
    assert [peer.endpoint for peer in peers_for(local, remotes, "lte")] == ["sea-dsl:3", "sf-lte:2"]


def test_peers_for_allowed_ips_and_keepalive() -> None:
    local = view("nyc", keepalive=15)
    remote = view("sf", subnets=("fd00:2::/48", "10.2.0.0/16"))
    [peer] = peers_for(local, [remote], "default")
    assert peer == WireGuardPeer(
        site="sf",
        public_key=key("sf"),
        endpoint="sf:51820",
        allowed_ips=("100.96.0.2/32", "10.2.0.0/16", "fd00:2::/48"),
        persistent_keepalive=15,
    )


def test_peers_for_ipv6_overlay_is_a_128() -> None:
    remote = SiteView("sf", key("sf"), "fd00:5eed::7", (), (UnderlayView("default", "sf:1", 1),), 25, 1)
    [peer] = peers_for(view("nyc"), [remote], "default")
    assert peer.allowed_ips == ("fd00:5eed::7/128",)


def test_peers_for_leaves_out_sites_not_ready_and_itself() -> None:
    local = view("nyc")
    no_key = SiteView("nokey", None, "100.96.0.9", (), view("nokey").underlays, 25, 51820)
    no_address = SiteView("noaddr", key("noaddr"), None, (), view("noaddr").underlays, 25, 51820)
    peers = peers_for(local, [local, no_key, no_address, view("sf")], "default")
    assert [peer.site for peer in peers] == ["sf"]


def test_peers_for_remote_without_underlays_has_no_endpoint() -> None:
    remote = SiteView("sf", key("sf"), "100.96.0.2", (), (), 25, 51820)
    [peer] = peers_for(view("nyc"), [remote], "default")
    assert peer.endpoint is None


def test_peers_for_is_order_independent() -> None:
    remotes = [view(name) for name in ("d", "bb", "ccc", "a")]
    assert peers_for(view("x"), remotes, "default") == peers_for(view("x"), remotes[::-1], "default")


def test_peer_names_from_peer_with() -> None:
    site = make_site("nyc", mesh={"peerWith": ["sf", "sea"]})
    assert peer_names(site, []) == ["sea", "sf"]


def test_peer_names_peer_with_disabled() -> None:
    site = make_site("nyc", mesh={"enabled": False, "peerWith": ["sf", "sea"]})
    assert peer_names(site, []) == []
    # Meshes still pair it: enabled gates peerWith only.
    assert peer_names(site, [make_mesh("m", ["nyc", "chi"])]) == ["chi"]


def test_peer_names_from_meshes() -> None:
    meshes = [
        make_mesh("full", ["nyc", "sf", "sea"]),
        make_mesh("star", ["hub", "nyc", "chi"], topology="hub-spoke"),
        make_mesh("other", ["x", "y"]),
    ]
    assert peer_names(make_site("nyc", mesh={"peerWith": ["sf", "nyc"]}), meshes) == ["hub", "sea", "sf"]
    assert peer_names(make_site("hub"), meshes) == ["chi", "nyc"]
    assert peer_names(make_site("chi"), meshes) == ["hub"]  # a spoke sees only its hub
    assert peer_names(make_site("lonely"), meshes) == []


def test_peer_names_with_several_hubs() -> None:
    mesh = make_mesh("m", ["a", "b", "c", "d"], topology="hub-spoke", hubs=["b", "c"])
    assert peer_names(make_site("a"), [mesh]) == ["b", "c"]
    assert peer_names(make_site("b"), [mesh]) == ["a", "c", "d"]


def test_peer_names_symmetric_with_other_sites() -> None:
    nyc = make_site("nyc")
    others = [
        make_site("sf", mesh={"peerWith": ["nyc"]}),
        make_site("sea", mesh={"enabled": False, "peerWith": ["nyc"]}),
        make_site("chi", mesh={"peerWith": ["sf"]}),
    ]
    assert peer_names(nyc, [], sites=others) == ["sf"]
    assert peer_names(nyc, [], sites=[nyc, *others]) == ["sf"]
