"""Active path probing over UDP: a prober that measures one path (the responder that echoes its probes
is :class:`~patronus.agent.responder.ProbeResponder`, re-exported here).

The prober is the I/O around :class:`~patronus.agent.path_monitor.PathMonitor`, which decides everything
(when to send, when a path is down, what each check reports; read it for the design): this class opens
the socket, sleeps until the monitor's next deadline on the injected clock, puts its probes on the wire,
hands it the replies, and delivers its results through ``on_check``, one at a time and in order, from a
task of their own, so a slow ``on_check`` never delays a probe or a deadline. A down verdict is
delivered the moment it is reached, as an ``early`` result through the same callback.

Timing: every time (send, receive, deadlines) is read from the injected clock, so a test on a
:class:`~patronus.runtime.clock.FakeClock` with an in-memory transport drives the whole prober
deterministically; in production that is ``time.monotonic()``. The receive time is taken when the event
loop hands over the datagram, so a loop blocked for N ms adds up to N ms to a round trip: keep blocking
work off the agent's loop (on loopback the measured RTT is about 0.1 ms). A reply that the loop and a
deadline find ready together is taken first (asyncio runs I/O callbacks before timers), so a stalled loop
makes replies late, never missing.

Replies carry the send stamp back, and the monitor keeps it with the outstanding sequence number, so a
reply is accepted only once, only for a probe still outstanding and only with the stamp that was sent:
duplicates, replies after the loss deadline and stray datagrams are ignored (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from patronus.agent import probe_protocol as wire
from patronus.agent.detection import Detection
from patronus.agent.path_monitor import START_GRACE_SECONDS, Output, PathMonitor
from patronus.agent.probe_stats import DEFAULT_DEGRADED_BELOW, LOSS_WINDOW_PROBES, CheckResult
from patronus.agent.responder import ProbeResponder
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

__all__ = ["OnCheck", "PathProber", "ProbeResponder"]

OnCheck = Callable[[str, CheckResult], Awaitable[None]]
"""Called with ``(path_id, result)`` once per check and once per early verdict, in order, never
concurrently for one path."""


class PathProber(asyncio.DatagramProtocol):
    """Probes one path (``probes_per_check`` probes per ``interval``) and reports what it finds."""

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
        loss_window: int = LOSS_WINDOW_PROBES,
        mark: int | None = None,
        detection: Detection | None = None,
        grace: float = START_GRACE_SECONDS,
    ) -> None:
        """``mark`` sets SO_MARK on the probe socket so policy routing sends the probes down this path's
        underlay (several paths to one site share the destination address and differ only by tunnel).
        ``timeout`` is the least time a probe has to come back before it is lost (default
        ``min(interval, 1 s)``); ``detection`` and ``grace``: see :mod:`patronus.agent.path_monitor`."""
        self._clock: Clock = clock or SystemClock()
        # Validates the numbers now, not at start(); start() makes a fresh one on the clock's time.
        self._settings: dict[str, Any] = {
            "interval": interval,
            "probes_per_check": probes_per_check,
            "timeout": timeout,
            "detection": detection,
            "window": loss_window,
            "grace": grace,
            "degraded_below": degraded_below,
        }
        self.monitor = PathMonitor(start=self._clock.monotonic(), **self._settings)
        self.path_id = path_id
        self.target = (target_host, target_port)
        self.interval = interval
        self.probes_per_check = probes_per_check
        self.source_host = source_host
        self.mark = mark
        self.ignored_replies = 0
        """Datagrams that were not a reply of ours: not probes, another path's, stray or too late."""
        self._on_check = on_check
        self._hash = wire.path_hash(path_id)
        self._results: asyncio.Queue[CheckResult] = asyncio.Queue()
        self._transport: asyncio.DatagramTransport | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._deliverer: asyncio.Task[None] | None = None

    @property
    def timeout(self) -> float:
        return self.monitor.timeout

    @property
    def checks(self) -> int:
        """Checks completed (early verdicts not included)."""
        return self.monitor.checks

    @property
    def running(self) -> bool:
        """The schedule is alive (started, not stopped, and not ended by an unexpected error)."""
        return self._scheduler is not None and not self._scheduler.done()

    # --- lifecycle -------------------------------------------------------------------------------------

    async def start(self, transport: asyncio.DatagramTransport | None = None) -> None:
        """Open the socket (or use ``transport``, already connected to the target: tests) and start
        probing; the first probe goes out at once."""
        if self._scheduler is not None:
            raise RuntimeError("prober already started")
        if transport is not None:
            self.connection_made(transport)
        else:
            await self._open()
        self.monitor = PathMonitor(start=self._clock.monotonic(), **self._settings)
        self._deliverer = asyncio.create_task(self._deliver(), name=f"prober-{self.path_id}-results")
        self._scheduler = asyncio.create_task(self._schedule(), name=f"prober-{self.path_id}")

    async def _open(self) -> None:
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

    async def stop(self) -> None:
        """Stop probing and delivering (no further ``on_check``), close the socket."""
        tasks = [t for t in (self._scheduler, self._deliverer) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._scheduler = self._deliverer = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None

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
        now = self._clock.monotonic()
        try:
            probe = wire.decode(data)
        except ValueError:
            self.ignored_replies += 1
            return
        if probe.kind is not wire.Kind.REPLY or probe.path_hash != self._hash or self._scheduler is None:
            self.ignored_replies += 1
            return
        out = self.monitor.reply(probe.sequence, probe.sent_ns, now)
        if out is None:
            self.ignored_replies += 1  # a duplicate, too late, or a stamp we never sent
            return
        self._apply(out)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable while the far end is down: the probes simply go unanswered.
        log.debug("prober socket error", path=self.path_id, error=str(exc))

    # --- schedule ----------------------------------------------------------------------------------------

    async def _schedule(self) -> None:
        while True:
            self._apply(self.monitor.advance(self._clock.monotonic()))
            await self._clock.sleep(self.monitor.next_deadline() - self._clock.monotonic())

    def _apply(self, out: Output) -> None:
        for send in out.sends:
            if self._transport is not None:
                self._transport.sendto(wire.encode_request(self._hash, send.seq, send.stamp))
        for verdict in out.verdicts:
            log.info(
                "path down" if verdict.state == "down" else "path answers again",
                path=self.path_id,
                silence_ms=round(verdict.silence * 1000, 1),
                rto_ms=round(verdict.rto * 1000, 1),
                unanswered=verdict.unanswered,
            )
        for result in out.results:
            self._results.put_nowait(result)

    async def _deliver(self) -> None:
        while True:
            result = await self._results.get()
            try:
                await self._on_check(self.path_id, result)
            except Exception:
                log.exception("on_check failed", path=self.path_id)
