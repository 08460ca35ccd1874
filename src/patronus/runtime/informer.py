"""An informer: a reflector that keeps an :class:`~patronus.runtime.cache.Indexer` equal to the API server,
and tells event handlers about every change.

The reflector LISTs (paginated), then WATCHes from the list's resourceVersion with bookmarks, always
resuming from the last resourceVersion it saw. A 410 Gone means that version is no longer served: it
relists, and the cache diff turns into add/update/delete calls so no change is lost. Connection errors
back off exponentially (capped, jittered); a watch silent for ``inactivity_timeout`` (no event, not
even a bookmark) is dropped and re-established.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from patronus.kube.client import KubeClient
from patronus.kube.errors import ApiError, GoneError
from patronus.kube.resource import ObjectKey, ResourceKind
from patronus.runtime.cache import Indexer, Object, lean, object_resource_version
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.echoes import replaying

log = structlog.get_logger(__name__)

OnAdd = Callable[[Object], None]
OnUpdate = Callable[[Object, Object], None]
OnDelete = Callable[[Object], None]


@dataclass(frozen=True, slots=True)
class Handler:
    on_add: OnAdd | None = None
    on_update: OnUpdate | None = None
    on_delete: OnDelete | None = None


@dataclass(slots=True)
class InformerStats:
    """Counters for health checks, metrics and tests."""

    lists: int = 0  # completed LISTs (the initial one and relists)
    watches: int = 0  # watch requests made
    gone: int = 0  # 410s that forced a relist
    errors: int = 0  # failed list/watch attempts (connection or API errors)
    inactivity_reconnects: int = 0  # watches dropped for silence
    events: int = 0  # watch events applied (bookmarks included)


class Backoff:
    """Exponential backoff with full-range jitter in [delay/2, delay], capped."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._delay = initial

    def next(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * 2, self.maximum)
        return delay * (0.5 + self._rng.random() / 2)

    def reset(self) -> None:
        self._delay = self.initial


class _Interrupted(Exception):
    """The current watch was dropped on purpose (stop, pause, reconnect)."""


class Informer:
    """Reflector + Indexer + handlers for one kind (in one namespace, or all)."""

    def __init__(
        self,
        client: KubeClient,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
        inactivity_timeout: float = 150.0,
        watch_timeout: float = 300.0,
        backoff_initial: float = 0.8,
        backoff_max: float = 30.0,
        clock: Clock | None = None,
        indexer: Indexer | None = None,
    ) -> None:
        """``inactivity_timeout`` must exceed the server's bookmark interval (about a minute);
        ``watch_timeout`` is the server-side watch duration, randomised up to twice as long
        so that many informers do not reconnect in step."""
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.inactivity_timeout = inactivity_timeout
        self.watch_timeout = watch_timeout
        self.indexer = indexer or Indexer()
        self.stats = InformerStats()
        self.last_activity: float | None = None
        self._clock = clock or SystemClock()
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._handlers: list[Handler] = []
        self._resource_version: str | None = None  # None: a (re)list is needed
        self._synced = asyncio.Event()
        self._stopped = False
        self._running = asyncio.Event()  # cleared while paused
        self._running.set()
        self._interrupt = asyncio.Event()
        self._log = log.bind(kind=str(kind), namespace=namespace or "*")

    # -- public surface ---------------------------------------------------------------------------

    def add_handler(
        self,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
    ) -> None:
        """Register callbacks (sync, quick: enqueue a key). A late handler is told about cached objects."""
        handler = Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in self.indexer:
                self._call(on_add, obj)

    def has_synced(self) -> bool:
        """The first LIST has been applied to the cache."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Wait for the first LIST; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._synced.wait()
        except TimeoutError:
            return False
        return True

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch resumes from (None: the next step is a LIST)."""
        return self._resource_version

    async def run(self) -> None:
        """List and watch until :meth:`stop` or cancellation."""
        self._log.info("informer starting")
        try:
            while not self._stopped:
                await self._running.wait()
                if self._stopped:
                    break
                self._interrupt.clear()
                await self._step()
        finally:
            self._log.info("informer stopped")

    def stop(self) -> None:
        self._stopped = True
        self._running.set()
        self._interrupt.set()

    # Test and operations hooks: they only drop the connection; what follows is the normal recovery.

    def reconnect(self) -> None:
        """Drop the current watch; the next one resumes from the last resourceVersion."""
        self._interrupt.set()

    def pause(self) -> None:
        """Drop the watch and make no requests until :meth:`resume` (the resourceVersion is kept)."""
        self._running.clear()
        self._interrupt.set()

    def resume(self) -> None:
        self._running.set()

    # -- the reflector ----------------------------------------------------------------------------

    async def _step(self) -> None:
        """One list-or-watch; errors lead to a backoff sleep, 410 to a relist."""
        try:
            if self._resource_version is None:
                await self._interruptible(self._list())
                self._backoff.reset()
            else:
                await self._watch()
        except _Interrupted:
            return
        except GoneError as error:
            self.stats.gone += 1
            self._log.info(
                "resourceVersion gone; relisting",
                resource_version=self._resource_version,
                message=error.message,
            )
            self._resource_version = None
        except Exception as error:
            self.stats.errors += 1
            delay = self._backoff.next()
            # API and connection errors are expected weather; anything else deserves a traceback.
            expected = isinstance(error, ApiError | ConnectionError)
            self._log.warning(
                "list/watch failed; retrying",
                error=str(error),
                retry_in=round(delay, 3),
                exc_info=not expected,
            )
            await self._interruptible(self._clock.sleep(delay), quiet=True)

    async def _list(self) -> None:
        objects: list[Object] = []
        continue_token: str | None = None
        while True:
            page = await self.client.list_page(
                self.kind,
                self.namespace,
                limit=self.page_size,
                continue_token=continue_token,
                label_selector=self.label_selector,
                field_selector=self.field_selector,
            )
            objects.extend(self._complete(item) for item in page.get("items") or ())
            metadata = page.get("metadata") or {}
            continue_token = metadata.get("continue")
            if not continue_token:
                resource_version = str(metadata.get("resourceVersion", ""))
                break
        changes = self.indexer.replace(objects, resource_version)
        self._resource_version = resource_version
        self.stats.lists += 1
        self._touch()
        self._log.info(
            "listed",
            objects=len(objects),
            resource_version=resource_version,
            added=len(changes.added),
            updated=len(changes.updated),
            deleted=len(changes.deleted),
        )
        with replaying():  # a relist folds many writes into one version: none of these is an echo
            for obj in changes.added:
                self._notify_add(obj)
            for old, new in changes.updated:
                self._notify_update(old, new)
            for obj in changes.deleted:
                self._notify_delete(obj)
        self._synced.set()

    async def _watch(self) -> None:
        """Run one watch in a child task, so silence, stop and pause can end it from here."""
        started = self._clock.monotonic()
        events_before = self.stats.events
        consumer = asyncio.create_task(self._consume_watch(), name=f"watch-{self.kind}")
        try:
            while not consumer.done():
                # Silence within this watch: activity before it (say, before a pause) does not count.
                silent_for = self._clock.monotonic() - max(self.last_activity or started, started)
                remaining = self.inactivity_timeout - max(silent_for, 0.0)
                if remaining <= 0:
                    self.stats.inactivity_reconnects += 1
                    self._log.info("watch silent; reconnecting", silent_for=round(silent_for, 3))
                    return
                await self._wait_first(consumer, self._clock.sleep(remaining))
                if self._interrupt.is_set():
                    raise _Interrupted
            consumer.result()  # re-raise what ended the watch
        finally:
            consumer.cancel()
            # asyncio.wait, not ``await consumer``: the consumer's own end (cancelled, failed) is handled
            # above, while a cancellation of *this* task must propagate, not be swallowed here.
            await asyncio.wait({consumer})
        # A watch that the server closed at once without events must not become a hot loop.
        if self.stats.events == events_before and self._clock.monotonic() - started < 1.0:
            await self._interruptible(self._clock.sleep(self._backoff.next()), quiet=True)

    async def _consume_watch(self) -> None:
        timeout = int(self.watch_timeout * (1 + random.random()))
        events = self.client.watch(
            self.kind,
            self.namespace,
            resource_version=self._resource_version,
            timeout_seconds=timeout,
            allow_bookmarks=True,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self.stats.watches += 1
        async for event in events:
            self._apply(event)
            self._backoff.reset()

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        self.stats.events += 1
        self._touch()
        if kind == "BOOKMARK":
            self._resource_version = object_resource_version(obj) or self._resource_version
            self.indexer.resource_version = self._resource_version or ""
            return
        obj = self._complete(obj)
        if kind in ("ADDED", "MODIFIED"):
            old, stored = self.indexer.upsert(obj)
            if old is None:
                self._notify_add(stored)
            else:
                self._notify_update(old, stored)
        elif kind == "DELETED":
            self.indexer.delete(ObjectKey.of(obj))
            self._notify_delete(lean(obj))
        else:
            self._log.warning("unknown watch event", type=kind)
            return
        self._resource_version = object_resource_version(obj) or self._resource_version
        self.indexer.resource_version = self._resource_version or ""

    def _complete(self, obj: Object) -> Object:
        # LIST items carry no apiVersion/kind; set them so listed and watched objects look the same.
        if "kind" not in obj or "apiVersion" not in obj:
            obj["apiVersion"] = self.kind.api_version
            obj["kind"] = self.kind.kind
        return obj

    def _touch(self) -> None:
        self.last_activity = self._clock.monotonic()

    # -- waiting that stop/pause can interrupt ----------------------------------------------------

    async def _wait_first(self, task: asyncio.Task[None], timer: Any) -> None:
        waits = {asyncio.ensure_future(timer), asyncio.ensure_future(self._interrupt.wait())}
        try:
            await asyncio.wait({task, *waits}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    async def _interruptible(self, work: Any, *, quiet: bool = False) -> None:
        """Run ``work`` unless stop/pause/reconnect comes first (then raise _Interrupted unless quiet)."""
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        interrupt = asyncio.ensure_future(self._interrupt.wait())
        try:
            await asyncio.wait({task, interrupt}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupt.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if not task.cancelled():
            task.result()
            return
        if not quiet:
            raise _Interrupted

    # -- handlers ---------------------------------------------------------------------------------

    def _notify_add(self, obj: Object) -> None:
        for handler in self._handlers:
            if handler.on_add is not None:
                self._call(handler.on_add, obj)

    def _notify_update(self, old: Object, new: Object) -> None:
        for handler in self._handlers:
            if handler.on_update is not None:
                self._call(handler.on_update, old, new)

    def _notify_delete(self, obj: Object) -> None:
        for handler in self._handlers:
            if handler.on_delete is not None:
                self._call(handler.on_delete, obj)

    def _call(self, func: Callable[..., None], *args: Object) -> None:
        # A failing handler must not stop the informer (nor the other handlers).
        try:
            func(*args)
        except Exception:
            self._log.exception("event handler failed", handler=getattr(func, "__qualname__", repr(func)))
