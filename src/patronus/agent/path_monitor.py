"""One path's probing as a state machine without I/O: when to send, what a reply or a silence means, and
what each check reports. :class:`~patronus.agent.prober.PathProber` does the sockets and the sleeping;
this module only decides, from the times it is given, so a test can simulate hours of probing in a second.

**Schedule.** Regular probes go out evenly, ``spacing = interval / probesPerCheck`` apart (not in a
burst), so a cut is seen by the next probe at most one spacing later. Probes ``n*k .. n*k+n-1`` make
check *k*; its result is delivered once each of them is answered or lost, in check order, and its
statistics (sent, received, latency, jitter) are those of its ``probesPerCheck`` probes.

**Two deadlines per probe.** At its *miss* deadline (the RTO, :mod:`patronus.agent.detection`) a probe
still unanswered, with no reply from the path since it was sent, starts a confirmation train; the train
all unanswered too (and the silence at least the stall guard's) is a *down* verdict, delivered at once as
an ``early`` result, between checks. At its
*loss* deadline, ``max(timeout, RTO)`` after sending (``timeout`` defaults to ``min(interval, 1 s)``), an
unanswered probe is lost; a reply after the miss deadline but before this one counts as received.
Confirmation probes decide down or not and yield round trips for the RTO; they count in no statistic.

**An outage is a state, not loss.** The loss window (the last ``window`` regular probes) holds only what
the path did while it answered: probes lost between the last reply before a down verdict and the first
reply after it are the outage and are left out, and so are probes sent before the path first answered
(before a tunnel's first handshake nothing is known about its loss: loss counts from the first answer).
So a path back from a cut reports the loss it had before, and a policy's cooldown is all that holds
traffic on the backup. Probes lost while the path answered are loss; those lost in a silence not yet
judged wait for the verdict (:class:`~patronus.agent.probe_stats.LossLedger`).

**States.** ``unknown`` until the first reply (``down`` if none came within ``grace`` seconds, so a link
broken from the start still fails over); ``down`` from a verdict until the next reply, which is
delivered at once as an ``early`` result; otherwise ``up`` or ``degraded`` by health. Health is
:func:`~patronus.topology.health.health_score` of the check's latency and jitter and the window's loss
(:attr:`~patronus.agent.probe_stats.LossWindow.judged_loss_pct`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from patronus.agent.detection import Detection, RttEstimator, StallGuard
from patronus.agent.probe_stats import (
    DEFAULT_DEGRADED_BELOW,
    LOSS_WINDOW_PROBES,
    CheckResult,
    LossLedger,
    LossWindow,
    PathState,
    summarize,
)
from patronus.topology.health import health_score

START_GRACE_SECONDS = 30.0
"""How long a path that has never answered is ``unknown`` before it counts as ``down``: a peer's agent
may start later than ours, and WireGuard retries a handshake every 5 s."""
MIN_SPACING = 0.001
"""Seconds between regular probes, at least (a check of many probes then takes longer than an interval)."""
_SEQ_MOD = 1 << 32
_STAMP_MOD = 1 << 64


@dataclass
class _Probe:
    seq: int
    stamp: int
    sent_at: float
    miss_at: float
    lost_at: float
    check: int | None  # None: a confirmation probe
    slot: int = 0
    missed: bool = False


@dataclass
class _Check:
    index: int
    rtts_ms: list[float | None]
    unresolved: int


@dataclass
class _Train:
    """Confirmation probes still to send after a miss, the deadline of the last one sent, when the
    silence began, and (once all are sent) when the verdict is due."""

    left: int
    next_at: float
    last_deadline: float
    since: float
    verdict_at: float = float("inf")
    postponed: bool = False


@dataclass(frozen=True)
class Send:
    """A probe to put on the wire now: its sequence number and the stamp it carries."""

    seq: int
    stamp: int
    confirmation: bool


@dataclass(frozen=True)
class Verdict:
    """A change between down and answering, for the log: when, after how much silence, with which RTO."""

    state: Literal["down", "answering", "stalled"]
    at: float
    silence: float
    rto: float
    unanswered: int
    guard: float = 0.0


@dataclass
class Output:
    """What a step produced: probes to send now, results to deliver (in order), verdicts to log."""

    sends: list[Send] = field(default_factory=list)
    results: list[CheckResult] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)


class PathMonitor:
    """The probing of one path; call :meth:`advance` at :meth:`next_deadline` and :meth:`reply` per reply."""

    def __init__(
        self,
        *,
        interval: float,
        probes_per_check: int,
        start: float,
        timeout: float | None = None,
        detection: Detection | None = None,
        window: int = LOSS_WINDOW_PROBES,
        grace: float = START_GRACE_SECONDS,
        degraded_below: float = DEFAULT_DEGRADED_BELOW,
        guard: StallGuard | None = None,
    ) -> None:
        """``guard``: a stall guard shared with the host's other paths (default: this path's own)."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        if probes_per_check < 1:
            raise ValueError("probes_per_check must be at least 1")
        self.timeout = min(interval, 1.0) if timeout is None else timeout
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self.interval = interval
        self.probes_per_check = probes_per_check
        self.spacing = max(interval / probes_per_check, MIN_SPACING)
        self.detection = detection or Detection()
        self.grace = grace
        self.degraded_below = degraded_below
        self.window = LossWindow(window)
        self.rtt = RttEstimator(self.detection)
        self.guard = guard or StallGuard(self.detection)
        self.ignored_replies = 0
        self.confirmations_sent = 0
        self.checks = 0
        self._start = start
        self._ledger = LossLedger(self.window)
        self._next_slot = start
        self._regular = 0
        self._seq = 0
        self._outstanding: dict[int, _Probe] = {}
        self._checks: deque[_Check] = deque()
        self._train: _Train | None = None
        self._answered = False
        self._down = False
        self._last_reply_at: float | None = None
        self._last_latency: float | None = None
        self._last_jitter: float | None = None

    # --- what the prober asks ------------------------------------------------------------------------

    @property
    def rto(self) -> float:
        return self.rtt.rto

    def state(self, now: float) -> PathState | Literal["answering"]:
        """``unknown``, ``down`` or ``answering`` (up or degraded: health decides) at ``now``."""
        if self._down:
            return "down"
        if not self._answered:
            return "unknown" if now - self._start < self.grace else "down"
        return "answering"

    def next_deadline(self) -> float:
        """When :meth:`advance` has something to do next (a send, a miss, a loss, a verdict)."""
        times = [self._next_slot]
        for probe in self._outstanding.values():
            times.append(probe.lost_at if probe.missed else probe.miss_at)
        if self._train is not None:
            times.append(self._train.next_at if self._train.left else self._train.verdict_at)
        return min(times)

    def advance(self, now: float) -> Output:
        """Everything due by ``now``: misses, confirmations, the verdict, losses, the next regular probe."""
        out = Output()
        self._misses(now)
        self._confirm(now, out)
        self._losses(now)
        if not self._answered and not self._down and now - self._start >= self.grace:
            self._down = True  # silent since the start: the outage that began then is still on
        if now >= self._next_slot:
            self._send_regular(now, out)
        self._emit_checks(now, out)
        return out

    def reply(self, seq: int, stamp: int, now: float) -> Output | None:
        """A reply to probe ``seq`` carrying ``stamp`` arrived at ``now``; None when it is not ours (any
        more): unknown, answered already, past its loss deadline, or with another stamp."""
        probe = self._outstanding.get(seq)
        if probe is None or probe.stamp != stamp:
            self.ignored_replies += 1
            return None
        del self._outstanding[seq]
        rtt = now - probe.sent_at
        self.rtt.update(rtt)
        out = Output()
        silence = now - self._last_reply_at if self._last_reply_at is not None else now - self._start
        suspected = self._train is not None or self._down
        if suspected and self._answered and rtt > probe.miss_at - probe.sent_at:
            self._stalled(silence, now, out)  # that silence was delay, not loss
        self._ledger.reply(now, regular=probe.check is not None)
        self._train = None
        self._answered = True
        self._last_reply_at = now
        if probe.check is not None:
            self._resolve(probe, rtt * 1000.0)
        if self._down:
            self._down = False
            out.verdicts.append(Verdict("answering", now, silence, self.rto, 0, self.guard.value(now)))
            out.results.append(self._early(now, rtt * 1000.0))
        self._emit_checks(now, out)
        return out

    # --- steps ------------------------------------------------------------------------------------

    def _armed(self) -> bool:
        """Whether a miss can start a train: the path has answered and is not down already."""
        return self._answered and not self._down and self._train is None

    def _misses(self, now: float) -> None:
        for probe in sorted(self._outstanding.values(), key=lambda p: p.sent_at):
            if probe.missed or probe.miss_at > now:
                continue
            probe.missed = True
            silent_since_sent = self._last_reply_at is None or self._last_reply_at < probe.sent_at
            if self._armed() and silent_since_sent:
                since = self._last_reply_at if self._last_reply_at is not None else self._start
                self._train = _Train(self.detection.confirmations, now, probe.miss_at, since)

    def _confirm(self, now: float, out: Output) -> None:
        train = self._train
        if train is None:
            return
        while train.left and train.next_at <= now:
            probe = self._new_probe(now, check=None)
            out.sends.append(Send(probe.seq, probe.stamp, confirmation=True))
            self.confirmations_sent += 1
            train.left -= 1
            train.next_at += self.detection.gap
            train.last_deadline = max(train.last_deadline, probe.miss_at)
            if not train.left:
                train.verdict_at = max(train.last_deadline, train.since + self.guard.value(now))
        if not train.left and now >= train.verdict_at:
            late = now - train.verdict_at
            if late > self.detection.late_tolerance and not train.postponed:
                # Our own deadline fired late: this process was held up, and on a starved host so may
                # the replies be. Give them that long again before judging; a late reply then teaches
                # the guard (it is the path's evidence), our own lateness alone does not.
                train.postponed = True
                train.verdict_at = now + max(self.rto, late)
                return
            self._declare_down(now, out)

    def _stalled(self, silence: float, now: float, out: Output) -> None:
        if self.guard.late_reply(silence, now):
            out.verdicts.append(Verdict("stalled", now, silence, self.rto, 0, self.guard.value(now)))

    def _declare_down(self, now: float, out: Output) -> None:
        self._train = None
        self._down = True
        self._ledger.outage()
        since = self._last_reply_at if self._last_reply_at is not None else self._start
        unanswered = sum(1 for p in self._outstanding.values() if p.sent_at >= since)
        out.verdicts.append(Verdict("down", now, now - since, self.rto, unanswered, self.guard.value(now)))
        out.results.append(self._early(now, None))

    def _losses(self, now: float) -> None:
        for probe in [p for p in self._outstanding.values() if p.lost_at <= now]:
            del self._outstanding[probe.seq]
            if probe.check is not None:
                self._ledger.lost(probe.sent_at)
                self._resolve(probe, None)

    def _send_regular(self, now: float, out: Output) -> None:
        check, slot = divmod(self._regular, self.probes_per_check)
        self._regular += 1
        if slot == 0:
            self._checks.append(_Check(check, [None] * self.probes_per_check, self.probes_per_check))
        probe = self._new_probe(now, check=check, slot=slot)
        out.sends.append(Send(probe.seq, probe.stamp, confirmation=False))
        self._next_slot += self.spacing
        if self._next_slot <= now:  # fell behind (a stalled loop): no catch-up burst
            self._next_slot = now + self.spacing

    def _new_probe(self, now: float, *, check: int | None, slot: int = 0) -> _Probe:
        seq = self._seq
        self._seq = (seq + 1) % _SEQ_MOD
        rto = self.rto
        stamp = int(now * 1e9) % _STAMP_MOD
        probe = _Probe(seq, stamp, now, now + rto, now + max(self.timeout, rto), check, slot)
        self._outstanding[seq] = probe
        return probe

    def _resolve(self, probe: _Probe, rtt_ms: float | None) -> None:
        for check in self._checks:
            if check.index == probe.check:
                check.rtts_ms[probe.slot] = rtt_ms
                check.unresolved -= 1
                return

    # --- results ----------------------------------------------------------------------------------

    def _emit_checks(self, now: float, out: Output) -> None:
        while self._checks and self._checks[0].unresolved == 0:
            check = self._checks.popleft()
            out.results.append(self._check_result(check, now))
            self.checks += 1

    def _check_result(self, check: _Check, now: float) -> CheckResult:
        summary = summarize(check.rtts_ms, degraded_below=self.degraded_below)
        if summary.latency_ms is not None:
            self._last_latency, self._last_jitter = summary.latency_ms, summary.jitter_ms
        loss, health, state = self._judge(now, summary.latency_ms, summary.jitter_ms)
        return CheckResult(
            summary.sent,
            summary.received,
            summary.latency_ms,
            summary.jitter_ms,
            loss,
            health,
            state,
            summary.rtts_ms,
        )

    def _early(self, now: float, latency_ms: float | None) -> CheckResult:
        loss, health, state = self._judge(now, latency_ms, None)
        return CheckResult(0, 0, latency_ms, None, loss, health, state, (), early=True)

    def _judge(
        self, now: float, latency_ms: float | None, jitter_ms: float | None
    ) -> tuple[float, float, PathState]:
        """(loss %, health, state) of the path at ``now``, with a check's latency and jitter when known."""
        loss = self.window.loss_pct or 0.0
        state = self.state(now)
        if state != "answering":
            return loss, 0.0, state
        latency = latency_ms if latency_ms is not None else self._last_latency
        jitter = jitter_ms if latency_ms is not None else self._last_jitter
        health = health_score(latency or 0.0, jitter or 0.0, self.window.judged_loss_pct)
        return loss, health, "degraded" if health < self.degraded_below else "up"
