"""What the agent tells the API about itself and its paths, and when (see :mod:`patronus.api.reporting`).

The agent writes only its own objects' report fields (field manager ``patronus-agent``):

- its site's heartbeat **Lease** (``spec.renewTime``), every :data:`HEARTBEAT_INTERVAL` seconds, when the
  operator told it the Lease's name (``--heartbeat-lease``);
- its **Site**'s ``status.lastHeartbeatTime`` (the time of the report), ``status.agent`` (version, the
  digest of the configuration the data plane runs, why a newer one was refused, why the data plane lags)
  and ``status.policies`` (one entry per enforced policy: installed, the path the kernel uses, counters,
  the failover record), in one server-side apply when any of it but the counters changed, at once after
  a failover, and otherwise every :data:`STATUS_REFRESH` seconds (:class:`SiteReporter`; without a Lease,
  every heartbeat). The operator aggregates each Policy's status from these entries; the agent never
  writes a Policy.
- its **Paths**' ``status.state``, ``health`` and ``lastChecked``, after a check that changed the state or
  moved the health materially, and otherwise every :data:`STATUS_REFRESH` seconds
  (:func:`path_status`, gated by :class:`~patronus.agent.report_gate.ReportGate`).

Reports go through a :class:`~patronus.agent.report_queue.ReportQueue`, so none of this waits for the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from patronus.agent.dataplane.routing import PolicyCounters
from patronus.agent.probe_stats import CheckResult
from patronus.agent.report_gate import ReportGate, same_site_report
from patronus.agent.report_queue import Report, ReportQueue
from patronus.agent.switcher import PolicyRecord
from patronus.agent.tasks import sleep_or
from patronus.api.reporting import HEARTBEAT_INTERVAL, STATUS_REFRESH
from patronus.api.site import AgentReport, SitePolicyReport
from patronus.kube.resource import LEASE, PATH, SITE
from patronus.kube.timestamps import format_micro_time, format_time
from patronus.runtime.clock import Clock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

MAX_MESSAGE = 1024


def stamp(when: datetime) -> str:
    # Milliseconds: with probe intervals below a second, whole seconds cannot tell fresh from stale.
    return format_time(when, millis=True)


def path_status(result: CheckResult, checked_at: datetime) -> dict[str, Any]:
    """A path's status after a check: a path that never answered has no measurement to show, a down
    path keeps its loss and score but has no latency."""
    if result.state == "unknown":
        return {"state": "unknown", "lastChecked": stamp(checked_at)}
    health: dict[str, Any] = {
        "packetLossPct": round(result.loss_pct, 2),
        "healthScore": round(result.health_score, 1),
    }
    if result.latency_ms is not None:
        health["latencyMs"] = round(result.latency_ms, 2)
    if result.jitter_ms is not None:
        health["jitterMs"] = round(result.jitter_ms, 2)
    return {"state": result.state, "health": health, "lastChecked": stamp(checked_at)}


def path_report(namespace: str, path: str, status: dict[str, Any]) -> Report:
    return Report(PATH, namespace, path, status)


def policy_reports(
    policies: Iterable[str],
    kernel_paths: Mapping[str, str | None],
    records: Mapping[str, PolicyRecord],
    counters: Mapping[str, PolicyCounters],
) -> list[SitePolicyReport]:
    """One entry per enforced policy, from what the kernel does (never from what was only decided)."""
    entries = []
    for name in sorted(policies):
        record = records.get(name) or PolicyRecord()
        counted = counters.get(name)
        entries.append(
            SitePolicyReport(
                name=name,
                active=name in kernel_paths,
                path_in_use=kernel_paths.get(name),
                matched_flows=counted.new_flows if counted else 0,
                bytes_routed=counted.bytes if counted else 0,
                failover_count=record.failover_count,
                last_failover_time=record.last_failover,
            )
        )
    return entries


def _clip(message: str | None) -> str | None:
    if not message:
        return None
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def agent_report(
    *, version: str, config_digest: str | None, config_error: str | None, data_plane_error: str | None
) -> AgentReport:
    return AgentReport(
        version=version,
        config_digest=config_digest,
        config_error=_clip(config_error),
        data_plane_error=_clip(data_plane_error),
    )


def site_status(now: datetime, agent: AgentReport, policies: list[SitePolicyReport]) -> dict[str, Any]:
    """The agent's whole part of its Site's status; fields left out are released (SSA), so a cleared
    error disappears and a policy no longer enforced drops out of the list."""
    return {
        "lastHeartbeatTime": stamp(now),
        "agent": agent.to_wire(),
        "policies": [entry.to_wire() for entry in policies],
    }


class SiteReporter:
    """Every ``interval`` seconds (and at once after :meth:`kick`): renews the heartbeat Lease, and queues
    the Site report if it changed or ``refresh`` seconds passed; without a Lease, the report every time."""

    def __init__(
        self,
        queue: ReportQueue,
        *,
        namespace: str,
        site: str,
        clock: Clock,
        build: Callable[[], dict[str, Any]],
        lease: str | None = None,
        interval: float = HEARTBEAT_INTERVAL,
        refresh: float = STATUS_REFRESH,
    ) -> None:
        self._queue = queue
        self._namespace = namespace
        self._site = site
        self._clock = clock
        self._build = build
        self.lease = lease
        self.interval = interval
        self._gate = ReportGate(same_site_report, refresh)
        self._kicked = asyncio.Event()
        self._lease_missing_until = float("-inf")

    def kick(self) -> None:
        """Report now (a failover: ``kubectl get`` should show it within a round trip)."""
        self._kicked.set()

    def lease_missing(self) -> None:
        """The Lease is not there (404): the heartbeat goes in the Site status for the next ``refresh``
        seconds, while the operator makes the Lease again."""
        self._lease_missing_until = self._clock.monotonic() + self._gate.refresh
        log.warning("heartbeat Lease not found; reporting the heartbeat in the Site status", lease=self.lease)

    def report_now(self) -> None:
        now = self._clock.monotonic()
        if self.lease is not None:
            renewal = {"holderIdentity": self._site, "renewTime": format_micro_time(self._clock.now())}
            self._queue.put(Report(LEASE, self._namespace, self.lease, renewal, essential=True, part="spec"))
        status = self._build()
        beating_here = self.lease is None or now < self._lease_missing_until
        if self._gate.due(self._site, status, now, always=beating_here):
            self._queue.put(Report(SITE, self._namespace, self._site, status, essential=True))

    async def run(self) -> None:
        while True:
            self._kicked.clear()
            self.report_now()
            await sleep_or(self._clock, self.interval, self._kicked)
