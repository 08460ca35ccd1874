"""Supervised tasks: a task that dies is logged and restarted with backoff; stop ends them all."""

from __future__ import annotations

import asyncio

import pytest

from patronus.agent.tasks import TaskSupervisor, sleep_or
from patronus.runtime.clock import FakeClock


class Flaky:
    """Fails its first ``failures`` runs, then runs until cancelled."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs = 0

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise ConnectionError("API server unreachable")
        await asyncio.Event().wait()


async def test_a_crashed_task_is_restarted_with_growing_delays(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    restarted: list[str] = []
    supervisor = TaskSupervisor(clock, backoff_initial=1.0, on_restart=restarted.append)
    flaky = Flaky(failures=3)
    supervisor.start("heartbeat", flaky)
    await clock.settle()
    assert (flaky.runs, supervisor.failing()) == (1, ["heartbeat"])
    clock.advance(1.0)
    await clock.settle()
    assert flaky.runs == 2
    clock.advance(1.0)  # the second delay is 2 s
    await clock.settle()
    assert flaky.runs == 2
    clock.advance(1.0)
    await clock.settle()
    assert flaky.runs == 3
    clock.advance(4.0)
    await clock.settle()
    assert flaky.runs == 4
    assert supervisor.failing() == []
    assert supervisor.restarts == {"heartbeat": 3}
    assert restarted == ["heartbeat"] * 3
    assert "task crashed; restarting it" in capsys.readouterr().out
    await supervisor.stop()


async def test_a_task_that_returns_is_restarted_too() -> None:
    clock = FakeClock()
    supervisor = TaskSupervisor(clock, backoff_initial=0.5)
    runs = 0

    async def returns() -> None:
        nonlocal runs
        runs += 1

    supervisor.start("quits", returns)
    await clock.settle()
    clock.advance(0.5)
    await clock.settle()
    assert runs == 2
    await supervisor.stop()


async def test_stop_cancels_every_task_and_names_must_be_unique() -> None:
    supervisor = TaskSupervisor(FakeClock())
    supervisor.start("a", Flaky(0))
    supervisor.start("b", Flaky(0))
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.start("a", Flaky(0))
    await asyncio.sleep(0)
    tasks = {t.get_name() for t in asyncio.all_tasks()}
    assert {"a", "b"} <= tasks
    await supervisor.stop()
    assert {"a", "b"}.isdisjoint(t.get_name() for t in asyncio.all_tasks())


async def test_sleep_or_returns_on_the_event_or_the_clock() -> None:
    clock = FakeClock()
    event = asyncio.Event()
    waiter = asyncio.create_task(sleep_or(clock, 10.0, event))
    await clock.settle()
    assert not waiter.done()
    event.set()
    await clock.settle()
    assert waiter.done()
    event.clear()
    waiter = asyncio.create_task(sleep_or(clock, 10.0, event))
    await clock.settle()
    clock.advance(10.0)
    await clock.settle()
    assert waiter.done()
