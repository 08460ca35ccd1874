"""The health score formula: the seed example, the knee of the E-model, clamping, and the mean."""

from __future__ import annotations

import pytest

from patronus.topology.health import health_score, mean_health


def test_seed_example() -> None:
    assert health_score(45.2, 2.1, 0.01) == pytest.approx(98.4, abs=0.05)


def test_perfect_link_is_close_to_100() -> None:
    # Even a perfect link has the 10 ms codec delay: R = 93.2 - 10/40.
    assert health_score(0, 0, 0) == pytest.approx(100 * (93.2 - 0.25) / 93.2)


@pytest.mark.parametrize(
    ("latency", "jitter", "loss", "expected_r"),
    [
        (100, 0, 0, 93.2 - 110 / 40),
        (100, 10, 0, 93.2 - 130 / 40),
        (150, 0, 0, 93.2 - (160 - 120) / 10),  # EL = 160: the second branch
        (300, 0, 0, 93.2 - (310 - 120) / 10),
        (20, 0, 4, 93.2 - 30 / 40 - 10),
    ],
)
def test_formula(latency: float, jitter: float, loss: float, expected_r: float) -> None:
    assert health_score(latency, jitter, loss) == pytest.approx(100 * expected_r / 93.2)


def test_continuous_at_the_knee() -> None:
    below = health_score(149.999, 0, 0)
    at = health_score(150, 0, 0)
    assert below == pytest.approx(at, abs=1e-3)


def test_monotonic_in_each_input() -> None:
    for step in range(0, 1000, 7):
        assert health_score(step, 1, 0.1) >= health_score(step + 1, 1, 0.1)
        assert health_score(40, step / 10, 0.1) >= health_score(40, step / 10 + 0.1, 0.1)
        assert health_score(40, 1, step / 100) >= health_score(40, 1, step / 100 + 0.01)


@pytest.mark.parametrize(
    ("latency", "jitter", "loss"), [(10_000, 0, 0), (0, 0, 100), (500, 200, 50), (-5, -1, -1)]
)
def test_clamped_to_0_100(latency: float, jitter: float, loss: float) -> None:
    assert 0.0 <= health_score(latency, jitter, loss) <= 100.0


def test_total_loss_scores_zero() -> None:
    assert health_score(30, 1, 100) == 0.0


def test_mean_health() -> None:
    assert mean_health([]) is None
    assert mean_health([None, None]) is None
    assert mean_health([90.0, None, 80.0]) == pytest.approx(85.0)
    assert mean_health(iter([0.0])) == 0.0
