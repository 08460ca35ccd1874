"""Active path probing over UDP: a prober that measures one path (the responder that echoes its probes
is :class:`~patronus.agent.responder.ProbeResponder`, re-exported here).

The prober is the I/O around :class:`~patronus.agent.path_monitor.PathMonitor`, which decides everything
(when to send, when a path is down, what each check reports; read it for the design): this class opens
the socket, sleeps until the monitor's next deadline on the injected clock, puts its probes on the wire,
hands it the replies, and delivers its results through ``on_check``, one at a time and in order, from a
task of their own, so a slow ``on_check`` never delays a probe or a deadline. A down verdict is
delivered the moment it is reached, as an ``early`` result through the same callback.

Timing: every time (send, receive, deadlines) is on the injected clock, so a test on a
:class:`~patronus.runtime.clock.FakeClock` with an in-memory transport drives the whole prober
deterministically; in production that is ``time.monotonic()``. On the real socket a reply's time is the
kernel's receive stamp (SO_TIMESTAMPNS), not the moment the event loop got round to it, so a busy agent
loop lengthens no round trip (on loopback the measured RTT is about 0.1 ms). A reply and a deadline that
the loop finds ready together are taken in that order (asyncio runs I/O callbacks before timers), so a
stalled loop cannot turn an answered probe into a missed one.

Replies carry the send stamp back, and the monitor keeps it with the outstanding sequence number, so a
reply is accepted only once, only for a probe still outstanding and only with the stamp that was sent:
duplicates, replies after the loss deadline and stray datagrams are ignored (and counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from patronus.agent import probe_protocol as wire
from patronus.agent.detection import Detection, StallGuard
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

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; older Pythons do not name it
_TIMESPEC = struct.Struct("@qq")
_READ_BATCH = 64


class _Sender(Protocol):
    def sendto(self, data: bytes, /) -> None: ...

    def close(self) -> None: ...


class _StampedSocket:
    """The prober's connected UDP socket, read with ``recvmsg`` so each reply carries the kernel's
    receive time, converted to the clock's monotonic seconds."""

    def __init__(self, sock: socket.socket, clock: Clock, on_reply: Callable[[bytes, float], None]) -> None:
        self._sock = sock
        self._clock = clock
        self._on_reply = on_reply
        self._space = socket.CMSG_SPACE(_TIMESPEC.size)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    def sendto(self, data: bytes, /) -> None:
        try:
            self._sock.send(data)
        except OSError as error:  # an earlier ICMP error, or no route while the tunnel is set up
            log.debug("probe not sent", error=str(error))

    def close(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _readable(self) -> None:
        for _ in range(_READ_BATCH):
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(wire.PROBE_SIZE * 2, self._space)
            except BlockingIOError:
                return
            except OSError as error:  # ICMP port unreachable while the far end is down
                log.debug("prober socket error", error=str(error))
                continue
            self._on_reply(data, self._arrival(ancillary))

    def _arrival(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        now = self._clock.monotonic()
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                seconds, nanos = cast(tuple[int, int], _TIMESPEC.unpack_from(value))
                age = time.time() - (seconds + nanos / 1e9)
                return now - min(max(age, 0.0), 10.0)  # a wall clock step must not invent an RTT
        return now


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
        guard: StallGuard | None = None,
    ) -> None:
        """``mark`` sets SO_MARK on the probe socket so policy routing sends the probes down this path's
        underlay (several paths to one site share the destination address and differ only by tunnel).
        ``timeout`` is the least time a probe has to come back before it is lost (default
        ``min(interval, 1 s)``); ``detection`` and ``grace``: see :mod:`patronus.agent.path_monitor`;
        ``guard``: the agent's :class:`~patronus.agent.detection.StallGuard`, shared by all its probers
        (a stall is the host's, and what one path learnt must outlive a prober restarted for a new
        interval); without one, this prober keeps its own."""
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
            "guard": guard or StallGuard(detection or Detection()),
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
        self._transport: _Sender | None = None
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
        # The socket is made here, not by asyncio, so that the mark is set before connect() routes it.
        sock = socket.socket(socket.AF_INET6 if ":" in self.target[0] else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            if self.source_host is not None:
                sock.bind((self.source_host, 0))
            sock.setblocking(False)
            sock.connect(self.target)
            self._transport = _StampedSocket(sock, self._clock, self._reply)
        except OSError:
            sock.close()
            raise

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
        self._reply(data, self._clock.monotonic())

    def _reply(self, data: bytes, now: float) -> None:
        """A datagram that arrived at ``now`` (the clock's seconds)."""
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
            event = {"down": "path down", "answering": "path answers again", "stalled": "path stall learnt"}
            log.info(
                event[verdict.state],
                path=self.path_id,
                silence_ms=round(verdict.silence * 1000, 1),
                rto_ms=round(verdict.rto * 1000, 1),
                guard_ms=round(verdict.guard * 1000, 1),
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
