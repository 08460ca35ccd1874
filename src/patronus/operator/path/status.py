"""A Path's status as the operator sees it: are both sites there, and is the agent's report fresh. Pure.

The source site's agent writes ``state``/``health``/``lastChecked`` (its own field manager) when they
change and at least every ``STATUS_REFRESH`` (60 s; see :mod:`patronus.api.reporting`). The operator
writes the conditions, and overrides ``state`` with ``unknown`` once the report is stale: older than
three refresh periods (or three monitoring intervals, if longer), or at once when the source site's
agent has stopped renewing its heartbeat (30 s). The agent's next report takes the field back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from patronus.api.reporting import PATH_STALE_AFTER_REFRESHES, STATUS_REFRESH
from patronus.kube.timestamps import parse_time
from patronus.operator.reconcile.conditions import Cond, merge
from patronus.runtime.events import EventType


@dataclass(frozen=True, slots=True)
class Freshness:
    age: float | None
    """Seconds since the agent's last check; None if it never reported."""
    stale_after: float
    agent_quiet: bool = False
    """The source site's agent stopped renewing its heartbeat: no report of it can be trusted."""

    @property
    def fresh(self) -> bool:
        return not self.agent_quiet and self.age is not None and self.age <= self.stale_after


def freshness(status: Mapping[str, Any], interval: float, now: datetime, *, agent_quiet: bool) -> Freshness:
    when = parse_time(status.get("lastChecked"))
    stale_after = PATH_STALE_AFTER_REFRESHES * max(interval, STATUS_REFRESH)
    return Freshness(None if when is None else (now - when).total_seconds(), stale_after, agent_quiet)


def agent_quiet(site: Mapping[str, Any] | None) -> bool:
    """The operator found the site's heartbeat stale (not merely never sent: a new site's paths say
    ``NeverReported`` themselves)."""
    conditions = ((site or {}).get("status") or {}).get("conditions") or []
    reporting = next((c for c in conditions if isinstance(c, dict) and c.get("type") == "AgentReporting"), {})
    return reporting.get("reason") == "HeartbeatStale"


def sites_condition(missing: Sequence[str]) -> Cond:
    if missing:
        return Cond("SitesResolved", "False", "SiteNotFound", f"sites not found: {', '.join(missing)}")
    return Cond("SitesResolved", "True", "SitesExist")


def reporting_condition(report: Freshness) -> Cond:
    if report.fresh:
        return Cond("Reporting", "True", "ReportFresh")
    if report.age is None:
        return Cond("Reporting", "False", "NeverReported", "the source site's agent has not reported yet")
    if report.agent_quiet:
        return Cond("Reporting", "False", "AgentQuiet", "the source site's agent sends no heartbeat")
    message = f"no report for more than {report.stale_after:.0f}s"
    return Cond("Reporting", "False", "ReportStale", message)


def ready_condition(missing: Sequence[str], fresh: bool, state: str) -> Cond:
    if missing:
        return Cond("Ready", "False", "SiteNotFound", f"sites not found: {', '.join(missing)}")
    if not fresh:
        return Cond("Ready", "Unknown", "NoRecentReport", "no recent report from the source site's agent")
    if state != "up":
        return Cond("Ready", "False", f"Path{state.capitalize()}", f"path is {state}")
    return Cond("Ready", "True", "PathUp")


def effective_state(status: Mapping[str, Any], report: Freshness) -> str:
    """The state people should see: the agent's, while its report is fresh; else unknown."""
    return str(status.get("state") or "unknown") if report.fresh else "unknown"


def path_status(
    previous: Mapping[str, Any],
    missing: Sequence[str],
    report: Freshness,
    *,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """The status fields the operator owns."""
    state = effective_state(previous, report)
    conditions = [
        sites_condition(missing),
        reporting_condition(report),
        ready_condition(missing, report.fresh, state),
    ]
    status: dict[str, Any] = {"observedGeneration": generation}
    if not report.fresh:
        status["state"] = "unknown"
    status["conditions"] = merge(previous.get("conditions"), conditions, now=now, generation=generation)
    return status


def state_event(before: str | None, state: str) -> tuple[EventType, str, str] | None:
    """The Event (type, reason, message) a change of the state people see deserves, if any."""
    if before is None or before == state:
        return None
    if state == "up":
        return "Normal", "PathUp", f"path is up (was {before})"
    if state in ("down", "degraded"):
        reason = "PathDown" if state == "down" else "PathDegraded"
        return "Warning", reason, f"path is {state} (was {before})"
    if state == "unknown" and before == "up":
        return "Warning", "PathStale", "no recent report from the source site's agent"
    return None
