"""One check's summary (latency, RFC 3550-style jitter, loss, health, state) and the rolling loss window."""

from __future__ import annotations

import random

import pytest

from patronus.agent.probe_stats import CheckResult, LossWindow, summarize
from patronus.topology.health import health_score


def test_example_check() -> None:
    result = summarize([40, 42, 38, None])
    assert result.sent == 4
    assert result.received == 3
    assert result.latency_ms == pytest.approx(40)
    assert result.jitter_ms == pytest.approx(3)  # (|42-40| + |38-42|) / 2
    assert result.loss_pct == pytest.approx(25)
    assert result.health_score == pytest.approx(health_score(40, 3, 25))
    assert result.state == "degraded"  # 25 % loss costs 62.5 R points


def test_clean_check_is_up() -> None:
    result = summarize([10.0, 10.5, 10.0, 10.5, 10.0])
    assert result.loss_pct == 0
    assert result.jitter_ms == pytest.approx(0.5)
    assert result.health_score == pytest.approx(health_score(10.2, 0.5, 0))
    assert result.state == "up"


def test_lost_probes_are_skipped_for_jitter() -> None:
    # Jitter is between received neighbours: 10 -> 16 across the lost probe.
    assert summarize([10, None, 16]).jitter_ms == pytest.approx(6)


def test_all_lost_is_down() -> None:
    assert summarize([None, None, None]) == CheckResult(3, 0, None, None, 100.0, 0.0, "down")


def test_single_reply_has_no_jitter() -> None:
    result = summarize([None, 20.0])
    assert result.jitter_ms is None
    assert result.health_score == pytest.approx(health_score(20, 0, 50))


def test_degraded_threshold_is_configurable() -> None:
    assert summarize([20.0], degraded_below=99.5).state == "degraded"
    assert summarize([20.0], degraded_below=0).state == "up"


def test_empty_check_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one probe"):
        summarize([])


def test_loss_window_over_the_last_n() -> None:
    window = LossWindow(4)
    assert window.loss_pct is None
    window.extend([1.0, None, None])
    assert (window.count, window.lost) == (3, 2)
    assert window.loss_pct == pytest.approx(200 / 3)
    window.extend([1.0, 1.0, 1.0, 1.0])  # the two losses fall out of the window
    assert (window.count, window.lost) == (4, 0)
    assert window.loss_pct == 0.0
    window.record(False)
    assert window.loss_pct == pytest.approx(25)


def test_loss_window_resolves_small_loss_over_many_probes() -> None:
    rng = random.Random(7)
    window = LossWindow(1000)
    outcomes = [rng.random() >= 0.02 for _ in range(5000)]
    for received in outcomes:
        window.record(received)
    expected = 100 * outcomes[-1000:].count(False) / 1000
    assert window.count == 1000
    assert window.loss_pct == pytest.approx(expected)


def test_judged_loss_presumes_a_young_window_good() -> None:
    window = LossWindow(1000)
    window.extend([1.0] * 8 + [None, None])
    assert window.loss_pct == pytest.approx(20)  # what was seen
    assert window.judged_loss_pct == pytest.approx(0.2)  # what it weighs as evidence
    window.extend([1.0] * 990)
    assert window.judged_loss_pct == window.loss_pct == pytest.approx(0.2)


def test_a_check_keeps_its_round_trips() -> None:
    result = summarize([1.0, None, 3.0])
    assert result.rtts_ms == (1.0, None, 3.0)
    assert not result.early


def test_loss_window_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        LossWindow(0)
