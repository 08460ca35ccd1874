"""Views of the API objects, and the bounded in-memory history and failover timeline they feed."""

from __future__ import annotations

import pytest

from patronus.dashboard.history import FailoverTimeline, PathHistory
from patronus.dashboard.views import event_view, path_view, policy_view, site_report, site_view
from tests.unit.dashboard.world import event, path, path_name, path_status, site, voice


def test_path_view_keeps_what_the_page_draws() -> None:
    view = path_view(path("a", "b", "lte", path_status("degraded", "2026-11-30T10:00:00Z", 80.5, 2.5)))
    assert view == {
        "name": "m-a-b-lte",
        "source": "a",
        "destination": "b",
        "underlay": "lte",
        "state": "degraded",
        "latencyMs": 80.5,
        "jitterMs": 1.5,
        "lossPct": 2.5,
        "healthScore": 95.0,
        "lastChecked": "2026-11-30T10:00:00Z",
    }


@pytest.mark.parametrize("status", [None, {}, {"state": "sideways"}])
def test_a_path_nobody_reported_on_is_unknown_never_up(status: dict[str, str] | None) -> None:
    view = path_view(path("a", "b", "fiber", status))
    assert view["state"] == "unknown"
    assert view["latencyMs"] is None


def test_site_view_defaults_to_pending() -> None:
    obj = site("a")
    del obj["status"]
    view = site_view(obj)
    assert view["phase"] == "Pending"
    assert view["underlays"] == ["fiber", "lte"]


def test_policy_view_on_backup() -> None:
    primary = policy_view(voice(path_name("a", "b", "fiber")))
    assert (primary["pathInUse"], primary["onBackup"], primary["site"]) == ("m-a-b-fiber", False, "a")
    backup = policy_view(voice(path_name("a", "b", "lte"), failovers=2))
    assert (backup["pathInUse"], backup["onBackup"], backup["failoverCount"]) == ("m-a-b-lte", True, 2)
    assert policy_view(voice())["pathInUse"] is None


def test_policy_view_reads_a_per_site_report_when_there_is_no_top_level() -> None:
    obj = voice()
    obj["status"] = {
        "sites": [{"site": "a", "active": True, "pathInUse": {"siteRef": "a", "pathId": "m-a-b-lte"}}]
    }
    view = policy_view(obj)
    assert (view["pathInUse"], view["onBackup"], view["active"]) == ("m-a-b-lte", True, True)


def test_event_view() -> None:
    view = event_view(event("e1", "PathDown", "m-a-b-fiber", "2026-11-30T10:00:00Z"))
    assert (view["type"], view["reason"], view["kind"], view["object"]) == (
        "Warning",
        "PathDown",
        "Path",
        "m-a-b-fiber",
    )


def _report(second: int, state: str = "up") -> dict[str, object]:
    return path(
        "a", "b", "fiber", path_status(state, f"2026-11-30T10:00:{second:02d}Z", latency=float(second))
    )


def test_history_records_each_report_once_and_stays_bounded() -> None:
    history = PathHistory(per_path=3, max_paths=10)
    assert history.record(path_view(_report(1)))
    assert not history.record(path_view(_report(1)))  # the same report again (a resync)
    for second in range(2, 6):
        history.record(path_view(_report(second)))
    series = history.series("m-a-b-fiber")
    assert series["latencyMs"] == [3.0, 4.0, 5.0]
    assert series["time"] == sorted(series["time"])
    assert not history.record(path_view(path("a", "b", "fiber")))  # never reported: nothing to add


def test_history_forgets_the_least_recently_reported_path_first() -> None:
    history = PathHistory(per_path=5, max_paths=2)
    for index, (s, d) in enumerate((("a", "b"), ("b", "c"), ("a", "b"), ("c", "a"))):
        history.record(path_view(path(s, d, "fiber", path_status("up", f"2026-11-30T10:00:0{index}Z"))))
    assert len(history) == 2
    assert history.series("m-b-c-fiber")["time"] == []
    assert len(history.series("m-a-b-fiber")["time"]) == 2


def test_failover_timeline_records_switches_only() -> None:
    timeline = FailoverTimeline()
    assert timeline.observe(policy_view(voice("m-a-b-fiber")), now=100.0) is None  # first sight
    assert timeline.observe(policy_view(voice("m-a-b-fiber")), now=101.0) is None
    switch = timeline.observe(policy_view(voice("m-a-b-lte", failovers=1)), now=102.0)
    assert switch is not None
    assert (switch["fromPath"], switch["toPath"], switch["onBackup"]) == ("m-a-b-fiber", "m-a-b-lte", True)
    back = timeline.observe(policy_view(voice("m-a-b-fiber", failovers=1)), now=130.0)
    assert back == {"time": 130.0, "fromPath": "m-a-b-lte", "toPath": "m-a-b-fiber", "onBackup": False}
    assert len(timeline.switches("voice")) == 2


def test_the_enforcing_sites_report_is_the_freshest_word() -> None:
    stale = voice(path_name("a", "b", "fiber"))  # the operator has not summed up the failover yet
    a = site("a")
    a["status"]["policies"] = [
        {"name": "voice", "active": True, "pathInUse": "m-a-b-lte", "failoverCount": 1,
         "lastFailoverTime": "2026-11-30T10:00:05Z", "matchedFlows": 3, "bytesRouted": 900},
    ]  # fmt: skip
    report = site_report(a, "voice")
    assert report is not None
    view = policy_view(stale, report)
    assert (view["pathInUse"], view["onBackup"], view["failoverCount"], view["bytesRouted"]) == (
        "m-a-b-lte", True, 1, 900,
    )  # fmt: skip
    assert site_report(a, "bulk") is None
    assert site_report(None, "voice") is None
