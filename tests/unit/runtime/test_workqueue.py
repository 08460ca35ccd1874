"""The work queue keeps client-go's promises: dedup, one worker per key, delays, rate limits, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from patronus.runtime.clock import FakeClock
from patronus.runtime.ratelimit import ItemExponentialFailureRateLimiter
from patronus.runtime.workqueue import NoopQueueMetrics, QueueShutDown, WorkQueue


def make_queue(clock: FakeClock | None = None, **kwargs: object) -> WorkQueue[str]:
    return WorkQueue("test", clock=clock or FakeClock(), **kwargs)  # type: ignore[arg-type]


async def get(queue: WorkQueue[str]) -> str:
    return await asyncio.wait_for(queue.get(), 1)


async def test_fifo_and_dedup() -> None:
    queue = make_queue()
    for item in ("a", "b", "a", "c", "b"):
        queue.add(item)
    assert len(queue) == 3
    assert [await get(queue) for _ in range(3)] == ["a", "b", "c"]
    assert len(queue) == 0


async def test_readd_while_processing_is_queued_only_after_done() -> None:
    queue = make_queue()
    queue.add("a")
    assert await get(queue) == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # held back: a worker has it
    assert queue.processing() == {"a"}
    second = asyncio.create_task(queue.get())
    await FakeClock.settle()  # let every other task run: no wall-clock waiting
    assert not second.done()  # no other worker may get "a" now
    queue.done("a")
    assert await asyncio.wait_for(second, 1) == "a"  # queued once, despite two adds
    queue.done("a")
    assert len(queue) == 0
    assert queue.processing() == frozenset()


async def test_concurrent_workers_never_share_a_key() -> None:
    queue = make_queue()
    active: set[str] = set()
    overlaps: list[str] = []
    handled: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0)  # yield while holding the key, so other workers get their turn
            handled.append(key)
            if len(handled) < 40:
                queue.add(key)  # re-add during processing, as a watch event would
            active.discard(key)
            queue.done(key)

    for key in ("a", "b", "c"):
        queue.add(key)
    workers = [asyncio.create_task(worker()) for _ in range(5)]
    async with asyncio.timeout(5):
        while len(handled) < 40:
            await asyncio.sleep(0)
    queue.shut_down()
    await asyncio.wait_for(asyncio.gather(*workers), 5)
    assert overlaps == []
    assert set(handled) == {"a", "b", "c"}


async def test_get_waits_for_an_add() -> None:
    queue = make_queue()
    waiter = asyncio.create_task(queue.get())
    await FakeClock.settle()  # let every other task run: no wall-clock waiting
    assert not waiter.done()
    queue.add("x")
    assert await asyncio.wait_for(waiter, 1) == "x"


async def test_cancelled_getter_does_not_strand_a_key() -> None:
    queue = make_queue()
    cancelled = asyncio.create_task(queue.get())
    other = asyncio.create_task(queue.get())
    await FakeClock.settle()  # let every other task run: no wall-clock waiting
    queue.add("x")  # wakes the first getter ...
    cancelled.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(other, 1) == "x"


async def test_shutdown_drains_then_raises() -> None:
    queue = make_queue()
    queue.add("a")
    queue.add("b")
    queue.shut_down()
    assert queue.shutting_down
    queue.add("c")  # ignored after shutdown
    assert await get(queue) == "a"
    assert await get(queue) == "b"
    with pytest.raises(QueueShutDown):
        await get(queue)


async def test_shutdown_wakes_idle_getters() -> None:
    queue = make_queue()
    getters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await FakeClock.settle()  # let every other task run: no wall-clock waiting
    queue.shut_down()
    results = await asyncio.wait_for(asyncio.gather(*getters, return_exceptions=True), 1)
    assert all(isinstance(result, QueueShutDown) for result in results)


async def test_drain_waits_for_processing() -> None:
    queue = make_queue()
    queue.add("a")
    key = await get(queue)
    queue.shut_down()
    drained = asyncio.create_task(queue.drain())
    await FakeClock.settle()  # let every other task run: no wall-clock waiting
    assert not drained.done()
    queue.done(key)
    await asyncio.wait_for(drained, 1)


async def test_add_after_waits_on_the_clock_in_deadline_order() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    queue.add_after("late", 10)
    queue.add_after("early", 2)
    queue.add_after("now", 0)
    assert await get(queue) == "now"
    assert queue.waiting() == 2
    await clock.settle()
    clock.advance(1.9)
    await clock.settle()
    assert len(queue) == 0
    clock.advance(0.1)
    assert await get(queue) == "early"
    clock.advance(7.9)
    await clock.settle()
    assert len(queue) == 0
    clock.advance(0.1)
    assert await get(queue) == "late"
    assert queue.waiting() == 0


async def test_add_after_keeps_the_earliest_deadline_per_key() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    queue.add_after("a", 10)
    await clock.settle()
    queue.add_after("a", 1)  # earlier: replaces, and the sleeping timer is shortened
    queue.add_after("a", 5)  # later: ignored
    assert queue.waiting() == 1
    clock.advance(1)
    assert await get(queue) == "a"
    queue.done("a")
    clock.advance(20)
    await clock.settle()
    assert len(queue) == 0  # the superseded deadlines did not add it again


async def test_add_after_then_add_is_deduplicated() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    queue.add("a")
    queue.add_after("a", 1)
    clock.advance(1)
    await clock.settle()
    assert len(queue) == 1


async def test_add_rate_limited_backs_off_and_forget_resets() -> None:
    clock = FakeClock()
    queue = make_queue(clock, rate_limiter=ItemExponentialFailureRateLimiter(1.0, 8.0))
    expected = [1.0, 2.0, 4.0, 8.0, 8.0]
    for delay in expected:
        queue.add_rate_limited("a")
        await clock.settle()
        clock.advance(delay - 0.01)
        await clock.settle()
        assert len(queue) == 0, f"added before {delay}s"
        clock.advance(0.01)
        assert await get(queue) == "a"
        queue.done("a")
    assert queue.num_requeues("a") == 5
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    queue.add_rate_limited("a")
    clock.advance(1.0)
    assert await get(queue) == "a"


async def test_default_rate_limiter_starts_at_5ms() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    queue.add_rate_limited("a")
    await clock.settle()
    clock.advance(0.004)
    await clock.settle()
    assert len(queue) == 0
    clock.advance(0.001)
    assert await get(queue) == "a"


async def test_shutdown_drops_delayed_keys() -> None:
    clock = FakeClock()
    queue = make_queue(clock)
    queue.add_after("a", 1)
    queue.shut_down()
    clock.advance(5)
    await clock.settle()
    assert len(queue) == 0
    assert queue.waiting() == 0


class RecordingMetrics(NoopQueueMetrics):
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def added(self, name: str) -> None:
        self.calls.append(("added", name))

    def depth(self, name: str, n: int) -> None:
        self.calls.append(("depth", n))

    def retried(self, name: str) -> None:
        self.calls.append(("retried", name))

    def latency(self, name: str, seconds_waited: float) -> None:
        self.calls.append(("latency", seconds_waited))

    def work_duration(self, name: str, seconds: float) -> None:
        self.calls.append(("work", seconds))

    def unfinished_work(self, name: str, seconds: float) -> None:
        self.calls.append(("unfinished", seconds))


async def test_metrics_follow_a_key_through_the_queue() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue = make_queue(clock, metrics=metrics)
    queue.add("a")
    queue.add("a")  # deduplicated: not counted
    clock.advance(3)
    key = await get(queue)
    clock.advance(2)
    assert queue.report_unfinished_work() == 2
    queue.done(key)
    queue.add_after("b", 1)
    assert metrics.calls == [
        ("added", "test"),
        ("depth", 1),
        ("depth", 0),
        ("latency", 3),
        ("unfinished", 2),
        ("work", 2),
        ("retried", "test"),
    ]
    queue.shut_down()


async def test_batched_adds_give_one_key_after_the_window_and_are_not_retries() -> None:
    clock = FakeClock()
    metrics = RecordingMetrics()
    queue = make_queue(clock, metrics=metrics)
    for _ in range(100):  # a burst of changes to what one aggregate reads
        queue.add_batched("mesh", 1.0)
        clock.advance(0.005)
    await clock.settle()
    assert len(queue) == 0
    clock.advance(0.4)
    await clock.settle()
    assert len(queue) == 0, "the window starts at the first change"
    clock.advance(0.2)
    assert await get(queue) == "mesh"
    assert len(queue) == 0
    assert ("retried", "test") not in metrics.calls
