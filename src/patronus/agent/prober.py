"""Active path probing over UDP: a prober that measures one path (the responder that echoes its probes
is :class:`~patronus.agent.responder.ProbeResponder`, re-exported here).

Timing: round-trip times use ``time.monotonic_ns()`` taken right before ``sendto`` and in
``datagram_received`` (not the injected clock, which only paces the schedule: a fake clock must not fake
an RTT). Replies carry the send timestamp back, and the prober also keeps it with the outstanding sequence
number, so a reply is accepted only once, only for a probe still outstanding and only with the timestamp
that was sent: duplicates, late replies and stray datagrams are ignored. The receive time is taken when
the event loop hands over the datagram, so a loop blocked for N ms adds up to N ms: keep blocking work off
the agent's loop (on loopback the measured RTT is about 0.1 ms).

Schedule: check *k* starts at ``start + k * interval`` (no drift from slow checks). Its
``probes_per_check`` probes go out :func:`probe_gap` apart, at most 20 ms and at most half an interval
for the whole burst, so one check samples a short stretch of time rather than a single queue state and
never floods the link. A probe not answered within ``timeout`` of being sent is lost (default
``min(interval, 1 s)``), even if its reply turns up later in the check. A check ends when every probe
is answered or timed out, so checks may overlap when ``burst + timeout > interval``; results are still
delivered in check order through ``on_check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from patronus.agent import probe_protocol as wire
from patronus.agent.probe_stats import DEFAULT_DEGRADED_BELOW, CheckResult, summarize
from patronus.agent.responder import ProbeResponder
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

__all__ = ["MAX_PROBE_GAP", "OnCheck", "PathProber", "ProbeResponder", "probe_gap"]

OnCheck = Callable[[str, CheckResult], Awaitable[None]]
"""Called with ``(path_id, result)`` once per check, in check order."""

MAX_PROBE_GAP = 0.02
"""Seconds between two probes of one check, at most."""
_SEQ_MOD = 1 << 32


def probe_gap(interval: float, probes_per_check: int) -> float:
    """Seconds between consecutive probes of a check: 20 ms, less if the burst would exceed interval/2."""
    if probes_per_check <= 1:
        return 0.0
    return min(MAX_PROBE_GAP, interval / 2 / (probes_per_check - 1))


@dataclass
class _Check:
    """One check in flight: the RTT of each probe by position (None until answered or lost)."""

    rtts_ms: list[float | None]
    pending: int
    done: asyncio.Event = field(default_factory=asyncio.Event)


class PathProber(asyncio.DatagramProtocol):
    """Probes one path every ``interval`` seconds and reports a :class:`CheckResult` per check."""

    def __init__(
        self,
        path_id: str,
        target_host: str,
        target_port: int,
        *,
        interval: float,
        probes_per_check: int,
        on_check: OnCheck,
        timeout: float | None = None,
        clock: Clock | None = None,
        source_host: str | None = None,
        degraded_below: float = DEFAULT_DEGRADED_BELOW,
        mark: int | None = None,
    ) -> None:
        """``mark`` sets SO_MARK on the probe socket so policy routing sends the probes down this path's
        underlay (several paths to one site share the destination address and differ only by tunnel)."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        if probes_per_check < 1:
            raise ValueError("probes_per_check must be at least 1")
        self.timeout = min(interval, 1.0) if timeout is None else timeout
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self.path_id = path_id
        self.target = (target_host, target_port)
        self.interval = interval
        self.probes_per_check = probes_per_check
        self.gap = probe_gap(interval, probes_per_check)
        self.source_host = source_host
        self.mark = mark
        self.degraded_below = degraded_below
        self.checks = 0
        self.ignored_replies = 0
        self._on_check = on_check
        self._clock: Clock = clock or SystemClock()
        self._hash = wire.path_hash(path_id)
        self._timeout_ns = int(self.timeout * 1e9)
        self._seq = 0
        # sequence -> (check, probe index, send timestamp)
        self._outstanding: dict[int, tuple[_Check, int, int]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._checks: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the socket and start the check schedule; the first check starts at once."""
        if self._scheduler is not None:
            raise RuntimeError("prober already started")
        loop = asyncio.get_running_loop()
        # The socket is made here, not by asyncio, so that the mark is set before connect() routes it.
        sock = socket.socket(socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            if self.source_host is not None:
                sock.bind((self.source_host, 0))
            sock.setblocking(False)
            sock.connect(self.target)
        except OSError:
            sock.close()
            raise
        await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self._scheduler = asyncio.create_task(self._schedule(), name=f"prober-{self.path_id}")

    async def stop(self) -> None:
        """Cancel the schedule and every check in flight (no further ``on_check``), close the socket."""
        tasks = [t for t in (self._scheduler, *self._checks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._scheduler = None
        self._checks.clear()
        self._outstanding.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def running(self) -> bool:
        """The schedule is alive (started, not stopped, and not ended by an unexpected error)."""
        return self._scheduler is not None and not self._scheduler.done()

    async def __aenter__(self) -> PathProber:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- protocol callbacks ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport, but is one.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        received_ns = time.monotonic_ns()
        try:
            probe = wire.decode(data)
        except ValueError:
            self.ignored_replies += 1
            return
        entry = self._outstanding.get(probe.sequence)
        if probe.kind is not wire.Kind.REPLY or probe.path_hash != self._hash or entry is None:
            self.ignored_replies += 1  # stray, duplicate or too late
            return
        check, index, sent_ns = entry
        if probe.sent_ns != sent_ns:
            self.ignored_replies += 1  # a sequence we reused after wrapping, or a forged reply
            return
        del self._outstanding[probe.sequence]
        rtt_ns = received_ns - sent_ns
        if rtt_ns > self._timeout_ns:
            self.ignored_replies += 1  # came back, but after its own timeout: it stays lost
        else:
            check.rtts_ms[index] = rtt_ns / 1e6
        check.pending -= 1
        if check.pending == 0:
            check.done.set()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the far end is down: the probes simply count as lost.
        log.debug("prober socket error", path=self.path_id, error=str(exc))

    # --- schedule ----------------------------------------------------------------------------------------

    async def _schedule(self) -> None:
        start = self._clock.monotonic()
        previous: asyncio.Task[None] | None = None
        tick = 0
        while True:
            task = asyncio.create_task(self._check(previous), name=f"check-{self.path_id}-{tick}")
            self._checks.add(task)
            task.add_done_callback(self._checks.discard)
            previous = task
            # Next tick on the fixed grid; if we fell behind (a stalled loop), skip the missed ticks.
            now = self._clock.monotonic()
            tick = max(tick + 1, int((now - start) / self.interval) + 1)
            await self._clock.sleep(start + tick * self.interval - now)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % _SEQ_MOD
        return seq

    async def _check(self, previous: asyncio.Task[None] | None) -> None:
        check = _Check(rtts_ms=[None] * self.probes_per_check, pending=self.probes_per_check)
        seqs: list[int] = []
        try:
            for index in range(self.probes_per_check):
                if index:
                    await self._clock.sleep(self.gap)
                seqs.append(self._send(check, index))
            await self._wait(check)
        finally:
            for seq in seqs:
                entry = self._outstanding.get(seq)
                if entry is not None and entry[0] is check:
                    del self._outstanding[seq]
        if previous is not None:
            # Report in check order; a previous check that failed is not ours to report.
            await asyncio.wait([previous])
        result = summarize(check.rtts_ms, degraded_below=self.degraded_below)
        self.checks += 1
        try:
            await self._on_check(self.path_id, result)
        except Exception:
            log.exception("on_check failed", path=self.path_id)

    def _send(self, check: _Check, index: int) -> int:
        seq = self._next_seq()
        sent_ns = time.monotonic_ns()
        self._outstanding[seq] = (check, index, sent_ns)
        if self._transport is not None:
            self._transport.sendto(wire.encode_request(self._hash, seq, sent_ns))
        return seq

    async def _wait(self, check: _Check) -> None:
        """Until every probe is answered or the last one has had ``timeout`` seconds to come back."""
        waiter = asyncio.create_task(check.done.wait())
        timer = asyncio.create_task(self._clock.sleep(self.timeout))
        try:
            await asyncio.wait([waiter, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            timer.cancel()
