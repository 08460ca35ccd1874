"""The agent's long-lived tasks: each named, supervised, logged and restarted if it dies.

Every background job of the agent (watching its configuration and Site, applying, writing reports,
sampling counters) runs through :meth:`TaskSupervisor.start`. A task that raises is logged with its
traceback and started again after a backoff (``backoff_initial`` doubling up to ``backoff_max``, back to
the start once a run lasted ``healthy_after`` seconds); one that returns is restarted the same way, since
none of them is meant to end while the agent runs. :meth:`TaskSupervisor.stop` cancels them all.
:meth:`TaskSupervisor.failing` names the tasks waiting to be restarted, for ``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from patronus.runtime.clock import Clock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

Factory = Callable[[], Awaitable[None]]


class TaskSupervisor:
    """Runs named tasks and restarts them when they end; see the module docstring."""

    def __init__(
        self,
        clock: Clock,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 60.0,
        healthy_after: float = 60.0,
        on_restart: Callable[[str], None] = lambda _name: None,
    ) -> None:
        self._clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self._on_restart = on_restart
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: set[str] = set()
        self.restarts: dict[str, int] = {}

    def start(self, name: str, factory: Factory) -> None:
        """Run ``factory()`` as the task ``name``, again whenever it ends, until :meth:`stop`."""
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        self.restarts[name] = 0
        self._tasks[name] = asyncio.create_task(self._supervise(name, factory), name=name)

    @property
    def names(self) -> list[str]:
        return list(self._tasks)

    def failing(self) -> list[str]:
        """Tasks that died and wait for their restart, or whose supervision itself ended."""
        ended = [name for name, task in self._tasks.items() if task.done()]
        return sorted(self._down | set(ended))

    async def stop(self) -> None:
        """Cancel every task and wait for them to finish."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _supervise(self, name: str, factory: Factory) -> None:
        delay = self.backoff_initial
        while True:
            started = self._clock.monotonic()
            try:
                await factory()
                log.error("task ended unexpectedly; restarting it", task=name, retry_in=delay)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task crashed; restarting it", task=name, retry_in=delay)
            if self._clock.monotonic() - started >= self.healthy_after:
                delay = self.backoff_initial
            self.restarts[name] += 1
            self._down.add(name)
            self._on_restart(name)
            try:
                await self._clock.sleep(delay)
            finally:
                self._down.discard(name)
            delay = min(delay * 2, self.backoff_max)


async def sleep_or(clock: Clock, seconds: float, event: asyncio.Event) -> None:
    """Until ``seconds`` pass on ``clock`` or ``event`` is set, whichever comes first."""
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waiter.cancel()
