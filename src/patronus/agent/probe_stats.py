"""What one check of a path measured: latency, jitter, loss, the health score and a state. Pure.

A check is ``probesPerCheck`` probes; each either came back with a round-trip time or was lost (None).
:func:`summarize` gives one check on its own; the prober (:mod:`patronus.agent.path_monitor`) reports
loss over a window of probes instead, and the state from its down detector.

- latency: the mean RTT of the probes that came back.
- jitter: the mean absolute difference between consecutive received RTTs (the |D(i-1, i)| of RFC 3550,
  section 6.4.1, without its 1/16 exponential smoothing): a check is a handful of probes taken afresh each
  interval, so a running filter would mostly remember older checks. Lost probes are skipped, so the
  difference is taken between the received neighbours. Fewer than two replies give no jitter (None), which
  the health score counts as 0.
- loss: lost / sent, in percent.
- health: :func:`patronus.topology.health.health_score`; 0 when nothing came back.
- state: ``down`` when nothing came back, ``degraded`` when health is below ``degraded_below``, else ``up``;
  ``unknown`` (from the path monitor) for a path that has never answered.

:class:`LossWindow` keeps loss over the last N probes across checks: five probes per check can only say
0, 20, 40 ... %, while a window of 1000 resolves 0.1 %, and tells 5 % loss from 10 % reliably (see
:data:`LOSS_WINDOW_PROBES`). :class:`LossLedger` decides what goes into it: probes lost while the
path answered are loss; those lost in an outage (a down verdict, or before the first answer) are not,
because an outage is a state to report, not loss to average for the next thousand probes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

from patronus.topology.health import health_score

PathState = Literal["up", "degraded", "down", "unknown"]

_KEPT_OUTAGES = 16
"""Outages a ledger remembers: enough for every probe still awaiting its loss deadline."""

DEFAULT_DEGRADED_BELOW = 70.0
"""Health under which a path that still answers is ``degraded`` (the seed's default failover threshold)."""

LOSS_WINDOW_PROBES = 1000
"""Loss (and with it health) is judged over this many recent probes. Why so many: a policy at threshold 70
moves at about 10.4 % loss (with 40 ms latency and 20 ms jitter), and a path with 5 % random loss must
not cross that by chance. Over a window of 100 probes it does several times in ten minutes at 15 probes
a second (P(Binomial(100, 0.05) >= 11) is about 1 %); over 1000, about once in 10^9 such runs. The price:
moderate loss moves traffic only when the window has seen enough of it (20 % loss after about 520
probes); heavy loss is caught earlier by the down detector."""


@dataclass(frozen=True)
class CheckResult:
    """The summary of one check. ``latency_ms`` and ``jitter_ms`` are None when they could not be measured;
    ``rtts_ms`` keeps each probe's round trip (None: lost), in send order, for histograms and loss windows.

    ``early``: not a check but a verdict delivered between checks the moment it was known (the path went
    down, or answered again after being down); it counts no probes (``sent == received == 0``).
    """

    sent: int
    received: int
    latency_ms: float | None
    jitter_ms: float | None
    loss_pct: float
    health_score: float
    state: PathState
    rtts_ms: tuple[float | None, ...] = field(default=(), compare=False)
    early: bool = False

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

    def __init__(self, size: int = LOSS_WINDOW_PROBES) -> None:
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

    @property
    def judged_loss_pct(self) -> float:
        """The loss health is judged on: lost per ``size`` probes, those not seen yet counted as received.

        The same as :attr:`loss_pct` once the window is full. Before that it presumes the path good: two
        lost probes of the first ten are 20 % to report, but as evidence against a path they weigh what
        they would weigh among a full window's (0.2 %), so a short unlucky start cannot move traffic.
        """
        return 100.0 * self._lost / self._size


class LossLedger:
    """Sorts lost regular probes into loss (in the window) and outage (left out), by when they were sent.

    Outages are spans of send time: from the last reply before a down verdict to the first reply after
    it, and from the start to the first reply ever. A probe lost in a silence not yet judged is pending:
    loss if a reply ends the silence, outage if a verdict does.
    """

    def __init__(self, window: LossWindow) -> None:
        self.window = window
        self._closed: deque[tuple[float, float]] = deque(maxlen=_KEPT_OUTAGES)
        self._open_from: float | None = float("-inf")  # before the first reply
        self._last_reply_at: float | None = None
        self._pending = 0

    def reply(self, now: float, *, regular: bool) -> None:
        """The path answered at ``now``: an open outage ends; a pending silence was loss after all."""
        if self._open_from is not None:
            self._closed.append((self._open_from, now))
            self._open_from = None
        for _ in range(self._pending):
            self.window.record(False)
        self._pending = 0
        if regular:
            self.window.record(True)
        self._last_reply_at = now

    def lost(self, sent_at: float) -> None:
        """A regular probe sent at ``sent_at`` reached its loss deadline unanswered."""
        if self._in_outage(sent_at):
            return
        if self._last_reply_at is not None and self._last_reply_at > sent_at:
            self.window.record(False)
        else:
            self._pending += 1

    def outage(self) -> None:
        """A down verdict: the silence since the last reply is an outage, not loss."""
        self._open_from = self._last_reply_at if self._last_reply_at is not None else float("-inf")
        self._pending = 0

    def _in_outage(self, sent_at: float) -> bool:
        if self._open_from is not None and sent_at >= self._open_from:
            return True
        return any(start <= sent_at < end for start, end in self._closed)
