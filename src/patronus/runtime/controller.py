"""A controller: a work queue of object keys fed by watches, drained by N reconciling workers.

Level-based, as in controller-runtime: a reconciler is told *which* object to look at (its key), never
*what* changed, and reads the current state from the cache. Any event on the primary kind, on a child it
owns, or on a mapped source enqueues a key; the queue collapses repeats and keeps one key in one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from patronus.kube.resource import ObjectKey, ResourceKind
from patronus.runtime.cache import Object
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.logs import bind_reconcile_context, get_logger
from patronus.runtime.metrics import (
    RESULT_ERROR,
    RESULT_REQUEUE,
    RESULT_REQUEUE_AFTER,
    RESULT_SUCCESS,
    OperatorMetrics,
)
from patronus.runtime.ratelimit import RateLimiter
from patronus.runtime.sources import KindCache
from patronus.runtime.workqueue import QueueShutDown, WorkQueue

log = get_logger(__name__)

Mapper = Callable[[Object], Iterable[ObjectKey]]
RESYNC_JITTER = 0.1


@dataclass(frozen=True, slots=True)
class Result:
    """What to do with the key after a successful reconcile."""

    requeue_after: float | None = None
    """Look again after this many seconds (for example to notice a report going stale)."""
    requeue: bool = False
    """Look again soon, with the queue's backoff (the reconcile made progress but is not finished)."""


class Reconciler(Protocol):
    async def reconcile(self, key: ObjectKey) -> Result | None:
        """Make the world match the object named ``key`` (which may no longer exist)."""


def owner_keys(obj: Object, owner_kind: ResourceKind) -> list[ObjectKey]:
    """Keys of the owners of ``obj`` that are of ``owner_kind`` (owners live in the child's namespace)."""
    metadata = obj.get("metadata", {})
    namespace = metadata.get("namespace") or ""
    return [
        ObjectKey(namespace, ref["name"])
        for ref in metadata.get("ownerReferences") or []
        if ref.get("kind") == owner_kind.kind and ref.get("apiVersion") == owner_kind.api_version
    ]


class Controller:
    """Reconciles one primary kind with ``workers`` concurrent workers."""

    def __init__(
        self,
        name: str,
        reconciler: Reconciler,
        primary: KindCache,
        *,
        workers: int = 5,
        resync_period: float | None = 30.0,
        metrics: OperatorMetrics | None = None,
        clock: Clock | None = None,
        rate_limiter: RateLimiter | None = None,
        on_update: Callable[[Object, Object], bool] | None = None,
    ) -> None:
        """``on_update(old, new)`` filters updates of the primary kind itself, as in :meth:`watches`
        (creations and deletions always count, and so does every resync)."""
        if workers < 1:
            raise ValueError(f"controller {name}: workers must be at least 1, not {workers}")
        self.name = name
        self.reconciler = reconciler
        self.primary = primary
        self.workers = workers
        self.resync_period = resync_period
        self.metrics = metrics or OperatorMetrics()
        self._clock = clock or SystemClock()
        self.queue: WorkQueue[ObjectKey] = WorkQueue(
            name, clock=self._clock, rate_limiter=rate_limiter, metrics=self.metrics.queue_metrics()
        )
        self._stopping = False
        self._workers: set[asyncio.Task[None]] = set()
        self._busy = 0  # workers inside a reconcile right now
        if on_update is None:
            primary.on_any_change(lambda obj: self.queue.add(ObjectKey.of(obj)))
        else:
            self._watch_primary(on_update)

    # -- wiring -----------------------------------------------------------------------------------

    def _watch_primary(self, on_update: Callable[[Object, Object], bool]) -> None:
        def changed(obj: Object) -> None:
            self.queue.add(ObjectKey.of(obj))

        def updated(old: Object, new: Object) -> None:
            if on_update(old, new):
                self.queue.add(ObjectKey.of(new))

        self.primary.add_handler(changed, updated, changed)

    def owns(
        self, child: KindCache, *, on_update: Callable[[Object, Object], bool] | None = None
    ) -> Controller:
        """A change to a child enqueues its owner of the primary kind; ``on_update(old, new)`` filters
        updates (creations and deletions always count), as in :meth:`watches`."""
        kind = self.primary.kind

        def enqueue_owners(obj: Object) -> None:
            for key in owner_keys(obj, kind):
                self.queue.add(key)

        def updated(old: Object, new: Object) -> None:
            if on_update is None or on_update(old, new):
                enqueue_owners(new)

        child.add_handler(enqueue_owners, updated, enqueue_owners)
        return self

    def watches(
        self,
        source: KindCache,
        mapper: Mapper,
        *,
        on_update: Callable[[Object, Object], bool] | None = None,
        batch: float = 0.0,
    ) -> Controller:
        """A change to an object of ``source`` enqueues the keys ``mapper`` returns for it.

        ``on_update(old, new)`` filters updates (for example: only when the spec changed), so a status
        write on a popular object does not requeue everything that maps from it. ``batch`` (seconds)
        delays the enqueue, so that a burst of changes (thousands of Paths of one Mesh) gives one
        reconcile instead of one per change.
        """

        def enqueue(key: ObjectKey) -> None:
            if batch > 0:
                self.queue.add_batched(key, batch)
            else:
                self.queue.add(key)

        def enqueue_mapped(obj: Object) -> None:
            for key in mapper(obj):
                enqueue(key)

        def updated(old: Object, new: Object) -> None:
            if on_update is None or on_update(old, new):
                enqueue_mapped(new)

        source.add_handler(enqueue_mapped, updated, enqueue_mapped)
        return self

    # -- running ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until :meth:`shutdown` (workers return once the queue is shut down) or cancellation."""
        log.info("controller starting", controller=self.name, workers=self.workers)
        self._stopping = False
        resync = None
        if self.resync_period:
            resync = asyncio.create_task(self._resync_loop(self.resync_period), name=f"{self.name}-resync")
        try:
            async with asyncio.TaskGroup() as group:
                self._workers = {
                    group.create_task(self._worker(), name=f"{self.name}-worker-{index}")
                    for index in range(self.workers)
                }
        finally:
            if resync is not None:
                resync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resync
        log.info("controller stopped", controller=self.name)

    async def shutdown(self, timeout: float = 30.0) -> bool:
        """Stop taking keys; wait up to ``timeout`` for reconciles in flight. False if some were cut short."""
        self._stopping = True
        self.queue.shut_down()
        pending = {task for task in self._workers if not task.done()}
        if not pending:
            return True
        # Workers skip what is still queued and return once their current reconcile is done.
        _done, still_running = await asyncio.wait(pending, timeout=timeout)
        for task in still_running:
            task.cancel()
        if still_running:
            log.warning("reconciles cut short at shutdown", controller=self.name, count=self._busy)
        return not still_running

    def enqueue_all(self) -> int:
        """Queue every cached primary object (a resync); returns how many."""
        objects = self.primary.list()
        for obj in objects:
            self.queue.add(ObjectKey.of(obj))
        return len(objects)

    # -- internals --------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except QueueShutDown:
                return
            try:
                # get() returns at once while keys wait, and a reconcile with nothing to write awaits
                # nothing: without this, one worker could drain the whole queue in one loop step and
                # starve watches, HTTP calls and the health checks.
                await asyncio.sleep(0)
                if self._stopping:
                    continue  # shutting down: leave queued work for the next leader
                self._busy += 1
                try:
                    await self._process(key)
                finally:
                    self._busy -= 1
            finally:
                self.queue.done(key)

    async def _process(self, key: ObjectKey) -> None:
        started = self._clock.monotonic()
        with bind_reconcile_context(self.name, key.namespace, key.name):
            try:
                result = await self.reconciler.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                elapsed = self._clock.monotonic() - started
                self.metrics.observe_reconcile(self.name, RESULT_ERROR, elapsed)
                log.warning(
                    "reconcile failed; retrying with backoff",
                    error=f"{type(error).__name__}: {error}",
                    retries=self.queue.num_requeues(key),
                )
                if not self._stopping:
                    self.queue.add_rate_limited(key)
                return
        elapsed = self._clock.monotonic() - started
        if result is not None and result.requeue_after is not None:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
            self.metrics.observe_reconcile(self.name, RESULT_REQUEUE_AFTER, elapsed)
        elif result is not None and result.requeue:
            self.queue.add_rate_limited(key)
            self.metrics.observe_reconcile(self.name, RESULT_REQUEUE, elapsed)
        else:
            self.queue.forget(key)
            self.metrics.observe_reconcile(self.name, RESULT_SUCCESS, elapsed)

    async def _resync_loop(self, period: float) -> None:
        while not self._stopping:
            # Jittered, so controllers (and replicas) do not all resync in the same instant.
            await self._clock.sleep(period * (1 + random.uniform(0, RESYNC_JITTER)))
            if not self._stopping:
                count = self.enqueue_all()
                log.debug("resync", controller=self.name, objects=count)
