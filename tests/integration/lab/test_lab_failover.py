"""Failover in the lab, end to end: a real cut under a real voice stream, failback after a long cut,
random loss and jitter that must not move voice, and no false alarm at start.

One lab of two sites (``patronus lab up --sites 2``: control plane, operator, agents, WireGuard) for the
module. The voice policy (a -> b fiber, backup lte, threshold 70) is what is watched; the data plane is
the truth: a UDP stream from a's LAN host to b's, timed by b's kernel (SO_TIMESTAMPNS). The agent's log
gives the prober's verdicts ("path down", with the RTO it used), so each trial is checked against the
bound its own numbers imply. The ten-minute soak and the 20-trial statistics are ``bench/failover.py``'s.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from patronus.agent.detection import Detection
from patronus.controlplane.launcher import Binaries
from patronus.lab import impair, network
from patronus.lab.impair import Impairment
from patronus.lab.plan import LabPlan
from patronus.lab.supervisor import LAB_NAMESPACE, MESH_NAME, LabFiles
from patronus.topology.mesh import path_name
from tests.integration.lab import require_root, unique_prefix
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.root

PACKET = struct.Struct("!QQ")  # sequence, send time (CLOCK_REALTIME ns)
TIMESPEC = struct.Struct("@qq")
SO_TIMESTAMPNS = 35  # Linux; the socket module does not name it
VOICE_PORT = 5060
DETECTION = Detection()
VERDICT_SLACK = 0.020
"""Beyond the design's bound for the verdict: the agent's event loop waking late on a busy 2-core host."""
SWITCH_ALLOWANCE = 0.080
"""From the verdict to the first packet over lte: the agent's nft transaction (10-25 ms here, more on a
loaded machine) and the packet's way through the lte tunnel."""


@dataclass
class Lab:
    plan: LabPlan
    files: LabFiles
    kubectl_binary: str
    start_history: list[dict[str, Any]] = field(default_factory=list)

    def kubectl(self, *args: str) -> str:
        result = subprocess.run(
            [self.kubectl_binary, f"--kubeconfig={self.files.kubeconfig}", "-n", LAB_NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def path(self, underlay: str) -> str:
        return path_name(MESH_NAME, "a", "b", underlay)

    def monitor(self, interval: str, probes: int) -> None:
        patch = json.dumps({"spec": {"monitoring": {"interval": interval, "probesPerCheck": probes}}})
        for underlay in ("fiber", "lte"):
            self.kubectl(
                "patch", "paths.sdwan.patronus.dev", self.path(underlay), "--type=merge", "-p", patch
            )

    def cooldown(self, seconds: int) -> None:
        patch = json.dumps({"spec": {"failover": {"cooldown": f"{seconds}s"}}})
        self.kubectl("patch", "policies.sdwan.patronus.dev", "voice", "--type=merge", "-p", patch)

    def path_status(self, underlay: str) -> dict[str, Any]:
        obj = json.loads(self.kubectl("get", "paths.sdwan.patronus.dev", self.path(underlay), "-o", "json"))
        return dict(obj.get("status") or {})

    def voice(self) -> dict[str, Any]:
        """Voice's report from site a: its entry in the Site's status.policies, else the Policy's status."""
        site = json.loads(self.kubectl("get", "sites.sdwan.patronus.dev", "a", "-o", "json"))
        for entry in (site.get("status") or {}).get("policies") or []:
            if entry.get("name") == "voice":
                return dict(entry)
        policy = json.loads(self.kubectl("get", "policies.sdwan.patronus.dev", "voice", "-o", "json"))
        return dict(policy.get("status") or {})

    def voice_path(self) -> str | None:
        in_use = self.voice().get("pathInUse")
        return str(in_use.get("pathId")) if isinstance(in_use, dict) else in_use

    def verdicts(self, since: float, event: str = "path down") -> list[dict[str, Any]]:
        """The a->b fiber prober's verdict lines in agent a's log after ``since`` (wall seconds)."""
        found = []
        for line in self.files.agent_log("a").read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                entry["wall"] = datetime.fromisoformat(entry["timestamp"]).timestamp()
                if entry["path"] == self.path("fiber") and entry["wall"] >= since:
                    found.append(entry)
        return found

    def steady(self) -> bool:
        """Voice on fiber, and both paths answering with health at or above the threshold."""
        if self.voice_path() != self.path("fiber"):
            return False
        statuses = [self.path_status(u) for u in ("fiber", "lte")]
        return all(
            s.get("state") == "up" and float((s.get("health") or {}).get("healthScore") or 0) >= 70
            for s in statuses
        )


def _watch_paths(lab: Lab, seconds: float) -> list[dict[str, Any]]:
    """Every Path status the API server held in the next ``seconds`` (a watch, so no write is missed)."""
    process = subprocess.Popen(
        [
            *(lab.kubectl_binary, f"--kubeconfig={lab.files.kubeconfig}", "-n", LAB_NAMESPACE, "get"),
            *("paths.sdwan.patronus.dev", "--watch", "--output-watch-events", "-o", "json"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(seconds)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=10)
    decoder, events, position = json.JSONDecoder(), [], 0
    while position < len(output):
        while position < len(output) and output[position].isspace():
            position += 1
        if position >= len(output):
            break
        event, position = decoder.raw_decode(output, position)
        obj = event.get("object") or {}
        events.append({"name": obj["metadata"]["name"], **(obj.get("status") or {})})
    return events


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require_root()
    cache = tmp_path_factory.mktemp("lab-cache")
    env = {
        **os.environ,
        "PATRONUS_CACHE": str(cache),
        "PATRONUS_CONTROLPLANE_DIR": str(Binaries.locate().directory),
    }
    prefix = unique_prefix()
    files = LabFiles(cache / "lab" / prefix)
    command = [sys.executable, "-m", "patronus", "lab"]
    up = subprocess.run(
        [*command, "up", "--sites", "2", "--prefix", prefix],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        running = Lab(files.load_plan(), files, str(Binaries.locate().kubectl))
        # From the agents' start: every status their first checks write (a tunnel's first handshake is
        # still to come then), until all four paths have been up for a while.
        running.start_history = _watch_paths(running, 20.0)
        eventually_sync(running.steady, timeout=60, what="voice on fiber, both paths up")
        yield running
    finally:
        down = subprocess.run(
            [*command, "down", "--prefix", prefix],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert down.returncode == 0, down.stderr[-2000:]
        assert network.namespaces_present(prefix) == []


class Stream:
    """``rate`` UDP packets/s from a's LAN host to b's (port 5060: voice), arrivals timed by b's kernel."""

    def __init__(self, plan: LabPlan, rate: int) -> None:
        a, b = plan.site("a"), plan.site("b")
        self.target = (str(b.host_address), VOICE_PORT)
        self.sender = network.netns_socket(a.host_namespace)
        self.sender.bind((str(a.host_address), 0))
        self.receiver = network.netns_socket(b.host_namespace)
        self.receiver.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.receiver.bind(self.target)
        self.receiver.settimeout(0.05)
        self.period = 1.0 / rate
        self.arrivals: list[tuple[int, int]] = []  # (sent, received), CLOCK_REALTIME ns
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send), threading.Thread(target=self._receive)]

    def __enter__(self) -> Stream:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self.sender.close()
        self.receiver.close()

    def _send(self) -> None:
        start = time.monotonic()
        for seq in itertools.count():
            if self._stop.is_set():
                return
            delay = start + seq * self.period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with contextlib.suppress(OSError):
                self.sender.sendto(PACKET.pack(seq, time.time_ns()) + bytes(48), self.target)

    def _receive(self) -> None:
        space = socket.CMSG_SPACE(TIMESPEC.size)
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, _peer = self.receiver.recvmsg(2048, space)
            except TimeoutError:
                continue
            received = time.time_ns()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    seconds, nanos = TIMESPEC.unpack_from(value)
                    received = seconds * 1_000_000_000 + nanos
            self.arrivals.append((PACKET.unpack_from(data)[1], received))

    def arrived_sent_after(self, moment_ns: int) -> bool:
        return any(sent > moment_ns for sent, _ in self.arrivals[-50:])

    def outage(self, after_ns: int) -> tuple[float, float]:
        """(the longest arrival gap ending after ``after_ns``, when the cut took effect), in wall seconds:
        the cut took effect when the last packet that arrived before the gap was sent."""
        arrivals = sorted((received, sent) for sent, received in self.arrivals)
        gaps = [(b[0] - a[0], a[1]) for a, b in itertools.pairwise(arrivals) if b[0] > after_ns]
        assert gaps, "no packet arrived after the cut"
        gap, last_sent = max(gaps)
        return gap / 1e9, last_sent / 1e9


def test_no_false_alarm_at_start(lab: Lab) -> None:
    """Issue 11: before a tunnel's first handshake a path has never answered: it is unknown, not lossy
    and not down, and loss counts from its first answer (the lab's links lose nothing). So each path's
    reports start with ``unknown`` (or nothing) until its first ``up``, and no report shows loss."""
    reported = [e for e in lab.start_history if e.get("health")]
    assert reported, "no agent report in the first 20 s"
    lossy = [e for e in reported if float(e["health"].get("packetLossPct") or 0) > 0]
    assert lossy == [], f"loss reported on a clean lab: {lossy[:3]}"
    names = {path_name(MESH_NAME, s, d, u) for s, d in (("a", "b"), ("b", "a")) for u in ("fiber", "lte")}
    for name in names:
        states = [e.get("state") for e in reported if e["name"] == name]
        assert "up" in states, f"{name} never up in 20 s: {states}"
        before = states[: states.index("up")]
        assert set(before) <= {"unknown"}, f"{name} before its first answer: {before}"
    assert not [e for e in reported if e.get("state") == "degraded"]


def test_a_cut_primary_fails_over_within_the_bound(lab: Lab) -> None:
    """200 ms probes, 3 per check: five cuts at random phases of the probe schedule. Each verdict comes
    within spacing + 2 RTO + the confirmation train (the RTO the agent logged), and the stream's outage
    within that plus the switch."""
    interval, probes = 0.2, 3
    lab.monitor("200ms", probes)
    lab.cooldown(2)
    rng = random.Random()
    outages = []
    try:
        for _ in range(5):
            eventually_sync(lab.steady, timeout=60, what="voice back on fiber, both paths up")
            time.sleep(1.0)  # the new schedule's RTO has settled
            with Stream(lab.plan, 500) as stream:
                time.sleep(0.5 + rng.uniform(0, interval))
                cut_ns = time.time_ns()
                impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
                done_ns = time.time_ns()
                try:
                    resumed = functools.partial(stream.arrived_sent_after, done_ns)
                    eventually_sync(resumed, timeout=5, what="voice over lte", interval=0.01)
                    time.sleep(0.2)
                finally:
                    impair.set_impairment(lab.plan, "a/fiber", Impairment())
            outage, cut = stream.outage(cut_ns)
            (verdict, *_) = lab.verdicts(cut_ns / 1e9)
            rto = float(verdict["rto_ms"]) / 1000
            guard = float(verdict.get("guard_ms") or 0) / 1000  # learnt from this busy host's stalls
            bound = DETECTION.bound(interval / probes, rto, guard)
            took = verdict["wall"] - cut
            print(
                f"cut: 'path down' after {took * 1000:.0f} ms (RTO {rto * 1000:.0f} ms, bound "
                f"{bound * 1000:.0f} ms), outage {outage * 1000:.0f} ms"
            )
            assert took <= bound + VERDICT_SLACK
            assert outage <= bound + SWITCH_ALLOWANCE
            outages.append(outage)
    finally:
        lab.cooldown(10)
    print(f"median outage {statistics.median(outages) * 1000:.0f} ms at 200 ms probes")


def test_after_a_7s_cut_voice_returns_within_cooldown_plus_two_checks(lab: Lab) -> None:
    """Issue 13: 1 s probes, a 7 s cut, cooldown 10 s. The outage is a state, not loss averaged into the
    window, so voice is back on fiber once the cooldown has passed, within two checks of it. The lte
    link gets 30 ms of delay, so each packet's one-way time says which tunnel it took."""
    interval = 1.0
    lab.monitor("1s", 3)
    impair.set_impairment(lab.plan, "a/lte", Impairment(delay_ms=30))
    try:
        eventually_sync(lab.steady, timeout=60, what="voice on fiber at 1 s probes")
        time.sleep(3.0)
        with Stream(lab.plan, 200) as stream:
            impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
            time.sleep(7.0)
            impair.set_impairment(lab.plan, "a/fiber", Impairment())
            restored_ns = time.time_ns()

            def on_fiber_again() -> float | None:
                fast = [r for s, r in stream.arrivals[-400:] if s > restored_ns and r - s < 10_000_000]
                return min(fast) if fast else None

            back_ns = eventually_sync(on_fiber_again, timeout=30, what="voice back on fiber", interval=0.1)
            over_lte = [r for s, r in stream.arrivals if s < restored_ns and r - s > 25_000_000]
        back = (back_ns - restored_ns) / 1e9
        print(f"voice back on fiber {back:.2f} s after the link came back (cooldown 10 s, 1 s checks)")
        assert over_lte, "voice never took the lte tunnel during the cut"
        assert 10.0 - 0.1 <= back <= 10.0 + 2 * interval
    finally:
        impair.set_impairment(lab.plan, "a/lte", Impairment())


def test_five_percent_loss_and_jitter_do_not_move_voice(lab: Lab) -> None:
    """90 s of 5 % random loss with 40 ms +- 20 ms on the primary at 100 ms x 3 probes (2,700 probes):
    no down verdict, voice stays, health never below 70. The teeth: a 100-probe loss window (the old
    design) crosses 10.4 % about twice in that many probes at 5 % loss, and a path declared down after
    two lost probes would be about 7 times; this design expects 2e-6 false verdicts (see the README)."""
    lab.monitor("100ms", 3)
    eventually_sync(lab.steady, timeout=60, what="voice on fiber at 100 ms probes")
    count_before = int(lab.voice().get("failoverCount") or 0)
    started = time.time()
    readings = []
    impair.set_impairment(lab.plan, "a/fiber", Impairment(loss_pct=5, delay_ms=40, jitter_ms=20))
    try:
        while time.time() - started < 90:
            time.sleep(3.0)
            readings.append(lab.path_status("fiber"))
            assert lab.voice_path() == lab.path("fiber"), "voice moved"
    finally:
        impair.set_impairment(lab.plan, "a/fiber", Impairment())
    assert lab.verdicts(started) == []
    assert int(lab.voice().get("failoverCount") or 0) == count_before
    scores = [float(r["health"]["healthScore"]) for r in readings]
    losses = [float(r["health"]["packetLossPct"]) for r in readings[10:]]
    print(f"health min {min(scores):.1f}, reported loss median {statistics.median(losses):.2f} %")
    assert min(scores) >= 70
    # ``unknown`` is the operator's word for a report older than three intervals (a busy API server).
    assert {r["state"] for r in readings} <= {"up", "unknown"}
    assert 2.5 <= statistics.median(losses) <= 7.5  # the window does see the loss
