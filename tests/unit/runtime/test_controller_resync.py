"""A resync looks again at every object whose last reconcile is a period old, and not at one reconciled
just now (FakeClock drives the resync; informer over FakeKube)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from patronus.kube.fake import FakeKube
from patronus.kube.resource import CONFIG_MAP, ObjectKey
from patronus.runtime.clock import FakeClock
from patronus.runtime.controller import RESYNC_CHECKS_PER_PERIOD, RESYNC_JITTER, Controller, Result
from patronus.runtime.informer import Informer
from patronus.runtime.sources import KindCache
from tests.support.waiting import eventually

PERIOD = 40.0
A, B = ObjectKey("ns", "a"), ObjectKey("ns", "b")
# The longest a resync check can sleep: a quarter period and its jitter.
CHECK = PERIOD / RESYNC_CHECKS_PER_PERIOD * (1 + RESYNC_JITTER)


class Counting:
    def __init__(self) -> None:
        self.calls: Counter[ObjectKey] = Counter()

    async def reconcile(self, key: ObjectKey) -> Result | None:
        self.calls[key] += 1
        return None


def config_map(name: str, **data: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ns"},
        "data": data,
    }


@pytest.fixture
async def running() -> AsyncIterator[tuple[FakeKube, FakeClock, Controller, Counting]]:
    fake, clock, reconciler = FakeKube(), FakeClock(), Counting()
    informer = Informer(fake, CONFIG_MAP, "ns")
    informer_task = asyncio.create_task(informer.run())
    assert await informer.wait_for_sync(5)
    controller = Controller(
        "cm", reconciler, KindCache(CONFIG_MAP, [informer]), resync_period=PERIOD, clock=clock, workers=1
    )
    task = asyncio.create_task(controller.run())
    yield fake, clock, controller, reconciler
    await controller.shutdown(5)
    await asyncio.wait_for(task, 5)
    informer.stop()
    await asyncio.wait_for(informer_task, 5)


async def _pass(clock: FakeClock, seconds: float) -> None:
    """Let ``seconds`` go by, a resync check's length at a time, waking every check on the way."""
    while seconds > 0:
        step = min(seconds, CHECK)
        clock.advance(step)
        seconds -= step
        await clock.settle(50)


async def test_only_objects_not_reconciled_within_a_period_are_resynced(
    running: tuple[FakeKube, FakeClock, Controller, Counting],
) -> None:
    fake, clock, _controller, reconciler = running
    await fake.create(config_map("a"))
    await fake.create(config_map("b"))
    await eventually(lambda: reconciler.calls == {A: 1, B: 1}, timeout=5, what="both reconciled once")
    await _pass(clock, PERIOD / 2)
    await fake.apply(config_map("b", x="1"), field_manager="t")  # b is looked at again, half-way
    await eventually(lambda: reconciler.calls[B] == 2, timeout=5, what="b reconciled after its change")
    await _pass(clock, PERIOD / 2 + CHECK)
    assert reconciler.calls == {A: 2, B: 2}, "a is a period old and resynced; b was reconciled just now"
    await _pass(clock, PERIOD / 2)
    assert reconciler.calls == {A: 2, B: 3}, "b's turn came a period after its last reconcile"


async def test_a_resync_never_waits_much_more_than_a_period(
    running: tuple[FakeKube, FakeClock, Controller, Counting],
) -> None:
    fake, clock, _controller, reconciler = running
    await fake.create(config_map("a"))
    await eventually(lambda: reconciler.calls[A] == 1, timeout=5, what="a reconciled once")
    for round_ in range(2, 5):
        await _pass(clock, PERIOD + CHECK)
        assert reconciler.calls[A] == round_
