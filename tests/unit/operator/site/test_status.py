"""A Site's phase and conditions from what the operator knows and what its agent reports. Pure."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from patronus.operator.reconcile.conditions import Cond
from patronus.operator.site.status import SiteFacts, last_heartbeat, phase_event, site_status
from tests.unit.operator.world import START

DIGEST = "d" * 64
OTHER = "e" * 64


def _path(state: str, score: float | None = None) -> dict[str, Any]:
    health = {"healthScore": score} if score is not None else {}
    return {"metadata": {"name": f"p-{state}-{score}"}, "status": {"state": state, "health": health}}


BASE = SiteFacts(
    generation=2,
    heartbeat_age=3.0,
    keys=Cond("KeysReady", "True", "KeyGenerated"),
    address=Cond("AddressAssigned", "True", "Assigned"),
    routes=Cond("SubnetsAccepted", "True", "NoConflict"),
    config_digest=DIGEST,
    agent={"version": "1.0", "configDigest": DIGEST},
    paths=[_path("up", 98.0), _path("up", 96.0)],
    ready_peers=2,
    public_key="pub",
    overlay_address="100.96.0.9",
    config_map="a-agent",
    heartbeat_lease="a-agent",
)

# facts -> (phase, Ready reason, ConfigApplied as (status, reason))
CASES: dict[str, tuple[SiteFacts, str, str, tuple[str, str]]] = {
    "reporting, applied, paths up": (BASE, "Active", "Active", ("True", "Applied")),
    "never reported": (
        replace(BASE, heartbeat_age=None, agent={}),
        "Pending",
        "NeverReported",
        ("Unknown", "NotReported"),
    ),
    "an agent that does not say what it runs": (
        replace(BASE, agent={}),
        "Active",
        "Active",
        ("Unknown", "NotReported"),
    ),
    "heartbeat stale": (replace(BASE, heartbeat_age=31.0), "Degraded", "HeartbeatStale", ("True", "Applied")),
    "configuration refused": (
        replace(BASE, agent={"configDigest": OTHER, "configError": "unknown schema version 9"}),
        "Degraded",
        "ConfigRejected",
        ("False", "ConfigRejected"),
    ),
    "the kernel refuses part of it": (
        replace(BASE, agent={"configDigest": DIGEST, "dataPlaneError": "nft: syntax error"}),
        "Degraded",
        "DataPlaneError",
        ("False", "DataPlaneError"),
    ),
    "newest configuration not picked up yet": (
        replace(BASE, agent={"configDigest": OTHER}),
        "Active",
        "Active",
        ("False", "Applying"),
    ),
    "a path down": (
        replace(BASE, paths=[_path("up", 98.0), _path("down")]),
        "Degraded",
        "PathsNotUp",
        ("True", "Applied"),
    ),
    "keys not usable": (
        replace(BASE, keys=Cond("KeysReady", "False", "KeySecretNotUsable", "x")),
        "Failed",
        "KeySecretNotUsable",
        ("True", "Applied"),
    ),
    "a contested subnet": (
        replace(BASE, routes=Cond("SubnetsAccepted", "False", "SubnetConflict", "x")),
        "Degraded",
        "SubnetConflict",
        ("True", "Applied"),
    ),
    "no address": (
        replace(BASE, address=Cond("AddressAssigned", "False", "PoolExhausted", "x")),
        "Failed",
        "PoolExhausted",
        ("True", "Applied"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_phase_and_conditions(case: str) -> None:
    facts, phase, ready_reason, applied = CASES[case]
    status = site_status({}, facts, now=START)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == phase
    assert conditions["Ready"]["reason"] == ready_reason
    assert conditions["Ready"]["status"] == ("True" if phase == "Active" else "False")
    assert (conditions["ConfigApplied"]["status"], conditions["ConfigApplied"]["reason"]) == applied
    assert [c["type"] for c in status["conditions"]] == [
        "AddressAssigned",
        "AgentReporting",
        "ConfigApplied",
        "KeysReady",
        "Ready",
        "SubnetsAccepted",
    ]


def test_the_operator_owned_fields() -> None:
    status = site_status({}, BASE, now=START)
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "phase": "Active",
        "peers": 2,
        "activePaths": 2,
        "configMap": "a-agent",
        "heartbeatLease": "a-agent",
        "observedGeneration": 2,
        "publicKey": "pub",
        "overlayAddress": "100.96.0.9",
        "healthScore": 97.0,
    }
    none_up = site_status({}, replace(BASE, paths=[_path("down")]), now=START)
    assert "healthScore" not in none_up, "unknown is not 0"


def test_a_refusal_says_why() -> None:
    facts = replace(BASE, agent={"configDigest": OTHER, "configError": "unknown schema version 9"})
    applied = next(c for c in site_status({}, facts, now=START)["conditions"] if c["type"] == "ConfigApplied")
    assert "unknown schema version 9" in applied["message"]


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        (None, "Pending", None),
        ("Pending", "Active", "SiteActive"),
        ("Active", "Active", None),
        ("Active", "Degraded", "SiteDegraded"),
        ("Pending", "Degraded", None),
        ("Active", "Failed", "SiteFailed"),
    ],
)
def test_phase_events(before: str | None, after: str, reason: str | None) -> None:
    event = phase_event(before, after)
    assert (event[1] if event else None) == reason


def test_the_heartbeat_is_the_newer_of_the_lease_and_the_report() -> None:
    renewed = {"spec": {"renewTime": "2026-03-01T12:00:10.000000Z"}}
    report = {"lastHeartbeatTime": "2026-03-01T12:00:05.000Z"}
    assert last_heartbeat(report, renewed) == datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
    assert last_heartbeat({"lastHeartbeatTime": "2026-03-01T12:00:20.000Z"}, renewed) == datetime(
        2026, 3, 1, 12, 0, 20, tzinfo=UTC
    ), "an agent started without a Lease reports in its status"
    assert last_heartbeat(report, None) == datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    assert last_heartbeat({}, {"spec": {}}) is None
    naive = {"spec": {"renewTime": "2026-03-01T12:00:10"}}
    assert last_heartbeat({"lastHeartbeatTime": "soon"}, naive) is None
