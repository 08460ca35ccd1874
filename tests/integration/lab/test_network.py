"""A real 3-site lab: the underlays reach each other through the WAN namespace, and destroy leaves nothing."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from patronus.lab import network
from patronus.lab.plan import LabPlan, plan_lab
from tests.integration.lab import echo, lab, require_root, unique_prefix

_IP_RECVTTL = 12  # linux/in.h; the socket module of Python 3.11 lacks the name

PAIRS = [("a", "b"), ("b", "c"), ("c", "a")]


@pytest.fixture(scope="module")
def plan() -> Iterator[LabPlan]:
    with lab() as created:
        yield created


@pytest.mark.parametrize("underlay", ["fiber", "lte"])
def test_each_site_reaches_every_other_on_the_same_underlay(plan: LabPlan, underlay: str) -> None:
    for source, target in PAIRS:
        with echo(plan, source, target, underlay) as pair:
            assert pair.rtt() is not None, f"{source} -> {target} over {underlay}"


def test_underlay_traffic_is_routed_by_the_wan_namespace(plan: LabPlan) -> None:
    # One router hop on the way: the datagram arrives with its TTL lowered by one.
    with echo(plan, "a", "b", "fiber") as pair:
        pair.server.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        pair.client.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
        pair.client.sendto(b"ttl", pair.server.getsockname())
        pair.server.settimeout(1.0)
        _, ancillary, _, peer = pair.server.recvmsg(64, socket.CMSG_SPACE(4))
    assert peer[0] == plan.link("a", "fiber").site_address
    ttl = next(int.from_bytes(data[:4], "little") for level, kind, data in ancillary if kind == socket.IP_TTL)
    assert ttl == 63


def test_lan_host_reaches_its_site_and_sites_have_no_default_route(plan: LabPlan) -> None:
    site = plan.site("b")
    host = network.netns_socket(site.host_namespace)
    server = network.netns_socket(site.namespace)
    try:
        server.bind((site.lan_address, 7000))
        server.settimeout(1.0)
        host.bind((site.host_address, 0))
        host.sendto(b"hi", (site.lan_address, 7000))
        assert server.recvfrom(64) == (b"hi", (site.host_address, host.getsockname()[1]))
    finally:
        host.close()
        server.close()
    assert network.exec_in(site.namespace, ["ip", "route", "show", "default"]).strip() == ""
    routes = network.exec_in(site.namespace, ["ip", "route"])
    assert "172.16.0.0/16 via 172.16.2.1 dev fiber0" in routes
    assert "172.17.0.0/16 via 172.17.2.1 dev lte0" in routes


def test_interfaces_are_where_the_plan_says(plan: LabPlan) -> None:
    wan_links = network.exec_in(plan.wan_namespace, ["ip", "-o", "link"])
    for link in plan.links:
        assert f" {link.wan_interface}@" in wan_links
    site_links = network.exec_in(plan.site("a").namespace, ["ip", "-o", "link"])
    for name in ("lan0@", "fiber0@", "lte0@"):
        assert name in site_links


def test_destroy_removes_everything_and_can_run_twice() -> None:
    require_root()
    created = plan_lab(["x", "y"], prefix=unique_prefix())
    try:
        network.create(created)
        assert network.namespaces_present(created.prefix) == sorted(created.namespaces)
    finally:
        network.destroy(created)
    network.destroy(created)
    assert network.namespaces_present(created.prefix) == []
    listed = network.run(["ip", "netns", "list"])
    assert not any(ns in listed.split() for ns in created.namespaces)


def test_a_failed_create_removes_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    created = plan_lab(["x", "y"], prefix=unique_prefix())
    real_run = network.run
    calls = 0

    def failing_run(args: list[str], **kwargs: object) -> str:
        nonlocal calls
        calls += 1
        if calls == 25:  # namespaces and some links exist by now
            raise network.LabError("injected failure")
        return real_run(args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(network, "run", failing_run)
    try:
        with pytest.raises(network.LabError, match="injected failure"):
            network.create(created)
        assert calls >= 25
    finally:
        monkeypatch.undo()
        network.destroy(created)
    assert network.namespaces_present(created.prefix) == []
