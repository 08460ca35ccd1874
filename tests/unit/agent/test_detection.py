"""The RTO of RFC 6298 and the detection formulas the README and the benchmark quote."""

from __future__ import annotations

import pytest

from patronus.agent.detection import INITIAL_RTO, Detection, RttEstimator, StallGuard


def test_rto_before_any_sample_is_the_initial_one() -> None:
    assert RttEstimator().rto == INITIAL_RTO
    assert RttEstimator(Detection(max_rto=0.5)).rto == 0.5


def test_rto_follows_rfc_6298() -> None:
    estimator = RttEstimator(Detection(min_rto=0.001))
    estimator.update(0.100)
    assert (estimator.srtt, estimator.rttvar) == pytest.approx((0.100, 0.050))
    assert estimator.rto == pytest.approx(0.100 + 4 * 0.050)
    estimator.update(0.060)
    # rttvar first, with the old srtt: 3/4 * 50 + 1/4 * |100 - 60| = 47.5; srtt = 7/8 * 100 + 1/8 * 60 = 95
    assert estimator.rttvar == pytest.approx(0.0475)
    assert estimator.srtt == pytest.approx(0.095)
    assert estimator.rto == pytest.approx(0.095 + 4 * 0.0475)


def test_rto_is_clamped() -> None:
    fast = RttEstimator(Detection(min_rto=0.025))
    for _ in range(50):
        fast.update(0.001)
    assert fast.rto == 0.025
    slow = RttEstimator(Detection(max_rto=1.0))
    slow.update(3.0)
    assert slow.rto == 1.0


def test_jitter_widens_the_deadline_past_the_round_trips_it_sees() -> None:
    estimator = RttEstimator()
    for rtt in [0.021, 0.061] * 50:  # 40 ms +- 20 ms, alternating: the worst case for a mean
        estimator.update(rtt)
    assert estimator.rto > 0.061


def test_the_formulas() -> None:
    detection = Detection(min_rto=0.025, confirmations=6, gap=0.004)
    assert detection.span == pytest.approx(0.020)
    assert detection.silence(0.025) == pytest.approx(0.070)
    assert detection.bound(0.2 / 3, 0.025) == pytest.approx(0.2 / 3 + 0.070)
    assert detection.false_down_probability(0.05) == pytest.approx(0.05**7)


def test_the_guard_learns_a_stall_decays_and_is_capped() -> None:
    guard = StallGuard(Detection(guard_margin=1.25, guard_half_life=60.0, max_guard=2.0))
    assert guard.value(0.0) == 0.0
    assert guard.late_reply(0.2, now=10.0)
    assert guard.value(10.0) == pytest.approx(0.25)
    assert guard.value(70.0) == pytest.approx(0.125)  # one half-life later
    assert not guard.late_reply(0.05, now=70.0)  # a smaller stall does not lower it
    assert guard.value(70.0) == pytest.approx(0.125)
    guard.late_reply(5.0, now=70.0)
    assert guard.value(70.0) == 2.0
    assert Detection().silence(0.025, guard=0.5) == 0.5
    assert Detection().bound(0.1, 0.025, guard=0.5) == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_rto": 0}, "min_rto"),
        ({"min_rto": 2, "max_rto": 1}, "min_rto"),
        ({"confirmations": 0}, "confirmation"),
        ({"gap": -1}, "gap"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Detection(**kwargs)  # type: ignore[arg-type]
