"""A Policy's status from the reports of the sites that enforce it. Pure.

Each enforcing site's agent reports the policy in its own Site's ``status.policies`` (installed or not,
the path in use, counters, failovers). The Policy's status lists each enforcing site's entry under
``sites`` and sums them up at the top: with one enforcing site (a policy with a primaryPath) its values;
with several (a namespace-wide policy) the counters and failovers summed, the latest failover, and
``active`` only when every enforcing site has it installed. Reports of sites that do not (or no longer)
enforce the policy are ignored. With no report at all the operator writes none of these fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from patronus.api.site import SitePolicyReport
from patronus.kube.timestamps import format_time

AGGREGATED_FIELDS = (
    "active",
    "pathInUse",
    "matchedFlows",
    "bytesRouted",
    "failoverCount",
    "lastFailoverTime",
    "sites",
)


@dataclass(frozen=True, slots=True)
class Installed:
    """How many of the enforcing sites have installed the policy."""

    active: int
    enforcing: int

    @property
    def everywhere(self) -> bool:
        return self.enforcing > 0 and self.active == self.enforcing


def _utc(when: datetime) -> str:
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return format_time(aware.astimezone(UTC), millis=True)


def site_entry(site: str, report: SitePolicyReport) -> dict[str, Any]:
    """One ``status.sites`` entry, in the API's spelling."""
    entry: dict[str, Any] = {
        "site": site,
        "active": report.active,
        "matchedFlows": report.matched_flows,
        "bytesRouted": report.bytes_routed,
        "failoverCount": report.failover_count,
    }
    if report.path_in_use:
        entry["pathInUse"] = {"siteRef": site, "pathId": report.path_in_use}
    if report.last_failover_time is not None:
        entry["lastFailoverTime"] = _utc(report.last_failover_time)
    return entry


def _summed(entries: Sequence[Mapping[str, Any]], everywhere: bool) -> dict[str, Any]:
    summed: dict[str, Any] = {
        "active": everywhere,
        "matchedFlows": sum(e["matchedFlows"] for e in entries),
        "bytesRouted": sum(e["bytesRouted"] for e in entries),
        "failoverCount": sum(e["failoverCount"] for e in entries),
    }
    failovers = [e["lastFailoverTime"] for e in entries if "lastFailoverTime" in e]
    if failovers:
        summed["lastFailoverTime"] = max(failovers)  # one format, so the latest sorts last
    return summed


def aggregate(
    enforcing: Sequence[str], reported: Mapping[str, Mapping[str, Any]]
) -> tuple[dict[str, Any], Installed]:
    """The aggregated status fields (empty when no enforcing site reported) and how installed it is,
    from the sites' entries (:func:`site_entry`) by site; the entries are shared, not copied."""
    entries = [reported[site] for site in sorted(enforcing) if site in reported]
    installed = Installed(sum(1 for e in entries if e["active"]), len(enforcing))
    if not entries:
        return {}, installed
    if len(enforcing) == 1:
        top = {k: v for k, v in entries[0].items() if k != "site"}
    else:
        top = _summed(entries, installed.everywhere)
    return {**top, "sites": entries}, installed


COUNTERS = ("matchedFlows", "bytesRouted")
"""Fields that grow with traffic at every report: alone, a change of them is not news (see
``PolicyReconciler``)."""


def without_counters(status: Mapping[str, Any]) -> dict[str, Any]:
    """``status`` without :data:`COUNTERS`, at the top and in each ``sites`` entry. Pure."""
    slim = {key: value for key, value in status.items() if key not in COUNTERS}
    sites = slim.get("sites")
    if isinstance(sites, list):
        slim["sites"] = [
            {key: value for key, value in entry.items() if key not in COUNTERS}
            if isinstance(entry, dict)
            else entry
            for entry in sites
        ]
    return slim
