"""client-go's rate-limited, delaying work queue for asyncio.

The guarantees controllers rely on:

- a key waiting in the queue is there once, however often it is added (the *dirty* set);
- a key is handed to one worker at a time: added again while being processed, it is queued only when
  the worker calls :meth:`WorkQueue.done` (the *processing* set);
- :meth:`WorkQueue.add_after` holds keys back on the :class:`~patronus.runtime.clock.Clock`;
  :meth:`WorkQueue.add_rate_limited` asks the rate limiter how long.

Workers loop ``key = await q.get()``, reconcile, then ``q.forget(key)`` on success or
``q.add_rate_limited(key)`` on failure, and always ``q.done(key)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Any, Generic, Protocol, TypeVar

from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

K = TypeVar("K", bound=Hashable)


class QueueShutDown(Exception):
    """``get()`` on a queue that was shut down and has nothing left to hand out."""


class QueueMetrics(Protocol):
    """Observes a queue; ``name`` is the queue's name. Implementations must be cheap and never raise."""

    def added(self, name: str) -> None:
        """A key entered the queue (adds of a key already waiting are not counted)."""
        ...

    def depth(self, name: str, n: int) -> None:
        """The number of keys now waiting to be handed out."""
        ...

    def retried(self, name: str) -> None:
        """A key was scheduled for later (``add_after``, so also ``add_rate_limited``)."""
        ...

    def latency(self, name: str, seconds_waited: float) -> None:
        """A key was handed out after waiting this long since it entered the queue."""
        ...

    def work_duration(self, name: str, seconds: float) -> None:
        """A worker took this long from ``get`` to ``done``."""
        ...

    def unfinished_work(self, name: str, seconds: float) -> None:
        """Seconds of work in progress, when :meth:`WorkQueue.report_unfinished_work` is called."""
        ...


class NoopQueueMetrics:
    """Discards everything; subclass it to implement only some of :class:`QueueMetrics`."""

    def added(self, name: str) -> None:
        pass

    def depth(self, name: str, n: int) -> None:
        pass

    def retried(self, name: str) -> None:
        pass

    def latency(self, name: str, seconds_waited: float) -> None:
        pass

    def work_duration(self, name: str, seconds: float) -> None:
        pass

    def unfinished_work(self, name: str, seconds: float) -> None:
        pass


class WorkQueue(Generic[K]):
    """A deduplicating FIFO of keys with per-key exclusivity, delays and rate limiting."""

    def __init__(
        self,
        name: str = "",
        *,
        clock: Clock | None = None,
        rate_limiter: RateLimiter | None = None,
        metrics: QueueMetrics | None = None,
    ) -> None:
        self.name = name
        self._clock = clock or SystemClock()
        self._limiter = rate_limiter or default_controller_rate_limiter(self._clock)
        self._metrics: QueueMetrics = metrics or NoopQueueMetrics()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: dict[K, float] = {}  # key -> when it was handed out
        self._added_at: dict[K, float] = {}  # key -> when it entered the queue (for latency)
        self._getters: deque[asyncio.Future[None]] = deque()
        self._idle: list[asyncio.Future[None]] = []  # drain() waiters
        self._shutting_down = False
        # Delayed keys: a heap of (ready_at, seq, key); _waiting_for keeps only the earliest per key.
        self._waiting: list[tuple[float, int, K]] = []
        self._waiting_for: dict[K, float] = {}
        self._seq = itertools.count()
        self._delay_task: asyncio.Task[None] | None = None
        self._delay_wakeup = asyncio.Event()

    # -- the basic queue --------------------------------------------------------------------------

    def add(self, item: K) -> None:
        """Queue a key unless it is already waiting; if it is being processed, queue it after ``done``."""
        if self._shutting_down or item in self._dirty:
            return
        self._metrics.added(self.name)
        self._dirty.add(item)
        self._added_at[item] = self._clock.monotonic()
        if item in self._processing:
            return
        self._push(item)

    async def get(self) -> K:
        """The next key, waiting for one; raises :class:`QueueShutDown` once shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                raise QueueShutDown(self.name)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(waiter)
                # If we were woken and then cancelled, pass the wake-up on so the key is not stranded.
                if self._queue:
                    self._wake_one()
                raise
        item = self._queue.popleft()
        now = self._clock.monotonic()
        self._metrics.depth(self.name, len(self._queue))
        self._metrics.latency(self.name, now - self._added_at.pop(item, now))
        self._processing[item] = now
        self._dirty.discard(item)
        return item

    def done(self, item: K) -> None:
        """The worker is finished with the key; if it was added meanwhile, it is queued now."""
        started = self._processing.pop(item, None)
        if started is not None:
            self._metrics.work_duration(self.name, self._clock.monotonic() - started)
        if item in self._dirty:
            self._push(item)
        if not self._processing:
            for waiter in self._idle:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle.clear()

    def __len__(self) -> int:
        """Keys waiting to be handed out (not those being processed or delayed)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        """Refuse new keys; ``get`` still hands out what is queued, then raises :class:`QueueShutDown`."""
        self._shutting_down = True
        while self._getters:
            self._wake_one()
        if self._delay_task is not None:
            self._delay_task.cancel()
            self._delay_task = None
        self._waiting.clear()
        self._waiting_for.clear()

    async def drain(self) -> None:
        """Wait until no key is being processed (call after :meth:`shut_down` for a graceful stop)."""
        if not self._processing:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._idle.append(waiter)
        await waiter

    def processing(self) -> frozenset[K]:
        """Keys handed out and not yet done."""
        return frozenset(self._processing)

    def report_unfinished_work(self) -> float:
        """Report (and return) the seconds of work in progress; for a periodic metrics task to call."""
        now = self._clock.monotonic()
        seconds = sum(now - started for started in self._processing.values())
        self._metrics.unfinished_work(self.name, seconds)
        return seconds

    # -- delays and rate limiting -----------------------------------------------------------------

    def add_after(self, item: K, delay: float) -> None:
        """Queue the key once ``delay`` seconds have passed; an earlier pending deadline wins."""
        if self._shutting_down:
            return
        self._metrics.retried(self.name)
        self.add_batched(item, delay)

    def add_batched(self, item: K, delay: float) -> None:
        """Like :meth:`add_after`, but not a retry (not counted as one): many changes to what an
        aggregate reads, arriving within ``delay``, give one reconcile."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        ready_at = self._clock.monotonic() + delay
        current = self._waiting_for.get(item)
        if current is not None and current <= ready_at:
            return
        self._waiting_for[item] = ready_at
        heapq.heappush(self._waiting, (ready_at, next(self._seq), item))
        if self._delay_task is None:
            self._delay_task = asyncio.get_running_loop().create_task(
                self._run_delays(), name=f"workqueue-delays-{self.name}"
            )
        elif self._waiting[0][0] == ready_at:
            self._delay_wakeup.set()  # the new key is the earliest: the sleeping timer must shorten

    def add_rate_limited(self, item: K) -> None:
        """Queue the key after the delay the rate limiter gives it (one more failure)."""
        self.add_after(item, self._limiter.when(item))

    def forget(self, item: K) -> None:
        """The key succeeded: reset its backoff."""
        self._limiter.forget(item)

    def num_requeues(self, item: K) -> int:
        return self._limiter.num_requeues(item)

    def waiting(self) -> int:
        """Keys held back by ``add_after`` that are not due yet."""
        return len(self._waiting_for)

    # -- internals --------------------------------------------------------------------------------

    def _push(self, item: K) -> None:
        self._queue.append(item)
        self._metrics.depth(self.name, len(self._queue))
        self._wake_one()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _pop_due(self) -> float | None:
        """Queue every key that is due; return the seconds until the next one (None: nothing waits)."""
        now = self._clock.monotonic()
        while self._waiting:
            ready_at, _, item = self._waiting[0]
            if self._waiting_for.get(item) != ready_at:
                heapq.heappop(self._waiting)  # superseded by an earlier deadline for the same key
                continue
            if ready_at > now:
                return ready_at - now
            heapq.heappop(self._waiting)
            del self._waiting_for[item]
            self.add(item)
        return None

    async def _run_delays(self) -> None:
        while True:
            self._delay_wakeup.clear()
            remaining = self._pop_due()
            if remaining is None:
                self._delay_task = None  # no await since _pop_due: add_after will start a new one
                return
            waits: set[asyncio.Future[Any]] = {
                asyncio.ensure_future(self._delay_wakeup.wait()),
                asyncio.ensure_future(self._clock.sleep(remaining)),
            }
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits:
                    task.cancel()
