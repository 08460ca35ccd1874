"""Path health: one 0-100 score from latency, jitter and loss, with a formula people can check.

The score is a simplified ITU-T G.107 E-model (after Cole and Rosenbluth), the usual way to say how a
link feels for voice and video:

    effective latency  EL = latency + 2 * jitter + 10          (ms; jitter counts double, 10 ms codec)
    R = 93.2 - EL / 40               when EL < 160
    R = 93.2 - (EL - 120) / 10       otherwise                 (continuous at EL = 160)
    R = R - 2.5 * loss               (loss in percent)
    score = 100 * R / 93.2, clamped to 0..100                  (a perfect link scores 100)

For example 45.2 ms latency, 2.1 ms jitter and 0.01 % loss give about 98.4.
"""

from __future__ import annotations

from collections.abc import Iterable

R_MAX = 93.2
"""The E-model's R factor of a perfect link with default impairments."""
_EL_KNEE_MS = 160.0


def health_score(latency_ms: float, jitter_ms: float, loss_pct: float) -> float:
    """The 0-100 health score of a path (see the module docstring). Negative inputs count as zero."""
    effective = max(latency_ms, 0.0) + 2 * max(jitter_ms, 0.0) + 10
    r = R_MAX - effective / 40 if effective < _EL_KNEE_MS else R_MAX - (effective - 120) / 10
    r -= 2.5 * max(loss_pct, 0.0)
    return min(max(100 * r / R_MAX, 0.0), 100.0)


def mean_health(scores: Iterable[float | None]) -> float | None:
    """The mean of the known scores, or None when there is none (unknown is not the same as 0)."""
    known = [score for score in scores if score is not None]
    return sum(known) / len(known) if known else None
