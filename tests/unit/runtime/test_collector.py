"""The collector policy freezes old objects on its schedule, collects everything on its own, and leaves
the collector as it found it."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from patronus.runtime.clock import FakeClock
from patronus.runtime.collector import CollectorPolicy, collect_everything, run_collector_policy


class RecordingCollector:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def freeze(self) -> None:
        self.calls.append("freeze")

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")

    def collect(self) -> int:
        self.calls.append("collect")
        return 0


async def test_freezes_every_period_and_collects_everything_every_full_period() -> None:
    clock, collector = FakeClock(), RecordingCollector()
    task = asyncio.create_task(run_collector_policy(CollectorPolicy(1.0, 3.0), clock, collector))
    await clock.settle()
    assert collector.calls == []
    for _ in range(2):
        clock.advance(1.0)
        await clock.settle()
    assert collector.calls == ["freeze", "freeze"]
    clock.advance(1.0)
    await clock.settle()
    assert collector.calls[2:] == ["unfreeze", "collect", "freeze"]
    clock.advance(1.0)
    await clock.settle()
    assert collector.calls[5:] == ["freeze"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert collector.calls[-1] == "unfreeze", "a cancelled policy leaves nothing frozen"


async def test_a_zero_freeze_period_leaves_the_collector_alone() -> None:
    clock, collector = FakeClock(), RecordingCollector()
    await run_collector_policy(CollectorPolicy(freeze_period=0), clock, collector)
    clock.advance(3600)
    assert collector.calls == []


@pytest.mark.parametrize(("freeze", "full"), [(-1.0, 600.0), (1.0, 0.0), (10.0, 5.0)])
def test_periods_that_make_no_sense_are_refused(freeze: float, full: float) -> None:
    with pytest.raises(ValueError, match="period"):
        CollectorPolicy(freeze, full)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_a_frozen_cycle_is_reclaimed_by_the_full_collection() -> None:
    """The real collector: what the freeze hides from collections, the full collection still frees."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    alive = weakref.ref(first)
    gc.freeze()
    try:
        del first, second
        gc.collect()
        assert alive() is not None, "a frozen cycle is not collected"
        assert collect_everything() >= 2
        assert alive() is None
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
