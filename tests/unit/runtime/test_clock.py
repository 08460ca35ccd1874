"""FakeClock wakes sleepers deterministically; SystemClock is real time."""

from __future__ import annotations

import asyncio
from datetime import UTC, timedelta

import pytest

from patronus.runtime.clock import FakeClock, SystemClock


async def test_fake_clock_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("late", 3), ("early", 1), ("mid", 2))]
    await clock.settle()
    assert clock.sleepers == 3
    clock.advance(0.5)
    await clock.settle()
    assert woke == []
    clock.advance(1.5)  # t=2: early and mid are due
    await clock.settle()
    assert woke == ["early", "mid"]
    clock.advance(10)
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert woke == ["early", "mid", "late"]
    assert clock.sleepers == 0


async def test_fake_clock_time_moves_only_on_advance() -> None:
    clock = FakeClock(start=5.0)
    wall = clock.now()
    assert wall.tzinfo is UTC
    assert clock.monotonic() == 5.0
    clock.advance(2.5)
    assert clock.monotonic() == 7.5
    assert clock.now() - wall == timedelta(seconds=2.5)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_zero_sleep_returns_without_advance() -> None:
    clock = FakeClock()
    await asyncio.wait_for(clock.sleep(0), 1)
    assert clock.sleepers == 0


async def test_cancelled_sleeper_is_not_counted() -> None:
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(5))
    await clock.settle()
    task.cancel()
    await clock.settle()
    assert clock.sleepers == 0
    clock.advance(10)  # must not fail on the cancelled future


async def test_system_clock() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() - before >= 0.009
    assert clock.now().tzinfo is UTC
