"""The data plane against the real kernel, in network namespaces (:mod:`tests.support.netns`) each test
creates and always deletes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from patronus.agent.dataplane import cleanup, qos
from patronus.agent.dataplane.commands import run
from patronus.agent.dataplane.routing import (
    PATH_MARK_BASE,
    PathRouting,
    PolicyMatch,
    RoutingPolicy,
    assign_path_marks,
    ensure_path_route,
    read_counters,
    route_table_for,
)
from patronus.agent.dataplane.wireguard import WIREGUARD_FWMARK, PeerSpec
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.support.netns import (
    A_IP,
    A_OVERLAY,
    B_IP,
    B_OVERLAY,
    WG_PORT,
    Pair,
    counter,
    peer,
    ping,
    sh,
    wg_pair,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: creates network namespaces, veth pairs and TUN devices"
)


def test_overlay_ping_is_encrypted_on_the_underlay(pair: Pair) -> None:
    wa, wb, pub_a, pub_b = wg_pair(pair)
    assert wa.userspace  # this kernel has no module; the code must have fallen back to wireguard-go
    watch = f"""table inet watch {{
        counter icmp_u0 {{ }}
        counter wg_u0 {{ }}
        counter icmp_wg {{ }}
        chain input {{
            type filter hook input priority 0;
            iifname "u0" meta l4proto icmp counter name icmp_u0
            iifname "u0" udp dport {WG_PORT} counter name wg_u0
            iifname "{wb.name}" meta l4proto icmp counter name icmp_wg
        }}
    }}
    """
    run(["nft", "-f", "-"], netns=pair.b, input=watch)
    assert wa.sync_peers([peer(pub_b, B_IP, B_OVERLAY)]).applied == [
        ["peer", pub_b, "endpoint", f"{B_IP}:{WG_PORT}", "persistent-keepalive", "off",
         "allowed-ips", f"{B_OVERLAY}/32"],
    ]  # fmt: skip
    wb.sync_peers([peer(pub_a, A_IP, A_OVERLAY)])
    ping(pair.a, B_OVERLAY)
    counters = wa.counters()[pub_b]
    assert counters.rx_bytes > 0
    assert counters.tx_bytes > 0
    assert counters.latest_handshake > 0
    assert counter(pair.b, "watch", "icmp_wg") >= 3  # the pings arrived, decrypted, on the tunnel
    assert counter(pair.b, "watch", "wg_u0") >= 3  # as WireGuard UDP on the underlay
    assert counter(pair.b, "watch", "icmp_u0") == 0  # and never as clear ICMP
    assert wa.sync_peers([peer(pub_b, B_IP, B_OVERLAY)]).applied == []  # in sync: nothing to do


def test_changing_one_peer_leaves_the_other_session_alone(pair: Pair) -> None:
    wa, wb, pub_a, pub_b = wg_pair(pair)
    pub_c = public_key_for(generate_private_key())
    c_v1 = PeerSpec.create(pub_c, "192.168.77.3:51820", ["100.96.0.3/32"])
    wa.sync_peers([peer(pub_b, B_IP, B_OVERLAY), c_v1])
    wb.sync_peers([peer(pub_a, A_IP, A_OVERLAY)])
    ping(pair.a, B_OVERLAY)
    before = wa.counters()[pub_b]
    assert before.latest_handshake > 0
    c_v2 = PeerSpec.create(pub_c, "192.168.77.4:51820", ["100.96.0.3/32", "10.3.0.0/16"], 25)
    plan = wa.sync_peers([peer(pub_b, B_IP, B_OVERLAY), c_v2]).applied
    assert [change[1] for change in plan] == [pub_c]  # only C was touched
    after = wa.counters()
    assert after[pub_b].latest_handshake == before.latest_handshake
    assert after[pub_b].rx_bytes >= before.rx_bytes  # a re-added peer would start again from zero
    state = {p.spec.public_key: p.spec for p in wa.state().peers}
    assert state[pub_c] == c_v2
    ping(pair.a, B_OVERLAY, count=1)  # the session still works without a new handshake
    assert wa.counters()[pub_b].latest_handshake == before.latest_handshake


def _send_udp(netns: str, address: str, ports: list[int], count: int) -> None:
    script = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        f"for p in {ports!r}:\n"
        f"    for _ in range({count}): s.sendto(b'x'*100,({address!r},p))\n"
    )
    run([sys.executable, "-c", script], netns=netns)


def test_policy_marks_count_and_switch_paths(pair: Pair) -> None:
    marks = assign_path_marks(["path-fiber", "path-lte"])
    fiber, lte = marks["path-fiber"], marks["path-lte"]
    voice = RoutingPolicy("voice", 900, PolicyMatch("udp", dst_ports=((5000, 5001),)), "path-fiber")
    routing = PathRouting(pair.a)
    routing.apply([voice], marks)
    watch = f"""table inet watch {{
        counter fiber {{ }}
        counter lte {{ }}
        counter unmarked {{ }}
        chain post {{
            type filter hook postrouting priority 100;
            oifname "u0" meta mark {fiber:#x} counter name fiber
            oifname "u0" meta mark {lte:#x} counter name lte
            oifname "u0" meta l4proto udp meta mark 0 counter name unmarked
        }}
    }}
    """
    run(["nft", "-f", "-"], netns=pair.a, input=watch)
    _send_udp(pair.a, B_IP, [5001], 5)
    _send_udp(pair.a, B_IP, [6000], 4)
    counters = read_counters(pair.a)["voice"]
    assert (counters.packets, counters.new_flows) == (5, 1)
    assert counters.bytes == 5 * (100 + 28)
    assert counter(pair.a, "watch", "fiber") == 5
    assert counter(pair.a, "watch", "unmarked") == 4  # port 6000 matched nothing and kept no mark

    routing.switch("voice", "path-lte")
    assert routing.paths_in_use() == {"voice": "path-lte"}
    _send_udp(pair.a, B_IP, [5000], 3)
    assert counter(pair.a, "watch", "lte") == 3
    assert counter(pair.a, "watch", "fiber") == 5
    assert read_counters(pair.a)["voice"].packets == 8


_UNTRACKED_WATCH = """table inet watch {{
    counter untracked {{ }}
    counter tracked {{ }}
    chain post {{
        type filter hook postrouting priority 100;
        meta mark {mark:#x} ct state untracked counter name untracked
        meta mark {mark:#x} ct state != untracked counter name tracked
    }}
    chain input {{
        type filter hook input priority 0;
        udp dport {port} ct state untracked counter name untracked
        udp dport {port} ct state != untracked counter name tracked
    }}
}}
"""


def test_marked_traffic_takes_the_path_tunnel(pair: Pair) -> None:
    """End to end: the policy's mark selects the path's table, which routes into the WireGuard tunnel.
    The tunnels' encrypted packets skip conntrack both ways; the policy still counts its flow once."""
    wa, wb, pub_a, pub_b = wg_pair(pair)
    wa.sync_peers([PeerSpec.create(pub_b, f"{B_IP}:{WG_PORT}", [f"{B_OVERLAY}/32", "10.2.0.0/16"])])
    wb.sync_peers([peer(pub_a, A_IP, A_OVERLAY)])
    sh(pair.b, "ip", "address", "add", "10.2.0.1/32", "dev", "lo")  # a subnet behind site B
    sh(pair.a, "ip", "route", "add", "default", "via", B_IP)  # unmatched traffic: the clear underlay
    marks = assign_path_marks(["path-wg"])
    mark = marks["path-wg"]
    ensure_path_route("path-wg", mark, route_table_for(mark), wa.name, ["10.2.0.0/16"], netns=pair.a)
    voice = RoutingPolicy("voice", 1, PolicyMatch("udp", ((5000, 5000),)), "path-wg")
    PathRouting(pair.a).apply([voice], marks, tunnel_ports=[WG_PORT])
    # B's table has ct matches too (conntrack on in both namespaces) and no path for the policy.
    PathRouting(pair.b).apply([RoutingPolicy("voice", 1, voice.match, None)], {}, tunnel_ports=[WG_PORT])
    for ns in (pair.a, pair.b):
        run(["nft", "-f", "-"], netns=ns, input=_UNTRACKED_WATCH.format(mark=WIREGUARD_FWMARK, port=WG_PORT))
    # Counted by sockets pinned to each interface (not nft counters: wireguard-go coalesces the tunnel's
    # datagrams of one flow (GRO) into fewer, larger packets before the kernel sees them).
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", pair.b, sys.executable, "-c", _BY_DEVICE, "5", wb.name, "u0", "5000", "6000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        # Rerouting keeps the source address the first route lookup chose, and B's tunnel accepts only
        # A's allowed IPs: local senders bind the overlay address (forwarded LAN traffic carries its own).
        # (The unmatched packets go from the underlay address: B answers them with ICMP errors, which
        # must not race a handshake from B's side against A's.)
        script = (
            "import socket\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            f"s.bind(({A_OVERLAY!r},0))\n"
            "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
            "for p in (5000,5000,5000): s.sendto(b'x'*64,('10.2.0.1',p))\n"
            "for p in (6000,6000): u.sendto(b'x'*64,('10.2.0.1',p))\n"
        )
        run([sys.executable, "-c", script], netns=pair.a)
        counts = json.loads(receiver.communicate(timeout=15)[0])
    finally:
        receiver.kill()
        receiver.wait()
    assert counts == {f"{wb.name}:5000": 3, f"{wb.name}:6000": 0, "u0:5000": 0, "u0:6000": 2}
    voice_counted = read_counters(pair.a)["voice"]
    assert (voice_counted.packets, voice_counted.new_flows) == (3, 1)
    for ns in (pair.a, pair.b):  # the handshake and data both ways, sent and received
        assert counter(ns, "watch", "untracked") >= 2
        assert counter(ns, "watch", "tracked") == 0


_BY_DEVICE = """
import json, select, socket, sys, time
expected, devices, ports = int(sys.argv[1]), sys.argv[2:4], [int(p) for p in sys.argv[4:]]
sockets = {}
for device in devices:
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        s.bind(("0.0.0.0", port))
        sockets[s] = f"{device}:{port}"
counts = dict.fromkeys(sockets.values(), 0)
print("ready", flush=True)
# Until the expected datagrams are in (or 8 s), then half a second more for any that should not come.
deadline = time.monotonic() + 8
while time.monotonic() < deadline:
    for s in select.select(list(sockets), [], [], 0.1)[0]:
        s.recv(65535)
        counts[sockets[s]] += 1
    if sum(counts.values()) >= expected:
        deadline = min(deadline, time.monotonic() + 0.5)
print(json.dumps(counts), flush=True)
"""


_RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(1.0)
print("ready", flush=True)
total, first, last, deadline = 0, None, None, time.monotonic() + 8
while time.monotonic() < deadline:
    try:
        data = s.recv(65535)
    except socket.timeout:
        if first is not None:
            break
        continue
    now = time.monotonic()
    first = now if first is None else first
    last, total = now, total + len(data)
print(total, (last or 0) - (first or 0))
"""

_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload, end = b"x" * 1200, time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    try:
        s.sendto(payload, (sys.argv[1], int(sys.argv[2])))
    except OSError:
        time.sleep(0.0005)
"""


def test_htb_class_caps_a_bulk_flow(pair: Pair) -> None:
    bulk = RoutingPolicy(
        "backup", 10, PolicyMatch("udp", dst_ports=((7000, 7000),)), None, "bulk", 10_000_000
    )
    minors = qos.class_minors(["backup"])
    PathRouting(pair.a).apply([bulk], {}, priorities=minors)
    qos.apply_htb("u0", [("backup", "bulk", 10_000_000)], 1_000_000_000, netns=pair.a)
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", pair.b, sys.executable, "-c", _RECEIVER, "7000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        run([sys.executable, "-c", _SENDER, B_IP, "7000", "3"], netns=pair.a)
        out, _ = receiver.communicate(timeout=10)
    finally:
        receiver.kill()
        receiver.wait()
    total, seconds = out.split()
    mbps = int(total) * 8 / float(seconds) / 1e6
    print(f"policy class 10 Mbit/s: measured {mbps:.2f} Mbit/s over {float(seconds):.1f} s")
    assert float(seconds) > 2.0
    assert 5.0 < mbps <= 11.0, f"{mbps:.2f} Mbit/s"
    stats = sh(pair.a, "tc", "-s", "class", "show", "dev", "u0", "classid", qos.classid(minors["backup"]))
    sent_packets = int(stats.split(" pkt")[0].split()[-1])  # "Sent <bytes> bytes <packets> pkt ..."
    assert sent_packets > 1000  # nft's meta priority put the flow in the policy's class, no tc filter


def test_teardown_leaves_nothing_behind(pair: Pair) -> None:
    wa, _wb, _pub_a, pub_b = wg_pair(pair)
    wa.sync_peers([peer(pub_b, B_IP, B_OVERLAY)])
    marks = assign_path_marks(["path-fiber"])
    mark = marks["path-fiber"]
    for _ in range(2):  # idempotent
        ensure_path_route("path-fiber", mark, route_table_for(mark), wa.name, ["10.2.0.0/16"], netns=pair.a)
    rules = json.loads(sh(pair.a, "ip", "-j", "rule", "show"))
    assert sum(1 for r in rules if r.get("fwmark") == f"{mark:#x}") == 1
    assert "10.2.0.0/16" in sh(pair.a, "ip", "route", "show", "table", str(route_table_for(mark)))
    PathRouting(pair.a).apply([RoutingPolicy("p", 1, PolicyMatch(), "path-fiber")], marks)
    qos.apply_htb(wa.name, [("p", "default", 5_000_000)], 100_000_000, netns=pair.a)
    qos.apply_htb("u0", [], 100_000_000, netns=pair.a)

    for _ in range(2):
        cleanup.teardown(pair.a, [wa.name], shaped_interfaces=["u0"])
    assert not wa.exists()
    deadline = time.monotonic() + 5
    while os.path.exists(f"/var/run/wireguard/{wa.name}.sock") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/var/run/wireguard/{wa.name}.sock")
    rules = json.loads(sh(pair.a, "ip", "-j", "rule", "show"))
    assert not [r for r in rules if int(r.get("fwmark", "0"), 0) & 0xFFFF0000 == PATH_MARK_BASE]
    assert sh(pair.a, "ip", "route", "show", "table", str(route_table_for(mark)), check=False).strip() == ""
    assert "patronus" not in sh(pair.a, "nft", "list", "tables")
    assert "htb" not in sh(pair.a, "tc", "qdisc", "show", "dev", "u0")
