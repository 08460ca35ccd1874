"""What the rendered policy table decides, packet by packet: in every hook, for sampled tables and packets
near the edges of what their policies match, the table (with and without its port verdict maps) reaches
exactly the decision the policies call for (:mod:`tests.support.nft_eval`). The candidate tests and the
port maps exist only to skip work; this is the proof that they never change which policy (or htb class)
a packet gets."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patronus.agent.dataplane.routing import PolicyMatch, RoutingPolicy, render_nftables
from tests.support import nft_eval
from tests.support import policy_fuzz as fuzz

HOOKS = ("output", "prerouting", "postrouting")
TUNNEL_PORTS = (51820,)


def render(table: fuzz.Table, *, by_port: bool) -> nft_eval.Loaded:
    return nft_eval.load(
        render_nftables(
            "patronus", table.policies, table.path_marks, priorities=table.priorities,
            ingress_exclude=table.ingress_exclude, by_port=by_port, tunnel_ports=TUNNEL_PORTS,
        )
    )  # fmt: skip


def assert_decides_as_the_policies(table: fuzz.Table, packets: list[nft_eval.Packet]) -> None:
    rendered = [render(table, by_port=True), render(table, by_port=False)]
    for packet in packets:
        for hook in HOOKS:
            wanted = nft_eval.expected(table, hook, packet)
            for loaded in rendered:
                assert nft_eval.decide(loaded, hook, packet) == wanted, (hook, packet)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_hook_decides_as_the_policies(data: st.DataObject) -> None:
    table = data.draw(fuzz.valid_tables)
    packets = data.draw(st.lists(nft_eval.packets(table), min_size=1, max_size=40))
    assert_decides_as_the_policies(table, packets)


def test_the_interpreter_sees_a_first_match_and_its_class() -> None:
    voice = RoutingPolicy("voice", 10, PolicyMatch("udp", dst_ports=((5060, 5061),)), "fiber")
    https = PolicyMatch("tcp", dst_ports=((443, 443),), dst_cidrs=("10.0.0.0/8",))
    web = RoutingPolicy("web", 5, https, None)
    table = fuzz.Table([voice, web], {"fiber": 0x50A70001}, {"web": 0x12}, [])
    packet = nft_eval.Packet(4, "tcp", 40000, 443, "192.0.2.1", "10.1.2.3", 0)
    loaded = render(table, by_port=True)
    assert nft_eval.decide(loaded, "output", packet) == "goto policy_1"
    assert nft_eval.decide(loaded, "postrouting", packet) == "meta priority set 1:12 accept"
    assert nft_eval.decide(loaded, "output", nft_eval.Packet(4, "udp", 1, 5061, "1.1.1.1", "2.2.2.2", 0)) == (
        "goto policy_0"
    )
    outside = nft_eval.Packet(4, "tcp", 40000, 443, "192.0.2.1", "11.0.0.1", 0)
    assert nft_eval.decide(loaded, "output", outside) is None
    assert nft_eval.decide(loaded, "prerouting", packet) == "goto policy_1"
    local = nft_eval.Packet(4, "tcp", 40000, 443, "192.0.2.1", "10.1.2.3", 0, local=True)
    assert nft_eval.decide(loaded, "prerouting", local) is None
    assert nft_eval.decide(loaded, "output", local) == "goto policy_1"
    tunnel = nft_eval.Packet(4, "tcp", 40000, 443, "192.0.2.1", "10.1.2.3", 0, mark=nft_eval.BYPASS)
    assert all(nft_eval.decide(loaded, hook, tunnel) is None for hook in HOOKS)
