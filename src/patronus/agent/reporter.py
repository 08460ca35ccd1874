"""What the agent tells the API: path checks, policy state, and a heartbeat, each via server-side apply.

The agent owns these status fields under its own field manager (``patronus-agent``), so the operator's
writes to other fields of the same status never conflict with them. One write per path check at most.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from patronus.agent.probe_stats import CheckResult
from patronus.api.meta import GROUP_VERSION
from patronus.kube.resource import PATH, POLICY, SITE, ResourceKind
from patronus.kube.rest import RestClient
from patronus.kube.timestamps import format_time
from patronus.runtime.clock import Clock, SystemClock

FIELD_MANAGER = "patronus-agent"


def _stamp(when: datetime) -> str:
    # Milliseconds: with probe intervals below a second, whole seconds cannot tell fresh from stale.
    return format_time(when, millis=True)


def path_status(result: CheckResult, checked_at: datetime) -> dict[str, Any]:
    """The status a check writes; a down path keeps its loss and score but has no latency to report."""
    health: dict[str, Any] = {
        "packetLossPct": round(result.loss_pct, 2),
        "healthScore": round(result.health_score, 1),
    }
    if result.latency_ms is not None:
        health["latencyMs"] = round(result.latency_ms, 2)
    if result.jitter_ms is not None:
        health["jitterMs"] = round(result.jitter_ms, 2)
    return {"state": result.state, "health": health, "lastChecked": _stamp(checked_at)}


class StatusReporter:
    def __init__(self, rest: RestClient, namespace: str, site: str, *, clock: Clock | None = None) -> None:
        self.rest = rest
        self.namespace = namespace
        self.site = site
        self.clock = clock or SystemClock()

    async def _apply(self, kind: ResourceKind, name: str, status: dict[str, Any]) -> None:
        await self.rest.apply(
            {
                "apiVersion": GROUP_VERSION,
                "kind": kind.kind,
                "metadata": {"name": name, "namespace": self.namespace},
                "status": status,
            },
            field_manager=FIELD_MANAGER,
            force=True,
            subresource="status",
            kind=kind,
        )

    async def heartbeat(self) -> None:
        await self._apply(SITE, self.site, {"lastHeartbeatTime": _stamp(self.clock.now())})

    async def path_check(self, path: str, result: CheckResult) -> None:
        await self._apply(PATH, path, path_status(result, self.clock.now()))

    async def policy(
        self,
        policy: str,
        *,
        path_in_use: str | None,
        matched_flows: int,
        bytes_routed: int,
        failover_count: int,
        last_failover: datetime | None,
    ) -> None:
        status: dict[str, Any] = {
            "active": True,
            "matchedFlows": matched_flows,
            "bytesRouted": bytes_routed,
            "failoverCount": failover_count,
        }
        if path_in_use is not None:
            status["pathInUse"] = {"siteRef": self.site, "pathId": path_in_use}
        if last_failover is not None:
            status["lastFailoverTime"] = _stamp(last_failover)
        await self._apply(POLICY, policy, status)
