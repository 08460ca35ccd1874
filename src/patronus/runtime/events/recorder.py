"""The recorder: ``recorder.event(...)`` correlates at once (:mod:`.correlator`) and queues, never
blocking; :meth:`EventRecorder.run` writes the queue in the background, retrying network trouble, and
counts every event it drops (queue full, spam, write failed, closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Mapping
from typing import Any, Literal

from patronus.kube.client import KubeClient
from patronus.kube.errors import ApiError, NotFoundError
from patronus.kube.resource import EVENT
from patronus.kube.timestamps import format_time
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.events.correlator import (
    DEFAULT_AGGREGATION_WINDOW,
    DEFAULT_SPAM_BURST,
    DEFAULT_SPAM_REFILL_PER_SECOND,
    EventCorrelator,
    EventWrite,
    ObjectRef,
    SpamFilter,
)
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

EventType = Literal["Normal", "Warning"]
EVENT_TYPES = ("Normal", "Warning")

DROP_QUEUE_FULL = "queue_full"
DROP_RATE_LIMITED = "rate_limited"
DROP_WRITE_FAILED = "write_failed"
DROP_CLOSED = "closed"


_CLOSE = object()


class EventRecorder:
    """Queues correlated Events for the objects it is told about and writes them in :meth:`run`."""

    def __init__(
        self,
        client: KubeClient,
        component: str,
        *,
        host: str | None = None,
        clock: Clock | None = None,
        max_queue: int = 1000,
        aggregation_window: float = DEFAULT_AGGREGATION_WINDOW,
        spam_burst: int = DEFAULT_SPAM_BURST,
        spam_refill_per_second: float = DEFAULT_SPAM_REFILL_PER_SECOND,
        on_drop: Callable[[str], None] | None = None,
        max_attempts: int = 3,
        retry_delay: float = 1.0,
        aggregate: bool = True,
    ) -> None:
        self._client = client
        self._clock = clock or SystemClock()
        self.component = component
        self.host = host if host is not None else socket.gethostname()
        self.correlator = EventCorrelator(
            component=component,
            host=self.host,
            window=aggregation_window,
            spam_filter=SpamFilter(spam_burst, spam_refill_per_second),
            aggregate=aggregate,
        )
        self._max_queue = max_queue
        # Unbounded underneath so the close marker always fits; event() enforces max_queue itself.
        self._queue: asyncio.Queue[EventWrite | object] = asyncio.Queue()
        self._on_drop = on_drop
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._closed = False
        self._running = False
        self._finished = asyncio.Event()
        self.dropped: dict[str, int] = {}
        self.written = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def event(self, obj: Mapping[str, Any], type_: EventType, reason: str, message: str) -> None:
        """Record an event about ``obj``; never blocks, never raises for API trouble.

        Call from the event loop's thread (the queue is an asyncio.Queue).
        """
        if type_ not in EVENT_TYPES:
            raise ValueError(f"event type {type_!r}: must be Normal or Warning")
        if self._closed:
            self._drop(DROP_CLOSED)
            return
        ref = ObjectRef.from_object(obj)
        write = self.correlator.correlate(
            ref, type_, reason, message, now=self._clock.monotonic(), wall=self._clock.now()
        )
        if write is None:
            self._drop(DROP_RATE_LIMITED)
            return
        if self._queue.qsize() >= self._max_queue:
            self._drop(DROP_QUEUE_FULL)
            return
        self._queue.put_nowait(write)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if self._on_drop is not None:
            self._on_drop(reason)

    async def run(self) -> None:
        """Write queued Events until :meth:`aclose`; cancel it to stop without flushing."""
        if self._running:
            if not self._closed:
                raise RuntimeError("EventRecorder.run is already running")
            # aclose() is already flushing (it ran before this task got going): nothing left to do.
            await self._finished.wait()
            return
        self._running = True
        self._finished.clear()
        try:
            while True:
                item = await self._queue.get()
                if item is _CLOSE:
                    return
                assert isinstance(item, EventWrite)
                await self._write(item)
        finally:
            self._running = False
            self._finished.set()

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop accepting events and write what is queued (for at most ``timeout`` seconds)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(_CLOSE)
        if self._running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._finished.wait()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.run()
        while not self._queue.empty():  # out of time: count what we could not write
            if self._queue.get_nowait() is not _CLOSE:
                self._drop(DROP_WRITE_FAILED)

    async def _write(self, write: EventWrite) -> None:
        for attempt in range(1, self._max_attempts + 1):
            try:
                if write.action == "patch" and await self._patch(write):
                    return
                await self._create(write)  # a first occurrence, or a repeat whose Event is gone
                return
            except ApiError as exc:
                code = exc.status
                if code == 409:
                    return
                if 400 <= code < 500 and code != 429:
                    log.warning("event rejected", event_name=write.name, code=code, error=exc.message)
                    break
                error = f"{code} {exc.message}"
            except Exception as exc:  # network trouble: retry, then give up; events are best effort
                error = repr(exc)
            if attempt < self._max_attempts:
                await self._clock.sleep(self._retry_delay * attempt)
            else:
                log.warning("event not written", event_name=write.name, error=error, attempts=attempt)
        self._drop(DROP_WRITE_FAILED)

    async def _patch(self, write: EventWrite) -> bool:
        """Patch count and lastTimestamp; False when the Event no longer exists (expired, deleted)."""
        patch = {"count": write.count, "lastTimestamp": format_time(write.last_timestamp)}
        try:
            await self._client.patch_merge(EVENT, write.ref.event_namespace, write.name, patch)
        except NotFoundError:
            return False
        self.written += 1
        return True

    async def _create(self, write: EventWrite) -> None:
        await self._client.create(event_manifest(write), kind=EVENT)
        self.written += 1


def event_manifest(write: EventWrite) -> dict[str, Any]:
    """The core/v1 Event a create writes."""
    ref = write.ref
    involved = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    for key, value in (
        ("namespace", ref.namespace),
        ("uid", ref.uid),
        ("resourceVersion", ref.resource_version),
    ):
        if value:
            involved[key] = value
    source = {"component": write.source[0]}
    if write.source[1]:
        source["host"] = write.source[1]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": write.name, "namespace": ref.event_namespace},
        "involvedObject": involved,
        "type": write.type,
        "reason": write.reason,
        "message": write.message,
        "count": write.count,
        "firstTimestamp": format_time(write.first_timestamp),
        "lastTimestamp": format_time(write.last_timestamp),
        "source": source,
    }
