"""The delay relay: holds each IP packet of an impaired WAN link for delay ± jitter, then sends it on.

The kernel here has no netem, so delay is done in userspace. The relay runs inside the WAN namespace and
owns a TUN device (``imp0``); ``impair`` adds policy-routing rules that send the packets of a *delayed*
link (those arriving from its WAN-side veth and those routed toward its subnet) into that device. The
relay reads each packet, works out which impaired links it crosses from its source and destination
addresses, waits, and writes it back into the same device; the kernel then routes it normally (the
rule ``iif imp0 lookup main`` keeps it from looping back). Why this and not a UDP relay in front of the
WireGuard endpoints: it is transparent (endpoints stay the sites' real underlay addresses, so WireGuard
roaming, probes, pings and any other protocol all see the same delay), a link's delay does not depend on
which peer happened to send first, and parameters change at run time with no tunnel restart.

Semantics, like ``tc netem delay`` on the site's WAN interface: ``delay`` applies to packets leaving the
site over the link. A round trip between a delayed site and an undelayed one therefore grows by the delay;
between two delayed links by the sum of both.
Jitter is uniform in [-jitter, +jitter], sampled per packet and link, clamped at zero delay; with jitter,
packets may be reordered unless ``preserve_order`` is set for the link. Loss and outages are not done
here but in nftables (see :mod:`patronus.lab.impair`), so they also hit links that are not delayed.

Timing: asyncio on a ``select()``-based selector, whose timeout has microsecond resolution (the default
epoll selector rounds timeouts up to whole milliseconds). One heap of ``(due, seq, packet)`` and one
``loop.call_at`` for its head, armed 250 us early and spun for the rest, because waking from a sleep
takes 100-300 us on a VM: packets leave within tens of microseconds of their due time on average
(``late_us_mean`` in the stats). The queue is bounded (``--max-queue``); overflow is dropped and counted.
Cost with no delay: ~25-30 us per packet per pass (Python reads, looks up, writes), ~130 k packets/s on
one core; links without a delay are not routed through the relay at all.

Control: a Unix stream socket, one JSON object per line, one JSON reply per line::

    {"op": "ping"}
    {"op": "set", "link": "a/fiber", "subnet": "172.16.1.0/30", "delay_ms": 40, "jitter_ms": 5,
     "preserve_order": false}
    {"op": "clear", "link": "a/fiber"}
    {"op": "stats"}

Run as ``python -m patronus.lab.relay --tun imp0 --table 4242 --control PATH`` inside the namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import heapq
import ipaddress
import json
import os
import random
import selectors
import signal
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_MAX_PACKET = 65535
_READ_BATCH = 256
"""Packets read per wake-up before the loop gets a turn (timers, control) again."""
_EARLY = 20e-6
"""Send packets due within this many seconds now rather than sleep for less than the timer slack."""
_SPIN = 250e-6
"""Wake this much before the head is due and spin the rest: waking from a sleep takes ~100-300 us here
(more in a VM), which a sleep to the exact time would add to every delay."""


@dataclass
class LinkDelay:
    """One link's delay parameters, in seconds, and how many packets it has delayed."""

    name: str
    delay: float
    jitter: float
    preserve_order: bool
    packets: int = 0

    def sample(self, rng: random.Random) -> float:
        if self.jitter <= 0.0:
            return self.delay
        return max(0.0, self.delay + rng.uniform(-self.jitter, self.jitter))


class Relay:
    """The packet engine, apart from the TUN device and the sockets (so it can be tested on its own)."""

    def __init__(self, write: Any, loop: asyncio.AbstractEventLoop, max_queue: int, seed: int | None) -> None:
        self._write = write
        self._loop = loop
        self._max_queue = max_queue
        self._rng = random.Random(seed)
        self._by_mask: dict[int, dict[int, LinkDelay]] = {}
        self._where: dict[str, tuple[int, int]] = {}
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._last_due: dict[tuple[str | None, str | None], float] = {}
        self._late_sum = 0.0
        self._late_max = 0.0
        self.counters: dict[str, int] = {
            "received": 0,
            "sent": 0,
            "delayed": 0,
            "dropped_queue_full": 0,
            "dropped_not_ipv4": 0,
            "write_errors": 0,
        }

    def set_link(
        self, name: str, subnet: str, delay_ms: float, jitter_ms: float, preserve_order: bool
    ) -> None:
        network = ipaddress.IPv4Network(subnet)
        self.clear_link(name)
        mask, net = int(network.netmask), int(network.network_address)
        link = LinkDelay(name, delay_ms / 1000.0, jitter_ms / 1000.0, preserve_order)
        self._by_mask.setdefault(mask, {})[net] = link
        self._where[name] = (mask, net)

    def clear_link(self, name: str) -> None:
        where = self._where.pop(name, None)
        if where is None:
            return
        mask, net = where
        table = self._by_mask[mask]
        table.pop(net, None)
        if not table:
            del self._by_mask[mask]

    def _lookup(self, address: int) -> LinkDelay | None:
        for mask, table in self._by_mask.items():
            link = table.get(address & mask)
            if link is not None:
                return link
        return None

    def packet(self, data: bytes) -> None:
        """Take one packet read from the TUN device: send it now or queue it until it is due."""
        self.counters["received"] += 1
        if len(data) < 20 or data[0] >> 4 != 4:
            self.counters["dropped_not_ipv4"] += 1
            return
        # Like netem on the site's WAN interface: a link delays what its site sends, so a 40 ms delay adds
        # 40 ms to a round trip across it. Packets arriving toward the site pass undelayed.
        source = self._lookup(int.from_bytes(data[12:16], "big"))
        target = None
        delay = 0.0
        ordered = False
        for link in (source,):
            if link is not None:
                link.packets += 1
                delay += link.sample(self._rng)
                ordered = ordered or link.preserve_order
        now = self._loop.time()
        due = now + delay
        if ordered:
            key = (source.name if source else None, target.name if target else None)
            due = max(due, self._last_due.get(key, 0.0))
            self._last_due[key] = due
        if due - now <= _EARLY:
            self._send(data)
            return
        if len(self._heap) >= self._max_queue:
            self.counters["dropped_queue_full"] += 1
            return
        self.counters["delayed"] += 1
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, data))
        if self._heap[0][1] == self._seq:  # a new head: the timer must fire earlier
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._heap[0][0] - _SPIN, self._flush) if self._heap else None

    def _flush(self) -> None:
        self._timer = None
        heap = self._heap
        now = self._loop.time()
        if heap and heap[0][0] - now <= _SPIN:
            while now < heap[0][0]:  # at most _SPIN, bounded by the clock
                now = self._loop.time()
        while heap and heap[0][0] <= now + _EARLY:
            due, _, data = heapq.heappop(heap)
            late = now - due
            self._late_sum += late
            self._late_max = max(self._late_max, late)
            self._send(data)
        self._arm()

    def _send(self, data: bytes) -> None:
        try:
            self._write(data)
        except OSError:
            self.counters["write_errors"] += 1
            return
        self.counters["sent"] += 1

    def stats(self) -> dict[str, Any]:
        links = {}
        for table in self._by_mask.values():
            for link in table.values():
                links[link.name] = {
                    "delay_ms": link.delay * 1000.0,
                    "jitter_ms": link.jitter * 1000.0,
                    "preserve_order": link.preserve_order,
                    "packets": link.packets,
                }
        released = self.counters["delayed"] - len(self._heap)
        lateness = {
            "late_us_mean": round(self._late_sum / released * 1e6, 1) if released else 0.0,
            "late_us_max": round(self._late_max * 1e6, 1),
        }
        return {**self.counters, **lateness, "queued": len(self._heap), "links": links}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one control request."""
        op = request.get("op")
        if op == "ping":
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "stats": self.stats()}
        if op == "set":
            self.set_link(
                str(request["link"]),
                str(request["subnet"]),
                float(request.get("delay_ms", 0.0)),
                float(request.get("jitter_ms", 0.0)),
                bool(request.get("preserve_order", False)),
            )
            return {"ok": True}
        if op == "clear":
            self.clear_link(str(request["link"]))
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}


def open_tun(name: str) -> int:
    """Create TUN device ``name`` (no packet-info header) and return its non-blocking descriptor.

    The device is not persistent: it goes when the relay does, and with it the route into it, so the
    diversion rules then find no route and traffic falls through to normal routing, undelayed, instead of
    vanishing into a device nobody reads.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    fd = open_tun(args.tun)
    for cmd in (
        ["ip", "link", "set", "dev", args.tun, "up"],
        ["ip", "route", "replace", "default", "dev", args.tun, "table", str(args.table)],
    ):
        subprocess.run(cmd, check=True, timeout=10)
    relay = Relay(lambda data: os.write(fd, data), loop, args.max_queue, args.seed)

    def readable() -> None:
        for _ in range(_READ_BATCH):
            try:
                data = os.read(fd, _MAX_PACKET)
            except BlockingIOError:
                return
            relay.packet(data)

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = relay.handle(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    loop.add_reader(fd, readable)
    socket_path = Path(args.control)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(control, path=str(socket_path))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(f"relay: {args.tun} up, control {socket_path}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        loop.remove_reader(fd)
        os.close(fd)
        with contextlib.suppress(OSError):
            socket_path.unlink()
        print(f"relay: stopped, {json.dumps(relay.stats())}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m patronus.lab.relay", description="Delay relay for the lab WAN."
    )
    parser.add_argument("--tun", required=True, help="TUN device to create and serve")
    parser.add_argument("--table", type=int, required=True, help="routing table whose default is the TUN")
    parser.add_argument("--control", required=True, help="path of the control Unix socket")
    parser.add_argument("--max-queue", type=int, default=20000, help="packets held at most; more are dropped")
    parser.add_argument("--seed", type=int, default=None, help="seed the jitter (reproducible runs)")
    args = parser.parse_args(argv)
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(_serve(args))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
