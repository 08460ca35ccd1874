"""Kubernetes Events (core/v1) for the objects the operator manages, written like client-go's recorder.

``recorder.event(obj, "Warning", "ProbeFailed", "path a-b lost 3 probes")`` never blocks: the event is
correlated at once and queued, and :meth:`EventRecorder.run` writes it in the background.

Correlation (pure, see :class:`EventCorrelator`) does what client-go's EventCorrelator does:

- *aggregation*: a repeat of the same (object, type, reason, message, source) within the window
  patches the existing Event's ``count`` and ``lastTimestamp`` instead of creating another object;
- *spam filter*: a token bucket per involved object (burst 25, one token per 5 minutes) drops the
  excess, so a flapping object cannot flood etcd.

Excess beyond the bounded queue is dropped too; every drop is counted (``dropped``, ``on_drop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from patronus.kube.client import KubeClient
from patronus.kube.errors import ApiError, NotFoundError
from patronus.kube.resource import EVENT
from patronus.kube.timestamps import format_time
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

EventType = Literal["Normal", "Warning"]
EVENT_TYPES = ("Normal", "Warning")

# client-go defaults (tools/record/events_cache.go).
DEFAULT_SPAM_BURST = 25
DEFAULT_SPAM_REFILL_PER_SECOND = 1 / 300
DEFAULT_AGGREGATION_WINDOW = 600.0
DEFAULT_CACHE_SIZE = 4096
MAX_MESSAGE_LENGTH = 1024  # events.k8s.io's limit; long messages only bloat etcd
MAX_NAME_LENGTH = 253
_NAME_SUFFIX_LENGTH = 17  # "." + 16 hex digits of nanoseconds

DROP_QUEUE_FULL = "queue_full"
DROP_RATE_LIMITED = "rate_limited"
DROP_WRITE_FAILED = "write_failed"
DROP_CLOSED = "closed"


# -- pure part: references, keys, token buckets, correlation --------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The involved object, as an Event's ``involvedObject`` names it."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""

    @classmethod
    def from_object(cls, data: Mapping[str, Any]) -> ObjectRef:
        """From an object's ``apiVersion``, ``kind`` and ``metadata``."""
        metadata = data.get("metadata") or {}
        if not data.get("kind") or not data.get("apiVersion") or not metadata.get("name"):
            raise ValueError("an involved object needs apiVersion, kind and metadata.name")
        return cls(
            api_version=str(data["apiVersion"]),
            kind=str(data["kind"]),
            name=str(metadata["name"]),
            namespace=str(metadata.get("namespace") or ""),
            uid=str(metadata.get("uid") or ""),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )

    @property
    def identity(self) -> tuple[str, str, str, str, str]:
        """What makes two references the same object (not resourceVersion: that changes all the time)."""
        return (self.api_version, self.kind, self.namespace, self.name, self.uid)

    @property
    def event_namespace(self) -> str:
        # client-go puts Events about cluster-scoped objects in "default".
        return self.namespace or "default"


@dataclass(frozen=True, slots=True)
class EventKey:
    """client-go's getEventKey: two events with equal keys are the same Event, counted."""

    source: tuple[str, str]
    involved: tuple[str, str, str, str, str]
    type: str
    reason: str
    message: str


class TokenBucket:
    """``burst`` tokens, refilled continuously at ``refill_per_second``; time comes from the caller."""

    __slots__ = ("_last", "_tokens", "burst", "refill_per_second")

    def __init__(self, burst: int, refill_per_second: float, now: float) -> None:
        self.burst = burst
        self.refill_per_second = refill_per_second
        self._tokens = float(burst)
        self._last = now

    def try_take(self, now: float) -> bool:
        elapsed = max(0.0, now - self._last)
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.refill_per_second)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class SpamFilter:
    """One token bucket per key (client-go: per source + involved object), LRU-bounded."""

    def __init__(
        self,
        burst: int = DEFAULT_SPAM_BURST,
        refill_per_second: float = DEFAULT_SPAM_REFILL_PER_SECOND,
        max_keys: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.burst = burst
        self.refill_per_second = refill_per_second
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.burst, self.refill_per_second, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.try_take(now)


@dataclass(frozen=True, slots=True)
class EventWrite:
    """What the writer must do: create Event ``name`` or patch its count and lastTimestamp."""

    action: Literal["create", "patch"]
    name: str
    ref: ObjectRef
    type: str
    reason: str
    message: str
    count: int
    first_timestamp: datetime
    last_timestamp: datetime
    source: tuple[str, str]


@dataclass(slots=True)
class _Seen:
    name: str
    count: int
    first_timestamp: datetime
    last_seen: float = field(default=0.0)


def unix_nanos(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000) * 1000


def event_name(object_name: str, nanos: int) -> str:
    """client-go's naming: ``<object>.<unix nanoseconds in hex>``, cut to fit 253 characters."""
    return f"{object_name[: MAX_NAME_LENGTH - _NAME_SUFFIX_LENGTH]}.{nanos:x}"


class EventCorrelator:
    """Decides, for each new event, to create, patch (a repeat) or skip it (spam). No I/O."""

    def __init__(
        self,
        *,
        component: str,
        host: str = "",
        window: float = DEFAULT_AGGREGATION_WINDOW,
        spam_filter: SpamFilter | None = None,
        max_keys: int = DEFAULT_CACHE_SIZE,
        aggregate: bool = True,
    ) -> None:
        """``aggregate`` False: every event is a new Event (for a writer whose RBAC allows ``create`` but
        not ``patch`` of Events, such as a site agent); the spam filter still bounds them."""
        self.aggregate = aggregate
        self.source = (component, host)
        self.window = window
        self.spam_filter = spam_filter or SpamFilter()
        self.max_keys = max_keys
        self._seen: OrderedDict[EventKey, _Seen] = OrderedDict()
        self._last_nanos = 0

    def key(self, ref: ObjectRef, type_: str, reason: str, message: str) -> EventKey:
        return EventKey(self.source, ref.identity, type_, reason, message)

    def correlate(
        self, ref: ObjectRef, type_: str, reason: str, message: str, *, now: float, wall: datetime
    ) -> EventWrite | None:
        """``now`` is monotonic seconds (windows, buckets); ``wall`` the timestamp written to the Event."""
        message = message[:MAX_MESSAGE_LENGTH]
        key = self.key(ref, type_, reason, message)
        # Names from distinct instants, even for two events in one clock tick (or on a fake clock).
        nanos = self._last_nanos = max(unix_nanos(wall), self._last_nanos + 1)
        wall = wall.replace(microsecond=0)  # Event timestamps have whole seconds
        seen = self._seen.get(key)
        # Observe first, then filter (as client-go): a spam-dropped repeat still counts, so the next
        # write that gets through carries the true count.
        if self.aggregate and seen is not None and now - seen.last_seen <= self.window:
            seen.count += 1
            seen.last_seen = now
            self._seen.move_to_end(key)
            action: Literal["create", "patch"] = "patch"
        else:
            seen = _Seen(event_name(ref.name, nanos), 1, wall, now)
            self._seen[key] = seen
            self._seen.move_to_end(key)
            if len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            action = "create"
        if not self.spam_filter.allow((self.source, ref.identity), now):
            return None
        return EventWrite(
            action=action,
            name=seen.name,
            ref=ref,
            type=type_,
            reason=reason,
            message=message,
            count=seen.count,
            first_timestamp=seen.first_timestamp,
            last_timestamp=wall,
            source=self.source,
        )


# -- I/O part: the recorder and its writer task ---------------------------------------------------


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
