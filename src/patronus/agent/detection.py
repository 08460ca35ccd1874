"""When a path is down: per-probe deadlines from its measured round trip, and a confirmation before a
verdict. Pure: the numbers and the formulas; :mod:`patronus.agent.path_monitor` applies them.

**Deadlines.** A probe is *missed* when no reply came within the retransmission timeout of RFC 6298
(TCP's): ``RTO = srtt + 4 * rttvar``, clamped to ``[min_rto, max_rto]``, where ``srtt`` and ``rttvar``
are the smoothed round trip and its mean deviation over the path's replies (gains 1/8 and 1/4). So the
deadline follows the path: a few milliseconds of fibre get the floor, a satellite hop gets its own
600 ms and more, and 20 ms of jitter widen it by about four times their mean deviation.

**Confirmation.** One miss proves little: 5 % random loss misses one probe in twenty. A miss with no
reply from the path since that probe was sent starts a *train* of ``confirmations`` probes ``gap`` apart;
the path is *down* when the last of them passes its own deadline and nothing has answered since the
missed probe went out. Any reply (to any probe, even a late one) cancels the train.

- False verdicts: with independent loss ``p`` per probe, a working path is declared down after a given
  probe with probability at most ``p ** (1 + confirmations)`` (the probe and its whole train lost):
  :meth:`Detection.false_down_probability`.
- Time: a cut is seen by the first probe sent after it, at most ``spacing = interval / probesPerCheck``
  later; that probe's deadline, the train and the last deadline follow, so the verdict comes at most
  ``spacing + 2 * RTO + (confirmations - 1) * gap`` after the cut (:meth:`Detection.bound`), and at
  least ``2 * RTO + (confirmations - 1) * gap - RTT`` (a probe whose reply was cut); with a stall
  guard (below), the silence is at least the guard's.
- Robustness: a path is declared down only after at least :meth:`Detection.silence` of silence, so a
  round trip that jumps by less than that (a route change, a queue filling) is late, not down.

**Stall guard.** A busy host (or peer) can hold every packet for hundreds of milliseconds: a silence
that is delay, not loss, and that the smoothed RTO forgets within a few replies. Its signature is a
reply that comes after its own deadline while the path was suspected (a train running, or declared
down). Like TCP's response to a spurious timeout (Eifel, RFC 4015), the prober then remembers: the next
verdict needs at least ``guard_margin`` (1.5) times that silence, a requirement that halves every
``guard_half_life`` (a minute: long enough to span a busy episode, short enough that one stall at
start-up does not slow the detector for long) and is never more than ``max_guard`` (2 s)
(:class:`StallGuard`). Stalls belong to the host (ours, or the peer's), not to one
path, so an agent shares one guard among its probers: what one path learnt protects the others, and
survives a prober restarted for a new interval. A verdict whose own deadline fires more than
``late_tolerance`` late is being taken by a process that was held up, where the replies may be held up
too: it waits that long again (at least an RTO) once, and a late reply in that time teaches the guard;
the lateness alone does not (it says nothing about the path, and a real cut noticed late must not slow
the verdicts after it). A quiet host keeps the fast detector; a stalling one slows its own verdicts
instead of flapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INITIAL_RTO = 1.0
"""Seconds, before the first round trip is measured (RFC 6298, section 2.1)."""


@dataclass(frozen=True)
class Detection:
    """How fast a path is declared down, and how sure that verdict is (see the module docstring)."""

    min_rto: float = 0.025
    """The floor of a probe's deadline: above the scheduling noise of a busy host and its peer."""
    max_rto: float = 1.0
    confirmations: int = 6
    """Probes sent after a miss; all of them and the missed one unanswered: down."""
    gap: float = 0.004
    """Seconds between two confirmation probes: the train spans ``(confirmations - 1) * gap``."""
    guard_margin: float = 1.5
    guard_half_life: float = 60.0
    max_guard: float = 2.0
    late_tolerance: float = 0.020
    """How late the prober's own verdict deadline may fire before the verdict waits once more for
    replies a stalled host may be holding (an idle event loop wakes within a couple of milliseconds)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_rto <= self.max_rto:
            raise ValueError("need 0 < min_rto <= max_rto")
        if self.confirmations < 1:
            raise ValueError("at least one confirmation probe")
        if self.gap < 0:
            raise ValueError("the confirmation gap cannot be negative")

    @property
    def span(self) -> float:
        """Seconds from the first to the last confirmation probe."""
        return (self.confirmations - 1) * self.gap

    def silence(self, rto: float, guard: float = 0.0) -> float:
        """The least silence (seconds without a reply) before a down verdict, with deadlines of ``rto``
        and a stall guard of ``guard``."""
        return max(2 * rto + self.span, guard)

    def bound(self, spacing: float, rto: float, guard: float = 0.0) -> float:
        """The most seconds from a cut to the down verdict, with probes ``spacing`` apart."""
        return spacing + self.silence(rto, guard)

    def false_down_probability(self, loss: float) -> float:
        """The chance that a given probe starts a false down verdict, with independent loss ``loss``."""
        return float(loss ** (1 + self.confirmations))


class RttEstimator:
    """Smoothed round trip, its mean deviation, and the resulting deadline (RFC 6298, section 2)."""

    ALPHA = 1 / 8
    BETA = 1 / 4
    K = 4

    def __init__(self, detection: Detection | None = None) -> None:
        self.detection = detection or Detection()
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.samples = 0

    def update(self, rtt: float) -> None:
        """Take one measured round trip, in seconds (each probe has its own sequence number, so every
        reply is an unambiguous sample: Karn's rule has nothing to exclude)."""
        rtt = max(rtt, 0.0)
        if self.srtt is None or self.rttvar is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - rtt)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * rtt
        self.samples += 1

    @property
    def rto(self) -> float:
        """Seconds to wait for a reply before a probe is missed."""
        if self.srtt is None or self.rttvar is None:
            return max(min(INITIAL_RTO, self.detection.max_rto), self.detection.min_rto)
        raw = self.srtt + self.K * self.rttvar
        return min(max(raw, self.detection.min_rto), self.detection.max_rto)


class StallGuard:
    """The least silence a down verdict needs, learnt from this path's own late replies (see above)."""

    def __init__(self, detection: Detection | None = None) -> None:
        self.detection = detection or Detection()
        self._value = 0.0
        self._at = 0.0

    def value(self, now: float) -> float:
        """Seconds of silence a verdict at ``now`` needs, at least (0: no stall seen lately)."""
        if not self._value:
            return 0.0
        return self._value * math.pow(0.5, max(now - self._at, 0.0) / self.detection.guard_half_life)

    def late_reply(self, silence: float, now: float) -> bool:
        """A reply after its deadline ended ``silence`` seconds without replies while the path was
        suspected (or the prober's own deadline fired that late): that much silence was delay. True when
        that raised the guard."""
        wanted = min(silence * self.detection.guard_margin, self.detection.max_guard)
        current = self.value(now)
        self._value, self._at = max(current, wanted), now
        return wanted > current
