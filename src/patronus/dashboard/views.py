"""What the browser is sent: small, flat JSON views of Sites, Paths, Policies and Events (pure functions).

The API objects carry much the page never shows (managed fields, specs of probes, conditions); a view
keeps what the topology, the site, path and policy pages draw, in the units they draw it (milliseconds,
percent, scores 0-100). A missing status is shown as what it means: a Path nobody reported on is
``unknown``, never up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from patronus.kube.timestamps import parse_time

PATH_STATES = ("up", "degraded", "down", "unknown")


class SiteView(TypedDict):
    name: str
    phase: str
    location: str
    underlays: list[str]
    subnets: list[str]
    healthScore: float | None
    activePaths: int | None
    peers: int | None
    lastHeartbeatTime: str | None
    agentVersion: str | None
    configError: str | None


class PathView(TypedDict):
    name: str
    source: str
    destination: str
    underlay: str
    state: str
    latencyMs: float | None
    jitterMs: float | None
    lossPct: float | None
    healthScore: float | None
    lastChecked: str | None


class PolicyView(TypedDict):
    name: str
    priority: int
    site: str | None
    primaryPath: str | None
    backupPath: str | None
    pathInUse: str | None
    onBackup: bool
    active: bool | None
    failoverCount: int
    lastFailoverTime: str | None
    matchedFlows: int | None
    bytesRouted: int | None
    qosClass: str | None


class EventView(TypedDict):
    uid: str
    type: str
    reason: str
    message: str
    kind: str
    object: str
    count: int
    time: str | None


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def site_view(obj: Mapping[str, Any]) -> SiteView:
    spec, status = _spec(obj), _status(obj)
    agent = status.get("agent") or {}
    return {
        "name": _name(obj),
        "phase": str(status.get("phase") or "Pending"),
        "location": str(spec.get("location") or ""),
        "underlays": [str(u.get("name")) for u in spec.get("underlays") or () if u.get("name")],
        "subnets": [str(s) for s in spec.get("subnets") or ()],
        "healthScore": _number(status.get("healthScore")),
        "activePaths": status.get("activePaths"),
        "peers": status.get("peers"),
        "lastHeartbeatTime": status.get("lastHeartbeatTime"),
        "agentVersion": agent.get("version"),
        "configError": agent.get("configError"),
    }


def path_view(obj: Mapping[str, Any]) -> PathView:
    spec, status = _spec(obj), _status(obj)
    health = status.get("health") or {}
    state = str(status.get("state") or "unknown")
    return {
        "name": _name(obj),
        "source": str((spec.get("source") or {}).get("siteRef", "")),
        "destination": str((spec.get("destination") or {}).get("siteRef", "")),
        "underlay": str(spec.get("underlay") or "default"),
        "state": state if state in PATH_STATES else "unknown",
        "latencyMs": _number(health.get("latencyMs")),
        "jitterMs": _number(health.get("jitterMs")),
        "lossPct": _number(health.get("packetLossPct")),
        "healthScore": _number(health.get("healthScore")),
        "lastChecked": status.get("lastChecked"),
    }


def _path_id(ref: Any) -> str | None:
    return str(ref["pathId"]) if isinstance(ref, Mapping) and ref.get("pathId") else None


def enforcing_site(obj: Mapping[str, Any]) -> str | None:
    """The site whose agent steers the policy (its paths start there); None: every site."""
    action = _spec(obj).get("action") or {}
    return (action.get("primaryPath") or action.get("backupPath") or {}).get("siteRef")


def site_report(site: Mapping[str, Any] | None, policy: str) -> dict[str, Any] | None:
    """The enforcing site's agent's own report on ``policy`` (``status.policies``), the freshest word."""
    for report in _status(site).get("policies") or () if site else ():
        if isinstance(report, Mapping) and report.get("name") == policy:
            return {
                **report,
                "pathInUse": {"pathId": report["pathInUse"]} if report.get("pathInUse") else None,
            }
    return None


def policy_view(obj: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> PolicyView:
    """The policy and the path in use: from its enforcing site's agent report when given (written at
    once after a failover), else from the Policy's status (the operator's summary of those reports)."""
    spec, status = _spec(obj), _status(obj)
    action = spec.get("action") or {}
    primary, backup = _path_id(action.get("primaryPath")), _path_id(action.get("backupPath"))
    reports = [s for s in status.get("sites") or () if isinstance(s, Mapping)]
    first: Mapping[str, Any] = report or (reports[0] if reports else {})
    if report:
        status = {}
    in_use = _path_id(status.get("pathInUse")) or _path_id(first.get("pathInUse"))
    site = enforcing_site(obj) or first.get("site")
    return {
        "name": _name(obj),
        "priority": int(spec.get("priority") or 0),
        "site": site,
        "primaryPath": primary,
        "backupPath": backup,
        "pathInUse": in_use,
        "onBackup": in_use is not None and in_use == backup and in_use != primary,
        "active": status.get("active", first.get("active")),
        "failoverCount": int(status.get("failoverCount") or first.get("failoverCount") or 0),
        "lastFailoverTime": status.get("lastFailoverTime") or first.get("lastFailoverTime"),
        "matchedFlows": status.get("matchedFlows", first.get("matchedFlows")),
        "bytesRouted": status.get("bytesRouted", first.get("bytesRouted")),
        "qosClass": (action.get("qos") or {}).get("class"),
    }


def event_view(obj: Mapping[str, Any]) -> EventView:
    involved = obj.get("involvedObject") or {}
    metadata = obj.get("metadata") or {}
    when = obj.get("lastTimestamp") or obj.get("eventTime") or metadata.get("creationTimestamp")
    return {
        "uid": str(metadata.get("uid") or metadata.get("name") or ""),
        "type": str(obj.get("type") or "Normal"),
        "reason": str(obj.get("reason") or ""),
        "message": str(obj.get("message") or ""),
        "kind": str(involved.get("kind") or ""),
        "object": str(involved.get("name") or ""),
        "count": int(obj.get("count") or 1),
        "time": when,
    }


def event_sort_key(view: EventView) -> float:
    """Newest first when sorted in reverse; events without a time sort last."""
    when = parse_time(view["time"])
    return when.timestamp() if when else 0.0
