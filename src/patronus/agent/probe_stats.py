"""What one check of a path measured: latency, jitter, loss, the health score and a state. Pure.

A check is ``probesPerCheck`` probes; each either came back with a round-trip time or was lost (None).

- latency: the mean RTT of the probes that came back.
- jitter: the mean absolute difference between consecutive received RTTs (the |D(i-1, i)| of RFC 3550,
  section 6.4.1, without its 1/16 exponential smoothing): a check is a handful of probes taken afresh each
  interval, so a running filter would mostly remember older checks. Lost probes are skipped, so the
  difference is taken between the received neighbours. Fewer than two replies give no jitter (None), which
  the health score counts as 0.
- loss: lost / sent, in percent.
- health: :func:`patronus.topology.health.health_score`; 0 when nothing came back.
- state: ``down`` when nothing came back, ``degraded`` when health is below ``degraded_below``, else ``up``.
  ``unknown`` is never produced here: it is the measurement's word for a path that has never answered
  (see :mod:`patronus.agent.measure`).

:class:`LossWindow` keeps loss over the last N probes across checks: five probes per check can only say
0, 20, 40 ... %, while a window of 1000 resolves 0.1 %.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from patronus.topology.health import health_score

PathState = Literal["up", "degraded", "down", "unknown"]

DEFAULT_DEGRADED_BELOW = 70.0
"""Health under which a path that still answers is ``degraded`` (the seed's default failover threshold)."""


@dataclass(frozen=True)
class CheckResult:
    """The summary of one check. ``latency_ms`` and ``jitter_ms`` are None when they could not be measured;
    ``rtts_ms`` keeps each probe's round trip (None: lost), in send order, for histograms and loss windows."""

    sent: int
    received: int
    latency_ms: float | None
    jitter_ms: float | None
    loss_pct: float
    health_score: float
    state: PathState
    rtts_ms: tuple[float | None, ...] = field(default=(), compare=False)

    @property
    def is_down(self) -> bool:
        return self.state == "down"


def mean_abs_successive_difference(values: Sequence[float]) -> float | None:
    """Mean |v[i] - v[i-1]|, or None with fewer than two values."""
    if len(values) < 2:
        return None
    return sum(abs(b - a) for a, b in pairwise(values)) / (len(values) - 1)


def summarize(
    rtts_ms: Sequence[float | None], *, degraded_below: float = DEFAULT_DEGRADED_BELOW
) -> CheckResult:
    """Summarise one check's round-trip times in milliseconds, in send order; None is a lost probe.

    An empty check is an error rather than "down": a check always sends at least one probe, so no probes
    means a bug upstream, not a broken path.
    """
    if not rtts_ms:
        raise ValueError("a check needs at least one probe")
    received = [rtt for rtt in rtts_ms if rtt is not None]
    sent = len(rtts_ms)
    loss_pct = 100.0 * (sent - len(received)) / sent
    rtts = tuple(rtts_ms)
    if not received:
        return CheckResult(sent, 0, None, None, loss_pct, 0.0, "down", rtts)
    latency = sum(received) / len(received)
    jitter = mean_abs_successive_difference(received)
    health = health_score(latency, jitter or 0.0, loss_pct)
    state: PathState = "degraded" if health < degraded_below else "up"
    return CheckResult(sent, len(received), latency, jitter, loss_pct, health, state, rtts)


class LossWindow:
    """Loss over the last ``size`` probes: O(1) per probe, exact (no floating-point drift)."""

    def __init__(self, size: int = 1000) -> None:
        if size < 1:
            raise ValueError("a loss window holds at least one probe")
        self._size = size
        self._outcomes: deque[bool] = deque(maxlen=size)
        self._lost = 0

    def record(self, received: bool) -> None:
        """Add one probe's outcome, dropping the oldest when the window is full."""
        if len(self._outcomes) == self._size and not self._outcomes[0]:
            self._lost -= 1
        self._outcomes.append(received)
        if not received:
            self._lost += 1

    def extend(self, rtts_ms: Iterable[float | None]) -> None:
        """Add a check's probes (None = lost), in send order."""
        for rtt in rtts_ms:
            self.record(rtt is not None)

    @property
    def size(self) -> int:
        return self._size

    @property
    def count(self) -> int:
        """Probes in the window (at most ``size``)."""
        return len(self._outcomes)

    @property
    def lost(self) -> int:
        return self._lost

    @property
    def loss_pct(self) -> float | None:
        """Percent lost among the probes in the window; None before the first probe."""
        return 100.0 * self._lost / len(self._outcomes) if self._outcomes else None
