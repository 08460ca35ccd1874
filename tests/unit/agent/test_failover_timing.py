"""Failover end to end on the injected clock: two real probers (primary and backup) over simulated links,
their results fed to a policy's :class:`FailoverState` as the agent does, all on a FakeClock.

What the lab shows in seconds of real time, here in a fraction of one, exactly: failover within the
detector's bound after a cut at any phase, failback within cooldown + 2 checks after a long outage,
one failover for a flapping primary, none under 5 % loss with 20 ms of jitter, none at start."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from patronus.agent.detection import Detection
from patronus.agent.failover import Decision, FailoverPolicy, FailoverState
from patronus.agent.probe_stats import CheckResult
from patronus.agent.prober import PathProber
from patronus.runtime.clock import FakeClock
from tests.unit.agent.simlink import FakeLink, Link, run_for, uniform_rtt

COOLDOWN = 10.0
FOREVER = math.inf


@dataclass
class Site:
    """One policy (voice: fiber, backup lte) and the probers of its two paths, on one fake clock."""

    clock: FakeClock
    links: dict[str, Link]
    state: FailoverState = field(
        default_factory=lambda: FailoverState(FailoverPolicy("voice", "fiber", "lte", 70.0, COOLDOWN))
    )
    decisions: list[Decision] = field(default_factory=list)
    results: list[tuple[float, str, CheckResult]] = field(default_factory=list)
    probers: dict[str, PathProber] = field(default_factory=dict)

    async def on_check(self, path: str, result: CheckResult) -> None:
        now = self.clock.monotonic()
        self.results.append((now, path, result))
        decision = self.state.observe(path, result, now)
        if decision is not None:
            self.decisions.append(decision)

    def moves(self, to: str) -> list[float]:
        return [d.at for d in self.decisions if d.path == to]


@asynccontextmanager
async def site(
    interval: float, links: dict[str, Link], *, probes: int = 3, seed: int = 1, grace: float = 30.0
) -> AsyncIterator[Site]:
    clock = FakeClock(start=0.0)
    s = Site(clock, links)
    rng = random.Random(seed)
    for name, link in links.items():
        prober = PathProber(
            name,
            "10.0.0.1",
            51900,
            interval=interval,
            probes_per_check=probes,
            on_check=s.on_check,
            clock=clock,
            grace=grace,
        )
        transport = FakeLink(clock, link, rng)
        transport.prober = prober
        await prober.start(transport=transport)
        s.probers[name] = prober
    try:
        yield s
    finally:
        for prober in s.probers.values():
            await prober.stop()


def clean() -> Link:
    return Link(rtt=uniform_rtt(0.002))


async def test_a_cut_primary_fails_over_within_the_bound_at_any_phase() -> None:
    rng = random.Random(11)
    interval, detection = 0.2, Detection()
    took = []
    for _ in range(8):
        async with site(interval, {"fiber": clean(), "lte": clean()}, seed=rng.randrange(1000)) as s:
            await run_for(s.clock, 2.0 + rng.uniform(0, interval), step=0.002)
            cut = s.clock.monotonic()
            s.links["fiber"].cuts.append((cut, FOREVER))
            await run_for(s.clock, 0.5, step=0.002)
            (moved,) = s.moves("lte")
            rto = s.probers["fiber"].monitor.rto
            took.append(moved - cut)
            # The fake clock moves in 2 ms steps: a deadline is seen up to a step late, twice.
            assert moved - cut <= detection.bound(interval / 3, rto) + 0.004, (moved - cut, rto)
            assert s.decisions[0].reason == "primary-down"
    assert max(took) - min(took) > 0.02  # the phases really differed


async def test_after_a_7s_cut_voice_returns_within_cooldown_plus_two_checks() -> None:
    """The lab's case: 1 s probes, a 7 s cut, cooldown 10 s. The outage is not averaged into the loss
    window, so the first reply starts the cooldown and nothing else holds voice on the backup."""
    interval = 1.0
    async with site(interval, {"fiber": clean(), "lte": clean()}) as s:
        await run_for(s.clock, 3.5, step=0.005)
        s.links["fiber"].cuts.append((3.5, 10.5))
        await run_for(s.clock, 7.0 + COOLDOWN + 2 * interval + 1, step=0.005)
        (away,) = s.moves("lte")
        (back,) = s.moves("fiber")
        assert away - 3.5 < 0.5
        assert COOLDOWN <= back - 10.5 <= COOLDOWN + 2 * interval, back - 10.5
        fiber = [r for at, path, r in s.results if path == "fiber" and at > back]
        assert all(r.loss_pct == 0 and r.state == "up" for r in fiber)


async def test_a_primary_flapping_every_second_fails_over_once_and_returns_after_the_cooldown() -> None:
    async with site(0.2, {"fiber": clean(), "lte": clean()}) as s:
        await run_for(s.clock, 2.0, step=0.002)
        s.links["fiber"].cuts.extend((2.0 + 2 * k, 3.0 + 2 * k) for k in range(10))  # until 21 s
        await run_for(s.clock, 19.0 + COOLDOWN + 1.0, step=0.002)
        assert len(s.moves("lte")) == 1
        (back,) = s.moves("fiber")
        assert back >= 21.0 + COOLDOWN - 0.01  # the cooldown counts from the end of the flapping
        downs = [r for _, path, r in s.results if path == "fiber" and r.early and r.state == "down"]
        assert len(downs) == 10  # each cut was seen


async def test_five_percent_loss_and_jitter_on_the_primary_never_move_voice() -> None:
    jittery = Link(rtt=uniform_rtt(0.001, delay=0.040, jitter=0.020), loss=0.05)
    async with site(0.2, {"fiber": jittery, "lte": clean()}, seed=3) as s:
        await run_for(s.clock, 60.0, step=0.002)
        assert s.decisions == []
        fiber = [r for _, path, r in s.results if path == "fiber" and not r.early]
        assert len(fiber) >= 290
        assert min(r.health_score for r in fiber[10:]) >= 70
        assert s.probers["fiber"].monitor.confirmations_sent > 0  # there were misses to confirm


async def test_no_failover_at_start_while_the_primary_has_not_answered_yet() -> None:
    """The backup's tunnel answers at once, the primary's only after its first handshake 3 s later: the
    primary is unknown, not down, so voice stays where it was configured."""
    late = Link(rtt=uniform_rtt(0.002), cuts=[(0.0, 3.0)])
    async with site(0.2, {"fiber": late, "lte": clean()}) as s:
        await run_for(s.clock, 6.0, step=0.002)
        assert s.decisions == []
        fiber = [r for at, path, r in s.results if path == "fiber"]
        assert {r.state for r in fiber[:5]} == {"unknown"}
        assert fiber[-1].state == "up"
        assert fiber[-1].loss_pct == 0


async def test_a_primary_dead_from_the_start_fails_over_after_the_grace() -> None:
    dead = Link(rtt=uniform_rtt(0.002), cuts=[(0.0, FOREVER)])
    async with site(1.0, {"fiber": dead, "lte": clean()}, grace=5.0) as s:
        await run_for(s.clock, 8.0, step=0.005)
        (moved,) = s.moves("lte")
        assert 5.0 <= moved <= 5.0 + 2.0
