"""The running system in the lab: real WireGuard tunnels, probes, failover, policy routing and QoS.

One lab (three sites, the operator, one agent per site) for the whole module, started with the real
``patronus lab up`` and stopped with ``patronus lab down``. Impairments are undone by each test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from patronus.api.reporting import HEARTBEAT_INTERVAL, HEARTBEAT_STALE_AFTER
from patronus.controlplane.launcher import Binaries
from patronus.lab import impair, network
from patronus.lab.impair import Impairment
from patronus.lab.plan import LabPlan
from patronus.lab.supervisor import LAB_NAMESPACE, MESH_NAME, LabFiles
from patronus.operator.site.children import child_names
from patronus.topology.mesh import path_name
from tests.integration.lab import agent_exporter, require_root, unique_prefix

SO_RCVBUFFORCE = 33  # Linux; the socket module does not name it. Root may exceed rmem_max with it.


@dataclass
class RunningLab:
    plan: LabPlan
    files: LabFiles
    kubectl_binary: str
    env: dict[str, str]

    def kubectl(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            [self.kubectl_binary, f"--kubeconfig={self.files.kubeconfig}", "-n", LAB_NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-o", "json")))

    def path(self, source: str, destination: str, underlay: str) -> str:
        return path_name(MESH_NAME, source, destination, underlay)

    def path_status(self, source: str, destination: str, underlay: str) -> dict[str, Any]:
        return dict(
            self.get("paths.sdwan.patronus.dev", self.path(source, destination, underlay)).get("status") or {}
        )

    def measured(self, source: str, destination: str, underlay: str) -> dict[str, Any]:
        """The source agent's latest check of the path, from its exporter (the API shows a path's health
        when it moves materially, and once a minute)."""
        return agent_exporter.path_health(self.plan, source, self.path(source, destination, underlay))

    def policy_report(self, site: str, name: str) -> dict[str, Any]:
        """The enforcing site's agent's report on a policy (its Site's ``status.policies`` entry)."""
        entries = (self.get("sites.sdwan.patronus.dev", site).get("status") or {}).get("policies") or []
        return next((dict(e) for e in entries if e.get("name") == name), {})

    def agent_pid(self, site: str) -> int:
        for pid in _netns_pids(self.plan.site(site).namespace):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"agent" in cmdline and b"run" in cmdline and b"patronus" in cmdline:
                return pid
        raise AssertionError(f"no agent running in site {site}")

    def wg_transfer(self, site: str) -> dict[str, int]:
        """Bytes sent per WireGuard interface of a site (seen from inside the agent's mount namespace)."""
        pid = self.wireguard_pid(site)
        out = subprocess.run(
            ["nsenter", "-t", str(pid), "-m", "-n", "wg", "show", "all", "transfer"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        sent: dict[str, int] = {}
        for line in out.splitlines():
            iface, _peer, _rx, tx = line.split("\t")
            sent[iface] = sent.get(iface, 0) + int(tx)
        return sent

    def wireguard_pid(self, site: str) -> int:
        for pid in _netns_pids(self.plan.site(site).namespace):
            if Path(f"/proc/{pid}/comm").read_text().strip().startswith("wireguard-go"):
                return pid
        raise AssertionError(f"no wireguard-go in site {site}")


def _netns_pids(namespace: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    ).stdout
    return [int(pid) for pid in out.split()]


def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def running_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    require_root()
    cache = tmp_path_factory.mktemp("lab-cache")
    env = {
        **os.environ,
        "PATRONUS_CACHE": str(cache),
        "PATRONUS_CONTROLPLANE_DIR": str(Binaries.locate().directory),
    }
    prefix = unique_prefix()
    files = LabFiles(cache / "lab" / prefix)
    up = subprocess.run(
        [sys.executable, "-m", "patronus", "lab", "up", "--sites", "3", "--prefix", prefix],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        lab = RunningLab(files.load_plan(), files, str(Binaries.locate().kubectl), env)
        # Every path probed and up: the tunnels work end to end.
        eventually(
            lambda: all(
                (p.get("status") or {}).get("state") == "up"
                for p in json.loads(lab.kubectl("get", "paths.sdwan.patronus.dev", "-o", "json"))["items"]
            ),
            90,
            "every path up",
        )
        yield lab
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "patronus", "lab", "down", "--prefix", prefix],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert down.returncode == 0, down.stderr[-2000:]
        assert network.namespaces_present(prefix) == []


def test_lan_traffic_crosses_the_tunnels_encrypted(running_lab: RunningLab) -> None:
    lab = running_lab
    a, b = lab.plan.site("a"), lab.plan.site("b")
    before = lab.wg_transfer("a")
    receiver = network.netns_socket(b.host_namespace, socket.AF_INET, socket.SOCK_DGRAM)
    sender = network.netns_socket(a.host_namespace, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # We read only after sending everything: the default receive buffer holds about 100 of these.
        receiver.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 * 1024 * 1024)
        receiver.bind((str(b.host_address), 9000))
        receiver.settimeout(0.5)

        def one_gets_through() -> bool:
            sender.sendto(b"hello", (str(b.host_address), 9000))
            try:
                return receiver.recvfrom(100)[0] == b"hello"
            except TimeoutError:
                return False

        # Paths are measured overlay to overlay; the LAN routes come with the same configuration, but
        # give a site a moment when its peers' configuration arrived just now.
        eventually(one_gets_through, 30, "a first LAN datagram through the tunnel")
        receiver.settimeout(2)
        payload = b"lan-to-lan " * 100
        for _ in range(200):
            sender.sendto(payload, (str(b.host_address), 9000))
            time.sleep(0.002)  # paced: this is about the path, not wireguard-go's burst queue
        received = 0
        while received < 150:
            data, _ = receiver.recvfrom(4096)
            assert data == payload
            received += 1
    finally:
        receiver.close()
        sender.close()
    after = lab.wg_transfer("a")
    grown = sum(after.values()) - sum(before.values())
    assert grown >= 150 * len(payload), f"the tunnels carried only {grown} more bytes"
    # Nothing with LAN addresses ever crossed the WAN in the clear: sites have no route for it.
    wan_routes = network.exec_in(lab.plan.wan_namespace, ["ip", "route"])
    assert "10." not in wan_routes


def _latency_readings(lab: RunningLab, count: int) -> list[float]:
    """``count`` of a's measurements of the a->b fiber Path's latency, one per check (1 s apart)."""
    readings = []
    for _ in range(count):
        readings.append(float(lab.measured("a", "b", "fiber")["latencyMs"]))
        time.sleep(1.1)
    return readings


def test_injected_delay_shows_in_the_reported_latency(running_lab: RunningLab) -> None:
    lab = running_lab
    # The base is taken through the delay relay with nothing injected, so that both readings cross the
    # same path and only the 40 ms differ; and over several checks, since one check on a busy machine
    # can be milliseconds off (a single 4 ms base once failed this test in CI).
    impair.set_impairment(lab.plan, "a/fiber", Impairment(), force_relay=True)
    try:
        time.sleep(2.5)  # checks made before the switch are out of the reports
        base_readings = _latency_readings(lab, 5)
        base = statistics.median(base_readings)
        impair.set_impairment(lab.plan, "a/fiber", Impairment(delay_ms=40))

        def settled() -> float | None:
            latency = float(lab.measured("a", "b", "fiber")["latencyMs"])
            return latency if latency > 30 else None

        eventually(settled, 20, "the delay to reach the reports")
        time.sleep(2.5)  # a couple more checks, all with the delay
        readings = _latency_readings(lab, 7)
        reported = statistics.median(readings)
        print(
            f"injected 40 ms on a/fiber: reported {reported:.2f} ms (base through the relay {base:.2f} ms, "
            f"readings {base_readings}), readings {readings}"
        )
        assert abs(reported - (40.0 + base)) <= 2.0
        assert float(lab.measured("a", "b", "lte")["latencyMs"]) < 10  # the other underlay: untouched
    finally:
        impair.clear(lab.plan, "a/fiber")


def test_injected_loss_shows_in_the_reported_loss(running_lab: RunningLab) -> None:
    lab = running_lab
    path = lab.path("a", "b", "fiber")
    lab.kubectl(
        "patch",
        "paths.sdwan.patronus.dev",
        path,
        "--type=merge",
        "-p",
        '{"spec":{"monitoring":{"interval":"100ms","probesPerCheck":10}}}',
    )
    impair.set_impairment(lab.plan, "a/fiber", Impairment(loss_pct=5))
    try:
        time.sleep(3)  # the agent picks up the faster probing; the loss window fills
        readings = []
        # 100 probes/s: about 2,000 probes, so the sampling error of the mean (about 0.5 points at 5 %)
        # stays well inside the 2 points allowed.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            readings.append(float(lab.measured("a", "b", "fiber")["packetLossPct"]))
            time.sleep(1.0)
        measured = statistics.fmean(readings)
        print(f"5 % loss injected: reported mean {measured:.2f} % over {len(readings)} readings: {readings}")
        assert abs(measured - 5.0) <= 2.0
    finally:
        impair.clear(lab.plan, "a/fiber")
        lab.kubectl(
            "patch",
            "paths.sdwan.patronus.dev",
            path,
            "--type=merge",
            "-p",
            '{"spec":{"monitoring":{"interval":"1s","probesPerCheck":5}}}',
        )


def _voice_path(lab: RunningLab) -> str:
    return str(lab.policy_report("a", "voice").get("pathInUse"))


def test_cutting_the_primary_fails_over_and_the_cooldown_holds(running_lab: RunningLab) -> None:
    lab = running_lab
    fiber, lte = lab.path("a", "b", "fiber"), lab.path("a", "b", "lte")
    eventually(lambda: _voice_path(lab) == fiber, 30, "voice on fiber")
    failovers = int(lab.policy_report("a", "voice").get("failoverCount") or 0)

    cut = time.monotonic()
    impair.set_impairment(lab.plan, "a/fiber", Impairment(down=True))
    try:
        eventually(lambda: _voice_path(lab) == lte, 10, "voice to fail over to lte", interval=0.1)
        print(f"failover reported {time.monotonic() - cut:.2f}s after the cut")
        # The matched traffic really takes the backup tunnel now.
        sent_before = lab.wg_transfer("a").get("wg-lte", 0)
        sender = network.netns_socket(lab.plan.site("a").host_namespace, socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(100):
            sender.sendto(b"v" * 500, (str(lab.plan.site("b").host_address), 5060))
            time.sleep(0.002)
        sender.close()
        assert lab.wg_transfer("a").get("wg-lte", 0) - sent_before >= 80 * 500
        # Traffic no policy matches takes the healthiest path too: it still gets through, over lte.
        receiver = network.netns_socket(lab.plan.site("b").host_namespace, socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind((str(lab.plan.site("b").host_address), 9100))
        receiver.settimeout(0.5)
        sender = network.netns_socket(lab.plan.site("a").host_namespace, socket.AF_INET, socket.SOCK_DGRAM)

        def unmatched_gets_through() -> bool:
            sender.sendto(b"unmatched", (str(lab.plan.site("b").host_address), 9100))
            try:
                return receiver.recvfrom(100)[0] == b"unmatched"
            except TimeoutError:
                return False

        try:
            eventually(unmatched_gets_through, 10, "unmatched traffic over the healthy path")
        finally:
            sender.close()
            receiver.close()
    finally:
        impair.clear(lab.plan, "a/fiber")

    restored = time.monotonic()
    while time.monotonic() - restored < 9.0:  # cooldown is 10 s: no early return
        assert _voice_path(lab) == lte, "voice returned to fiber before the cooldown"
        time.sleep(0.5)
    eventually(lambda: _voice_path(lab) == fiber, 15, "voice back on fiber after the cooldown")
    status = lab.policy_report("a", "voice")
    assert int(status["failoverCount"]) == failovers + 1
    events = lab.kubectl("get", "events", "--field-selector", "involvedObject.name=voice", "-o", "json")
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"PolicyFailover", "PolicyFailback"} <= reasons


def test_a_flapping_primary_fails_over_at_most_once_per_cooldown(running_lab: RunningLab) -> None:
    lab = running_lab
    fiber = lab.path("a", "b", "fiber")
    eventually(lambda: _voice_path(lab) == fiber, 30, "voice on fiber")
    before = int(lab.policy_report("a", "voice").get("failoverCount") or 0)
    stop = threading.Event()

    def flap() -> None:
        down = True
        while not stop.wait(1.0):
            impair.set_impairment(lab.plan, "a/fiber", Impairment(down=down))
            down = not down

    flapper = threading.Thread(target=flap)
    flapper.start()
    try:
        time.sleep(20)
    finally:
        stop.set()
        flapper.join(10)
        impair.clear(lab.plan, "a/fiber")
    failovers = int(lab.policy_report("a", "voice").get("failoverCount") or 0) - before
    print(f"20 s of a primary flapping every second (cooldown 10 s): {failovers} failovers")
    assert 1 <= failovers <= 2


def test_a_qos_cap_of_10_mbps_holds_a_bulk_flow(running_lab: RunningLab) -> None:
    lab = running_lab
    a, b = lab.plan.site("a"), lab.plan.site("b")
    server = network.netns_socket(b.host_namespace, socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((str(b.host_address), 873))
    server.listen(1)
    received = 0
    window: list[float] = []

    def receive() -> None:
        nonlocal received
        conn, _ = server.accept()
        conn.settimeout(5)
        with conn:
            while data := conn.recv(65536):
                if not window:
                    window.append(time.monotonic())
                received += len(data)
        window.append(time.monotonic())

    thread = threading.Thread(target=receive)
    thread.start()
    client = network.netns_socket(a.host_namespace, socket.AF_INET, socket.SOCK_STREAM)
    client.connect((str(b.host_address), 873))
    chunk = b"x" * 65536
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        client.sendall(chunk)
    client.close()
    thread.join(20)
    server.close()
    mbps = received * 8 / (window[-1] - window[0]) / 1e6
    print(f"bulk flow under a 10 Mbps policy: {mbps:.2f} Mbit/s ({received} bytes)")
    assert 2 < mbps <= 11


def test_a_killed_agent_goes_stale_and_a_restarted_one_recovers(running_lab: RunningLab) -> None:
    lab = running_lab
    pid = lab.agent_pid("c")
    wireguard = lab.wireguard_pid("c")
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    eventually(
        lambda: lab.path_status("c", "a", "fiber").get("state") == "unknown", 60, "c's paths to go stale"
    )
    stale_after = time.monotonic() - killed
    print(f"killed agent: its path went unknown after {stale_after:.1f}s (heartbeat stale after 30 s)")
    # Its last Lease renewal was up to 10 s before the kill: stale 20-30 s later, plus the operator's
    # reaction (the Site's requeue, then its Paths') and our polling.
    assert HEARTBEAT_STALE_AFTER - HEARTBEAT_INTERVAL <= stale_after <= HEARTBEAT_STALE_AFTER + 5.0

    # Restart it where its tunnels live (the same network and mount namespace), as a restarted pod would.
    log = lab.files.agent_log("c").with_suffix(".restart.log")
    with log.open("wb") as handle:
        restarted = subprocess.Popen(
            [
                "nsenter",
                "-t",
                str(wireguard),
                "-m",
                "-n",
                sys.executable,
                "-m",
                "patronus",
                "agent",
                "run",
                "--site",
                "c",
                "--namespace",
                LAB_NAMESPACE,
                "--config-map",
                child_names("c").config_map,
                "--heartbeat-lease",
                child_names("c").lease,
                "--key-secret",
                child_names("c").secret,
                "--kubeconfig",
                str(lab.files.agent_kubeconfig("c")),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=lab.env,
        )
    try:
        eventually(lambda: lab.path_status("c", "a", "fiber").get("state") == "up", 30, "the restarted agent")
        assert lab.wireguard_pid("c") == wireguard  # the tunnel was kept, not rebuilt
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(20)
