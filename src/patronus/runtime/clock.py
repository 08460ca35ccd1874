"""Time as a dependency: ``SystemClock`` in production, ``FakeClock`` to drive timers from tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the runtime needs to know about time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences are meaningful."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` on this clock."""
        ...

    def now(self) -> datetime:
        """The wall-clock time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))

    def now(self) -> datetime:
        return datetime.now(UTC)


_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when a test calls :meth:`advance`.

    Sleepers wake in deadline order (ties in the order they went to sleep), so tests are deterministic.
    A woken sleeper resumes the next time the event loop runs it: ``await asyncio.sleep(0)`` (or
    :meth:`settle`) after ``advance`` to let it.
    """

    def __init__(self, start: float = 1000.0, wall: datetime = _EPOCH) -> None:
        self._now = start
        self._start = start
        self._wall = wall
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=self._now - self._start)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def sleepers(self) -> int:
        """How many sleeps are pending (cancelled ones excluded)."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    @staticmethod
    async def settle(rounds: int = 10) -> None:
        """Let woken tasks run: a few passes of the event loop."""
        for _ in range(rounds):
            await asyncio.sleep(0)
