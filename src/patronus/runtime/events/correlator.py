"""Event correlation, as client-go's EventCorrelator does it, with no I/O: for each new event, create an
Event, patch a repeat's count (aggregation within the window), or drop it (the per-object spam filter).

Time comes from the caller: monotonic seconds for windows and token buckets, the wall clock only for the
timestamps written into the Event.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

# client-go defaults (tools/record/events_cache.go).
DEFAULT_SPAM_BURST = 25
DEFAULT_SPAM_REFILL_PER_SECOND = 1 / 300
DEFAULT_AGGREGATION_WINDOW = 600.0
DEFAULT_CACHE_SIZE = 4096
MAX_MESSAGE_LENGTH = 1024  # events.k8s.io's limit; long messages only bloat etcd
MAX_NAME_LENGTH = 253
_NAME_SUFFIX_LENGTH = 17  # "." + 16 hex digits of nanoseconds


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
