"""The site agent: one process that runs a Site's data plane and reports on it.

Its parts, each a module of its own:

- :mod:`~patronus.agent.configsource` watches the ConfigMap it is told about and validates each text;
- :mod:`~patronus.agent.sitewatch` watches its Site, whose deletion ends the agent;
- :mod:`~patronus.agent.core` applies configurations and acts on every path check (steer,
  switch), with :mod:`~patronus.agent.applier` for the kernel;
- :mod:`~patronus.agent.report_queue` and :mod:`~patronus.agent.reporting` write status, never in the
  data plane's way; Events go through the runtime's recorder;
- ``/healthz`` and ``/ready`` on the health port, ``/metrics`` (:mod:`~patronus.agent.metrics`) on its own.

:class:`SiteAgent` wires them and runs every background job under a
:class:`~patronus.agent.tasks.TaskSupervisor`. :meth:`SiteAgent.run` returns when told to stop
(SIGTERM) or when its Site is gone; either way it first removes its interfaces, rules, tables and qdiscs.

Health: ``/healthz`` fails when the event loop stalls, a supervised task is down, or a prober died;
``/ready`` passes once a configuration is applied and a tunnel works (some path answers), or at once
for a site with nothing to probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from dataclasses import dataclass

from patronus.agent.applier import DataPlane
from patronus.agent.configsource import ConfigSource
from patronus.agent.core import AgentCore, Identity
from patronus.agent.dataplane.commands import Runner, run
from patronus.agent.keys import KeySource
from patronus.agent.probing import PROBE_PORT
from patronus.agent.report_queue import Report, ReportQueue
from patronus.agent.sitewatch import SiteWatch
from patronus.agent.tasks import TaskSupervisor
from patronus.kube.client import KubeClient
from patronus.kube.resource import LEASE, SITE
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.events import EventRecorder
from patronus.runtime.health import HealthServer, HttpServer, MetricsServer
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

HEALTH_PORT = 8081
METRICS_PORT = 9102
EVENT_FLUSH_SECONDS = 2.0
EVENT_ATTEMPTS = 10
EVENT_RETRY_DELAY = 2.0
"""Events are retried for about 90 s (2, 4, ... 18 s apart), so a failover during a short API outage is
still recorded when the API returns."""


@dataclass(frozen=True)
class AgentOptions:
    """What an agent is told: whose agent it is, where its configuration and key are, where to serve.

    A port of None serves nothing; 0 binds an ephemeral port (tests)."""

    site: str
    namespace: str
    config_map: str
    key: KeySource
    heartbeat_lease: str | None = None
    """The Lease the operator made for this agent's heartbeat; None: the heartbeat is in the Site status."""
    probe_port: int = PROBE_PORT
    health_address: str = "0.0.0.0"
    health_port: int | None = HEALTH_PORT
    metrics_address: str = "0.0.0.0"
    metrics_port: int | None = METRICS_PORT


class Outcome(enum.Enum):
    """Why :meth:`SiteAgent.run` returned."""

    STOPPED = "stopped"
    SITE_GONE = "site gone"


class SiteAgent:
    """One Site's agent; see the module docstring."""

    def __init__(
        self,
        options: AgentOptions,
        client: KubeClient,
        *,
        clock: Clock | None = None,
        runner: Runner = run,
    ) -> None:
        self.options = options
        self.clock = clock or SystemClock()
        self.site_watch = SiteWatch(client, options.namespace, options.site, clock=self.clock)
        self.reports = ReportQueue(
            client, clock=self.clock, on_not_found=self._not_found, on_refused=self._refused
        )
        self.events = EventRecorder(
            client,
            "patronus-agent",
            host=options.site,
            clock=self.clock,
            max_attempts=EVENT_ATTEMPTS,
            retry_delay=EVENT_RETRY_DELAY,
            aggregate=False,  # the agent's Role may create Events, not patch them
        )
        self.core = AgentCore(
            Identity(options.site, options.namespace, options.key, options.heartbeat_lease),
            client=client,
            clock=self.clock,
            dataplane=DataPlane(runner=runner, clock=self.clock),
            probe_port=options.probe_port,
            reports=self.reports,
            events=self.events,
            site_reference=self.site_watch.reference,
        )
        self.config = ConfigSource(
            client,
            options.namespace,
            options.config_map,
            clock=self.clock,
            on_accepted=self.core.offer,
            on_refused=self.core.refuse,
        )
        self.tasks = TaskSupervisor(self.clock, on_restart=self._restarted)
        self.health: HealthServer | None = None
        self.metrics_server: MetricsServer | None = None
        self._log = log.bind(site=options.site, namespace=options.namespace)

    # -- health ---------------------------------------------------------------------------------------

    def alive(self) -> bool:
        return not self.tasks.failing() and self.core.probes.alive()

    def ready(self) -> bool:
        return self.core.ready()

    # -- lifecycle ------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> Outcome:
        """Run until ``stop`` is set or the Site is gone; the data plane is torn down before returning."""
        await self._start_servers()
        self._start_tasks()
        self._log.info("agent started", config_map=self.options.config_map, key=self.options.key.describe())
        try:
            outcome = await self._until_done(stop)
        finally:
            await self._shut_down()
        if outcome is Outcome.SITE_GONE:
            self._log.warning("site gone: data plane removed, exiting", reason=self.site_watch.reason)
        return outcome

    def _start_tasks(self) -> None:
        self.tasks.start("config-watch", self.config.run)
        self.tasks.start("site-watch", self.site_watch.run)
        self.tasks.start("apply", self.core.apply_loop)
        self.tasks.start("reports", self.reports.run)
        self.tasks.start("site-report", self.core.site_reporter.run)
        self.tasks.start("counters", self.core.counters_loop)
        self.tasks.start("events", self.events.run)

    async def _until_done(self, stop: asyncio.Event) -> Outcome:
        stopped = asyncio.ensure_future(stop.wait())
        gone = asyncio.ensure_future(self.site_watch.gone.wait())
        try:
            await asyncio.wait({stopped, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            gone.cancel()
        return Outcome.SITE_GONE if self.site_watch.gone.is_set() else Outcome.STOPPED

    async def _shut_down(self) -> None:
        await self.tasks.stop()
        try:
            await self.core.teardown()
        except Exception:
            self._log.exception("tearing the data plane down failed")
        await self.events.aclose(timeout=EVENT_FLUSH_SECONDS)
        for server in (self.health, self.metrics_server):
            if server is not None:
                await server.stop()
        self._log.info("agent stopped")

    async def _start_servers(self) -> None:
        options = self.options
        if options.health_port is not None:
            self.health = HealthServer(clock=self.clock)
            self.health.add_liveness_check("tasks", lambda: not self.tasks.failing())
            self.health.add_liveness_check("probers", self.core.probes.alive)
            self.health.add_readiness_check("dataplane", self.core.ready)
            await self.health.start(options.health_address, options.health_port)
        if options.metrics_port is not None:
            self.metrics_server = MetricsServer(self.core.metrics.registry)
            try:
                await self.metrics_server.start(options.metrics_address, options.metrics_port)
            except BaseException:
                await _stop(self.health)
                raise

    def _not_found(self, report: Report) -> None:
        if report.kind == SITE and report.name == self.options.site:
            self.site_watch.not_found()
        else:
            self._refused(report)

    def _refused(self, report: Report) -> None:
        if report.kind == LEASE:  # gone (404), or gone and not ours to create (403)
            self.core.site_reporter.lease_missing()

    def _restarted(self, task: str) -> None:
        self.core.metrics.task_restarts.labels(self.options.site, task).inc()


async def _stop(server: HttpServer | None) -> None:
    if server is not None:
        with contextlib.suppress(Exception):
            await server.stop()
