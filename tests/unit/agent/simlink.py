"""A simulated path for the probing tests: loss, delay and cuts, and two ways to drive probing over it.

- :func:`simulate` runs a pure :class:`~patronus.agent.path_monitor.PathMonitor` event by event (its
  deadlines and the replies in flight), so ten minutes of probing take a fraction of a second.
- :class:`FakeLink` is an in-memory datagram transport for the real
  :class:`~patronus.agent.prober.PathProber` on a :class:`~patronus.runtime.clock.FakeClock`: it answers
  each request as the far end's responder would, after the simulated round trip, on the fake clock.

A probe's fate is decided when it is sent, like the lab's impairments: loss on the request (what the
site sends), the delay on the request, and a cut drops the request if it is sent during the cut and the
reply if it leaves the far end during the cut.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from patronus.agent import probe_protocol as wire
from patronus.agent.path_monitor import Output, PathMonitor, Verdict
from patronus.agent.probe_stats import CheckResult
from patronus.agent.prober import PathProber
from patronus.runtime.clock import FakeClock

Rtt = Callable[[random.Random, float], float]
"""The round trip of a probe sent at the given time."""


def uniform_rtt(base: float, delay: float = 0.0, jitter: float = 0.0) -> Rtt:
    """Round trips of ``base`` seconds plus a one-way ``delay`` ± ``jitter`` (uniform, as the lab's relay)."""

    def rtt(rng: random.Random, sent_at: float) -> float:
        return base + max(0.0, delay + rng.uniform(-jitter, jitter))

    return rtt


@dataclass
class Link:
    """What the path does: random loss on requests, a round trip per probe, cuts (start, end), and
    stalls (start, end): a busy host holding every reply due in a stall until its end."""

    rtt: Rtt = field(default_factory=lambda: uniform_rtt(0.001))
    loss: float = 0.0
    cuts: list[tuple[float, float]] = field(default_factory=list)
    stalls: list[tuple[float, float]] = field(default_factory=list)

    def cut_at(self, when: float) -> bool:
        return any(start <= when < end for start, end in self.cuts)

    def arrival(self, sent_at: float, rng: random.Random) -> float | None:
        """When the reply to a probe sent at ``sent_at`` arrives back, or None when it never does."""
        lost = rng.random() < self.loss
        rtt = self.rtt(rng, sent_at)
        if lost or self.cut_at(sent_at) or self.cut_at(sent_at + rtt / 2):
            return None
        arrival = sent_at + rtt
        for start, end in self.stalls:
            if start <= arrival < end:
                return end + rtt / 2
        return arrival


@dataclass
class Run:
    """What a simulation saw: results and verdicts with the time they were produced, probes sent."""

    results: list[tuple[float, CheckResult]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    regular_sent: int = 0
    confirmations_sent: int = 0

    def checks(self) -> list[tuple[float, CheckResult]]:
        return [(at, r) for at, r in self.results if not r.early]

    def downs(self) -> list[float]:
        return [v.at for v in self.verdicts if v.state == "down"]

    def take(self, at: float, out: Output) -> None:
        self.results.extend((at, result) for result in out.results)
        self.verdicts.extend(out.verdicts)
        for send in out.sends:
            if send.confirmation:
                self.confirmations_sent += 1
            else:
                self.regular_sent += 1


def simulate(monitor: PathMonitor, link: Link, until: float, rng: random.Random) -> Run:
    """Drive ``monitor`` over ``link`` from its start until ``until`` (seconds on its clock)."""
    run = Run()
    replies: list[tuple[float, int, int]] = []  # (arrival, seq, stamp)
    while True:
        deadline = monitor.next_deadline()
        # A reply and a deadline at the same time: the reply first, as asyncio runs I/O before timers.
        if replies and replies[0][0] <= deadline:
            now, seq, stamp = heapq.heappop(replies)
            if now > until:
                break
            out = monitor.reply(seq, stamp, now)
            if out is None:
                continue
        else:
            now = deadline
            if now > until:
                break
            out = monitor.advance(now)
        run.take(now, out)
        for send in out.sends:
            arrival = link.arrival(now, rng)
            if arrival is not None:
                heapq.heappush(replies, (arrival, send.seq, send.stamp))
    return run


class FakeLink(asyncio.DatagramTransport):
    """The far end of a prober's socket on a fake clock: requests in, replies out after the round trip."""

    def __init__(self, clock: FakeClock, link: Link, rng: random.Random) -> None:
        super().__init__()
        self.clock = clock
        self.link = link
        self.rng = rng
        self.prober: PathProber | None = None
        self.requests = 0
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.requests += 1
        now = self.clock.monotonic()
        arrival = self.link.arrival(now, self.rng)
        if arrival is None:
            return
        reply = wire.encode_reply(wire.decode(bytes(data)))
        task = asyncio.get_running_loop().create_task(self._deliver(arrival - now, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, after: float, reply: bytes) -> None:
        await self.clock.sleep(after)
        if not self._closed and self.prober is not None:
            self.prober.datagram_received(reply, ("far-end", 51900))

    def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()

    def is_closing(self) -> bool:
        return self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def run_for(clock: FakeClock, seconds: float, step: float = 0.001) -> None:
    """Move the fake clock ``seconds`` forward in ``step``s, letting woken tasks run after each."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await clock.settle(4)
