"""The heartbeat scan: which Sites shown as reporting have gone quiet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from patronus.operator.site.heartbeats import gone_stale

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _site(name: str, reporting: str, reported_ago: float | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "AgentReporting", "status": reporting}]}
    if reported_ago is not None:
        status["lastHeartbeatTime"] = (NOW - timedelta(seconds=reported_ago)).isoformat()
    return {"metadata": {"name": name, "namespace": "ns"}, "status": status}


def _leases(**renewed_ago: float) -> Any:
    def get(namespace: str, name: str) -> dict[str, Any] | None:
        site = name.removesuffix("-agent")
        if namespace != "ns" or site not in renewed_ago:
            return None
        when = NOW - timedelta(seconds=renewed_ago[site])
        return {"spec": {"renewTime": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}

    return get


def test_only_sites_shown_as_reporting_whose_newest_beat_is_old() -> None:
    sites = [
        _site("lease-fresh", "True", reported_ago=55),  # the status report is old, the Lease is not
        _site("lease-stale", "True", reported_ago=55),
        _site("status-only", "True", reported_ago=31),  # an agent without a Lease
        _site("status-fresh", "True", reported_ago=29),
        _site("never", "False"),  # never reported: nothing to go stale
        _site("already", "False", reported_ago=300),  # already shown stale
        _site("silent", "True"),  # shown reporting but no stamp at all
    ]
    leases = _leases(**{"lease-fresh": 5, "lease-stale": 31})
    stale = [key.name for key in gone_stale(sites, leases, NOW)]
    assert stale == ["lease-stale", "status-only", "silent"]
