"""Kubernetes Events (core/v1) for the objects the operator manages, written like client-go's recorder.

``recorder.event(obj, "Warning", "ProbeFailed", "path a-b lost 3 probes")`` never blocks: the event is
correlated at once and queued, and :meth:`EventRecorder.run` writes it in the background.

Correlation (pure, see :class:`EventCorrelator`) does what client-go's EventCorrelator does:

- *aggregation*: a repeat of the same (object, type, reason, message, source) within the window
  patches the existing Event's ``count`` and ``lastTimestamp`` instead of creating another object;
- *spam filter*: a token bucket per involved object (burst 25, one token per 5 minutes) drops the
  excess, so a flapping object cannot flood etcd.

Excess beyond the bounded queue is dropped too; every drop is counted (``dropped``, ``on_drop``).

The pure part is :mod:`.correlator` (references, keys, token buckets, aggregation); :mod:`.recorder`
queues what it decides and writes it.
"""

from patronus.runtime.events.correlator import (
    EventCorrelator,
    EventKey,
    EventWrite,
    ObjectRef,
    SpamFilter,
    TokenBucket,
    event_name,
)
from patronus.runtime.events.recorder import (
    DROP_CLOSED,
    DROP_QUEUE_FULL,
    DROP_RATE_LIMITED,
    DROP_WRITE_FAILED,
    EVENT_TYPES,
    EventRecorder,
    EventType,
    event_manifest,
)

__all__ = [
    "DROP_CLOSED",
    "DROP_QUEUE_FULL",
    "DROP_RATE_LIMITED",
    "DROP_WRITE_FAILED",
    "EVENT_TYPES",
    "EventCorrelator",
    "EventKey",
    "EventRecorder",
    "EventType",
    "EventWrite",
    "ObjectRef",
    "SpamFilter",
    "TokenBucket",
    "event_manifest",
    "event_name",
]
