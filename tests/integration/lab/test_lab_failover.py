"""Failover in the lab, end to end: a real cut under a real voice stream, failback after a long cut,
random loss and jitter that must not move voice, and no false alarm at start.

One lab of two sites (``patronus lab up --sites 2``: control plane, operator, agents, WireGuard) for the
module. The voice policy (a -> b fiber, backup lte, threshold 70) is what is watched; the data plane is
the truth: a UDP stream from a's LAN host to b's (:mod:`tests.integration.lab.stream`: sender and
receiver in processes of their own, an outage timed on the sender's clock around the packets it lost,
so a machine that holds the sender back invents none). The agent's log gives the prober's verdicts
("path down", with the RTO and stall guard it used), so each trial is checked against the bound its own
numbers imply. The ten-minute soak and the 20-trial statistics are ``bench/failover.py``'s.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from patronus.agent.detection import Detection
from patronus.controlplane.binaries import Binaries
from patronus.lab import impair, network
from patronus.lab.impair import Impairment
from patronus.lab.plan import LabPlan
from patronus.lab.supervisor import LAB_NAMESPACE, MESH_NAME, LabFiles
from patronus.topology.mesh import path_name
from tests.integration.lab import agent_exporter, require_root, unique_prefix
from tests.integration.lab.stream import Stream, losses
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.root

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

    def measured(self, underlay: str) -> dict[str, Any]:
        """a's latest check of the path, from its exporter (the API shows a path's health when it moves
        materially, and once a minute)."""
        return agent_exporter.path_health(self.plan, "a", self.path(underlay))

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

    def agent_events(self, since: float, event: str) -> list[dict[str, Any]]:
        """Agent a's log lines of ``event`` at or after ``since`` (wall seconds), their time as ``wall``."""
        found = []
        for line in self.files.agent_log("a").read_text(errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                entry["wall"] = datetime.fromisoformat(entry["timestamp"]).timestamp()
                if entry["wall"] >= since:
                    found.append(entry)
        return found

    def verdicts(self, since: float, event: str = "path down") -> list[dict[str, Any]]:
        """The a->b fiber prober's verdicts after ``since``."""
        return [e for e in self.agent_events(since, event) if e.get("path") == self.path("fiber")]

    def switches(self, since: float, underlay: str) -> list[dict[str, Any]]:
        """Voice's moves onto ``underlay``'s path after ``since``, logged once the kernel took them."""
        moves = self.agent_events(since, "policy switched path")
        return [e for e in moves if e.get("policy") == "voice" and e.get("path") == self.path(underlay)]

    def stream(self, rate: int) -> Stream:
        """A voice stream (udp/5060) from a's LAN host to b's."""
        a, b = self.plan.site("a"), self.plan.site("b")
        source = (a.host_namespace, str(a.host_address))
        return Stream(source, (b.host_namespace, str(b.host_address), VOICE_PORT), rate)

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
    within spacing + 2 RTO + the confirmation train (the RTO and stall guard the agent logged), and the
    stream's outage within that plus the switch."""
    interval, probes = 0.2, 3
    lab.monitor("200ms", probes)
    lab.cooldown(2)
    rng = random.Random()
    outages = []
    try:
        for _ in range(5):
            eventually_sync(lab.steady, timeout=60, what="voice back on fiber, both paths up")
            time.sleep(1.0)  # the new schedule's RTO has settled
            outages.append(_cut_once(lab, interval, probes, rng.uniform(0, interval)))
    finally:
        lab.cooldown(10)
    print(f"median outage {statistics.median(outages) * 1000:.0f} ms at 200 ms probes")


def _cut_once(lab: Lab, interval: float, probes: int, phase: float) -> float:
    """One cut of a/fiber under a 500 packet/s stream, checked against its bound; the outage (s)."""
    stream = lab.stream(500)
    stream.start()
    try:
        time.sleep(0.5 + phase)
        cut_ns = time.time_ns()
        impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
        done_ns = time.time_ns()
        resumed = functools.partial(stream.flows_after, done_ns)
        eventually_sync(resumed, timeout=5, what="voice over lte", interval=0.01)
        time.sleep(0.2)
    finally:
        stream.stop()
        impair.set_impairment(lab.plan, "a/fiber", Impairment())
    gap = losses(stream.arrivals, (cut_ns - 400_000_000, time.time_ns())).gap
    assert gap.lost > 0, "the cut lost no packet"
    cut = gap.until_ns / 1e9 - gap.seconds  # the last packet through fiber was sent then
    (verdict, *_) = lab.verdicts(cut_ns / 1e9)
    rto = float(verdict["rto_ms"]) / 1000
    guard = float(verdict.get("guard_ms") or 0) / 1000  # learnt from this busy host's stalls
    bound = DETECTION.bound(interval / probes, rto, guard)
    took = verdict["wall"] - cut
    print(
        f"cut: 'path down' after {took * 1000:.0f} ms (RTO {rto * 1000:.0f} ms, guard {guard * 1000:.0f} ms, "
        f"bound {bound * 1000:.0f} ms), outage {gap.seconds * 1000:.0f} ms ({gap.lost} packets)"
    )
    assert took <= bound + VERDICT_SLACK
    assert gap.seconds <= bound + SWITCH_ALLOWANCE
    return gap.seconds


def test_after_a_7s_cut_voice_returns_within_cooldown_plus_two_checks(lab: Lab) -> None:
    """Issue 13: 1 s probes, a 7 s cut, cooldown 10 s. The outage is a state, not loss averaged into the
    window, so voice is back on fiber once the cooldown has passed, within two checks of it. Packets sent
    during the cut that arrived prove voice took lte; the agent logs a move once the kernel took it."""
    interval = 1.0
    lab.monitor("1s", 3)
    eventually_sync(lab.steady, timeout=60, what="voice on fiber at 1 s probes")
    time.sleep(3.0)
    stream = lab.stream(200)
    stream.start()
    try:
        cut_ns = time.time_ns()
        impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
        time.sleep(7.0)
        impair.set_impairment(lab.plan, "a/fiber", Impairment())
        restored = time.time()
        back = eventually_sync(
            lambda: lab.switches(restored, "fiber"), timeout=30, what="voice back on fiber", interval=0.1
        )
    finally:
        stream.stop()
        impair.set_impairment(lab.plan, "a/fiber", Impairment())
    took = back[0]["wall"] - restored
    print(f"voice back on fiber {took:.2f} s after the link came back (cooldown 10 s, 1 s checks)")
    assert lab.switches(cut_ns / 1e9, "lte"), "voice never moved to lte"
    assert any(cut_ns + 2e9 < sent < restored * 1e9 for _, sent in stream.arrivals), "nothing went over lte"
    assert 10.0 - 0.1 <= took <= 10.0 + 2 * interval


def test_five_percent_loss_and_jitter_do_not_move_voice(lab: Lab) -> None:
    """90 s of 5 % random loss with 40 ms +- 20 ms on the primary at 100 ms x 3 probes (2,700 probes):
    no down verdict, voice stays, health well above 70 but for a rare check. The teeth: a 100-probe loss
    window (the old design) crosses 10.4 % about twice in that many probes at 5 % loss, and a path
    declared down after two lost probes would be about 7 times; this design expects 2e-6 false verdicts
    (see the README)."""
    lab.monitor("100ms", 3)
    eventually_sync(lab.steady, timeout=60, what="voice on fiber at 100 ms probes")
    count_before = int(lab.voice().get("failoverCount") or 0)
    started = time.time()
    readings = []
    impair.set_impairment(lab.plan, "a/fiber", Impairment(loss_pct=5, delay_ms=40, jitter_ms=20))
    try:
        while time.time() - started < 90:
            time.sleep(3.0)
            readings.append({**lab.path_status("fiber"), "health": lab.measured("fiber")})
            assert lab.voice_path() == lab.path("fiber"), "voice moved"
    finally:
        impair.set_impairment(lab.plan, "a/fiber", Impairment())
    assert lab.verdicts(started) == []
    assert int(lab.voice().get("failoverCount") or 0) == count_before
    scores = [float(r["health"]["healthScore"]) for r in readings]
    reported = [float(r["health"]["packetLossPct"]) for r in readings[10:]]
    low = [score for score in scores if score < 70]
    print(
        f"health min {min(scores):.1f} median {statistics.median(scores):.1f}, {len(low)} of {len(scores)} "
        f"readings below 70; reported loss median {statistics.median(reported):.2f} %"
    )
    # The formula gives 84.5 for 5 % loss, 41 ms and 13 ms of jitter. One check's health can dip below 70
    # when a busy host holds up one of its three probes (a large jitter); the policy leaves only after
    # three checks in a row below its threshold, so that is allowed, but rarely.
    assert statistics.median(scores) >= 75
    assert len(low) <= len(scores) // 10
    # ``unknown`` is the operator's word for a report older than three intervals (a busy API server).
    assert {r["state"] for r in readings} <= {"up", "degraded", "unknown"}
    assert 2.5 <= statistics.median(reported) <= 7.5  # the window does see the loss
