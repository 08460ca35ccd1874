"""Two sites in network namespaces for data-plane tests: created per test, always deleted.

Two namespaces joined by a veth pair (``u0`` on both sides, 192.168.77.1 and .2) stand for two sites and
their underlay. WireGuard runs as wireguard-go (this kernel has no module). wireguard-go's control sockets
live in /var/run/wireguard, shared by all namespaces, so the two ends get distinct interface names.
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from patronus.agent.dataplane import cleanup
from patronus.agent.dataplane.commands import CommandError, run
from patronus.agent.dataplane.wireguard import PeerSpec, WireGuardInterface
from patronus.wireguard.keys import generate_private_key, public_key_for

A_IP, B_IP = "192.168.77.1", "192.168.77.2"
A_OVERLAY, B_OVERLAY = "100.96.0.1", "100.96.0.2"
WG_PORT = 51820


@dataclass
class Pair:
    a: str
    b: str
    suffix: str


def sh(netns: str, *args: str, check: bool = True) -> str:
    return run(list(args), netns=netns, check=check).stdout


@contextlib.contextmanager
def two_sites() -> Iterator[Pair]:
    suffix = uuid.uuid4().hex[:6]
    env = Pair(f"pt-{suffix}-a", f"pt-{suffix}-b", suffix)
    try:
        for ns in (env.a, env.b):
            run(["ip", "netns", "add", ns])
            sh(ns, "ip", "link", "set", "lo", "up")
        run(["ip", "link", "add", "u0", "netns", env.a, "type", "veth", "peer", "name", "u0", "netns", env.b])
        for ns, address in ((env.a, A_IP), (env.b, B_IP)):
            sh(ns, "ip", "address", "add", f"{address}/24", "dev", "u0")
            sh(ns, "ip", "link", "set", "u0", "up")
        yield env
    finally:
        for ns, side in ((env.a, "a"), (env.b, "b")):
            # Interfaces first, so wireguard-go exits and removes its (shared-directory) socket.
            try:
                cleanup.teardown(ns, [f"w{side}{suffix}"], shaped_interfaces=["u0"])
            except CommandError as exc:
                print(f"teardown of {ns}: {exc}")
            finally:
                run(["ip", "netns", "del", ns], check=False)


def wg_pair(env: Pair, **options: Any) -> tuple[WireGuardInterface, WireGuardInterface, str, str]:
    """Both ends up (not yet peered), with a route to the other's overlay address; ``options`` go to
    ``WireGuardInterface`` (clock, resolver, ...)."""
    key_a, key_b = generate_private_key(), generate_private_key()
    wa = WireGuardInterface(
        f"wa{env.suffix}", listen_port=WG_PORT, address=f"{A_OVERLAY}/32", private_key=key_a, netns=env.a,
        **options,
    )  # fmt: skip
    wb = WireGuardInterface(
        f"wb{env.suffix}", listen_port=WG_PORT, address=f"{B_OVERLAY}/32", private_key=key_b, netns=env.b,
        **options,
    )  # fmt: skip
    for wg, ns, peer in ((wa, env.a, B_OVERLAY), (wb, env.b, A_OVERLAY)):
        wg.ensure()
        sh(ns, "ip", "route", "replace", f"{peer}/32", "dev", wg.name)
    return wa, wb, public_key_for(key_a), public_key_for(key_b)


def peer(public_key: str, endpoint: str, overlay: str, keepalive: int = 0) -> PeerSpec:
    return PeerSpec.create(public_key, f"{endpoint}:{WG_PORT}", [f"{overlay}/32"], keepalive)


_PING = """
import os, socket, struct, sys, time

def checksum(data):
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF

address, wanted = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.5)
ident, replies, seq, deadline = os.getpid() & 0xFFFF, 0, 0, time.monotonic() + 8
while replies < wanted and time.monotonic() < deadline:
    seq += 1
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"patronus"
    s.sendto(body[:2] + struct.pack("!H", checksum(body)) + body[4:], (address, 0))
    try:
        while True:
            packet = s.recv(1500)
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", packet[20:28])
            if kind == 0 and rid == ident and rseq == seq:
                replies += 1
                break
    except socket.timeout:
        pass
sys.exit(0 if replies >= wanted else 1)
"""


def ping(netns: str, address: str, count: int = 3) -> None:
    """``count`` ICMP echo replies from ``address`` within 8 s (no ping binary on this machine)."""
    run([sys.executable, "-c", _PING, address, str(count)], netns=netns)


def answers_ping(netns: str, address: str) -> bool:
    try:
        ping(netns, address, count=1)
    except CommandError:
        return False
    return True


def counter(netns: str, table: str, name: str) -> int:
    document = json.loads(sh(netns, "nft", "-j", "list", "counter", "inet", table, name))
    return next(int(i["counter"]["packets"]) for i in document["nftables"] if "counter" in i)
