"""Which reports are written: a change at once, an unchanged report once per refresh."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.agent.report_gate import ReportGate, same_path_report, same_site_report


def _path(state: str = "up", *, score: float = 97.0, loss: float = 0.0, latency: float | None = 20.0) -> Any:
    health: dict[str, Any] = {"healthScore": score, "packetLossPct": loss}
    if latency is not None:
        health["latencyMs"] = latency
    return {"state": state, "health": health, "lastChecked": "2026-01-01T00:00:00.000Z"}


def test_the_first_report_then_changes_then_the_refresh() -> None:
    gate = ReportGate(same_path_report, refresh=60.0)
    assert gate.due("p", _path(), 0.0), "the first report is always written"
    assert not gate.due("p", _path(score=96.0), 10.0), "a wobble is not"
    assert gate.due("p", _path("down", latency=None), 20.0), "a new state is, at once"
    assert not gate.due("p", _path("down", latency=None), 79.9)
    assert gate.due("p", _path("down", latency=None), 80.0), "an unchanged report once per refresh"
    assert gate.due("q", _path(), 80.0), "each object on its own"


def test_drift_is_measured_from_the_last_report_written() -> None:
    gate = ReportGate(same_path_report, refresh=60.0)
    assert gate.due("p", _path(score=97.0), 0.0)
    assert not gate.due("p", _path(score=96.0), 1.0)
    assert gate.due("p", _path(score=95.0), 2.0), "two 1-point steps add up to the 2-point step"
    assert not gate.due("p", _path(score=96.0), 3.0)


@pytest.mark.parametrize(
    ("before", "after", "same"),
    [
        (_path(), _path(score=95.5), True),
        (_path(), _path(score=95.0), False),
        (_path(), _path(loss=0.9), True),
        (_path(), _path(loss=1.0), False),
        (_path(latency=20.0), _path(latency=23.9), True),
        (_path(latency=20.0), _path(latency=24.0), False),
        (_path(latency=2.0), _path(latency=2.9), True),  # under a millisecond on a short path
        (_path(latency=2.0), _path(latency=3.0), False),
        (_path(latency=20.0), _path(latency=None), False),
        (_path("up"), _path("degraded"), False),
    ],
)
def test_what_moves_a_path_report(before: Any, after: Any, same: bool) -> None:
    assert same_path_report(before, after) is same


def _site(*, flows: int = 0, active: bool = True, stamp: str = "t0", digest: str = "d1") -> dict[str, Any]:
    entry = {"name": "voice", "active": active, "matchedFlows": flows, "bytesRouted": flows * 100}
    return {"lastHeartbeatTime": stamp, "agent": {"configDigest": digest}, "policies": [entry]}


def test_a_site_report_changes_with_anything_but_its_counters_and_time() -> None:
    assert same_site_report(_site(), _site(flows=9, stamp="t1"))
    assert not same_site_report(_site(), _site(active=False))
    assert not same_site_report(_site(), _site(digest="d2"))
    assert not same_site_report(_site(), {**_site(), "policies": []})


def test_a_gate_forgets_objects_no_longer_reported() -> None:
    gate = ReportGate(same_path_report, refresh=60.0)
    assert gate.due("p", _path(), 0.0)
    gate.retain(["q"])
    assert gate.due("p", _path(), 1.0), "a path added again is reported at once"


def test_a_zero_refresh_writes_every_report() -> None:
    gate = ReportGate(same_site_report, refresh=0.0)
    assert gate.due("a", _site(), 0.0)
    assert gate.due("a", _site(), 0.0)
