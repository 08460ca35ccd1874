"""The cyclic garbage collector, tuned for a process whose heap is a cache of long-lived, acyclic objects.

An operator keeps every watched object in memory as nested dicts and lists: hundreds of thousands of
containers that never form reference cycles and are freed by reference counting when a newer version
replaces them. CPython's collector still walks all of them in every full collection, and it starts one
whenever a quarter of the old generation's size has been promoted since the last. In the steady state
(bench/steady.py, 1,000 sites reporting) every Policy update promotes thousands of containers, and full
collections of the whole cache were most of the operator's CPU.

The policy, with the standard library only: every ``freeze_period`` seconds, everything that survived so
far moves to the permanent generation (``gc.freeze``, constant time), so the collector only ever scans
objects younger than that. Every ``full_period`` seconds everything is unfrozen and collected once, so
cyclic garbage among old objects (a finished task and its traceback, say) is still reclaimed: later,
but within a bound. Reference counting frees everything else at once, frozen or not.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Protocol

from patronus.runtime.clock import Clock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)


class Collector(Protocol):
    """The parts of the ``gc`` module the policy uses (``gc`` itself in production)."""

    def freeze(self) -> None: ...

    def unfreeze(self) -> None: ...

    def collect(self) -> int: ...


@dataclass(frozen=True)
class CollectorPolicy:
    """How often old objects are frozen, and how often everything is collected once."""

    freeze_period: float = 1.0
    """Seconds between freezes; 0 leaves the collector as CPython configures it."""
    full_period: float = 600.0
    """Seconds between full collections of the whole heap (frozen objects included)."""

    def __post_init__(self) -> None:
        if self.freeze_period < 0 or self.full_period <= 0:
            raise ValueError(f"collector periods must be positive: {self}")
        if self.freeze_period and self.full_period < self.freeze_period:
            raise ValueError(f"the full collection period must not be shorter than the freeze period: {self}")

    @property
    def enabled(self) -> bool:
        return self.freeze_period > 0


async def run_collector_policy(policy: CollectorPolicy, clock: Clock, collector: Collector = gc) -> None:
    """Freeze and collect on ``policy``'s schedule until cancelled; leaves nothing frozen behind."""
    if not policy.enabled:
        return
    since_full = 0.0
    try:
        while True:
            await clock.sleep(policy.freeze_period)
            since_full += policy.freeze_period
            if since_full >= policy.full_period:
                since_full = 0.0
                collect_everything(collector)
            collector.freeze()
    finally:
        # Whoever runs next in this process (a test, a second manager) gets the collector it expects.
        collector.unfreeze()


def collect_everything(collector: Collector = gc) -> int:
    """One full collection of the whole heap, frozen objects included; returns what it freed."""
    collector.unfreeze()
    freed = collector.collect()
    if freed:
        log.debug("full garbage collection", freed=freed)
    return freed
