"""The manager: shared caches, controllers, leader election, events, metrics and health, one lifecycle.

Caches start at once on every replica, so a standby is warm and ``/ready`` reflects cache sync, not
leadership. Controllers run only while this replica leads. On SIGTERM the manager stops taking work,
lets reconciles in flight finish (bounded), then releases the lease so a standby takes over at once.
Losing the lease is fatal: ``run`` returns a non-zero exit code and the process should exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from patronus.kube.client import KubeClient
from patronus.kube.resource import ResourceKind
from patronus.runtime.cache import Object
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.collector import CollectorPolicy, run_collector_policy
from patronus.runtime.controller import Controller, Reconciler
from patronus.runtime.echoes import OwnWrites, RecordingClient
from patronus.runtime.events import EventRecorder
from patronus.runtime.health import HealthServer, MetricsServer
from patronus.runtime.informer import Informer
from patronus.runtime.leaderelection import LeaderElectionConfig, LeaderElector, LeadershipLost
from patronus.runtime.logs import get_logger
from patronus.runtime.metrics import OperatorMetrics
from patronus.runtime.sources import KindCache

log = get_logger(__name__)

EXIT_OK = 0
EXIT_LEADERSHIP_LOST = 1
EXIT_FAILED = 2


class CachesNotSyncedError(RuntimeError):
    """The informers did not finish their first LIST within the allowed time."""


@dataclass(frozen=True, slots=True)
class ManagerOptions:
    """How the manager runs; the operator fills it from its configuration."""

    identity: str
    watch_namespaces: tuple[str, ...] = ()
    max_concurrent_reconciles: int = 5
    resync_period: float = 30.0
    leader_election: bool = True
    lease_name: str = "patronus-operator"
    lease_namespace: str = "patronus-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    leader_election_jitter: float = 0.1
    """Retry jitter as a fraction of retry_period. client-go uses 1.2 to spread large herds of
    candidates; with a handful of replicas that only delays a hand-over, so we keep it small."""
    bind_address: str = "0.0.0.0"
    metrics_port: int = 8080
    health_probe_port: int = 8081
    shutdown_timeout: float = 20.0
    cache_sync_timeout: float = 120.0
    event_component: str = "patronus-operator"
    collector: CollectorPolicy = field(default_factory=CollectorPolicy)
    """Garbage collection of the caches' old objects (see ``runtime.collector``)."""


class Manager:
    """Owns the informers, controllers and servers of one operator process."""

    def __init__(
        self,
        options: ManagerOptions,
        client: KubeClient,
        *,
        clock: Clock | None = None,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.options = options
        self.own_writes = OwnWrites()
        # Reconcilers write through this client, so that the echoes of their writes can be recognised.
        self.client: KubeClient = RecordingClient(client, self.own_writes)
        self._raw_client = client
        self.clock = clock or SystemClock()
        self.metrics = metrics or OperatorMetrics()
        self.events = EventRecorder(
            client,
            options.event_component,
            host=options.identity,
            clock=self.clock,
            on_drop=self.metrics.event_dropped,
        )
        self.health = HealthServer(clock=self.clock)
        self.metrics_server = MetricsServer(self.metrics.registry)
        self.controllers: list[Controller] = []
        self._caches: dict[tuple[ResourceKind, str | None], KindCache] = {}
        self._stop = asyncio.Event()
        self._elector: LeaderElector | None = None
        self._informer_tasks: list[asyncio.Task[None]] = []
        self._on_leading: list[Callable[[], Awaitable[None]]] = []
        self._periodic: list[tuple[str, float, Callable[[], None]]] = []
        self._drained = asyncio.Event()  # set once the controllers stopped after leading
        self.health.add_readiness_check("caches-synced", self.caches_synced)
        # Not leadership (a standby is ready too): whether the election can work at all.
        self.health.add_readiness_check("leader-election", self._election_possible)
        self.health.add_liveness_check("watches", self._watches_alive)

    # -- building ---------------------------------------------------------------------------------

    def cache(self, kind: ResourceKind, *, label_selector: str | None = None) -> KindCache:
        """The shared cache of ``kind`` (informers are created on first use, started by :meth:`run`).

        ``label_selector`` keeps, say, only the Secrets the operator made, instead of every Secret.
        """
        key = (kind, label_selector)
        if key not in self._caches:
            namespaces: tuple[str | None, ...] = (
                self.options.watch_namespaces
                if kind.namespaced and self.options.watch_namespaces
                else (None,)
            )
            self._caches[key] = KindCache(
                kind,
                [
                    Informer(
                        self._raw_client, kind, namespace, label_selector=label_selector, clock=self.clock
                    )
                    for namespace in namespaces
                ],
            )
        return self._caches[key]

    def controller(
        self,
        name: str,
        reconciler: Reconciler,
        primary: ResourceKind,
        *,
        on_update: Callable[[Object, Object], bool] | None = None,
    ) -> Controller:
        """Create and register a controller for ``primary``; chain ``.owns`` / ``.watches`` on it.

        ``on_update(old, new)`` filters updates of ``primary`` objects (say, an agent's heartbeat in a
        status that changes nothing the reconciler reads); None: every update counts."""
        controller = Controller(
            name,
            reconciler,
            self.cache(primary),
            workers=self.options.max_concurrent_reconciles,
            resync_period=self.options.resync_period,
            metrics=self.metrics,
            clock=self.clock,
            on_update=on_update,
            own_writes=self.own_writes,
        )
        self.controllers.append(controller)
        return controller

    def every(self, name: str, period: float, tick: Callable[[], None]) -> None:
        """Call ``tick`` every ``period`` seconds while this replica leads, beside the controllers: a scan
        of the caches that enqueues what time alone changed (a heartbeat going stale), instead of every
        object requeueing itself."""
        self._periodic.append((name, period, tick))

    def on_started_leading(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` when this replica becomes leader, before the controllers start."""
        self._on_leading.append(callback)

    # -- state ------------------------------------------------------------------------------------

    def caches_synced(self) -> bool:
        return all(cache.has_synced() for cache in self._caches.values())

    @property
    def is_leader(self) -> bool:
        return self._elector.is_leader if self._elector is not None else not self._stop.is_set()

    def stop(self) -> None:
        """Ask :meth:`run` to shut down gracefully (what SIGTERM does)."""
        self._stop.set()

    def _election_possible(self) -> bool:
        return self._elector is None or self._elector.problem is None

    def _watches_alive(self) -> bool:
        return all(not task.done() for task in self._informer_tasks)

    # -- running ----------------------------------------------------------------------------------

    async def run(self, *, install_signal_handlers: bool = True) -> int:
        """Run until stopped (exit code 0) or until leadership is lost (exit code 1)."""
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
        host = self.options.bind_address
        await self.metrics_server.start(host, self.options.metrics_port)
        await self.health.start(host, self.options.health_probe_port)
        events_task = asyncio.create_task(self.events.run(), name="events")
        collector_task = asyncio.create_task(
            run_collector_policy(self.options.collector, self.clock), name="garbage-collector"
        )
        self._informer_tasks = [
            asyncio.create_task(informer.run(), name=f"informer-{kind}-{informer.namespace or '*'}")
            for kind, cache in self._caches.items()
            for informer in cache.informers
        ]
        log.info(
            "manager started",
            identity=self.options.identity,
            caches=[str(k) for k in self._caches],
            metrics_port=self.metrics_server.port,
            health_port=self.health.port,
        )
        try:
            return await self._run_leading_part()
        finally:
            for informer in (i for cache in self._caches.values() for i in cache.informers):
                informer.stop()
            for task in self._informer_tasks:
                task.cancel()
            await asyncio.gather(*self._informer_tasks, return_exceptions=True)
            await self.events.aclose()
            for task in (events_task, collector_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.health.stop()
            await self.metrics_server.stop()
            if install_signal_handlers:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
            log.info("manager stopped", identity=self.options.identity)

    async def _run_leading_part(self) -> int:
        if not self.options.leader_election:
            self.metrics.set_leader(True)
            return await self._lead_until_stopped()
        opts = self.options
        elector = LeaderElector(
            self.client,
            LeaderElectionConfig(
                lease_name=opts.lease_name,
                lease_namespace=opts.lease_namespace,
                identity=opts.identity,
                lease_duration=opts.lease_duration,
                renew_deadline=opts.renew_deadline,
                retry_period=opts.retry_period,
                jitter_factor=opts.leader_election_jitter,
            ),
            clock=self.clock,
            on_started_leading=self._leading,
            on_stopped_leading=lambda: self.metrics.set_leader(False),
        )
        self._elector = elector
        election = asyncio.create_task(elector.run(), name="leader-election")
        stop = asyncio.create_task(self._stop.wait(), name="stop-signal")
        await asyncio.wait({election, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop.done() and not election.done():
            # Graceful: let the controllers drain first (they see the same stop event), then hand the
            # lease over so a standby need not wait for it to expire.
            if elector.is_leader:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.shutdown_timeout + 5):
                        await self._drained.wait()
            log.info("stopping: releasing the leader lease")
            await elector.release()
        stop.cancel()
        try:
            await election
        except LeadershipLost as lost:
            log.error("leadership lost; exiting so that a fresh process can campaign again", reason=str(lost))
            return EXIT_LEADERSHIP_LOST
        except CachesNotSyncedError as error:
            log.error(str(error))
            return EXIT_FAILED
        return EXIT_OK

    async def _leading(self) -> None:
        """Called by the elector once this replica leads; returns when leading must end."""
        self.metrics.set_leader(True)
        log.info("became leader", identity=self.options.identity)
        try:
            if await self._lead_until_stopped() != EXIT_OK:
                # Holding the lease without working would block every standby: step down.
                raise CachesNotSyncedError("caches did not sync; stepping down")
        finally:
            self._drained.set()

    async def _lead_until_stopped(self) -> int:
        if not await self._wait_for_caches():
            return EXIT_FAILED
        for callback in self._on_leading:
            await callback()
        tasks = [asyncio.create_task(c.run(), name=f"controller-{c.name}") for c in self.controllers]
        ticking = [asyncio.create_task(self._tick(*p), name=f"periodic-{p[0]}") for p in self._periodic]
        try:
            await self._stop.wait()
        finally:
            for task in ticking:
                task.cancel()
            # Also reached when the elector cancels us (renewal failed): stop taking work either way.
            await asyncio.gather(
                *(c.shutdown(self.options.shutdown_timeout) for c in self.controllers), return_exceptions=True
            )
            await asyncio.gather(*tasks, *ticking, return_exceptions=True)
            self.metrics.set_leader(False)
        return EXIT_OK

    async def _tick(self, name: str, period: float, tick: Callable[[], None]) -> None:
        while True:
            await self.clock.sleep(period)
            try:
                tick()
            except Exception:  # one bad scan must not end the scans
                log.exception("periodic task failed", task=name)

    async def _wait_for_caches(self) -> bool:
        deadline = self.clock.monotonic() + self.options.cache_sync_timeout
        while not self.caches_synced():
            if self._stop.is_set():
                return False
            if self.clock.monotonic() > deadline:
                log.error("caches did not sync in time", timeout=self.options.cache_sync_timeout)
                return False
            await asyncio.sleep(0.05)
        return True
