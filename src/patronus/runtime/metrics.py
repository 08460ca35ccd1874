"""The operator's Prometheus metrics, on a registry of its own, and the ``/metrics`` endpoint.

A private ``CollectorRegistry`` (not prometheus_client's global one) keeps tests independent and
makes what we export explicit. Names follow the operator contract (``patronus_operator_*``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "patronus_operator"

# Reconciles range from a cache hit (ms) to many API round trips (tens of seconds).
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# client-go's workqueue buckets: 1µs .. 10s in powers of ten.
QUEUE_BUCKETS = tuple(10.0**exponent for exponent in range(-6, 2))

RESULT_SUCCESS = "success"
RESULT_ERROR = "error"
RESULT_REQUEUE = "requeue"
RESULT_REQUEUE_AFTER = "requeue_after"


class OperatorMetrics:
    """Every metric the operator exports, registered on ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.reconcile_total = Counter(
            f"{PREFIX}_reconcile_total",
            "Reconciles by controller and result.",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors_total = Counter(
            f"{PREFIX}_reconcile_errors_total",
            "Reconciles that returned an error.",
            ["controller"],
            registry=r,
        )
        self.reconcile_duration_seconds = Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time spent in one reconcile.",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=r,
        )
        self.workqueue_depth = Gauge(
            f"{PREFIX}_workqueue_depth", "Keys waiting in the queue.", ["name"], registry=r
        )
        self.workqueue_adds_total = Counter(
            f"{PREFIX}_workqueue_adds_total", "Keys added to the queue.", ["name"], registry=r
        )
        self.workqueue_retries_total = Counter(
            f"{PREFIX}_workqueue_retries_total", "Keys scheduled again for later.", ["name"], registry=r
        )
        self.workqueue_queue_duration_seconds = Histogram(
            f"{PREFIX}_workqueue_queue_duration_seconds",
            "How long a key waited in the queue before a worker took it.",
            ["name"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.workqueue_work_duration_seconds = Histogram(
            f"{PREFIX}_workqueue_work_duration_seconds",
            "How long a worker held a key.",
            ["name"],
            buckets=QUEUE_BUCKETS,
            registry=r,
        )
        self.workqueue_unfinished_work_seconds = Gauge(
            f"{PREFIX}_workqueue_unfinished_work_seconds",
            "Seconds of work in progress not yet observed by work_duration; large values mean stuck workers.",
            ["name"],
            registry=r,
        )
        self.leader = Gauge(f"{PREFIX}_leader", "1 while this process holds the leader lease.", registry=r)
        self.events_dropped_total = Counter(
            f"{PREFIX}_events_dropped_total",
            "Kubernetes Events not written (queue full, rate-limited, or the write failed).",
            ["reason"],
            registry=r,
        )

    def child(self, metric: Any, *label_values: str) -> Any:
        """``metric.labels(*label_values)``, memoised: the lookup sorts and locks, and costs more than
        the increment on the hot path of every reconcile."""
        key = (id(metric), label_values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*label_values)
        return found

    def observe_reconcile(self, controller: str, result: str, seconds: float) -> None:
        """Record one reconcile: ``result`` is success, error, requeue or requeue_after."""
        self.child(self.reconcile_total, controller, result).inc()
        if result == RESULT_ERROR:
            self.child(self.reconcile_errors_total, controller).inc()
        self.child(self.reconcile_duration_seconds, controller).observe(seconds)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def event_dropped(self, reason: str) -> None:
        self.events_dropped_total.labels(reason=reason).inc()

    def queue_metrics(self) -> PrometheusQueueMetrics:
        return PrometheusQueueMetrics(self)


class PrometheusQueueMetrics:
    """``patronus.runtime.workqueue.QueueMetrics`` on top of :class:`OperatorMetrics`."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self._m = metrics

    def added(self, name: str) -> None:
        self._m.child(self._m.workqueue_adds_total, name).inc()

    def depth(self, name: str, n: int) -> None:
        self._m.child(self._m.workqueue_depth, name).set(n)

    def retried(self, name: str) -> None:
        self._m.child(self._m.workqueue_retries_total, name).inc()

    def latency(self, name: str, seconds_waited: float) -> None:
        self._m.child(self._m.workqueue_queue_duration_seconds, name).observe(seconds_waited)

    def work_duration(self, name: str, seconds: float) -> None:
        self._m.child(self._m.workqueue_work_duration_seconds, name).observe(seconds)

    def unfinished_work(self, name: str, seconds: float) -> None:
        self._m.child(self._m.workqueue_unfinished_work_seconds, name).set(seconds)


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text exposition format."""
    return generate_latest(registry)


def metrics_handler(registry: CollectorRegistry) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(_: web.Request) -> web.Response:
        # Content-Type goes in headers: aiohttp's content_type= refuses the "; version=..." part.
        return web.Response(body=render(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle
