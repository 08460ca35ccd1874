"""The data plane's pure planning: peer diffs, the nftables script, htb commands, and runner calls."""

from __future__ import annotations

import json

import pytest

from patronus.agent.dataplane import dispatch, qos
from patronus.agent.dataplane.commands import CommandError, RecordingRunner
from patronus.agent.dataplane.routing import (
    FLOW_SEEN_CT_BIT,
    PathRouting,
    PolicyMatch,
    RoutingPolicy,
    assign_path_marks,
    match_expressions,
    parse_counters,
    render_nftables,
    render_switch,
)
from patronus.agent.dataplane.validate import UnsafeValue
from patronus.agent.dataplane.wireguard import (
    PeerSpec,
    PeerState,
    WireGuardInterface,
    parse_dump,
    plan_peer_changes,
)

KEY_A = "A" * 43 + "="
KEY_B = "B" * 42 + "A="
KEY_C = "C" * 42 + "A="
PRIVATE = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="


def state(spec: PeerSpec, handshake: int = 100) -> PeerState:
    return PeerState(spec, handshake, 10, 20)


# --- WireGuard peers -------------------------------------------------------------------------------------


def test_unchanged_peer_is_not_touched_changed_one_is_updated_only_where_it_differs() -> None:
    a = PeerSpec.create(KEY_A, "192.0.2.1:51820", ["100.96.0.1/32"], 25)
    b = PeerSpec.create(KEY_B, "192.0.2.2:51820", ["100.96.0.2/32"])
    b2 = PeerSpec.create(KEY_B, "192.0.2.2:51820", ["10.2.0.0/16", "100.96.0.2/32"])
    assert plan_peer_changes([state(a), state(b)], [a, b2]) == [
        ["peer", KEY_B, "allowed-ips", "10.2.0.0/16,100.96.0.2/32"]
    ]


def test_new_peer_gets_everything_and_gone_peer_is_removed_first() -> None:
    a = PeerSpec.create(KEY_A, "192.0.2.1:51820", ["100.96.0.1/32"], 25)
    c = PeerSpec.create(KEY_C, "[2001:db8::1]:51820", ["fd00::/64"])
    assert plan_peer_changes([state(a)], [c]) == [
        ["peer", KEY_A, "remove"],
        ["peer", KEY_C, "endpoint", "[2001:db8::1]:51820", "persistent-keepalive", "off", "allowed-ips",
         "fd00::/64"],
    ]  # fmt: skip


def test_equal_settings_in_another_spelling_are_unchanged() -> None:
    current = PeerSpec.create(KEY_A, "192.0.2.1:51820", ["100.96.0.1/32", "10.1.0.0/16"], None)
    desired = PeerSpec.create(KEY_A, "192.0.2.1:51820", ["10.1.0.5/16", "100.96.0.1/32"], 0)
    assert plan_peer_changes([state(current)], [desired]) == []


def test_hostname_endpoint_is_left_alone_unless_its_port_moves() -> None:
    resolved = PeerSpec.create(KEY_A, "198.51.100.7:51820", ["100.96.0.1/32"])
    same = PeerSpec.create(KEY_A, "site-a.example.com:51820", ["100.96.0.1/32"])
    moved = PeerSpec.create(KEY_A, "site-a.example.com:51821", ["100.96.0.1/32"])
    assert plan_peer_changes([state(resolved)], [same]) == []
    assert plan_peer_changes([state(resolved)], [moved]) == [
        ["peer", KEY_A, "endpoint", "site-a.example.com:51821"]
    ]


def test_peer_from_agent_config() -> None:
    spec = PeerSpec.from_config(
        {"site": "b", "publicKey": KEY_B, "endpoint": "192.0.2.2:51820", "allowedIPs": ["100.96.0.2/32"],
         "persistentKeepalive": 25}
    )  # fmt: skip
    assert spec == PeerSpec(KEY_B, "192.0.2.2:51820", ("100.96.0.2/32",), 25)


def test_dump_parsing_drops_the_private_key() -> None:
    dump = (
        f"{PRIVATE}\t{KEY_A}\t51820\toff\n"
        f"{KEY_B}\t(none)\t192.0.2.2:51820\t100.96.0.2/32,10.2.0.0/16\t1700000000\t1234\t5678\t25\n"
        f"{KEY_C}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
    )
    parsed = parse_dump(dump)
    assert PRIVATE not in repr(parsed)
    assert (parsed.public_key, parsed.listen_port, parsed.fwmark) == (KEY_A, 51820, 0)
    b, c = parsed.peers
    expected = PeerSpec(KEY_B, "192.0.2.2:51820", ("10.2.0.0/16", "100.96.0.2/32"), 25)
    assert b == PeerState(expected, 1700000000, 1234, 5678)
    assert c.spec == PeerSpec(KEY_C)


def test_private_key_goes_on_stdin_only() -> None:
    def respond(args: list[str]) -> tuple[int, str, str]:
        if args[:2] == ["wg", "show"]:
            return 0, "(none)\t(none)\t0\toff\n", ""
        return 0, "", ""

    runner = RecordingRunner(respond)
    wg = WireGuardInterface(
        "wg-fiber",
        listen_port=51820,
        address="100.96.0.1/32",
        private_key=PRIVATE,
        netns="site",
        runner=runner,
    )
    wg.ensure()
    assert PRIVATE not in repr(wg)
    assert all(PRIVATE not in " ".join(call.args) for call in runner.calls)
    keyed = [c for c in runner.calls if "private-key" in c.args]
    assert len(keyed) == 1
    assert keyed[0].had_input
    assert keyed[0].args[-1] == "/dev/stdin"
    assert ["wg", "set", "wg-fiber", "listen-port", "51820", "fwmark", str(0x51820)] in runner.commands
    assert all(call.netns == "site" for call in runner.calls)


def test_command_error_names_command_code_and_stderr() -> None:
    error = CommandError(["ip", "link", "add", "wg0"], 2, "RTNETLINK answers: File exists\n")
    assert str(error) == "`ip link add wg0` failed with exit code 2: RTNETLINK answers: File exists"


def test_command_error_quotes_stdout_where_wireguard_go_says_why() -> None:
    # wireguard-go logs to stdout; without it the error would say only "exit code 1".
    stdout = "ERROR: (wg-default) 2026/11/30 14:00:00 Failed to create TUN device: no such device\n"
    error = CommandError(["wireguard-go", "wg-default"], 1, "", stdout)
    assert str(error) == (
        "`wireguard-go wg-default` failed with exit code 1: stdout: ERROR: (wg-default) 2026/11/30 14:00:00 "
        "Failed to create TUN device: no such device"
    )
    both = CommandError(["nft", "-f", "-"], 1, "Error: syntax error\n", "line 3\n")
    assert str(both) == "`nft -f -` failed with exit code 1: Error: syntax error; stdout: line 3"


def test_command_error_blanks_keys_and_keeps_the_end_of_long_output() -> None:
    key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
    error = CommandError(["wg", "show", "wg0", "dump"], 1, "", f"{key}\t{key}\t51820\toff\n")
    assert key not in str(error)
    assert "(key)\t(key)\t51820" in error.stdout
    long = CommandError(["tc", "qdisc"], 2, "x" * 2000 + "the reason")
    assert long.stderr.endswith("the reason")
    assert len(long.stderr) < 600


# --- nftables --------------------------------------------------------------------------------------------

MARKS = assign_path_marks(["p-fiber", "p-lte"])


def test_port_lists_ranges_and_any_protocol() -> None:
    match = PolicyMatch("any", dst_ports=((80, 80), (443, 443), (8000, 8100)), src_ports=((1024, 65535),))
    assert match_expressions(match) == [
        "meta l4proto { tcp, udp } th sport 1024-65535 th dport { 80, 443, 8000-8100 }"
    ]
    assert match_expressions(PolicyMatch("any")) == [""]  # everything
    assert match_expressions(PolicyMatch("icmp")) == ["meta l4proto { icmp, ipv6-icmp }"]


def test_dscp_and_cidrs_split_by_family() -> None:
    match = PolicyMatch("udp", dscp=46, dst_cidrs=("10.2.0.0/16", "fd00:2::/64"), src_cidrs=("10.1.0.0/16",))
    assert match_expressions(match) == [
        "meta l4proto udp ip saddr 10.1.0.0/16 ip daddr 10.2.0.0/16 ip dscp 46"
    ]  # IPv4 only: the source CIDRs have no IPv6 prefix
    assert match_expressions(PolicyMatch("tcp", dscp=10)) == [
        "meta l4proto tcp ip dscp 10",
        "meta l4proto tcp ip6 dscp 10",
    ]
    assert match_expressions(PolicyMatch(src_cidrs=("10.1.0.0/16",), dst_cidrs=("fd00::/64",))) == []


def test_script_orders_by_priority_marks_through_the_map_and_counts() -> None:
    low = RoutingPolicy("bulk", 10, PolicyMatch("tcp", dst_ports=((873, 873),)), "p-lte")
    high = RoutingPolicy("voice", 900, PolicyMatch("udp", dst_ports=((5060, 5061),)), "p-fiber")
    script = render_nftables("patronus", [low, high], MARKS, priorities={"bulk": 0x10}, by_port=False)
    lines = [line.strip() for line in script.splitlines()]
    assert lines[:3] == ["table inet patronus", "delete table inet patronus", "table inet patronus {"]
    voice = lines.index("meta l4proto udp th dport 5060-5061 goto policy_0")
    bulk = lines.index("meta l4proto tcp th dport 873 goto policy_1")
    assert voice < bulk
    assert "elements = { 0x50a80001 : 0x50a70001, 0x50a80002 : 0x50a70002 }" in lines
    assert "counter pol_voice { }" in lines
    assert "counter new_voice { }" in lines
    assert (
        f"ct state new ct mark & {FLOW_SEEN_CT_BIT:#010x} == 0x00000000 ct mark set ct mark | "
        f'{FLOW_SEEN_CT_BIT:#010x} counter name "new_voice"'
    ) in lines
    assert (
        'counter name "pol_voice" meta mark set 0x50a80001 meta mark set meta mark map @policy_path' in lines
    )
    assert "meta mark 0x00051820 return" in lines  # the tunnels' own packets are never classified
    assert "meta l4proto tcp th dport 873 meta priority set 1:10 accept" in lines
    assert "type route hook output priority mangle; policy accept;" in lines


def test_policy_without_a_path_is_counted_but_not_in_the_map() -> None:
    script = render_nftables("patronus", [RoutingPolicy("p", 1, PolicyMatch(), None)], MARKS)
    assert "elements" not in script
    assert "meta mark 0x50a80001 meta mark set 0x00000000" in script


def test_switch_is_one_small_atomic_transaction() -> None:
    assert render_switch("patronus", 0x50A80001, 0x50A70002) == (
        "delete element inet patronus policy_path { 0x50a80001 }\n"
        "add element inet patronus policy_path { 0x50a80001 : 0x50a70002 }\n"
    )
    runner = RecordingRunner()
    routing = PathRouting("site", runner=runner)
    policy = RoutingPolicy("voice", 1, PolicyMatch("udp", ((5060, 5060),)), "p-fiber")
    routing.apply([policy], MARKS)
    routing.switch("voice", "p-lte")
    assert runner.commands == [["nft", "-f", "-"], ["nft", "-f", "-"]]
    with pytest.raises(KeyError):
        routing.switch("voice", "p-nowhere")


def test_policy_from_agent_config() -> None:
    policy = RoutingPolicy.from_config(
        {
            "name": "voice",
            "priority": 900,
            "match": {"protocol": "udp", "dstPorts": [[5060, 5061]], "srcPorts": None, "dscp": 46,
                      "srcCidrs": None, "dstCidrs": ["10.2.0.0/16"]},
            "action": {"type": "route", "primaryPath": "p-fiber", "backupPath": "p-lte"},
            "qos": {"class": "realtime", "bandwidthBps": 2_000_000},
        }
    )  # fmt: skip
    assert policy == RoutingPolicy(
        "voice", 900, PolicyMatch("udp", ((5060, 5061),), (), 46, (), ("10.2.0.0/16",)), "p-fiber",
        "realtime", 2_000_000,
    )  # fmt: skip


def test_counter_parsing() -> None:
    document = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"counter": {"name": "pol_voice", "packets": 7, "bytes": 700}},
            {"counter": {"name": "new_voice", "packets": 2, "bytes": 100}},
        ]
    }
    assert parse_counters(json.loads(json.dumps(document))) == {"voice": (7, 700, 2)}


# --- htb -------------------------------------------------------------------------------------------------


def test_htb_classes_capped_and_prioritised() -> None:
    commands = qos.render_htb(
        "wg-fiber", [("voice", "realtime", 2_000_000), ("backup", "bulk", 10_000_000)], 100_000_000
    )
    assert commands[0] == [
        "qdisc",
        "replace",
        "dev",
        "wg-fiber",
        "root",
        "handle",
        "1:",
        "htb",
        "default",
        "1",
    ]
    by_id = {c[7]: c for c in commands[1:]}
    assert set(by_id) == {"1:1", "1:10", "1:11"}  # backup < voice by name
    backup, voice = by_id["1:10"], by_id["1:11"]
    assert backup[backup.index("rate") + 1] == backup[backup.index("ceil") + 1] == "10000000bit"
    assert voice[voice.index("rate") + 1] == "2000000bit"
    assert int(voice[voice.index("prio") + 1]) < int(backup[backup.index("prio") + 1])
    assert qos.class_minors(["voice", "backup"]) == {"backup": 0x10, "voice": 0x11}


def test_htb_class_listing_parse() -> None:
    text = "class htb 1:10 root prio 5 rate 10Mbit ceil 10Mbit\nclass htb 1:1 root prio 3 rate 1Gbit\n"
    assert qos.parse_class_handles(text) == ["1:10", "1:1"]


def test_clearing_a_missing_qdisc_is_fine() -> None:
    qos.clear(
        "u0", runner=RecordingRunner(lambda args: (2, "", "Error: Cannot delete qdisc with handle of zero."))
    )
    with pytest.raises(CommandError):
        qos.clear("u0", runner=RecordingRunner(lambda args: (2, "", "Error: Operation not permitted.")))


# --- the prefilter ---------------------------------------------------------------------------------------


def test_only_packets_some_policy_may_match_enter_the_scan() -> None:
    policies = [
        RoutingPolicy("voice", 900, PolicyMatch("udp", dst_ports=((5060, 5061),)), "p-fiber"),
        RoutingPolicy("web", 500, PolicyMatch("any", dst_ports=((443, 443), (80, 80))), "p-fiber"),
        RoutingPolicy("ef", 400, PolicyMatch(dscp=46), "p-lte"),
        RoutingPolicy("lan", 1, PolicyMatch(dst_cidrs=("10.2.0.0/16", "10.2.1.0/24")), "p-lte"),
    ]
    lines = [line.strip() for line in render_nftables("patronus", policies, MARKS).splitlines()]
    assert (
        "set cand_dport { type inet_proto . inet_service; flags interval; "
        "elements = { tcp . 80, tcp . 443, udp . 80, udp . 443, udp . 5060-5061 } }"
    ) in lines
    assert "set cand_daddr4 { type ipv4_addr; flags interval; elements = { 10.2.0.0/16 } }" in lines
    assert "set cand_dscp6 { type dscp; elements = { 46 } }" in lines
    candidates = lines[lines.index("chain candidates {") + 1 : lines.index("chain prerouting {") - 1]
    assert candidates == [
        "meta mark 0x00051820 return",
        # The classify scan's port map is the port test: a hit goes straight to that port's rules, one
        # lookup where the set and then the map took two.
        "meta l4proto . th dport vmap @classify_ports",
        "ip daddr @cand_daddr4 goto classify",
        "ip dscp @cand_dscp4 goto classify",
        "ip6 dscp @cand_dscp6 goto classify",
    ]
    plain = [
        line.strip() for line in render_nftables("patronus", policies, MARKS, by_port=False).splitlines()
    ]
    assert "meta l4proto . th dport @cand_dport goto classify" in plain
    assert "fib daddr type local return" in lines  # delivered here, never routed down a path


def test_the_tunnels_encrypted_packets_skip_conntrack_and_nothing_else_does() -> None:
    policies = [RoutingPolicy("voice", 900, PolicyMatch("udp", dst_ports=((5060, 5061),)), "p-fiber")]
    plain = render_nftables("patronus", policies, MARKS)
    assert "notrack" not in plain
    script = render_nftables("patronus", policies, MARKS, tunnel_ports=[51821, 51820, 51821])
    lines = [line.strip() for line in script.splitlines()]
    start = lines.index("chain untracked_in {")
    assert lines[start:] == [
        "chain untracked_in {",
        "type filter hook prerouting priority raw; policy accept;",
        # for this host only: a packet forwarded to another host's port keeps conntrack (and its NAT)
        "udp dport { 51820, 51821 } fib daddr type local notrack",
        "}",
        "chain untracked_out {",
        "type filter hook output priority raw; policy accept;",
        "meta mark 0x00051820 notrack",  # what our WireGuard sockets send
        "}",
        "}",
    ]
    # The policies' own flows (the tunnels' inner packets) are still tracked and counted once.
    # Otherwise the same table: the policies' flows (the tunnels' inner packets) are tracked and counted.
    assert script.split("\tchain untracked_in {")[0] == plain.removesuffix("}\n")
    for hostile in ([0], [65536], ["51820; flush ruleset"], [True]):
        with pytest.raises(UnsafeValue):
            render_nftables("patronus", policies, MARKS, tunnel_ports=hostile)  # type: ignore[arg-type]


def test_a_policy_that_matches_everything_turns_the_prefilter_off() -> None:
    policies = [
        RoutingPolicy("voice", 900, PolicyMatch("udp", dst_ports=((5060, 5061),)), "p-fiber"),
        RoutingPolicy("all", 1, PolicyMatch(), "p-lte"),
    ]
    lines = [line.strip() for line in render_nftables("patronus", policies, MARKS).splitlines()]
    assert not any(line.startswith("set ") for line in lines)
    assert lines[lines.index("chain candidates {") + 1 : lines.index("chain candidates {") + 3] == [
        "meta mark 0x00051820 return",
        "goto classify",
    ]


def test_a_port_map_sends_each_packet_to_the_rules_that_may_match_it() -> None:
    policies = [
        RoutingPolicy("voice", 900, PolicyMatch("udp", dst_ports=((5060, 5061),)), "p-fiber"),
        RoutingPolicy("web", 500, PolicyMatch("tcp", dst_ports=((80, 90),)), "p-fiber"),
        RoutingPolicy("ef", 400, PolicyMatch(dscp=46), "p-lte"),
        RoutingPolicy("admin", 1, PolicyMatch("tcp", dst_ports=((85, 85),)), "p-lte"),
    ]
    lines = render_nftables("patronus", policies, MARKS).splitlines()
    web = [f"tcp . {port} : goto classify_by_port_{1 if port == 85 else 0}" for port in range(80, 91)]
    voice = [f"udp . {port} : goto classify_by_port_2" for port in (5060, 5061)]
    assert (  # few ports: each one its own element, in a hash map (no interval flag)
        "\tmap classify_ports { type inet_proto . inet_service : verdict; "
        f"elements = {{ {', '.join([*web, *voice])} }} }}"
    ) in lines
    assert not any("classify_port_ranges" in line for line in lines)

    def chain(name: str) -> list[str]:
        start = lines.index(f"\tchain {name} {{")
        return [line.strip() for line in lines[start + 1 : lines.index("\t}", start)]]

    dscp = ["ip dscp 46 goto policy_2", "ip6 dscp 46 goto policy_2"]
    assert chain("classify") == ["meta l4proto . th dport vmap @classify_ports", *dscp]
    assert chain("classify_by_port_1") == [
        "meta l4proto tcp th dport 80-90 goto policy_1",
        *dscp,
        "meta l4proto tcp th dport 85 goto policy_3",
    ]
    assert chain("classify_by_port_2") == ["meta l4proto udp th dport 5060-5061 goto policy_0", *dscp]


def test_wide_port_stretches_go_to_an_interval_map_once_the_single_port_budget_is_spent() -> None:
    policies = [
        RoutingPolicy("voice", 900, PolicyMatch("udp", dst_ports=((5060, 5061),)), "p-fiber"),
        RoutingPolicy("web", 500, PolicyMatch("tcp", dst_ports=((443, 443),)), "p-fiber"),
        RoutingPolicy("bulk", 10, PolicyMatch("tcp", dst_ports=((1024, 65535),)), "p-lte"),
    ]
    lines = [line.strip() for line in render_nftables("patronus", policies, MARKS).splitlines()]
    assert (
        "map classify_ports { type inet_proto . inet_service : verdict; elements = { "
        "tcp . 443 : goto classify_by_port_0, udp . 5060 : goto classify_by_port_2, "
        "udp . 5061 : goto classify_by_port_2 } }"
    ) in lines
    assert (
        "map classify_port_ranges { type inet_proto . inet_service : verdict; flags interval; elements = { "
        "tcp . 1024-65535 : goto classify_by_port_1 } }"
    ) in lines
    start = lines.index("chain classify {")
    assert lines[start + 1 : start + 3] == [
        "meta l4proto . th dport vmap @classify_ports",
        "meta l4proto . th dport vmap @classify_port_ranges",
    ]
    candidates = lines.index("chain candidates {")
    assert lines[candidates + 1 : lines.index("}", candidates)] == [
        "meta mark 0x00051820 return",
        "meta l4proto . th dport vmap @classify_ports",
        "meta l4proto . th dport vmap @classify_port_ranges",
    ]


def test_the_narrowest_stretches_are_written_out_first_and_the_budget_is_never_exceeded() -> None:
    widths = [3000, 1, 2600, 5, 1500]  # budget 4096: 1 + 5 + 1500 fit, then 2600 does not
    starts = [10_000, 20_000, 30_000, 40_000, 50_000]
    entries = [
        dispatch.Entry(
            f"meta l4proto tcp th dport {a}-{a + w - 1} goto policy_{i}", ("tcp",), ((a, a + w - 1),)
        )
        for i, (a, w) in enumerate(zip(starts, widths, strict=True))
    ]
    declarations, _, maps = dispatch.render("classify", entries)
    assert maps == ["classify_ports", "classify_port_ranges"]
    exact, ranges = declarations
    assert exact.count(" : goto ") == 1 + 5 + 1500 <= dispatch.EXACT_PORTS_BUDGET
    assert "tcp . 20000 : goto" in exact
    assert "tcp . 51499 : goto" in exact
    assert ranges.count(" : goto ") == 2
    assert "tcp . 10000-12999 : goto" in ranges
    assert "tcp . 30000-32599 : goto" in ranges
