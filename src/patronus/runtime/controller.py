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
from patronus.runtime.echoes import OwnWrites, writing_as
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
RESYNC_CHECKS_PER_PERIOD = 4


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
        own_writes: OwnWrites | None = None,
    ) -> None:
        """``on_update(old, new)`` filters updates of the primary kind itself, as in :meth:`watches`
        (creations and deletions always count, and so does every resync).

        With ``own_writes`` (which must see this controller's writes: the manager's client records
        them), the echo of a reconcile's own write to its primary object or to a child it owns does not
        requeue it (see :mod:`patronus.runtime.echoes`); mapped sources opt in per :meth:`watches`."""
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
        self._own_writes = own_writes
        self._reconciled_at: dict[ObjectKey, float] = {}  # when each key's last reconcile ended
        self._watch_primary(on_update)

    # -- wiring -----------------------------------------------------------------------------------

    def _enqueue_unless_echo(self, obj: Object, key: ObjectKey) -> None:
        """Queue ``key`` for a change to ``obj``, unless ``obj`` is just what ``key``'s reconcile wrote."""
        if self._own_writes is None or not self._own_writes.is_echo(obj, self.name, key):
            self.queue.add(key)

    def _watch_primary(self, on_update: Callable[[Object, Object], bool] | None) -> None:
        def changed(obj: Object) -> None:
            self._enqueue_unless_echo(obj, ObjectKey.of(obj))

        def deleted(obj: Object) -> None:
            self.queue.add(ObjectKey.of(obj))

        def updated(old: Object, new: Object) -> None:
            if on_update is None or on_update(old, new):
                self._enqueue_unless_echo(new, ObjectKey.of(new))

        self.primary.add_handler(changed, updated, deleted)

    def owns(
        self, child: KindCache, *, on_update: Callable[[Object, Object], bool] | None = None
    ) -> Controller:
        """A change to a child enqueues its owner of the primary kind; ``on_update(old, new)`` filters
        updates (creations and deletions always count), as in :meth:`watches`."""
        kind = self.primary.kind

        def enqueue_owners(obj: Object) -> None:
            for key in owner_keys(obj, kind):
                self._enqueue_unless_echo(obj, key)

        def deleted(obj: Object) -> None:
            for key in owner_keys(obj, kind):
                self.queue.add(key)

        def updated(old: Object, new: Object) -> None:
            if on_update is None or on_update(old, new):
                enqueue_owners(new)

        child.add_handler(enqueue_owners, updated, deleted)
        return self

    def watches(
        self,
        source: KindCache,
        mapper: Mapper,
        *,
        on_update: Callable[[Object, Object], bool] | None = None,
        batch: float = 0.0,
        skip_own_echoes: bool = False,
    ) -> Controller:
        """A change to an object of ``source`` enqueues the keys ``mapper`` returns for it.

        ``on_update(old, new)`` filters updates (for example: only when the spec changed), so a status
        write on a popular object does not requeue everything that maps from it. ``batch`` (seconds)
        delays the enqueue, so that a burst of changes (thousands of Paths of one Mesh) gives one
        reconcile instead of one per change. ``skip_own_echoes``: a key's own write to an object that
        maps back to it does not requeue it, as for owned children; only where its reconcile reads
        nothing from that object that the write could change (a Mesh counts the Paths it creates).
        """

        def enqueue(obj: Object, key: ObjectKey, *, created_or_updated: bool) -> None:
            own = self._own_writes if skip_own_echoes and created_or_updated else None
            if own is not None and own.is_echo(obj, self.name, key):
                return
            if batch > 0:
                self.queue.add_batched(key, batch)
            else:
                self.queue.add(key)

        def enqueue_mapped(obj: Object) -> None:
            for key in mapper(obj):
                enqueue(obj, key, created_or_updated=True)

        def deleted(obj: Object) -> None:
            for key in mapper(obj):
                enqueue(obj, key, created_or_updated=False)

        def updated(old: Object, new: Object) -> None:
            if on_update is None or on_update(old, new):
                enqueue_mapped(new)

        source.add_handler(enqueue_mapped, updated, deleted)
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
        """Queue every cached primary object; returns how many."""
        objects = self.primary.list()
        for obj in objects:
            self.queue.add(ObjectKey.of(obj))
        return len(objects)

    def enqueue_due(self, period: float) -> int:
        """Queue every cached primary object not reconciled within ``period`` seconds (a resync);
        returns how many. A key reconciled just now (while thousands of new objects keep the workers
        busy, say) is not looked at again only because the clock came round."""
        now = self._clock.monotonic()
        done, self._reconciled_at = self._reconciled_at, {}
        due = 0
        for obj in self.primary.list():
            key = ObjectKey.of(obj)
            last = done.get(key)
            if last is not None and now - last < period:
                self._reconciled_at[key] = last  # keys of deleted objects are dropped here
            else:
                self.queue.add(key)
                due += 1
        return due

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
        with bind_reconcile_context(self.name, key.namespace, key.name), writing_as(self.name, key):
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
        self._reconciled_at[key] = started  # what it read is as old as its start
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
        """Every object is looked at again once its last reconcile is ``period`` old (checked a few
        times per period, so it waits at most a fraction of a period longer)."""
        while not self._stopping:
            # Jittered, so controllers (and replicas) do not all resync in the same instant.
            check = period / RESYNC_CHECKS_PER_PERIOD
            await self._clock.sleep(check * (1 + random.uniform(0, RESYNC_JITTER)))
            if not self._stopping:
                count = self.enqueue_due(period)
                log.debug("resync", controller=self.name, objects=count)
