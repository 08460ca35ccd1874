"""A Site's status, computed from what the operator knows and what the site's agent reports. Pure.

The agent renews its heartbeat Lease (``{site}-agent``) about every 10 s, and reports in the same
status, under its own field manager, when something changes and at least every minute:
``lastHeartbeatTime`` (the time of that report) and ``agent`` (its version, the digest of the
configuration it runs, and why it refused a newer one). The newer of the Lease's ``renewTime`` and
``lastHeartbeatTime`` is the heartbeat. From those and the site's Paths the operator derives the phase
and the conditions:

- ``KeysReady`` and ``AddressAssigned``: the site can work as specified (else ``Failed``);
- ``AgentReporting``: a heartbeat within the last 30 s (never one: ``Pending``; a stale one: ``Degraded``);
- ``ConfigApplied``: the agent runs the configuration the operator rendered last (one it refused, or a
  data plane that cannot run it, makes the site ``Degraded``; one it has not picked up yet is only a
  moment's delay and changes nothing else);
- ``SubnetsAccepted``: no other site contests its LAN prefixes (a contested one is not routed to it, and
  the site is ``Degraded``; see ``site.conflicts``);
- ``Ready``: ``Active``, or the first of the above that is not, else ``PathsNotUp``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from patronus.api.reporting import HEARTBEAT_STALE_AFTER
from patronus.kube.timestamps import parse_time
from patronus.operator.reconcile.conditions import Cond, merge
from patronus.runtime.cache import Object
from patronus.runtime.events import EventType
from patronus.topology import mean_health

CONFIG_REJECTED = "ConfigRejected"
DATA_PLANE_ERROR = "DataPlaneError"
# The agent runs what it was given, or cannot: the site then does not work as specified.
_NOT_RUNNING = frozenset({CONFIG_REJECTED, DATA_PLANE_ERROR})
_DIGEST_SHOWN = 12


def last_heartbeat(status: Mapping[str, Any], lease: Mapping[str, Any] | None) -> datetime | None:
    """The agent's latest sign of life: its Lease's renewal or its latest status report."""
    renewed = parse_time(((lease or {}).get("spec") or {}).get("renewTime"))
    reported = parse_time(status.get("lastHeartbeatTime"))
    times = [when for when in (renewed, reported) if when is not None and when.tzinfo is not None]
    return max(times) if times else None


@dataclass(frozen=True, slots=True)
class SiteFacts:
    """Everything a Site's status is computed from."""

    generation: int | None
    heartbeat_age: float | None
    """Seconds since the agent's last heartbeat; None if it never sent one."""
    keys: Cond
    address: Cond
    routes: Cond
    """SubnetsAccepted: whether another site contests some of its LAN prefixes."""
    config_digest: str
    """The digest of the configuration the operator rendered for the site."""
    agent: Mapping[str, Any]
    """``status.agent`` as the agent wrote it (empty when it wrote none)."""
    paths: Sequence[Object]
    """The Paths that start at the site."""
    ready_peers: int
    public_key: str | None
    overlay_address: str | None
    config_map: str
    heartbeat_lease: str


def _state(path: Object) -> Any:
    return (path.get("status") or {}).get("state")


def agent_reporting(heartbeat_age: float | None) -> Cond:
    if heartbeat_age is None:
        return Cond("AgentReporting", "False", "NeverReported", "the site's agent has not reported yet")
    if heartbeat_age > HEARTBEAT_STALE_AFTER:
        message = f"no heartbeat for more than {HEARTBEAT_STALE_AFTER:.0f}s"
        return Cond("AgentReporting", "False", "HeartbeatStale", message)
    return Cond("AgentReporting", "True", "HeartbeatFresh")


def config_applied(agent: Mapping[str, Any], digest: str) -> Cond:
    running, error, kernel = agent.get("configDigest"), agent.get("configError"), agent.get("dataPlaneError")
    if running == digest and not kernel:
        return Cond("ConfigApplied", "True", "Applied")
    if error and running != digest:
        message = f"the agent keeps its last good configuration and refused the newest: {error}"
        return Cond("ConfigApplied", "False", CONFIG_REJECTED, message)
    if kernel:
        message = f"the data plane does not fully run the configuration (retried): {kernel}"
        return Cond("ConfigApplied", "False", DATA_PLANE_ERROR, message)
    if not running:
        return Cond("ConfigApplied", "Unknown", "NotReported", "the agent has not said what it runs")
    message = (
        f"the agent runs configuration {str(running)[:_DIGEST_SHOWN]}; the newest is {digest[:_DIGEST_SHOWN]}"
    )
    return Cond("ConfigApplied", "False", "Applying", message)


def phase_for(facts: SiteFacts, reporting: Cond, config: Cond) -> str:
    """Failed: it cannot work as specified; Pending: its agent never reported; Degraded: the agent went
    quiet, refused its configuration, or some of its paths are not up; Active otherwise."""
    if facts.keys.status != "True" or facts.address.status != "True":
        return "Failed"
    if facts.heartbeat_age is None:
        return "Pending"
    if reporting.status != "True" or config.reason in _NOT_RUNNING or facts.routes.status != "True":
        return "Degraded"
    if any(_state(p) != "up" for p in facts.paths):
        return "Degraded"
    return "Active"


def ready_condition(phase: str, explaining: Sequence[Cond]) -> Cond:
    """Ready, with the reason of the first condition in ``explaining`` that holds the site back."""
    if phase == "Active":
        return Cond("Ready", "True", "Active")
    reason = next((c.reason for c in explaining if c.status != "True"), "PathsNotUp")
    return Cond("Ready", "False", reason, f"site is {phase}")


def site_status(previous: Mapping[str, Any], facts: SiteFacts, *, now: datetime) -> dict[str, Any]:
    """The status fields the operator owns. Pure."""
    reporting = agent_reporting(facts.heartbeat_age)
    config = config_applied(facts.agent, facts.config_digest)
    phase = phase_for(facts, reporting, config)
    rejected = [config] if config.reason in _NOT_RUNNING else []
    ready = ready_condition(phase, [facts.keys, facts.address, reporting, *rejected, facts.routes])
    up = [p for p in facts.paths if _state(p) == "up"]
    health = mean_health(((p.get("status") or {}).get("health") or {}).get("healthScore") for p in up)
    status: dict[str, Any] = {
        "phase": phase,
        "peers": facts.ready_peers,
        "activePaths": len(up),
        "configMap": facts.config_map,
        "heartbeatLease": facts.heartbeat_lease,
        "observedGeneration": facts.generation,
        "conditions": merge(
            previous.get("conditions"),
            [facts.keys, facts.address, reporting, config, facts.routes, ready],
            now=now,
            generation=facts.generation,
        ),
    }
    if facts.public_key:
        status["publicKey"] = facts.public_key
    if facts.overlay_address:
        status["overlayAddress"] = facts.overlay_address
    if health is not None:
        status["healthScore"] = round(health, 1)
    return status


def phase_event(before: str | None, after: str) -> tuple[EventType, str, str] | None:
    """The Event (type, reason, message) a phase change deserves, if any."""
    if before == after:
        return None
    if after == "Active":
        return "Normal", "SiteActive", "the site's agent reports and its paths are up"
    if after == "Failed":
        return "Warning", "SiteFailed", "the site cannot work as specified; see conditions"
    if after == "Degraded" and before == "Active":
        return "Warning", "SiteDegraded", "agent quiet, configuration refused or paths not up; see conditions"
    return None
