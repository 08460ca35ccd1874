"""The path monitor's decisions on a simulated link: even spacing, fast and bounded down verdicts, no
false verdicts under random loss and jitter, the outage as a state, and nothing alarming before the
first answer. Pure: simulated time, so minutes of probing run in well under a second."""

from __future__ import annotations

import itertools
import random

import pytest

from patronus.agent.detection import Detection, StallGuard
from patronus.agent.path_monitor import START_GRACE_SECONDS, PathMonitor, Send
from tests.unit.agent.simlink import Link, simulate, uniform_rtt

LAB_RTT = uniform_rtt(0.001)
"""The lab's clean round trip through two wireguard-go tunnels: about a millisecond."""
JITTERY = uniform_rtt(0.001, delay=0.040, jitter=0.020)
"""40 ms ± 20 ms (uniform) on the request, as ``patronus lab impair --delay 40ms --jitter 20ms``."""


def monitor(interval: float = 0.2, probes: int = 3, **kwargs: object) -> PathMonitor:
    return PathMonitor(interval=interval, probes_per_check=probes, start=0.0, **kwargs)  # type: ignore[arg-type]


def test_probes_are_spread_evenly_and_a_check_is_probes_per_check_of_them() -> None:
    m = monitor(interval=0.3, probes=3)
    sent_at = []
    now = 0.0
    while now < 3.0:
        out = m.advance(now)
        sent_at += [now for s in out.sends if not s.confirmation]
        for send in out.sends:  # answer at once: 1 ms later
            m.reply(send.seq, send.stamp, now + 0.001)
        now = m.next_deadline()
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(sent_at)}
    assert gaps == {0.1}
    run = simulate(monitor(interval=0.3, probes=3), Link(), 3.0, random.Random(1))
    checks = run.checks()
    assert len(checks) == 10
    assert all(r.sent == 3 and r.received == 3 and r.state == "up" for _, r in checks)
    times = [at for at, _ in checks]
    assert all(abs((b - a) - 0.3) < 0.002 for a, b in itertools.pairwise(times))


@pytest.mark.parametrize("interval", [1.0, 0.2, 0.1])
def test_a_cut_is_declared_down_within_the_bound(interval: float) -> None:
    rng = random.Random(int(interval * 1000))
    detection = Detection()
    spacing = interval / 3
    for _ in range(50):
        cut = 2.0 + rng.uniform(0, 1)
        m = monitor(interval=interval, detection=detection)
        run = simulate(m, Link(rtt=LAB_RTT, cuts=[(cut, 99.0)]), cut + 2, rng)
        (down,) = run.downs()
        bound = detection.bound(spacing, m.rto)
        assert detection.silence(m.rto) - 0.001 <= down - cut <= bound, (cut, down, bound)
        early = [r for at, r in run.results if r.early]
        assert [r.state for r in early] == ["down"]
        assert all(r.state == "down" for at, r in run.checks() if at > down)


def test_a_down_verdict_waits_for_the_whole_confirmation_train() -> None:
    detection = Detection(min_rto=0.03, confirmations=4, gap=0.01)
    m = monitor(detection=detection)
    run = simulate(m, Link(rtt=LAB_RTT, cuts=[(1.0, 9.0)]), 3.0, random.Random(2))
    (verdict,) = [v for v in run.verdicts if v.state == "down"]
    assert verdict.silence >= 2 * 0.03 + 3 * 0.01
    assert run.confirmations_sent == 4  # one train; none while down


@pytest.mark.parametrize("interval", [0.2, 0.1])
def test_five_percent_loss_and_20ms_jitter_for_ten_minutes_never_go_down_or_below_70(interval: float) -> None:
    m = monitor(interval=interval)
    run = simulate(m, Link(rtt=JITTERY, loss=0.05), 600.0, random.Random(5))
    assert run.downs() == []
    checks = [r for _, r in run.checks()]
    assert len(checks) == pytest.approx(600 / interval, abs=2)
    assert min(r.health_score for r in checks) >= 70
    assert checks[-1].loss_pct == pytest.approx(5, abs=1.5)  # the window's loss is the link's
    assert run.confirmations_sent > 0  # misses were seen, and confirmed as loss, not as an outage


def test_false_verdicts_under_heavy_loss_stay_below_the_formula() -> None:
    """The analysis: a probe starts a false verdict with probability at most p ** (1 + confirmations).
    At 50 % loss that is common enough to count; the count must not exceed the formula, and must not be
    negligible next to it either (the formula is a bound worth quoting, not a loose one)."""
    detection = Detection()
    m = monitor(interval=0.2, detection=detection)
    run = simulate(m, Link(rtt=LAB_RTT, loss=0.5), 600.0, random.Random(8))
    bound = run.regular_sent * detection.false_down_probability(0.5)
    downs = len(run.downs())
    assert 0.2 * bound < downs < bound + 4 * bound**0.5, (downs, bound)


def test_a_round_trip_that_jumps_less_than_the_silence_is_late_not_down() -> None:
    """From 1 ms to 50 ms at once (a route change): probes miss their 25 ms deadline, but the late
    replies arrive before the train's verdict, count as received, and teach the RTO."""

    def rtt(rng: random.Random, sent_at: float) -> float:
        return 0.001 if sent_at < 2.0 else 0.050

    m = monitor()
    run = simulate(m, Link(rtt=rtt), 6.0, random.Random(3))
    assert run.downs() == []
    assert all(r.received == r.sent for _, r in run.checks())
    assert run.confirmations_sent >= Detection().confirmations  # the jump was noticed, and confirmed late
    assert m.rto > 0.05


def test_a_stalling_host_teaches_the_guard_and_stops_flapping() -> None:
    """A 150 ms stall (every reply held) every 10 s on a 1 ms path: the first is taken for an outage
    (the detector needs 70 ms), and its late replies show it was delay; the guard then asks 1.25 x that
    silence of the next verdicts, so the stalls that follow are ridden out, while a real cut is still
    declared, later by the guard's margin."""
    stalls = [(10.0 * k + 5, 10.0 * k + 5.15) for k in range(6)]
    m = monitor()
    run = simulate(m, Link(rtt=LAB_RTT, stalls=stalls, cuts=[(63.0, 99.0)]), 65.0, random.Random(12))
    downs = run.downs()
    assert len(downs) == 2, downs
    assert 5.0 < downs[0] < 5.15  # the first stall fooled it once
    guard = next(v.guard for v in run.verdicts if v.state == "down" and v.at > 60)
    assert 0.15 * 1.5 < guard <= 0.35  # each stall's late replies renew it (the silence is ~0.2 s)
    # The silence counts from the last reply, up to one spacing before the cut.
    assert 63.0 - 0.2 / 3 + guard <= downs[1] <= 63.0 + Detection().bound(0.2 / 3, m.rto, guard) + 0.001


def _suspected(m: PathMonitor) -> tuple[float, list[Send]]:
    """Answered for a second (1 ms round trips), then silent through a miss and its whole train:
    (when the verdict is due, the probes still unanswered)."""
    now = 0.0
    while now < 1.0:
        out = m.advance(now)
        for send in out.sends:
            m.reply(send.seq, send.stamp, now + 0.001)
        now = m.next_deadline()
    pending: list[Send] = []
    while m.confirmations_sent < Detection().confirmations:
        pending += m.advance(now).sends
        last_sent, now = now, m.next_deadline()
    return last_sent + m.rto, pending  # the last confirmation's own deadline


def test_a_verdict_taken_late_waits_once_for_the_replies_a_stall_holds() -> None:
    """The prober itself woke 50 ms after its verdict was due (a starved host): it waits that long
    again rather than judge; a late reply in that time shows the path was alive, and teaches the guard."""
    m = monitor()
    due, pending = _suspected(m)
    out = m.advance(due + 0.05)
    assert out.verdicts == []
    assert m.guard.value(due + 0.05) == 0  # our own lateness says nothing about the path
    late = pending[-1]
    out = m.reply(late.seq, late.stamp, due + 0.06)
    assert out is not None
    assert [v.state for v in out.verdicts] == ["stalled"]
    assert m.guard.value(due + 0.06) > Detection().silence(m.rto)
    assert m.state(due + 0.06) == "answering"


def test_a_cut_noticed_late_is_still_declared_and_teaches_nothing() -> None:
    m = monitor()
    due, _ = _suspected(m)
    assert m.advance(due + 0.05).verdicts == []  # waits max(RTO, lateness) = 50 ms once
    assert m.advance(due + 0.09).verdicts == []
    out = m.advance(due + 0.15)  # late again: judged this time
    assert [v.state for v in out.verdicts] == ["down"]
    assert m.guard.value(due + 0.15) == 0


def test_a_shared_guard_protects_every_path_of_the_host() -> None:
    """What one path learnt from a stall holds for another path (and for a prober started afresh)."""
    guard = StallGuard()
    first = monitor(guard=guard)
    simulate(first, Link(rtt=LAB_RTT, stalls=[(5.0, 5.3)]), 8.0, random.Random(13))
    assert guard.value(8.0) > 0.3
    second = PathMonitor(interval=0.2, probes_per_check=3, start=8.0, guard=guard)
    run = simulate(second, Link(rtt=LAB_RTT, stalls=[(12.0, 12.3)]), 15.0, random.Random(14))
    assert run.downs() == []


def test_the_outage_is_a_state_not_loss() -> None:
    """A 7 s cut at 1 s probes: down at once, and the first reply after it ends the outage with the loss
    the path had before (none), not 21 lost probes of the window."""
    m = monitor(interval=1.0)
    run = simulate(m, Link(rtt=LAB_RTT, cuts=[(10.3, 17.3)]), 30.0, random.Random(4))
    states = [(round(at, 1), r.state, r.early) for at, r in run.results if at > 10]
    assert states[0][1:] == ("down", True)
    back = next(at for at, r in run.results if r.early and r.state == "up")
    assert 17.3 < back <= 17.3 + 1 / 3 + 0.002  # the next probe after the cut ended
    after = [r for at, r in run.checks() if at > back]
    assert after
    assert all(r.state == "up" and r.loss_pct == 0 and r.health_score > 99 for r in after)


def test_loss_around_an_outage_is_still_loss() -> None:
    """10 % random loss with cuts: the window holds the random loss, not the cuts."""
    m = monitor(interval=0.1)
    cuts = [(20.0 * k + 5, 20.0 * k + 8) for k in range(10)]
    run = simulate(m, Link(rtt=LAB_RTT, loss=0.10, cuts=cuts), 200.0, random.Random(6))
    assert len(run.downs()) == 10
    assert m.window.count > 1000 - 1
    assert m.window.loss_pct == pytest.approx(10, abs=2.5)


def test_a_path_that_never_answered_is_unknown_then_down_after_the_grace() -> None:
    m = monitor(interval=1.0, grace=5.0)
    run = simulate(m, Link(cuts=[(0.0, 99.0)]), 9.0, random.Random(7))
    states = [(round(at), r.state, r.loss_pct, r.health_score) for at, r in run.checks()]
    assert {s for at, s, _, _ in states if at < 5} == {"unknown"}
    assert {s for at, s, _, _ in states if at > 5.5} == {"down"}
    assert all(loss == 0 and health == 0 for _, _, loss, health in states)
    assert run.confirmations_sent == 0  # nothing to confirm before a first answer
    assert START_GRACE_SECONDS >= 30  # a peer's agent may come late; WireGuard retries every 5 s


def test_loss_counts_from_the_first_answer() -> None:
    """The tunnel answers only from 4 s on (its first handshake): nothing before counts as loss."""
    m = monitor(interval=1.0, probes=5)
    run = simulate(m, Link(rtt=LAB_RTT, cuts=[(0.0, 4.0)]), 12.0, random.Random(9))
    results = run.checks()
    assert {r.state for at, r in results if at < 4} == {"unknown"}
    answered = [r for at, r in results if at > 5]
    assert answered
    assert all(r.state == "up" and r.loss_pct == 0 for r in answered)
    assert run.downs() == []


def test_a_flapping_link_goes_down_and_comes_back_every_time() -> None:
    cuts = [(1.0 + 2 * k, 2.0 + 2 * k) for k in range(10)]  # down 1 s, up 1 s
    m = monitor(interval=0.2)
    run = simulate(m, Link(rtt=LAB_RTT, cuts=cuts), 21.0, random.Random(10))
    early = [r.state for _, r in run.results if r.early]
    assert early == ["down", "up"] * 10
    assert len(run.downs()) == 10


def test_late_loop_sends_one_probe_not_a_burst() -> None:
    m = monitor(interval=0.3, probes=3)
    m.advance(0.0)
    out = m.advance(1.0)  # the loop stalled for a second
    assert len([s for s in out.sends if not s.confirmation]) == 1
    assert m.next_deadline() <= 1.1


def test_replies_are_matched_by_sequence_and_stamp() -> None:
    m = monitor()
    (send,) = m.advance(0.0).sends
    assert m.reply(send.seq, send.stamp + 1, 0.001) is None  # forged or from a reused sequence
    assert m.reply(send.seq + 1, send.stamp, 0.001) is None  # never sent
    assert m.reply(send.seq, send.stamp, 0.001) is not None
    assert m.reply(send.seq, send.stamp, 0.002) is None  # a duplicate
    assert m.ignored_replies == 3


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="interval"):
        monitor(interval=0)
    with pytest.raises(ValueError, match="probes_per_check"):
        monitor(probes=0)
    with pytest.raises(ValueError, match="timeout"):
        monitor(timeout=0)
