"""The statistics behind bench/tunnel.py's cost answer (pure functions, no measurement)."""

from __future__ import annotations

import statistics

import pytest
from bench import tunnel_stats


def test_pairs_are_the_loaded_measurement_over_the_baseline_taken_next_to_it() -> None:
    assert tunnel_stats.pair_ratios([2.0, 4.0, 5.0], [1.0, 4.0, 6.0]) == [0.5, 1.0, 1.2]


def test_pairs_of_unequal_length_are_refused() -> None:
    with pytest.raises(ValueError, match="2 baseline measurements against 3 loaded"):
        tunnel_stats.pair_ratios([1.0, 2.0], [1.0, 2.0, 3.0])


def test_the_mirrored_order_runs_each_variant_first_as_often_as_last() -> None:
    order = tunnel_stats.mirrored(["module", "full"])
    assert order == ["module", "full", "full", "module"]
    assert order.index("module") == 0
    assert order[::-1].index("module") == 0


def test_the_bootstrap_interval_holds_the_median_and_lies_within_the_values() -> None:
    values = [0.80 + 0.005 * i for i in range(41)]  # 0.80 ... 1.00, median 0.90
    low, high = tunnel_stats.bootstrap_interval(values)
    assert min(values) <= low <= statistics.median(values) <= high <= max(values)
    assert high - low < 0.1  # 41 evenly spread values pin the median well inside the whole span


def test_the_bootstrap_interval_is_reproducible_and_narrows_with_more_pairs() -> None:
    few = [0.9, 1.0, 0.95, 0.85, 1.05, 0.92, 0.98, 0.88]
    many = few * 10
    assert tunnel_stats.bootstrap_interval(few) == tunnel_stats.bootstrap_interval(few)
    few_low, few_high = tunnel_stats.bootstrap_interval(few)
    many_low, many_high = tunnel_stats.bootstrap_interval(many)
    assert many_high - many_low < few_high - few_low


def test_identical_values_leave_no_doubt() -> None:
    assert tunnel_stats.bootstrap_interval([0.97] * 5) == (0.97, 0.97)
    with pytest.raises(ValueError, match="no values"):
        tunnel_stats.bootstrap_interval([])


def test_the_summary_reads_cost_and_worst_cost_from_the_median_and_the_interval_low_end() -> None:
    baseline = [3.0, 3.2, 2.8, 3.1, 2.9]
    loaded = [2.94, 3.12, 2.76, 3.04, 2.84]  # each about 2 % lower
    summary = tunnel_stats.summarize(baseline, loaded)
    assert summary.ratios == tuple(b / a for a, b in zip(baseline, loaded, strict=True))
    assert summary.median == pytest.approx(statistics.median(summary.ratios))
    assert summary.cost == pytest.approx(1 - summary.median)
    assert summary.worst_cost == pytest.approx(1 - summary.low)
    assert summary.low <= summary.median <= summary.high
    assert 0.01 < summary.cost < 0.03
