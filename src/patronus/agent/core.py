"""The agent's data-plane loop: apply each accepted configuration, act on every check, sample counters.

Nothing here waits for the API server once the private key is known: a check (measured over its loss
window by :mod:`~patronus.agent.path_monitor`), is decided on (:mod:`~patronus.agent.steering`), made true
in the kernel
(:mod:`~patronus.agent.applier`, :mod:`~patronus.agent.switcher`), and only then *queued* for reporting.

Applying: the newest accepted configuration is applied at once, again after a failure with backoff
(:data:`APPLY_RETRY_INITIAL` doubling to :data:`APPLY_RETRY_MAX`), and again every
:data:`RESYNC_INTERVAL` seconds to repair drift (the applier changes only what differs). A configuration
that cannot be applied leaves the previous data plane running, and ``status.agent.dataPlaneError`` says
why. A refused configuration (validation) never gets here: it shows as ``status.agent.configError`` and a
Warning Event on the Site.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from patronus import __version__
from patronus.agent import keys
from patronus.agent.applier import CounterSample, DataPlane
from patronus.agent.configsource import Accepted, Refused
from patronus.agent.dataplane.commands import CommandError
from patronus.agent.desired import NotReady, plan_dataplane
from patronus.agent.metrics import AgentMetrics, PathView, PeerView, PolicyView, Snapshot
from patronus.agent.probe_stats import CheckResult
from patronus.agent.probing import ProbeSet
from patronus.agent.report_gate import ReportGate, same_path_report
from patronus.agent.report_queue import ReportQueue
from patronus.agent.reporting import (
    SiteReporter,
    agent_report,
    path_report,
    path_status,
    policy_reports,
    site_status,
)
from patronus.agent.steering import RouteChange, Steering
from patronus.agent.switcher import PolicySwitcher, Switch
from patronus.agent.tasks import sleep_or
from patronus.api.agentconfig import PathConfig
from patronus.kube.client import KubeClient
from patronus.kube.errors import KubeError
from patronus.kube.resource import POLICY
from patronus.runtime.clock import Clock
from patronus.runtime.events import EventRecorder, EventType
from patronus.runtime.informer import Backoff
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

RESYNC_INTERVAL = 60.0
APPLY_RETRY_INITIAL = 1.0
APPLY_RETRY_MAX = 60.0
PEER_RESYNC_MIN = 0.5
"""Seconds at least between two peer retries, however soon a backoff says."""
COUNTER_INTERVAL = 5.0
"""Seconds between reads of the kernel's counters (nftables, WireGuard) for reports and metrics."""

APPLY_ERRORS = (CommandError, NotReady, keys.KeyUnavailable, KubeError, OSError, ValueError, KeyError)


@dataclass(frozen=True)
class Identity:
    site: str
    namespace: str
    key: keys.KeySource
    heartbeat_lease: str | None = None


class AgentCore:
    """The data plane's side of one site's agent; see the module docstring."""

    def __init__(
        self,
        identity: Identity,
        *,
        client: KubeClient,
        clock: Clock,
        dataplane: DataPlane,
        probe_port: int,
        reports: ReportQueue,
        events: EventRecorder,
        site_reference: Callable[[], dict[str, Any]],
    ) -> None:
        self.identity = identity
        self._client = client
        self._clock = clock
        self.dataplane = dataplane
        self.reports = reports
        self.events = events
        self._site_reference = site_reference
        self.metrics = AgentMetrics(identity.site, __version__, self.snapshot)
        self.steering = Steering()
        self.switcher = PolicySwitcher(
            dataplane, self.steering, clock, on_switched=self._switched, on_failed=self._switch_failed
        )
        self.probes = ProbeSet(port=probe_port, clock=clock, on_check=self.on_check)
        self.site_reporter = SiteReporter(
            reports,
            namespace=identity.namespace,
            site=identity.site,
            clock=clock,
            build=self.site_status,
            lease=identity.heartbeat_lease,
        )
        self.path_reports = ReportGate(same_path_report)
        self.wanted: Accepted | None = None
        self.applied: Accepted | None = None
        self.applied_at: float | None = None
        self.config_error: str | None = None
        self.apply_error: str | None = None
        self.sample = CounterSample()
        self.latest: dict[str, CheckResult] = {}
        self._changed = asyncio.Event()
        self._acting = asyncio.Lock()
        self._paths: dict[str, PathConfig] = {}
        self._private_key: str | None = None

    # -- configuration ------------------------------------------------------------------------------

    def offer(self, accepted: Accepted) -> None:
        """A new valid configuration: apply it as soon as possible."""
        self.wanted = accepted
        if self.config_error is not None:
            self.config_error = None
            self.site_reporter.kick()  # the refusal is over, even if this text is the one running
        self._changed.set()

    def refuse(self, refused: Refused) -> None:
        """The newest configuration failed validation: say so; the data plane keeps the last good one."""
        self.config_error = refused.error
        self.events.event(self._site_reference(), "Warning", "ConfigRefused", refused.error)
        self.site_reporter.kick()

    async def apply_loop(self) -> None:
        """Apply on every change and every RESYNC_INTERVAL (drift); in between, retry just the peers
        that are due (a failed peer's backoff, a host name to resolve again)."""
        backoff = Backoff(APPLY_RETRY_INITIAL, APPLY_RETRY_MAX)
        full_at = self._clock.monotonic() + RESYNC_INTERVAL
        while True:
            await sleep_or(self._clock, self._until_next(full_at), self._changed)
            now = self._clock.monotonic()
            if not self._changed.is_set() and now < full_at:
                await self._resync_peers()
                continue
            self._changed.clear()
            if self.wanted is None or await self.apply(self.wanted):
                backoff.reset()
                full_at = now + RESYNC_INTERVAL
            else:
                full_at = now + backoff.next()

    def _until_next(self, full_at: float) -> float:
        due = self.dataplane.peers_due
        wake = full_at if due is None else min(full_at, due)
        return max(wake - self._clock.monotonic(), PEER_RESYNC_MIN)

    async def _resync_peers(self) -> None:
        try:
            await self.dataplane.resync_peers()
        except APPLY_ERRORS as error:
            log.warning("could not retry the failed peers", error=str(error))

    async def apply(self, target: Accepted) -> bool:
        """Make the data plane run ``target``; False (and ``apply_error``) when it could not."""
        fresh = self.applied is None or target.digest != self.applied.digest
        try:
            key = await self._key()
            plan = plan_dataplane(target.config)
            if fresh:
                self.steering.configure(target.config)
            unmatched = self.steering.unmatched_routes()
            await self.dataplane.apply(plan, key, self.steering.wanted_paths(), unmatched)
            if self.steering.unmatched_routes() != unmatched:  # moved while the apply ran: set them again
                await self.dataplane.set_main_routes(plan, self.steering.unmatched_routes())
            await self.probes.sync(plan.probers, plan.overlay, plan.interface_names)
        except APPLY_ERRORS as error:
            self.apply_error = f"configuration {target.digest[:12]}: {error}"
            self.metrics.config_applies.labels(self.identity.site, "error").inc()
            log.warning("could not apply the configuration; retrying", error=self.apply_error)
            return False
        self._paths = {path.name: path for path in target.config.paths}
        self.metrics.retain_paths(set(plan.probers))
        self.metrics.retain_policies({policy.name for policy in plan.policies})
        self.latest = {name: result for name, result in self.latest.items() if name in plan.probers}
        self.path_reports.retain(plan.probers)
        self.applied, self.applied_at, self.apply_error = target, self._clock.now().timestamp(), None
        self.metrics.config_applies.labels(self.identity.site, "success").inc()
        await self.switcher.converge()  # a decision taken while the apply ran
        if fresh:
            log.info(
                "configuration applied",
                digest=target.digest[:12],
                interfaces=len(plan.interfaces),
                paths=len(plan.probers),
                policies=len(plan.policies),
            )
            self.site_reporter.kick()
        return True

    async def _key(self) -> str:
        if self._private_key is None:
            self._private_key = await keys.load_key(self._client, self.identity.namespace, self.identity.key)
        return self._private_key

    # -- checks ------------------------------------------------------------------------------------

    async def on_check(self, path: str, result: CheckResult) -> None:
        """One check (or early verdict) of ``path``: decide, change the kernel, then queue the report. The
        prober's result is final: loss over its window, outages left out, ``unknown`` before a first
        answer."""
        now = self._clock.monotonic()
        self.latest[path] = result
        config = self._paths.get(path)
        if config is not None:
            self.metrics.observe_check(path, config.underlay, config.destination, result)
        # Checks of different paths end concurrently: decide and act one at a time, so each decision sees
        # what the previous one made true.
        async with self._acting:
            steps = self.steering.observe(path, result, now)
            self.switcher.note(steps.decisions)
            for change in steps.routes:
                await self._move_unmatched(change)
            await self.switcher.converge()
        status = path_status(result, self._clock.now())
        if self.path_reports.due(path, status, now):
            self.reports.put(path_report(self.identity.namespace, path, status))

    async def _move_unmatched(self, change: RouteChange) -> None:
        try:
            await self.dataplane.route_unmatched(change)
        except CommandError as error:
            log.warning("could not move unmatched traffic", destination=change.destination, error=str(error))
            return
        self.steering.commit_route(change)
        log.info("unmatched traffic moved", destination=change.destination, path=change.path)

    def _switched(self, switch: Switch) -> None:
        reason = "PolicyFailback" if switch.is_failback else "PolicyFailover"
        if not switch.is_failback and switch.previous is not None:
            self.metrics.failovers.labels(self.identity.site, switch.policy).inc()
        message = f"traffic moved from {switch.previous} to {switch.path}"
        message += f": {switch.reason}" if switch.reason else ""
        kind: EventType = "Normal" if switch.is_failback else "Warning"
        self.events.event(self._policy_reference(switch.policy), kind, reason, message)
        self.site_reporter.kick()

    def _switch_failed(self, switch: Switch) -> None:
        self.metrics.switch_errors.labels(self.identity.site, switch.policy).inc()
        message = f"could not move traffic from {switch.previous} to {switch.path}: {switch.error}"
        self.events.event(self._policy_reference(switch.policy), "Warning", "PolicySwitchFailed", message)
        self.site_reporter.kick()

    def _policy_reference(self, policy: str) -> dict[str, Any]:
        metadata = {"name": policy, "namespace": self.identity.namespace}
        return {"apiVersion": POLICY.api_version, "kind": POLICY.kind, "metadata": metadata}

    # -- counters, reports, metrics -----------------------------------------------------------------

    async def counters_loop(self) -> None:
        while True:
            if self.dataplane.plan is not None:
                try:
                    self.sample = await self.dataplane.counters()
                except (CommandError, ValueError) as error:
                    log.debug("could not read counters", error=str(error))
            await self._clock.sleep(COUNTER_INTERVAL)

    @property
    def dataplane_error(self) -> str | None:
        problems = [p for p in (self.apply_error, self.switcher.error) if p]
        problems += [
            f"peer {failure.public_key[:8]}...: {failure.error} (attempt {failure.attempts})"
            for failure in self.dataplane.peer_failures.values()
        ]
        return "; ".join(problems) if problems else None

    def site_status(self) -> dict[str, Any]:
        """The agent's part of its Site's status, from what the kernel does now."""
        report = agent_report(
            version=__version__,
            config_digest=self.applied.digest if self.applied else None,
            config_error=self.config_error,
            data_plane_error=self.dataplane_error,
        )
        policies = self.steering.policies if self.applied else []
        entries = policy_reports(
            policies, self.dataplane.kernel_paths, self.switcher.records, self.sample.policies
        )
        return site_status(self._clock.now(), report, entries)

    def ready(self) -> bool:
        """Configuration applied, and a tunnel works (a path answers), unless there is nothing to probe."""
        if self.applied is None:
            return False
        if not self.probes.paths:
            return True
        return any(result.state in ("up", "degraded") for result in self.latest.values())

    def snapshot(self) -> Snapshot:
        config = self.applied.config if self.applied else None
        paths = [
            PathView(p.name, p.underlay, p.destination, self.latest.get(p.name))
            for p in (config.paths if config else ())
            if p.name in self.latest or p.name in self.probes.paths
        ]
        kernel = self.dataplane.kernel_paths
        counters = self.sample.policies
        policies = [
            PolicyView(
                name,
                kernel.get(name),
                counters[name].bytes if name in counters else 0,
                counters[name].new_flows if name in counters else 0,
            )
            for name in sorted(kernel)
        ]
        return Snapshot(
            now=self._clock.now().timestamp(),
            paths=paths,
            policies=policies,
            peers=self._peer_views(),
            config_digest=self.applied.digest if self.applied else None,
            config_applied_at=self.applied_at,
            config_refused=self.config_error is not None,
            dataplane_error=self.dataplane_error is not None,
            report_backlog=self.reports.backlog,
            reports_written=self.reports.stats.written,
            reports_failed=self.reports.stats.failed,
            reports_dropped=self.reports.stats.dropped,
        )

    def _peer_views(self) -> list[PeerView]:
        config = self.applied.config if self.applied else None
        sites = {
            (iface.name, peer.public_key): (iface.underlay, peer.site)
            for iface in (config.interfaces if config else ())
            for peer in iface.peers
        }
        views = []
        for (interface, key), counters in sorted(self.sample.peers.items()):
            underlay, peer = sites.get((interface, key), ("", key[:8]))
            views.append(
                PeerView(
                    interface, underlay, peer, counters.rx_bytes, counters.tx_bytes, counters.latest_handshake
                )
            )
        return views

    async def teardown(self) -> None:
        """Stop probing and remove the data plane (also interfaces a previous run of this agent left)."""
        await self.probes.stop()
        known = [self.wanted, self.applied]
        names = {iface.name for accepted in known if accepted for iface in accepted.config.interfaces}
        removed = await self.dataplane.teardown(names)
        # Said once the kernel state is gone, so a pod's last lines show it left nothing behind.
        log.info("data plane removed", interfaces=removed)
