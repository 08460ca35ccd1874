"""Which Sites' heartbeats have gone stale since their status said they were fresh. Pure.

Every agent renews its Lease every 10 s; a renewal requeues its Site only while the Site is not shown as
reporting (``wiring.filters.lease_renewal_matters``). Going stale is the absence of an event, so something
must look: rather than every Site requeueing itself before its heartbeat could go stale (a full reconcile
of every site every 20-30 s, the largest part of the operator's steady-state work at 1,000 sites), the
operator scans its caches every :data:`SCAN_PERIOD` seconds (``Manager.every``) and requeues only the
Sites whose verdict changed, as the node lifecycle controller scans node Leases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from patronus.api.reporting import HEARTBEAT_STALE_AFTER
from patronus.kube.resource import ObjectKey
from patronus.operator.site.children.names import child_names
from patronus.operator.site.status import last_heartbeat

SCAN_PERIOD = 2.0
"""Seconds between scans: how much later than 30 s a quiet agent may be noticed."""

Lookup = Callable[[str, str], Mapping[str, Any] | None]
"""``(namespace, name) -> Lease or None``: the Lease cache's ``get``."""


def _shown_reporting(site: Mapping[str, Any]) -> bool:
    for condition in (site.get("status") or {}).get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == "AgentReporting":
            return condition.get("status") == "True"
    return False


def gone_stale(sites: Iterable[Mapping[str, Any]], lease_of: Lookup, now: datetime) -> list[ObjectKey]:
    """The Sites shown as reporting whose latest heartbeat (Lease renewal or status report) is older than
    ``HEARTBEAT_STALE_AFTER`` at ``now``."""
    stale = []
    for site in sites:
        if not _shown_reporting(site):
            continue  # never reported or already stale: a renewal requeues it when it comes back
        metadata = site["metadata"]
        lease = lease_of(metadata["namespace"], child_names(metadata["name"]).lease)
        beat = last_heartbeat(site.get("status") or {}, lease)
        if beat is None or (now - beat).total_seconds() > HEARTBEAT_STALE_AFTER:
            stale.append(ObjectKey.of(site))
    return stale
