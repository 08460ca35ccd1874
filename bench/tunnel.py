"""Tunnel benchmark: one TCP stream over the bare veth, over Debian's wireguard-go, over the wireguard-go
built from its Go module, and over the module build with 500 policies loaded (nftables marking + htb).

    flock /tmp/patronus-bench.lock .venv/bin/python bench/tunnel.py [--seconds 4] [--repeats 3]
        [--policies 500] [--variants bare,debian,module,full] [--order mirrored|forward]
        [--debian /usr/bin/wireguard-go] [--module PATH]

Needs root. Two network namespaces (``tn<random>-a`` and ``-b``) joined by a veth pair stand for two
sites and their underlay; both are always deleted at the end (which stops the wireguard-go daemons).
Two tunnels run side by side over the same veth: Debian's wireguard-go (``/usr/bin/wireguard-go``, 2022)
and the module build (``--module``, default: what ``scripts/build-wireguard-go.sh`` prints; it builds or
reuses the cached binary). Each is set up the way the agent does it (``WireGuardInterface``).

One measurement: a Python TCP receiver in b (``recv_into`` a 1 MiB buffer) and a Python sender in a
(``send`` of 256 KiB writes for ``--seconds``) over one connection; throughput is what the receiver got
over its own elapsed time. CPU is the CPU time (user + system, from ``/proc/<pid>/stat``) of the sender,
the receiver and the wireguard-go daemons of the tunnel used, over the transfer: kernel work (TCP,
veth, nftables, htb) done in those processes' context is included, softirq work done elsewhere is not.
CPU s/Gbit = that CPU time / gigabits received.

The policy variant loads the agent's table (``PathRouting.apply``) with ``--policies`` policies in both
namespaces and an htb class for every other policy on both module tunnel interfaces. The stream is matched
by the lowest-priority policy (in a plain scan every data packet would be tried against every other
policy first; the table's port verdict maps send it straight to the policies that name its port), is
counted, marked into a path table that routes it into the same tunnel, and goes through an htb class
(10 Gbit/s, so it never limits). The other policies name other ports, so the stream's ACKs and the
tunnels' encrypted packets are looked up and skipped.

Variants alternate within each repeat, so a slow moment of the shared machine hits all of them; in the
default mirrored order each repeat runs them forward and then backward (A B B A: bare, debian, module,
module+policies, module+policies, module, ...), so every variant is measured first as often as last and
an effect of the position cancels. The cost of a load is answered pair by pair (:mod:`tunnel_stats`):
each measurement with the load against the plain module's of the same half-repeat, the median of those
ratios with its bootstrap interval and the smallest and largest; the report gives every raw number too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tunnel_load
import tunnel_stats

from patronus.agent.dataplane import cleanup
from patronus.agent.dataplane.commands import run
from patronus.agent.dataplane.wireguard import PeerSpec, WireGuardInterface
from patronus.wireguard.keys import generate_private_key, public_key_for

REPO = Path(__file__).resolve().parents[1]
UNDERLAY = ("192.168.77.1", "192.168.77.2")
PORT = 5201
CLK_TCK = os.sysconf("SC_CLK_TCK")

_RECEIVER = """
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
print("ready", os.getpid(), flush=True)
conn, _ = s.accept()
buf = bytearray(1 << 20)
view, total, start = memoryview(buf), 0, time.monotonic()
while True:
    n = conn.recv_into(view)
    if not n:
        break
    total += n
elapsed, t = time.monotonic() - start, os.times()
print(total, elapsed, t.user + t.system, flush=True)
"""

_SENDER = """
import os, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
payload, end = memoryview(b"x" * (256 << 10)), time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.sendall(payload)
s.close()
t = os.times()
print(t.user + t.system, flush=True)
"""


@dataclass
class Tunnel:
    label: str
    binary: str
    names: tuple[str, str]
    overlays: tuple[str, str]
    port: int
    interfaces: tuple[WireGuardInterface, WireGuardInterface] | None = None


@dataclass
class Sample:
    variant: str
    gbit_s: float
    cpu_s: float
    gbits: float

    @property
    def cpu_per_gbit(self) -> float:
        return self.cpu_s / self.gbits if self.gbits else float("nan")


def say(text: str = "") -> None:
    print(text, flush=True)


def module_binary() -> str:
    out = subprocess.run(
        [str(REPO / "scripts" / "build-wireguard-go.sh")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "?"


@contextlib.contextmanager
def namespaces(prefix: str, interfaces: list[str]) -> Iterator[tuple[str, str]]:
    """Two namespaces on a veth pair; at the end ``interfaces`` (and so their daemons) and both go."""
    pair = (f"{prefix}-a", f"{prefix}-b")
    try:
        for ns in pair:
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "set", "lo", "up"], netns=ns)
        run(
            [
                "ip",
                "link",
                "add",
                "u0",
                "netns",
                pair[0],
                "type",
                "veth",
                "peer",
                "name",
                "u0",
                "netns",
                pair[1],
            ]
        )
        for ns, address in zip(pair, UNDERLAY, strict=True):
            run(["ip", "address", "add", f"{address}/24", "dev", "u0"], netns=ns)
            run(["ip", "link", "set", "u0", "up"], netns=ns)
        yield pair
    finally:
        for ns in pair:
            with contextlib.suppress(Exception):
                cleanup.teardown(ns, interfaces, shaped_interfaces=["u0"])
            run(["ip", "netns", "del", ns], check=False)


def start_tunnel(tunnel: Tunnel, pair: tuple[str, str]) -> None:
    keys = (generate_private_key(), generate_private_key())
    sides = []
    for i, ns in enumerate(pair):
        wg = WireGuardInterface(
            tunnel.names[i], listen_port=tunnel.port, address=f"{tunnel.overlays[i]}/32",
            private_key=keys[i], netns=ns, userspace_binary=tunnel.binary,
        )  # fmt: skip
        wg.ensure()
        sides.append(wg)
    for i, wg in enumerate(sides):
        other = 1 - i
        peer = PeerSpec.create(public_key_for(keys[other]), f"{UNDERLAY[other]}:{tunnel.port}",
                               [f"{tunnel.overlays[other]}/32"])  # fmt: skip
        result = wg.sync_peers([peer])
        assert result.ok, result.failed
        run(["ip", "route", "replace", f"{tunnel.overlays[other]}/32", "dev", wg.name], netns=pair[i])
    tunnel.interfaces = (sides[0], sides[1])


def wireguard_pids(names: tuple[str, ...]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if any(b"wireguard-go" in a for a in argv[:1]) and argv[-2:-1] and argv[-2].decode() in names:
                pids.append(int(entry.name))
    return pids


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def transfer(pair: tuple[str, str], address: str, seconds: float, daemons: list[int]) -> tuple[float, float]:
    """(bits/s received, CPU seconds of sender + receiver + the ``daemons`` over the transfer)."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", pair[1], sys.executable, "-c", _RECEIVER, address, str(PORT)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().startswith("ready")
        before = cpu_of(daemons)
        sender = subprocess.run(
            ["ip", "netns", "exec", pair[0], sys.executable, "-c", _SENDER, address, str(PORT), str(seconds)],
            capture_output=True, text=True, check=True, timeout=seconds + 60,
        )  # fmt: skip
        total, elapsed, receiver_cpu = receiver.communicate(timeout=60)[0].split()
        daemon_cpu = cpu_of(daemons) - before
        cpu = float(sender.stdout.strip()) + float(receiver_cpu) + daemon_cpu
        return int(total) * 8 / float(elapsed), cpu
    finally:
        receiver.kill()
        receiver.wait()


def measure(variant: str, pair: tuple[str, str], address: str, seconds: float, daemons: list[int]) -> Sample:
    bps, cpu = transfer(pair, address, seconds, daemons)
    sample = Sample(variant, bps / 1e9, cpu, bps * seconds / 1e9)
    rate, per_gbit = f"{sample.gbit_s:7.3f} Gbit/s", f"{sample.cpu_per_gbit:6.3f} cpu-s/Gbit"
    say(f"  {variant:<16} {rate}  cpu {cpu:6.2f} s  {per_gbit}")
    return sample


def report(samples: list[Sample]) -> None:
    by: dict[str, list[Sample]] = {}
    for sample in samples:
        by.setdefault(sample.variant, []).append(sample)
    med = {v: statistics.median(s.gbit_s for s in group) for v, group in by.items()}
    cpu = {v: statistics.median(s.cpu_per_gbit for s in group) for v, group in by.items()}
    say()
    say(f"{'variant':<18} {'median Gbit/s':>14} {'cpu-s/Gbit':>10} {'x first':>8}  raw Gbit/s")
    first = next(iter(by))
    for variant, group in by.items():
        raw = ", ".join(f"{s.gbit_s:.3f}" for s in group)
        ratio = med[variant] / med[first]
        say(f"{variant:<18} {med[variant]:14.3f} {cpu[variant]:10.3f} {ratio:8.4f}  {raw}")
    say()
    if "module" in by and "debian" in by:
        say(f"module / debian throughput: {med['module'] / med['debian']:.2f}x (goal: >= 3x)")
        say(f"module / debian CPU per Gbit: {cpu['module'] / cpu['debian']:.2f}")
    for variant in (v for v in by if v.startswith("module+")):
        report_cost(variant, by["module"], by[variant])


def report_cost(variant: str, module: list[Sample], loaded: list[Sample]) -> None:
    """The cost of a load from its pairs with the plain module (:mod:`tunnel_stats`)."""
    rate = tunnel_stats.summarize([s.gbit_s for s in module], [s.gbit_s for s in loaded])
    per_gbit = tunnel_stats.summarize([s.cpu_per_gbit for s in module], [s.cpu_per_gbit for s in loaded])
    verdict = "clearly under 5 %" if rate.worst_cost < 0.05 else "NOT clearly under 5 %"
    say()
    say(f"{variant} against module, {len(rate.ratios)} pairs (with/without, next to each other):")
    say(f"  per-pair throughput ratios: {', '.join(f'{r:.3f}' for r in rate.ratios)}")
    say(f"  median {rate.median:.4f}, {tunnel_stats.LEVEL:.0%} bootstrap interval {rate.low:.4f}-"
        f"{rate.high:.4f}, min {min(rate.ratios):.4f}, max {max(rate.ratios):.4f}")  # fmt: skip
    say(f"  cost {rate.cost * 100:.1f} % of throughput (at most {rate.worst_cost * 100:.1f} % by the "
        f"interval): {verdict}")  # fmt: skip
    say(f"  cpu-s/Gbit per-pair median {per_gbit.median:.4f}x the module's "
        f"(interval {per_gbit.low:.4f}-{per_gbit.high:.4f})")  # fmt: skip


def run_variant(
    variant: str, pair: tuple[str, str], tunnels: tuple[Tunnel, Tunnel], pids: dict[str, list[int]],
    args: argparse.Namespace,
) -> Sample:  # fmt: skip
    """One measurement of ``variant``; a module load is put in place around it and removed after."""
    debian, mod = tunnels
    if variant == "bare":
        return measure("bare", pair, UNDERLAY[1], args.seconds, [])
    if variant in ("debian", "module"):
        tunnel = debian if variant == "debian" else mod
        return measure(variant, pair, tunnel.overlays[1], args.seconds, pids[variant])
    policies = tunnel_load.policies_for(args.policies, PORT)
    ports = (debian.port, mod.port)
    try:
        for i, ns in enumerate(pair):
            where = tunnel_load.Where(ns, mod.names[i], mod.overlays[1 - i], ports)
            tunnel_load.load(tunnel_load.VARIANTS[variant], where, policies)
        label = f"module+{args.policies}" if variant == "full" else f"module+{variant}"
        return measure(label, pair, mod.overlays[1], args.seconds, pids["module"])
    finally:
        for i, ns in enumerate(pair):
            tunnel_load.unload(ns, mod.names[i])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--debian", default="/usr/bin/wireguard-go")
    parser.add_argument("--module", default=None)
    parser.add_argument(
        "--variants", default="bare,debian,module,full",
        help=f"comma-separated, in the order run: bare, debian, module, and module loads "
        f"({', '.join(tunnel_load.VARIANTS)}; 'full' is the agent's whole load)",
    )  # fmt: skip
    parser.add_argument(
        "--order", choices=("mirrored", "forward"), default="mirrored",
        help="mirrored: each repeat runs the variants forward, then backward (A B B A), so each variant "
        "is measured first as often as last; forward: once, in the order given",
    )  # fmt: skip
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("needs root (network namespaces, TUN devices)")
        return 2
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in ("bare", "debian", "module", *tunnel_load.VARIANTS)]
    if unknown or "module" not in variants:
        say(f"unknown variants {unknown}, or no 'module' (the baseline of every load)")
        return 2
    module = args.module or module_binary()
    say(f"debian: {args.debian} ({version_of(args.debian)})")
    say(f"module: {module} ({version_of(module)})")
    say(
        f"machine: {os.cpu_count()} CPUs, kernel {os.uname().release}; one TCP stream, Python sender/receiver"
    )
    prefix = f"tn{secrets.token_hex(3)}"
    debian = Tunnel(
        "debian", args.debian, (f"{prefix}d0", f"{prefix}d1"), ("100.96.1.1", "100.96.1.2"), 51821
    )
    mod = Tunnel("module", module, (f"{prefix}m0", f"{prefix}m1"), ("100.96.0.1", "100.96.0.2"), 51820)
    samples: list[Sample] = []
    with namespaces(prefix, [*debian.names, *mod.names]) as pair:
        for tunnel in (debian, mod):
            start_tunnel(tunnel, pair)
        pids = {t.label: wireguard_pids(t.names) for t in (debian, mod)}
        assert all(len(p) == 2 for p in pids.values()), pids
        order = tunnel_stats.mirrored(variants) if args.order == "mirrored" else variants
        for repeat in range(args.repeats):
            say(f"repeat {repeat + 1}/{args.repeats}")
            for variant in order:
                samples.append(run_variant(variant, pair, (debian, mod), pids, args))
    report(samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
