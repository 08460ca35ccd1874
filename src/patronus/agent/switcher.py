"""Make each policy's kernel path follow the steering's choice, and keep the record of what really moved.

A decision of :class:`~patronus.agent.steering.Steering` is an intent; a policy has moved only when the
nft map update succeeded. So :meth:`PolicySwitcher.converge` compares, per policy, the path the steering
wants with :attr:`~patronus.agent.applier.DataPlane.kernel_paths` and switches where they differ:

- on success the move is recorded (``failoverCount`` counts moves away from the primary,
  ``lastFailoverTime`` when that happened) and reported through ``on_switched`` (Event, a prompt status
  report, metrics);
- on failure the kernel path stays what it was, and so does every report of it; the error is kept
  (``errors``, for ``status.agent`` and the metrics), ``on_failed`` is told, and the switch is tried
  again with exponential backoff until it succeeds or the steering changes its mind.

Paths set by applying a whole configuration are the kernel's too, but are not failovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from patronus.agent.applier import DataPlane
from patronus.agent.dataplane.commands import CommandError
from patronus.agent.failover import Decision
from patronus.agent.steering import Steering
from patronus.runtime.clock import Clock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

RETRY_INITIAL = 0.5
RETRY_MAX = 30.0


@dataclass
class PolicyRecord:
    """What a policy's traffic really did at this site."""

    failover_count: int = 0
    last_failover: datetime | None = None


@dataclass(frozen=True)
class Switch:
    """A switch tried: ``error`` None when the kernel now sends the policy over ``path``."""

    policy: str
    previous: str | None
    path: str
    primary: str | None
    reason: str
    error: str | None = None

    @property
    def is_failback(self) -> bool:
        return self.path == self.primary


@dataclass
class _Retry:
    at: float
    delay: float


class PolicySwitcher:
    """Switches policies in the kernel as the steering wants; see the module docstring."""

    def __init__(
        self,
        dataplane: DataPlane,
        steering: Steering,
        clock: Clock,
        *,
        on_switched: Callable[[Switch], None] = lambda _switch: None,
        on_failed: Callable[[Switch], None] = lambda _switch: None,
    ) -> None:
        self._dataplane = dataplane
        self._steering = steering
        self._clock = clock
        self._on_switched = on_switched
        self._on_failed = on_failed
        self.records: dict[str, PolicyRecord] = {}
        self.errors: dict[str, str] = {}
        """Policy -> why its last switch failed; empty while the kernel follows every decision."""
        self._reasons: dict[str, str] = {}
        self._retry: dict[str, _Retry] = {}
        self._lock = asyncio.Lock()

    def note(self, decisions: tuple[Decision, ...]) -> None:
        """Remember why the steering moved each policy (for the Event and the log)."""
        for decision in decisions:
            self._reasons[decision.policy] = decision.reason

    def record(self, policy: str) -> PolicyRecord:
        return self.records.get(policy) or PolicyRecord()

    @property
    def error(self) -> str | None:
        """One line about the failing switches, or None."""
        if not self.errors:
            return None
        return "; ".join(f"policy {name}: {error}" for name, error in sorted(self.errors.items()))

    async def converge(self) -> None:
        """Try every switch that is due; never raises for a switch the kernel refused.

        One at a time: checks of different paths end concurrently, and two of them must not both see the
        kernel behind and switch (and count) the same move twice."""
        async with self._lock:
            await self._converge()

    async def _converge(self) -> None:
        if self._dataplane.plan is None:
            return  # nothing installed yet: the first apply renders every policy on its wanted path
        kernel = self._dataplane.kernel_paths
        for gone in set(self.records) - set(kernel):
            del self.records[gone]
        for policy, wanted in self._steering.wanted_paths().items():
            if policy not in kernel or wanted is None or wanted == kernel[policy]:
                self._settled(policy)
                continue
            retry = self._retry.get(policy)
            if retry is not None and self._clock.monotonic() < retry.at:
                continue
            await self._try(policy, kernel[policy], wanted)

    def _settled(self, policy: str) -> None:
        self._retry.pop(policy, None)
        self.errors.pop(policy, None)

    async def _try(self, policy: str, previous: str | None, path: str) -> None:
        switch = Switch(policy, previous, path, self._steering.primary(policy), self._reasons.get(policy, ""))
        try:
            await self._dataplane.switch(policy, path)
        except (CommandError, KeyError) as error:
            self._failed(switch, str(error))
            return
        self._settled(policy)
        record = self.records.setdefault(policy, PolicyRecord())
        if previous is not None and not switch.is_failback:
            record.failover_count += 1
            record.last_failover = self._clock.now()
        log.info("policy switched path", policy=policy, previous=previous, path=path, reason=switch.reason)
        self._on_switched(switch)

    def _failed(self, switch: Switch, error: str) -> None:
        retry = self._retry.get(switch.policy)
        delay = RETRY_INITIAL if retry is None else min(retry.delay * 2, RETRY_MAX)
        self._retry[switch.policy] = _Retry(self._clock.monotonic() + delay, delay)
        self.errors[switch.policy] = error
        log.warning(
            "could not switch a policy's path; the kernel keeps the previous one",
            policy=switch.policy,
            kept=switch.previous,
            wanted=switch.path,
            retry_in=delay,
            error=error,
        )
        self._on_failed(replace(switch, error=error))
