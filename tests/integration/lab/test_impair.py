"""Impairments on a real lab link: delay and jitter through the relay, loss, down and up.

``delay`` and ``loss`` act like ``tc netem`` on the site's WAN interface: on what the site sends over the
link. 40 ms ± 5 ms on a/fiber adds 40 ms to each packet a -> b (replies b -> a are not delayed), so the echo
RTT a <-> b over fiber grows by 40 ms. ``down`` cuts both directions.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from patronus.controlplane.processes import stop
from patronus.lab import impair, network
from patronus.lab.impair import Impairment
from patronus.lab.plan import LabPlan
from tests.integration.lab import echo, lab

_RELAY: dict[str, subprocess.Popen[bytes]] = {}


@pytest.fixture(scope="module")
def relay_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("relay") / "relay.log"


@pytest.fixture(scope="module")
def plan(relay_log: Path) -> Iterator[LabPlan]:
    with lab() as created:
        _RELAY["process"] = impair.start_relay(created, relay_log)
        try:
            yield created
        finally:
            stop(_RELAY.pop("process"))


@pytest.fixture(autouse=True)
def clean_links(plan: LabPlan) -> Iterator[None]:
    yield
    for link in plan.links:
        impair.clear(plan, link)


def test_relay_zero_delay_overhead(plan: LabPlan, capsys: pytest.CaptureFixture[str]) -> None:
    with echo(plan, "a", "b", "fiber") as pair:
        pair.rtts(20)  # warm up
        direct = statistics.median(pair.rtts(300))
        impair.set_impairment(plan, "a/fiber", Impairment(), force_relay=True)
        pair.rtts(20)
        relayed = statistics.median(pair.rtts(300))
    stats = impair.relay_stats(plan)
    assert stats["links"]["a/fiber"]["packets"] >= 320  # every packet a sent over fiber was relayed
    overhead = relayed - direct
    with capsys.disabled():
        print(
            f"\nrelay 0-delay overhead: RTT median {direct * 1000:.0f} us direct, {relayed * 1000:.0f} us "
            f"through the relay: +{overhead * 1000:.0f} us per round trip (two relay passes)"
        )
    assert overhead < 2.0


def test_delay_and_jitter_per_direction_changed_at_run_time(plan: LabPlan) -> None:
    with echo(plan, "a", "b", "fiber") as pair, echo(plan, "a", "b", "lte", port=7778) as other:
        base = pair.median_rtt(50)
        impair.set_impairment(plan, "a/fiber", Impairment(delay_ms=40, jitter_ms=5))
        assert impair.current(plan, "a/fiber") == Impairment(delay_ms=40, jitter_ms=5)
        samples = pair.rtts(60)
        added = statistics.fmean(samples) - base
        assert abs(added - 40.0) <= 3.0, f"RTT grew by {added:.2f} ms, expected 40 (a's egress)"
        assert 1.5 <= statistics.pstdev(samples) <= 5.0  # uniform +-5 ms: ~2.9 ms
        assert min(samples) >= 34.0  # nothing arrives before its delay
        # A busy host can only add delay: a few late packets are the scheduler's, many are the relay's.
        late = sorted(s for s in samples if s > 46.0)
        assert len(late) <= 3, f"{len(late)} of 60 RTTs beyond 40 + 5 ms of jitter + 1 ms: {late}"
        assert other.median_rtt(10) < base + 2.0  # the same sites' lte link is untouched

        # New parameters on the same sockets: nothing restarts, the next packets see them.
        impair.set_impairment(plan, "a/fiber", Impairment(delay_ms=10))
        added = pair.median_rtt(20) - base
        assert abs(added - 10.0) <= 2.0, f"RTT grew by {added:.2f} ms, expected 10"

        impair.clear(plan, "a/fiber")
        assert impair.current(plan, "a/fiber") == Impairment()
        assert pair.median_rtt(20) < base + 1.0


def test_delays_of_both_ends_add_up(plan: LabPlan) -> None:
    with echo(plan, "b", "c", "lte") as pair:
        base = pair.median_rtt(20)
        impair.set_impairment(plan, "b/lte", Impairment(delay_ms=5))
        impair.set_impairment(plan, "c/lte", Impairment(delay_ms=10))
        added = pair.median_rtt(20) - base
    assert abs(added - 15.0) <= 2.0, f"RTT grew by {added:.2f} ms, expected 5 + 10 (each end's egress)"


def test_loss_is_random_per_direction_within_two_points(plan: LabPlan) -> None:
    impair.set_impairment(plan, "a/fiber", Impairment(loss_pct=5))
    sent = 4000
    with echo(plan, "a", "b", "fiber") as pair:
        pair.server.setblocking(False)
        received = 0
        for burst in range(sent // 100):
            for seq in range(100):
                pair.client.sendto((burst * 100 + seq).to_bytes(4, "big"), pair.server.getsockname())
            received += _drain_count(pair.server, settle=0.002)
        received += _drain_count(pair.server, settle=0.2)
    loss = 100.0 * (sent - received) / sent
    assert abs(loss - 5.0) <= 2.0, f"measured {loss:.2f} % loss over {sent} datagrams, set 5 %"
    rules = network.exec_in(
        plan.wan_namespace, ["nft", "list", "chain", "inet", "patronus-lab", "l-w1-fiber"]
    )
    assert "numgen random mod 10000 < 500" in rules


def _drain_count(sock: object, settle: float) -> int:
    count = 0
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        try:
            sock.recv(64)  # type: ignore[attr-defined]
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        count += 1
        deadline = time.monotonic() + settle
    return count


def test_down_drops_everything_and_up_restores(plan: LabPlan) -> None:
    with echo(plan, "a", "c", "fiber") as pair, echo(plan, "a", "c", "lte", port=7778) as other:
        assert pair.rtt() is not None
        impair.set_impairment(plan, "c/fiber", Impairment(down=True))
        assert [pair.rtt(timeout=0.05) for _ in range(10)] == [None] * 10
        assert other.rtt() is not None  # the other underlay is still up
        impair.set_impairment(plan, "c/fiber", Impairment())
        assert pair.rtt() is not None
    # The link itself was never touched: the outage is a drop rule, not an interface state.
    state = network.exec_in(plan.wan_namespace, ["ip", "-o", "link", "show", "w3-fiber"])
    assert "state UP" in state


def test_relay_restart_falls_back_then_restores_delays(plan: LabPlan, relay_log: Path) -> None:
    with echo(plan, "a", "b", "fiber") as pair:
        base = pair.median_rtt(10)
        impair.set_impairment(plan, "a/fiber", Impairment(delay_ms=10))
        stop(_RELAY["process"])
        # No relay: its TUN device and the route into it are gone, the diversion rules find no route,
        # and the link carries on undelayed instead of going dark.
        assert pair.median_rtt(10) < base + 1.0
        with pytest.raises(impair.RelayNotRunning):
            impair.set_impairment(plan, "a/fiber", Impairment(delay_ms=30))
        assert impair.current(plan, "a/fiber") == Impairment(delay_ms=10)  # a refused change changes nothing
        _RELAY["process"] = impair.start_relay(plan, relay_log)
        added = pair.median_rtt(10) - base
    assert abs(added - 10.0) <= 2.0, f"RTT grew by {added:.2f} ms after the restart, expected 10"
