"""The statistics of ``bench/tunnel.py``'s cost answer: a load's throughput against the plain module's,
pair by pair.

Each pair is one measurement of the load and one of the plain module taken next to each other in the
same run, so a slow moment of the shared machine touches both. With the mirrored order (each repeat runs
the variants forward, then backward: A B B A), half of the pairs measure the module first and half the
load first, so an effect of the position in the repeat cancels out of the median instead of showing as a
cost. The answer is the median of the per-pair ratios with a bootstrap interval of that median (pairs
resampled with replacement, a fixed seed so the report is reproducible) and the smallest and largest
ratio; the raw numbers are printed beside it by the caller.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RESAMPLES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class PairSummary:
    """The per-pair ratios (load / module) and what the report says of them."""

    ratios: tuple[float, ...]
    median: float
    low: float
    high: float
    """The bootstrap interval of the median at :data:`LEVEL`."""

    @property
    def cost(self) -> float:
        """The cost as a fraction of throughput: 1 - the median ratio."""
        return 1 - self.median

    @property
    def worst_cost(self) -> float:
        """The cost at the interval's low end: the largest cost the interval allows."""
        return 1 - self.low


def pair_ratios(baseline: Sequence[float], loaded: Sequence[float]) -> list[float]:
    """``loaded[i] / baseline[i]``: the i-th measurements of each were taken next to each other."""
    if len(baseline) != len(loaded):
        raise ValueError(f"{len(baseline)} baseline measurements against {len(loaded)} loaded ones")
    return [b / a for a, b in zip(baseline, loaded, strict=True)]


def bootstrap_interval(
    values: Sequence[float], *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 13
) -> tuple[float, float]:
    """The percentile bootstrap interval of the median of ``values``."""
    if not values:
        raise ValueError("no values")
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    tail = (1 - level) / 2
    return medians[int(tail * (resamples - 1))], medians[int((1 - tail) * (resamples - 1))]


def summarize(baseline: Sequence[float], loaded: Sequence[float]) -> PairSummary:
    """The per-pair ratios of ``loaded`` to ``baseline``, their median and its bootstrap interval."""
    ratios = pair_ratios(baseline, loaded)
    low, high = bootstrap_interval(ratios)
    return PairSummary(tuple(ratios), statistics.median(ratios), low, high)


def mirrored(variants: Sequence[str]) -> list[str]:
    """One repeat in the mirrored order: the variants forward, then backward (A B, B A)."""
    return [*variants, *reversed(variants)]
