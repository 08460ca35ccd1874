"""Per-path measurement: loss over a window, unknown until the first answer, down after the grace."""

from __future__ import annotations

import pytest

from patronus.agent.measure import Measurements
from patronus.agent.probe_stats import summarize
from patronus.topology.health import health_score

LOST = [None] * 5
CLEAN = [10.0] * 5


def test_a_path_that_never_answered_is_unknown_not_lossy() -> None:
    m = Measurements(grace=30)
    for t in range(3):
        result = m.observe("p", summarize(LOST), float(t))
        assert result.state == "unknown"
        assert result.loss_pct == 0
    assert not m.answered("p")


def test_loss_counts_from_the_first_answer() -> None:
    m = Measurements(window=100)
    m.observe("p", summarize(LOST), 0.0)
    m.observe("p", summarize(LOST), 1.0)
    # The handshake completes during this check: the two probes before the first answer are not loss.
    result = m.observe("p", summarize([None, None, 10.0, 10.0, 10.0]), 2.0)
    assert result.state == "up"
    assert result.loss_pct == 0
    assert result.health_score == pytest.approx(health_score(10.0, 0.0, 0.0))
    assert m.answered("p")


def test_silent_past_the_grace_is_down() -> None:
    m = Measurements(grace=30)
    assert m.observe("p", summarize(LOST), 0.0).state == "unknown"
    assert m.observe("p", summarize(LOST), 29.0).state == "unknown"
    result = m.observe("p", summarize(LOST), 30.0)
    assert result.state == "down"
    assert result.health_score == 0


def test_after_the_first_answer_a_silent_check_is_down_at_once() -> None:
    m = Measurements()
    m.observe("p", summarize(CLEAN), 0.0)
    result = m.observe("p", summarize(LOST), 1.0)
    assert result.state == "down"
    assert result.loss_pct == 100  # this check's own
    assert result.health_score == 0


def test_an_outage_is_not_loss_once_the_path_is_back() -> None:
    m = Measurements(window=100)
    for t in range(10):
        m.observe("p", summarize(CLEAN), float(t))
    for t in range(10, 20):  # ten seconds cut: 50 probes lost
        assert m.observe("p", summarize(LOST), float(t)).state == "down"
    back = m.observe("p", summarize(CLEAN), 20.0)
    assert back.state == "up"
    assert back.loss_pct == 0  # the cut was down time, not a lossy link: failback waits only for the cooldown
    # The checks at the edges of a cut, partly answered, do count.
    assert m.observe("p", summarize([10.0, 10.0, None, None, None]), 21.0).loss_pct == pytest.approx(
        3 / 60 * 100
    )


def test_one_lost_probe_is_smoothed_over_the_window() -> None:
    m = Measurements(window=100)
    for t in range(19):
        m.observe("p", summarize(CLEAN), float(t))
    result = m.observe("p", summarize([10.0, None, 10.0, 10.0, 10.0]), 19.0)
    assert result.loss_pct == pytest.approx(1.0)  # 1 of the last 100, not 20 % of this check
    assert result.state == "up"


def test_the_window_forgets_old_loss() -> None:
    m = Measurements(window=10)
    m.observe("p", summarize(CLEAN), 0.0)
    m.observe("p", summarize([10.0, None, None, None, 10.0]), 1.0)
    assert m.observe("p", summarize(CLEAN), 2.0).loss_pct == pytest.approx(30)
    assert m.observe("p", summarize(CLEAN), 3.0).loss_pct == 0


def test_paths_are_independent_and_retain_forgets() -> None:
    m = Measurements()
    m.observe("p", summarize(CLEAN), 0.0)
    assert m.observe("q", summarize(LOST), 0.0).state == "unknown"
    m.retain(["q"])
    assert not m.answered("p")
    assert m.observe("p", summarize(LOST), 1.0).state == "unknown"  # a new start for p
