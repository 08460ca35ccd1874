"""Failover benchmark: how long a voice stream is cut when its primary path dies, on the real lab.

    .venv/bin/python bench/failover.py [--trials 10] [--intervals 1s,200ms,100ms] [--rate 1000]
                                       [--sites 2] [--probes 3]

Needs root. One lab (``patronus lab up --sites N --prefix fb<random>``: network namespaces, a real
control plane, the operator, one agent per site) serves every measurement and is always taken down
(``patronus lab down``) at the end, also after an error or Ctrl-C. The lab's files go under
``$PATRONUS_CACHE/lab/<prefix>/`` (agent logs in ``logs/``); the control plane binaries come from
``$PATRONUS_CONTROLPLANE_DIR``, else ``scripts/build-controlplane.sh``, which looks in ``$PATRONUS_CACHE``
too: set ``PATRONUS_CONTROLPLANE_DIR`` when pointing ``PATRONUS_CACHE`` somewhere fresh, or it rebuilds.

Failover. For each probe interval, the two a->b Paths get ``spec.monitoring = {interval, probesPerCheck}``
(``kubectl patch --type=merge``); the run goes on once the operator has rendered it into a's agent
configuration and the a->b fiber Path's status is rewritten at about the new rate (one write per check,
counted with a watch). Then each trial: a steady UDP stream of ``--rate`` packets/s (sequence number and
send time in each) goes from a's LAN host to b's LAN host on port 5060, which policy ``voice`` matches
(primary: the a->b fiber path, backup: the a->b lte path, threshold 70, cooldown 10s); a receiver
socket in b's LAN host records when each packet arrives. After 1 s plus a random fraction of an
interval (so the cut lands at a uniformly random phase of the probe schedule) a/fiber is cut in both
directions (``Impairment(down=True)``). The stream runs until packets arrive again (over lte, once the
agent failed over) and 0.3 s more. OUTAGE = receiver-side time between the last packet that arrived
before the cut and the first that arrived after it (the largest gap in arrival times after the cut);
LOST = packets sent but never received. The agent's own "policy switched path" log line gives the time
from the cut to the switch. Then a/fiber is restored and the next trial waits until voice is back on
fiber (failback after the 10 s cooldown) with the fiber path up.

Probe accuracy. On a/fiber the a->b fiber Path's reported ``status.health.latencyMs`` is read several
times: clean (kernel fast path), through the lab's delay relay with 0 ms (``force_relay``: what the
relay itself costs) and with 40 ms injected. The delay applies on what a sends, so the round trip grows
by 40 ms; the error is (reported at 40 ms - reported at 0 ms through the relay) - 40.

Throughput. A TCP bulk transfer (Python sockets, 1 MB writes, ~3 s) from a's LAN host to b's LAN host
over the tunnel (WireGuard is wireguard-go, in userspace, here), against the same transfer between a's
and b's fiber underlay addresses (sockets in the site namespaces, through the WAN namespace: the bare
veth path the tunnel rides on). Each twice, alternating; Mbit/s and the ratio of the medians.

The machine is usually small and shared (2 cores): expect noise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import secrets
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

from patronus.kube.resource import CONFIG_MAP, PATH, POLICY
from patronus.kube.rest import RestClient
from patronus.lab import network
from patronus.lab.impair import Impairment, set_impairment
from patronus.lab.plan import LabPlan
from patronus.lab.supervisor import LAB_NAMESPACE, MESH_NAME, LabFiles
from patronus.topology.mesh import path_name

REPO = Path(__file__).resolve().parents[1]
VOICE_PORT = 5060
LTE_INTERFACE = "wg-lte"  # the agent's WireGuard interface for the lte underlay
THROUGHPUT_PORT = 5201
COOLDOWN_S = 10.0  # the lab's voice policy
VOICE_THRESHOLD = 70.0
UP_TIMEOUT_S = 360.0
DOWN_TIMEOUT_S = 120.0
RESUME_TIMEOUT_S = 30.0
FAILBACK_TIMEOUT_S = 120.0
TAIL_S = 0.3
LEAD_S = 1.0
PACKET = struct.Struct("!QQ")  # sequence number, send time (CLOCK_REALTIME ns)
TIMESPEC = struct.Struct("@qq")
SO_TIMESTAMPNS = 35  # Linux (also SCM_TIMESTAMPNS); the socket module does not name it
PAYLOAD_BYTES = 64
INJECTED_DELAY_MS = 40.0
COMMERCIAL_S = {"Fortinet SD-WAN (~2.5 s)": 2.5, "Cisco BFD defaults (7 s)": 7.0, "Submariner (~6 s)": 6.0}
TARGET_S = 1.0


def say(text: str = "") -> None:
    print(text, flush=True)


def parse_interval(text: str) -> float:
    text = text.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000.0
    if text.endswith("s"):
        return float(text[:-1])
    raise argparse.ArgumentTypeError(f"{text!r}: an interval such as 1s or 200ms")


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms"


# -- the lab --------------------------------------------------------------------------------------


def controlplane_dir() -> str:
    """``$PATRONUS_CONTROLPLANE_DIR``, else what ``scripts/build-controlplane.sh`` prints (no-op if built)."""
    configured = os.environ.get("PATRONUS_CONTROLPLANE_DIR")
    if configured:
        return configured
    out = subprocess.run(
        [str(REPO / "scripts" / "build-controlplane.sh")],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return out.stdout.strip().splitlines()[-1]


class Api:
    """Synchronous reads through the patronus REST client, on a private event loop (cheaper than kubectl)."""

    def __init__(self, kubeconfig: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.rest = RestClient.from_kubeconfig(kubeconfig)

    def get(self, kind: Any, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.loop.run_until_complete(self.rest.get(kind, LAB_NAMESPACE, name))
        return obj

    def count_reports(self, name: str, seconds: float) -> int:
        """How many agent reports the Path gets in the next ``seconds``: changes of ``status.health``.

        Plain MODIFIED events over-count: the operator writes the same status (its staleness condition
        and ``state``) in between.
        """

        async def watch() -> int:
            current = await self.rest.get(PATH, LAB_NAMESPACE, name)
            previous = (current.get("status") or {}).get("health")
            count = 0

            async def consume() -> None:
                nonlocal count, previous
                async for event in self.rest.watch(
                    PATH,
                    LAB_NAMESPACE,
                    resource_version=current["metadata"]["resourceVersion"],
                    field_selector=f"metadata.name={name}",
                    allow_bookmarks=False,
                ):
                    health = (event.get("object", {}).get("status") or {}).get("health")
                    if event.get("type") == "MODIFIED" and health != previous:
                        count += 1
                    previous = health

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(consume(), seconds)
            return count

        return self.loop.run_until_complete(watch())

    def close(self) -> None:
        self.loop.run_until_complete(self.rest.close())
        self.loop.close()


@dataclass
class Lab:
    prefix: str
    sites: int
    env: dict[str, str]
    kubectl_bin: str
    rate: int
    kubeconfig: str = ""
    plan: LabPlan | None = None
    files: LabFiles | None = None

    def patronus(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "patronus", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def up(self) -> None:
        started = time.monotonic()
        result = self.patronus(
            "lab", "up", "--sites", str(self.sites), "--prefix", self.prefix, timeout=UP_TIMEOUT_S
        )
        if result.returncode != 0:
            raise RuntimeError(f"lab up failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
        line = result.stdout.strip().splitlines()[-1]
        if not line.startswith("export KUBECONFIG="):
            raise RuntimeError(f"lab up printed no KUBECONFIG line: {result.stdout!r}")
        self.kubeconfig = line.removeprefix("export KUBECONFIG=")
        self.files = LabFiles.for_prefix(self.prefix)
        self.plan = self.files.load_plan()
        say(f"lab {self.prefix} up in {time.monotonic() - started:.1f}s (KUBECONFIG={self.kubeconfig})")

    def down(self) -> None:
        result = self.patronus("lab", "down", "--prefix", self.prefix, timeout=DOWN_TIMEOUT_S)
        say(f"lab {self.prefix} down (exit {result.returncode}): {result.stderr.strip().splitlines()[-1:]}")

    def kubectl(self, *args: str) -> str:
        result = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, "-n", LAB_NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    @property
    def the_plan(self) -> LabPlan:
        assert self.plan is not None
        return self.plan

    def agent_log(self, site: str) -> Path:
        assert self.files is not None
        return self.files.agent_log(site)


# -- waiting on the agent -------------------------------------------------------------------------


def wait_until(what: str, check: Callable[[], bool], timeout: float, poll: float = 0.25) -> float:
    """Seconds it took; raises TimeoutError naming ``what``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - started


def agent_config_has(api: Api, site: str, paths: list[str], interval: float, probes: int) -> bool:
    config = json.loads((api.get(CONFIG_MAP, f"{site}-agent").get("data") or {})["config.json"])
    wanted = {p["name"]: p.get("monitoring") or {} for p in config.get("paths") or []}
    return all(
        abs(float(wanted.get(name, {}).get("intervalSeconds") or 0) - interval) < 1e-9
        and int(wanted.get(name, {}).get("probesPerCheck") or 0) == probes
        for name in paths
    )


def set_monitoring(lab: Lab, api: Api, paths: list[str], interval_text: str, probes: int) -> None:
    """Patch the Paths, wait for the rendered config, then check the status write rate matches."""
    interval = parse_interval(interval_text)
    patch = json.dumps({"spec": {"monitoring": {"interval": interval_text, "probesPerCheck": probes}}})
    for name in paths:
        lab.kubectl("patch", "paths.sdwan.patronus.dev", name, "--type=merge", "-p", patch)
    took = wait_until(
        "the agent configuration", lambda: agent_config_has(api, "a", paths, interval, probes), 60
    )
    for attempt in range(10):
        window = max(3.0, 10 * interval)
        updates = api.count_reports(paths[0], window)
        rate, expected = updates / window, 1.0 / interval
        if 0.6 * expected <= rate <= 1.5 * expected:
            say(
                f"  monitoring {interval_text} x {probes} probes: rendered after {took:.1f}s; "
                f"{paths[0]} status rewritten {rate:.1f}/s (expected {expected:.1f}/s)"
            )
            return
        say(f"  status rewritten {rate:.1f}/s, expected {expected:.1f}/s (attempt {attempt + 1}); waiting")
    raise RuntimeError(f"the agent never reported at the {interval_text} rate")


def policy_path(api: Api, policy: str) -> str | None:
    status = api.get(POLICY, policy).get("status") or {}
    return (status.get("pathInUse") or {}).get("pathId")


def path_health(api: Api, name: str) -> float:
    health = (api.get(PATH, name).get("status") or {}).get("health") or {}
    return float(health.get("healthScore") or 0.0)


def steady(api: Api, switches: Switches, fiber: str, lte: str) -> bool:
    """voice on fiber and both a->b paths at or above the policy's threshold: ready for a trial.

    By health, not ``status.state``: below a ~330 ms interval the operator keeps flipping ``state`` to
    ``unknown`` (``lastChecked`` has whole seconds, the staleness limit is three intervals).
    """
    return (
        switches.current() in (None, fiber)
        and policy_path(api, "voice") == fiber
        and path_health(api, fiber) >= VOICE_THRESHOLD
        and path_health(api, lte) >= VOICE_THRESHOLD
    )


class Switches:
    """The agent's "policy switched path" lines for voice, read incrementally from its log.

    The truth about which path voice uses: the Policy's ``status.pathInUse`` is written a moment after
    the switch (after an Event is created), so right after a trial it can still name the old path.
    """

    def __init__(self, log: Path) -> None:
        self.log = log
        self.offset = 0
        self.entries: list[tuple[float, str, str]] = []  # (wall time, path, reason)

    def refresh(self) -> list[tuple[float, str, str]]:
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        for line in data[:complete].splitlines():
            if b'"policy switched path"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                if entry.get("policy") == "voice":
                    when = datetime.fromisoformat(entry["timestamp"]).timestamp()
                    self.entries.append((when, str(entry.get("path")), str(entry.get("reason"))))
        return self.entries

    def since(self, wall: float) -> list[tuple[float, str, str]]:
        return [entry for entry in self.refresh() if entry[0] >= wall]

    def current(self) -> str | None:
        entries = self.refresh()
        return entries[-1][1] if entries else None


# -- the stream -----------------------------------------------------------------------------------


def _send_loop(origin: tuple[str, str], target: tuple[str, int], rate: int, stop: Any, sent: Any) -> None:
    """Child process: from (namespace, address), ``rate`` packets/s (sequence, send time) until ``stop``."""
    sock = network.netns_socket(origin[0])
    sock.bind((origin[1], 0))
    period_ns = 1_000_000_000 // rate
    padding = b"\0" * (PAYLOAD_BYTES - PACKET.size)
    start = time.monotonic_ns()
    seq = 0
    while not stop.is_set():
        due = start + seq * period_ns
        now = time.monotonic_ns()
        if now < due:
            time.sleep((due - now) / 1e9)
        with contextlib.suppress(OSError):
            sock.sendto(PACKET.pack(seq, time.time_ns()) + padding, target)
        seq += 1
        sent.value = seq
    sock.close()


def _receive_loop(namespace: str, address: tuple[str, int], stop: Any, latest: Any, out: Any) -> None:
    """Child process: record (seq, sent, kernel arrival time) of every packet; send the list on ``stop``.

    The arrival time is the kernel's (SO_TIMESTAMPNS), so a receiver that runs late does not shift it.
    """
    sock = network.netns_socket(namespace)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(address)
    sock.settimeout(0.05)
    out.send("ready")
    arrivals: list[tuple[int, int, int]] = []
    ancillary = socket.CMSG_SPACE(TIMESPEC.size)
    while not stop.is_set():
        try:
            data, ancdata, _flags, _peer = sock.recvmsg(2048, ancillary)
        except TimeoutError:
            continue
        received = time.time_ns()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanos = TIMESPEC.unpack_from(value)
                received = seconds * 1_000_000_000 + nanos
        if len(data) >= PACKET.size:
            seq, sent = PACKET.unpack_from(data)
            arrivals.append((seq, sent, received))
            latest.value = max(latest.value, sent)
    sock.close()
    out.send(arrivals)


class Stream:
    """``rate`` UDP packets/s from a's LAN host to b's LAN host, arrivals recorded on b's side.

    Sender and receiver are child processes (fork), so neither competes with this process's GIL while it
    runs ``nft`` and polls the API; all times are CLOCK_REALTIME nanoseconds (the agent logs wall time).
    """

    def __init__(self, plan: LabPlan, rate: int) -> None:
        a, b = plan.sites[0], plan.sites[1]
        context = multiprocessing.get_context("fork")
        self.stop_sending = context.Event()
        self.stop_receiving = context.Event()
        self.sent_count = context.Value("q", 0)
        self.latest_sent = context.Value("q", 0)
        self.results, child_end = context.Pipe(duplex=False)
        target = (b.host_address, VOICE_PORT)
        self.receiver = context.Process(
            target=_receive_loop,
            args=(b.host_namespace, target, self.stop_receiving, self.latest_sent, child_end),
            daemon=True,
        )
        self.sender = context.Process(
            target=_send_loop,
            args=((a.host_namespace, a.host_address), target, rate, self.stop_sending, self.sent_count),
            daemon=True,
        )
        self.arrivals: list[tuple[int, int, int]] = []
        self.sent = 0

    def start(self) -> None:
        self.receiver.start()
        if not self.results.poll(10) or self.results.recv() != "ready":
            raise RuntimeError("the stream receiver did not start")
        self.sender.start()

    def stop(self) -> None:
        """Stop sending, give what is in flight 0.2 s to arrive, stop receiving and collect."""
        self.stop_sending.set()
        self.sender.join(10)
        time.sleep(0.2)
        self.stop_receiving.set()
        if self.results.poll(20):
            self.arrivals = self.results.recv()
        self.receiver.join(10)
        for process in (self.sender, self.receiver):
            if process.is_alive():
                process.kill()
        self.sent = int(self.sent_count.value)

    def resumed_after(self, moment_ns: int) -> bool:
        """A packet sent after ``moment_ns`` (CLOCK_REALTIME) has arrived."""
        return int(self.latest_sent.value) > moment_ns


@dataclass
class Trial:
    outage_s: float
    lost: int
    sent: int
    switch_after_s: float | None
    switch_reason: str
    duplicates: int
    after: int  # stream packets that arrived after the outage
    lte_tx: int | None  # packets a's wg-lte interface sent during the trial (the stream's + probes)


def analyse(stream: Stream, cut_ns: int) -> tuple[float, int, int, int]:
    """(outage, lost, duplicates, arrived after the outage) of a trial whose cut began at ``cut_ns``.

    The outage is the largest gap in arrival times that ends after the cut began; lost counts the
    sequence numbers sent that never arrived.
    """
    times = sorted(received for _, _, received in stream.arrivals)
    gaps = [(after - before, after) for before, after in itertools.pairwise(times) if after > cut_ns]
    outage_ns, resumed = max(gaps) if gaps else (0, cut_ns)
    unique = len({seq for seq, _, _ in stream.arrivals})
    after = sum(1 for received in times if received >= resumed)
    return outage_ns / 1e9, stream.sent - unique, len(stream.arrivals) - unique, after


def tx_packets(namespace: str, interface: str) -> int | None:
    """The interface's transmitted packets, or None when it is not there."""
    output = network.exec_in(namespace, ["ip", "-j", "-s", "link", "show", interface], check=False)
    with contextlib.suppress(ValueError, IndexError, KeyError):
        return int(json.loads(output)[0]["stats64"]["tx"]["packets"])
    return None


def run_trial(lab: Lab, switches: Switches, interval: float) -> Trial:
    plan = lab.the_plan
    stream = Stream(plan, lab.rate)
    site_a = plan.sites[0].namespace
    lte_before = tx_packets(site_a, LTE_INTERFACE)
    stream.start()
    try:
        time.sleep(LEAD_S + random.uniform(0.0, interval))
        cut_ns = time.time_ns()
        cut_wall = cut_ns / 1e9
        set_impairment(plan, "a/fiber", Impairment(down=True))
        cut_done_ns = time.time_ns()  # the drop rules are in: what is sent from now on needs a failover
        wait_until(
            "packets after the cut", lambda: stream.resumed_after(cut_done_ns), RESUME_TIMEOUT_S, 0.005
        )
        time.sleep(TAIL_S)
    finally:
        stream.stop()
        set_impairment(plan, "a/fiber", Impairment())
    lte_after = tx_packets(site_a, LTE_INTERFACE)
    lte_tx = None if lte_before is None or lte_after is None else lte_after - lte_before
    outage, lost, duplicates, after = analyse(stream, cut_ns)
    moves = [entry for entry in switches.since(cut_wall) if entry[1].endswith("-lte")]
    switch_after = moves[0][0] - cut_wall if moves else None
    reason = moves[0][2] if moves else "-"
    return Trial(outage, lost, stream.sent, switch_after, reason, duplicates, after, lte_tx)


# -- probe accuracy -------------------------------------------------------------------------------


def latency_samples(api: Api, path: str, count: int, spacing: float) -> list[float]:
    samples = []
    for _ in range(count):
        health = (api.get(PATH, path).get("status") or {}).get("health") or {}
        if health.get("latencyMs") is not None:
            samples.append(float(health["latencyMs"]))
        time.sleep(spacing)
    return samples


def probe_accuracy(lab: Lab, api: Api, fiber: str, interval: float) -> None:
    plan = lab.the_plan
    settle = max(3.0, 5 * interval)
    spacing = max(0.5, interval)
    phases = (
        ("clean (kernel fast path)", Impairment(), False),
        ("through the relay, 0 ms", Impairment(), True),
        (f"through the relay, {INJECTED_DELAY_MS:g} ms", Impairment(delay_ms=INJECTED_DELAY_MS), False),
    )
    medians: list[float] = []
    say(f"\n== probe accuracy: {fiber} status.health.latencyMs, 8 readings {spacing:g}s apart ==")
    try:
        for label, impairment, force in phases:
            set_impairment(plan, "a/fiber", impairment, force_relay=force)
            time.sleep(settle)
            samples = latency_samples(api, fiber, 8, spacing)
            medians.append(statistics.median(samples))
            shown = ", ".join(f"{s:.2f}" for s in samples)
            say(f"  {label:<28} median {medians[-1]:6.2f} ms   [{shown}]")
    finally:
        set_impairment(plan, "a/fiber", Impairment())
    clean, relay0, delayed = medians
    growth = delayed - relay0
    say(
        f"  injected {INJECTED_DELAY_MS:g} ms on a's egress -> RTT should grow by {INJECTED_DELAY_MS:g} ms; "
        f"reported growth {growth:.2f} ms (vs the relay at 0 ms), error {growth - INJECTED_DELAY_MS:+.2f} ms "
        f"({100 * (growth - INJECTED_DELAY_MS) / INJECTED_DELAY_MS:+.1f} %)"
    )
    say(
        f"  against the clean fast path: reported {delayed:.2f} ms vs clean {clean:.2f} + "
        f"{INJECTED_DELAY_MS:g} = {clean + INJECTED_DELAY_MS:.2f} ms, error "
        f"{delayed - clean - INJECTED_DELAY_MS:+.2f} ms (includes the relay's own cost, "
        f"{relay0 - clean:+.2f} ms)"
    )


# -- throughput -----------------------------------------------------------------------------------


def tcp_mbps(client: tuple[str, str], server: tuple[str, str], seconds: float = 3.0) -> float:
    """Bulk TCP from (namespace, address) to (namespace, address); Mbit/s as the receiver saw it."""
    listener = network.netns_socket(server[0], socket.AF_INET, socket.SOCK_STREAM)
    sender = network.netns_socket(client[0], socket.AF_INET, socket.SOCK_STREAM)
    result: dict[str, float] = {}

    def receive() -> None:
        conn, _ = listener.accept()
        with conn:
            buffer = bytearray(1 << 20)
            total, first = 0, 0.0
            while size := conn.recv_into(buffer):
                if not total:
                    first = time.monotonic()
                total += size
            result.update(bytes=total, seconds=time.monotonic() - first)

    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((server[1], THROUGHPUT_PORT))
        listener.listen(1)
        listener.settimeout(15)
        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        sender.settimeout(15)
        sender.bind((client[1], 0))
        sender.connect((server[1], THROUGHPUT_PORT))
        chunk = b"\0" * (1 << 20)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sender.sendall(chunk)
        sender.shutdown(socket.SHUT_WR)
        thread.join(30)
    finally:
        sender.close()
        listener.close()
    return result["bytes"] * 8 / result["seconds"] / 1e6


def throughput(lab: Lab) -> None:
    plan = lab.the_plan
    a, b = plan.sites[0], plan.sites[1]
    fa, fb = plan.link(a.name, "fiber"), plan.link(b.name, "fiber")
    tunnel_ends = ((a.host_namespace, a.host_address), (b.host_namespace, b.host_address))
    bare_ends = ((a.namespace, fa.site_address), (b.namespace, fb.site_address))
    runs: dict[str, list[float]] = {"tunnel": [], "bare": []}
    for _ in range(2):
        runs["tunnel"].append(tcp_mbps(*tunnel_ends))
        runs["bare"].append(tcp_mbps(*bare_ends))
    tunnel, bare = statistics.median(runs["tunnel"]), statistics.median(runs["bare"])
    say("\n== throughput: one TCP stream, Python sockets, 1 MB writes, ~3 s each, two runs each ==")
    say(
        f"  tunnel  {a.host_address} -> {b.host_address} (LAN hosts, wg-fiber, wireguard-go in userspace): "
        f"{tunnel:8.0f} Mbit/s  runs {[round(x) for x in runs['tunnel']]}"
    )
    say(
        f"  bare    {fa.site_address} -> {fb.site_address} (fiber underlay, veth + WAN namespace):        "
        f"{bare:8.0f} Mbit/s  runs {[round(x) for x in runs['bare']]}"
    )
    say(f"  ratio tunnel / bare = {tunnel / bare:.3f} ({bare / tunnel:.1f}x slower through the tunnel)")


# -- the report -----------------------------------------------------------------------------------


def bounds(interval: float, probes: int) -> tuple[float, float, float, float]:
    """(probe gap, burst, timeout, detection lo..hi) of the prober for this interval (see agent.prober)."""
    gap = 0.0 if probes <= 1 else min(0.02, interval / 2 / (probes - 1))
    burst = gap * (probes - 1)
    timeout = min(interval, 1.0)
    return gap, burst, timeout, burst + timeout


def report_interval(text: str, interval: float, probes: int, trials: list[Trial]) -> None:
    outages = [t.outage_s for t in trials]
    lost = [t.lost for t in trials]
    gap, burst, timeout, base = bounds(interval, probes)
    say(
        f"  outage  min {fmt_s(min(outages))}  median {fmt_s(statistics.median(outages))}  "
        f"max {fmt_s(max(outages))}   raw [{', '.join(fmt_s(o) for o in outages)}]"
    )
    say(
        f"  lost    min {min(lost)}  median {statistics.median(lost):g}  max {max(lost)}   raw {lost}"
        f"  (of ~{statistics.median([t.sent for t in trials]):g} sent per trial)"
    )
    switches = [t.switch_after_s for t in trials if t.switch_after_s is not None]
    if switches:
        say(
            f"  agent logged the switch to lte after the cut: median {fmt_s(statistics.median(switches))} "
            f"[{', '.join(fmt_s(s) for s in switches)}]; reasons {sorted({t.switch_reason for t in trials})}"
        )
    say(
        f"  bound: a check sends {probes} probes {fmt_s(gap)} apart (burst {fmt_s(burst)}) and waits "
        f"{fmt_s(timeout)} (timeout = min(interval, 1s)) for the last; the first check all of whose probes "
        f"are lost starts 0..{text} after the cut, so detection is {fmt_s(base)}..{fmt_s(base + interval)}, "
        f"then one nft map update"
    )


def compare(medians: dict[str, float]) -> None:
    say("\n== against the target and commercial defaults ==")
    for text, median in medians.items():
        say(f"  {text:>6}: median outage {fmt_s(median)}")
    key = "200ms" if "200ms" in medians else next(iter(medians))
    median = medians[key]
    verdict = "meets" if median <= TARGET_S else "misses"
    say(f"  at {key}: {fmt_s(median)} {verdict} the {TARGET_S:g} s target ({median / TARGET_S:.2f} of it)")
    for name, seconds in COMMERCIAL_S.items():
        say(f"  vs {name}: {seconds / median:.1f}x faster ({median / seconds:.3f} of it)")


# -- main -----------------------------------------------------------------------------------------


def failover_runs(lab: Lab, api: Api, args: argparse.Namespace) -> dict[str, float]:
    fiber, lte = (path_name(MESH_NAME, "a", "b", u) for u in ("fiber", "lte"))
    medians: dict[str, float] = {}
    switches = Switches(lab.agent_log("a"))
    for text in args.intervals:
        interval = parse_interval(text)
        say(f"\n== failover at monitoring.interval {text}, probesPerCheck {args.probes} ==")
        set_monitoring(lab, api, [fiber, lte], text, args.probes)
        trials: list[Trial] = []
        for number in range(1, args.trials + 1):
            waited = wait_until(
                "voice on fiber with both paths up", lambda: steady(api, switches, fiber, lte), 120
            )
            trial = run_trial(lab, switches, interval)
            trials.append(trial)
            switch = "-" if trial.switch_after_s is None else fmt_s(trial.switch_after_s)
            say(
                f"  trial {number:2}: outage {fmt_s(trial.outage_s):>7}  lost {trial.lost:5} of "
                f"{trial.sent}  agent switch +{switch} ({trial.switch_reason}); after the outage "
                f"{trial.after} arrived, wg-lte sent {trial.lte_tx}"
                f"{f'  dup {trial.duplicates}' if trial.duplicates else ''}  (waited {waited:.1f}s to settle)"
            )
            recovered = wait_until(
                "failback to fiber", lambda: steady(api, switches, fiber, lte), FAILBACK_TIMEOUT_S
            )
            say(f"           failback to fiber after {recovered:.1f}s (cooldown {COOLDOWN_S:g}s)")
        report_interval(text, interval, args.probes, trials)
        medians[text] = statistics.median(t.outage_s for t in trials)
    return medians


def explain() -> None:
    say(
        "\n== what bounds the outage ==\n"
        "  detection: the cut lands at a random phase of the probe schedule; the first check whose probes\n"
        "    are ALL sent after the cut (a check in flight may still get some replies and is only 'lossy')\n"
        "    starts up to one interval later; it ends when the last probe's timeout (min(interval, 1s))\n"
        "    expires, so detection is burst + timeout + U(0, interval); the check is 'down' and voice\n"
        "    fails over in that check (backup measured and up).\n"
        "  switch: one nft transaction on the policy_path map (delete + add of one element): the next\n"
        "    packet is marked for lte; the lte tunnel is already up (probed all the time): no handshake.\n"
        "  plus: the agent reports checks in order, and each check's report is an API write, so a slow\n"
        "    write can delay the next check's decision; and this 2-core machine's scheduling noise."
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument(
        "--intervals",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        default=["1s", "200ms", "100ms"],
    )
    parser.add_argument("--rate", type=int, default=1000, help="packets per second of the voice stream")
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--probes", type=int, default=3, help="probesPerCheck for the a->b Paths")
    args = parser.parse_args()
    for text in args.intervals:
        parse_interval(text)
    if os.geteuid() != 0:
        parser.error("needs root (the lab: network namespaces, veth, nftables, TUN)")

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    binaries = controlplane_dir()
    env = {**os.environ, "PATRONUS_CONTROLPLANE_DIR": binaries}
    lab = Lab(f"fb{secrets.token_hex(2)}", args.sites, env, str(Path(binaries) / "kubectl"), args.rate)
    started = time.monotonic()
    say(
        f"failover benchmark: {args.trials} trials x intervals {', '.join(args.intervals)}, "
        f"{args.rate} packets/s on udp/{VOICE_PORT}, probesPerCheck {args.probes}, "
        f"{os.cpu_count()} CPUs, lab prefix {lab.prefix}"
    )
    try:
        lab.up()
        api = Api(lab.kubeconfig)
        try:
            medians = failover_runs(lab, api, args)
            explain()
            compare(medians)
            probe_accuracy(
                lab, api, path_name(MESH_NAME, "a", "b", "fiber"), parse_interval(args.intervals[-1])
            )
            throughput(lab)
        finally:
            api.close()
    finally:
        with _ignore_interrupts():
            lab.down()
    say(f"\ntotal {time.monotonic() - started:.0f}s")
    return 0


@contextlib.contextmanager
def _ignore_interrupts() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


if __name__ == "__main__":
    sys.exit(main())
