"""The lab plan and the pure parts of network, impair and relay: names, addresses, commands, scheduling."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools

import pytest

from patronus.lab import impair, network
from patronus.lab.impair import Impairment
from patronus.lab.plan import IFNAMSIZ, LabPlan, plan_lab
from patronus.lab.relay import Relay
from tests.support.waiting import eventually

TWENTY = [f"site-{n:02d}" for n in range(20)]


def test_names_fit_and_are_unique_for_twenty_sites() -> None:
    plan = plan_lab(TWENTY, prefix="pl")
    assert len(plan.namespaces) == len(set(plan.namespaces)) == 1 + 2 * 20
    assert plan.wan_namespace == "pl-wan"
    assert plan.site("site-07").namespace == "pl-site-07"
    assert plan.site("site-07").host_namespace == "pl-site-07-h"
    wan_side = [link.wan_interface for link in plan.links]
    assert len(wan_side) == len(set(wan_side)) == 40
    for link in plan.links:
        assert len(link.site_interface) <= IFNAMSIZ
        assert len(link.wan_interface) <= IFNAMSIZ
    assert {link.site_interface for link in plan.links} == {"fiber0", "lte0"}


def test_subnets_do_not_overlap_for_twenty_sites() -> None:
    plan = plan_lab(TWENTY, prefix="pl")
    nets = [ipaddress.ip_network(link.subnet) for link in plan.links]
    nets += [ipaddress.ip_network(site.lan_subnet) for site in plan.sites]
    for a, b in itertools.combinations(nets, 2):
        assert not a.overlaps(b), (a, b)
    for link in plan.links:
        subnet = ipaddress.ip_network(link.subnet)
        assert ipaddress.ip_address(link.site_address) in subnet
        assert ipaddress.ip_address(link.wan_address) in subnet
        assert subnet.subnet_of(ipaddress.ip_network(link.underlay_block))  # type: ignore[arg-type]


def test_addresses_follow_the_documented_layout() -> None:
    plan = plan_lab(["a", "b"], prefix="pl")
    b = plan.site("b")
    assert (b.index, b.lan_subnet, b.lan_address, b.host_address) == (
        2,
        "10.2.0.0/24",
        "10.2.0.1",
        "10.2.0.10",
    )
    lte = plan.link("b", "lte")
    assert (lte.subnet, lte.wan_address, lte.site_address) == ("172.17.2.0/30", "172.17.2.1", "172.17.2.2")
    assert (lte.wan_interface, lte.site_interface, lte.name) == ("w2-lte", "lte0", "b/lte")
    assert plan.link("b/lte") == lte


def test_endpoints_are_the_sites_underlay_addresses() -> None:
    plan = plan_lab(["a", "b"], prefix="pl")
    assert plan.endpoint("a", "fiber", 51820) == "172.16.1.2:51820"
    assert plan.endpoint("b", "lte", 51821) == "172.17.2.2:51821"
    with pytest.raises(ValueError, match="port"):
        plan.endpoint("a", "fiber", 0)
    with pytest.raises(KeyError, match="no link a/dsl"):
        plan.endpoint("a", "dsl", 1)
    with pytest.raises(KeyError, match="no site"):
        plan.site("zz")


def test_long_site_names_are_cut_with_a_hash() -> None:
    long_a, long_b = "x" * 60 + "a", "x" * 60 + "b"
    plan = plan_lab([long_a, long_b], prefix="pl")
    names = [plan.site(long_a).namespace, plan.site(long_b).namespace]
    assert names[0] != names[1]
    assert all(len(name) <= 46 for name in names)


@pytest.mark.parametrize(
    ("sites", "kwargs", "message"),
    [
        (["a", "a"], {}, "duplicate site"),
        (["wan"], {}, "clashing namespaces"),
        (["b", "b-h"], {}, "clashing namespaces"),
        (["A"], {}, "site name"),
        (["a"], {"prefix": "Pl"}, "prefix"),
        (["a"], {"prefix": "p-l"}, "prefix"),
        (["a"], {"underlays": ("fiber", "fiber")}, "duplicate underlay"),
        (["a"], {"underlays": ("averyverylongname",)}, "underlay name"),
        (["a"], {"underlays": tuple(f"u{n}" for n in range(17))}, "underlays"),
        ([f"s{n}" for n in range(255)], {}, "at most 254"),
        ([], {}, "at least one"),
    ],
)
def test_bad_plans_are_refused(sites: list[str], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_lab(sites, **kwargs)  # type: ignore[arg-type]


def test_largest_lab_plans() -> None:
    plan = plan_lab([f"s{n}" for n in range(254)], underlays=[f"u{n}" for n in range(16)], prefix="p")
    assert len(plan.links) == 254 * 16
    assert plan.link("s253", "u15").site_address == "172.31.254.2"


def _plan() -> LabPlan:
    return plan_lab(["a", "b"], prefix="pl")


def test_create_commands_build_inside_the_namespaces_only() -> None:
    cmds = network.create_commands(_plan())
    assert cmds[0] == ["ip", "netns", "add", "pl-wan"]
    for cmd in cmds:
        if cmd[:2] == ["ip", "netns"]:
            assert cmd[2] in ("add", "exec")
        else:
            assert cmd[:2] == ["ip", "-n"], cmd  # nothing in the root namespace
    veths = [cmd for cmd in cmds if "veth" in cmd]
    assert len(veths) == 2 + 4  # one LAN and two underlays per site
    assert ["ip", "-n", "pl-a", "route", "add", "172.17.0.0/16", "via", "172.17.1.1", "dev", "lte0"] in cmds
    assert ["ip", "-n", "pl-b-h", "route", "add", "default", "via", "10.2.0.1"] in cmds
    assert not any(cmd[:4] == ["ip", "-n", "pl-a", "route"] and "default" in cmd for cmd in cmds)


def test_nft_scripts() -> None:
    plan = _plan()
    base = network.nft_base_script(plan)
    assert 'iifname "w1-fiber" jump l-w1-fiber' in base
    assert 'oifname "w2-lte" jump l-w2-lte-in' in base
    link = plan.link("a/fiber")
    assert impair.nft_link_script(plan, link, Impairment()) == (
        "flush chain inet patronus-lab l-w1-fiber\nflush chain inet patronus-lab l-w1-fiber-in\n"
    )
    lossy = impair.nft_link_script(plan, link, Impairment(loss_pct=5))
    assert "l-w1-fiber-in numgen" not in lossy  # loss is on the site's egress only
    assert "mod 10000 < 500 counter drop" in impair.nft_link_script(plan, link, Impairment(loss_pct=5))
    assert "mod 10000 < 25 counter drop" in impair.nft_link_script(plan, link, Impairment(loss_pct=0.25))
    down = impair.nft_link_script(plan, link, Impairment(loss_pct=5, down=True))
    assert "add rule inet patronus-lab l-w1-fiber counter drop\n" in down
    assert down.endswith("l-w1-fiber-in counter drop\n")  # a cut link carries nothing either way
    assert "numgen" not in down


def test_divert_rules_cover_both_directions() -> None:
    rules = impair.divert_rules(_plan().link("b/lte"))
    assert rules == [
        ["iif", "w2-lte", "pref", "1000", "lookup", "4242"],
        ["to", "172.17.2.0/30", "pref", "1000", "lookup", "4242"],
    ]


def test_impairment_values_and_parsing() -> None:
    assert Impairment().is_clean
    assert not Impairment().needs_relay
    assert Impairment(jitter_ms=1).needs_relay
    for bad in ({"loss_pct": 101}, {"delay_ms": -1}, {"jitter_ms": float("nan")}):
        with pytest.raises(ValueError, match="must be"):
            Impairment(**bad)
    assert impair.parse_duration_ms("40ms") == 40.0
    assert impair.parse_duration_ms("1.5s") == 1500.0
    assert impair.parse_duration_ms("250us") == 0.25
    assert impair.parse_duration_ms("7") == 7.0
    assert impair.parse_percent("5%") == 5.0
    assert impair.parse_percent("0.5") == 0.5
    with pytest.raises(ValueError, match="duration"):
        impair.parse_duration_ms("fast")
    with pytest.raises(ValueError, match="percentage"):
        impair.parse_percent("-1%")


def _ipv4(src: str, dst: str, tag: int) -> bytes:
    header = bytes([0x45, 0]) + (24).to_bytes(2, "big") + bytes(8)
    payload = tag.to_bytes(4, "big")
    return header + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + payload


async def test_relay_engine_delays_what_a_site_sends() -> None:
    loop = asyncio.get_running_loop()
    sent: list[tuple[int, float]] = []
    relay = Relay(lambda data: sent.append((int.from_bytes(data[20:24], "big"), loop.time())), loop, 10, 1)
    relay.set_link("a/fiber", "172.16.1.0/30", delay_ms=30, jitter_ms=0, preserve_order=False)
    relay.set_link("b/fiber", "172.16.2.0/30", delay_ms=10, jitter_ms=0, preserve_order=False)
    start = loop.time()
    relay.packet(_ipv4("172.16.1.2", "172.16.3.2", 1))  # leaves a: 30 ms
    relay.packet(_ipv4("172.16.3.2", "172.16.2.2", 2))  # arrives at b: b's egress delay does not apply
    relay.packet(_ipv4("172.16.2.2", "172.16.1.2", 3))  # leaves b toward a: 10 ms
    relay.packet(_ipv4("172.16.3.2", "172.16.4.2", 4))  # neither: at once
    relay.packet(b"\x60" + bytes(39))  # IPv6: dropped
    assert sorted(tag for tag, _ in sent) == [2, 4]
    await eventually(lambda: len(sent) == 4, timeout=5, what="the delayed packets", interval=0.005)
    assert [tag for tag, _ in sent][2:] == [3, 1]
    delays = {tag: (at - start) * 1000 for tag, at in sent}
    # Never early; late only by how late a busy machine runs the loop's timers (generous bound).
    assert 10 <= delays[3] < 10 + 50
    assert 30 <= delays[1] < 30 + 50
    stats = relay.stats()
    assert (stats["received"], stats["sent"], stats["delayed"], stats["dropped_not_ipv4"]) == (5, 4, 2, 1)
    relay.clear_link("a/fiber")
    relay.clear_link("a/fiber")  # twice is fine
    assert set(relay.stats()["links"]) == {"b/fiber"}


async def test_relay_engine_bounds_its_queue_and_can_keep_order() -> None:
    loop = asyncio.get_running_loop()
    sent: list[int] = []
    relay = Relay(lambda data: sent.append(int.from_bytes(data[20:24], "big")), loop, 50, 7)
    relay.set_link("a/fiber", "172.16.1.0/30", delay_ms=5, jitter_ms=5, preserve_order=True)
    for tag in range(60):
        relay.packet(_ipv4("172.16.1.2", "172.16.2.2", tag))
    await asyncio.sleep(0.03)
    assert relay.counters["dropped_queue_full"] == 60 - len(sent)
    assert len(sent) >= 45
    assert sent == sorted(sent)
    assert relay.handle({"op": "nope"})["ok"] is False
    assert relay.handle({"op": "ping"}) == {"ok": True}
