"""The switcher: a policy has moved only when the kernel took the switch; refused switches are retried."""

from __future__ import annotations

import asyncio

from patronus.agent.applier import DataPlane
from patronus.agent.desired import plan_dataplane
from patronus.agent.probe_stats import CheckResult
from patronus.agent.steering import Steering
from patronus.agent.switcher import RETRY_INITIAL, PolicySwitcher, Switch
from patronus.runtime.clock import FakeClock
from tests.unit.agent.fakes import FIBER, LTE, PRIVATE_KEY, FakeKernel, config

GOOD = CheckResult(5, 5, 20.0, 1.0, 0.0, 95.0, "up")
DOWN = CheckResult(5, 0, None, None, 100.0, 0.0, "down")


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.kernel = FakeKernel()
        self.dataplane = DataPlane(runner=self.kernel)
        self.steering = Steering()
        self.steering.configure(config())
        self.switched: list[Switch] = []
        self.failed: list[Switch] = []
        self.switcher = PolicySwitcher(
            self.dataplane,
            self.steering,
            self.clock,
            on_switched=self.switched.append,
            on_failed=self.failed.append,
        )

    async def start(self) -> None:
        plan = plan_dataplane(config())
        await self.dataplane.apply(plan, PRIVATE_KEY, self.steering.wanted_paths())

    async def check(self, path: str, result: CheckResult) -> None:
        steps = self.steering.observe(path, result, self.clock.monotonic())
        self.switcher.note(steps.decisions)
        await self.switcher.converge()


async def test_nothing_is_switched_before_the_first_apply() -> None:
    world = World()
    await world.check(LTE, GOOD)
    await world.check(FIBER, DOWN)
    assert world.kernel.switches() == []
    assert world.switched == []


async def test_a_failover_is_recorded_once_the_kernel_took_it() -> None:
    world = World()
    await world.start()
    await world.check(LTE, GOOD)
    await world.check(FIBER, DOWN)
    assert world.dataplane.kernel_paths == {"voice": LTE}
    assert [(s.policy, s.previous, s.path, s.reason, s.is_failback) for s in world.switched] == [
        ("voice", FIBER, LTE, "primary-down", False)
    ]
    record = world.switcher.record("voice")
    assert record.failover_count == 1
    assert record.last_failover == world.clock.now()
    assert world.switcher.error is None


async def test_a_refused_switch_is_not_reported_as_done_and_is_retried_with_backoff() -> None:
    world = World()
    await world.start()
    world.kernel.fail_switch = True
    await world.check(LTE, GOOD)
    await world.check(FIBER, DOWN)
    assert world.dataplane.kernel_paths == {"voice": FIBER}  # the truth: still on fiber
    assert world.switcher.record("voice").failover_count == 0
    assert world.switched == []
    assert [f.error for f in world.failed] == [world.switcher.errors["voice"]]
    assert "No buffer space" in (world.switcher.error or "")

    await world.check(FIBER, DOWN)  # too soon: backing off
    assert len(world.kernel.switches()) == 1
    world.clock.advance(RETRY_INITIAL)
    await world.check(FIBER, DOWN)
    assert len(world.kernel.switches()) == 2
    world.clock.advance(RETRY_INITIAL)  # the delay doubled: not yet
    await world.switcher.converge()
    assert len(world.kernel.switches()) == 2

    world.kernel.fail_switch = False
    world.clock.advance(RETRY_INITIAL)
    await world.switcher.converge()
    assert world.dataplane.kernel_paths == {"voice": LTE}
    assert world.switcher.record("voice").failover_count == 1
    assert world.switcher.error is None


async def test_a_failing_switch_that_is_no_longer_wanted_is_dropped() -> None:
    world = World()
    await world.start()
    world.kernel.fail_switch = True
    await world.check(LTE, GOOD)
    await world.check(FIBER, DOWN)
    assert world.switcher.errors
    # The backup goes down too, and the primary answers again: voice stays where the kernel has it.
    await world.check(LTE, DOWN)
    await world.check(FIBER, GOOD)
    assert world.steering.wanted_paths() == {"voice": FIBER}
    assert world.switcher.errors == {}
    assert world.switcher.record("voice").failover_count == 0


async def test_failback_is_recorded_as_such_and_not_counted() -> None:
    world = World()
    await world.start()
    await world.check(LTE, GOOD)
    await world.check(FIBER, DOWN)
    for _ in range(11):
        world.clock.advance(1.0)
        await world.check(FIBER, GOOD)
    assert world.dataplane.kernel_paths == {"voice": FIBER}
    assert [s.is_failback for s in world.switched] == [False, True]
    assert world.switcher.record("voice").failover_count == 1


async def test_concurrent_checks_switch_and_count_a_move_once() -> None:
    world = World()
    await world.start()
    await world.check(LTE, GOOD)
    world.switcher.note(world.steering.observe(FIBER, DOWN, world.clock.monotonic()).decisions)
    await asyncio.gather(world.switcher.converge(), world.switcher.converge())  # two checks end together
    assert len(world.kernel.switches()) == 1
    assert world.switcher.record("voice").failover_count == 1
    assert len(world.switched) == 1
