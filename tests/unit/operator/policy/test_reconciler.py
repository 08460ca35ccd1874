"""The Policy reconciler against FakeKube: references, and the enforcing sites' reports summed up."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.kube.resource import POLICY, SITE
from patronus.operator.policy.reconciler import COUNTERS_REFRESH, PolicyReconciler
from tests.unit.operator.world import World, path, policy, site, writes_of

ROUTED = policy("voice", primary=("a", "a-b-fiber"), backup="a-b-lte")
PATHS = [path("a-b-fiber", "a", "b"), path("a-b-lte", "a", "b")]

CASES: dict[str, tuple[list[dict[str, Any]], tuple[str, str], tuple[str, str]]] = {
    "site missing": ([ROUTED, *PATHS], ("False", "SiteNotFound"), ("False", "SiteNotFound")),
    "path missing": ([ROUTED, site("a"), PATHS[0]], ("False", "PathNotFound"), ("False", "PathNotFound")),
    "path from another site": (
        [ROUTED, site("a"), site("b"), PATHS[0], path("a-b-lte", "b", "a")],
        ("False", "PathNotFromSite"),
        ("False", "PathNotFromSite"),
    ),
    "resolved, no report yet": (
        [ROUTED, site("a"), *PATHS],
        ("True", "ReferencesExist"),
        ("False", "AwaitingAgent"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_references(case: str) -> None:
    objects, resolved, ready = CASES[case]
    world = World(*objects)
    reconciler = PolicyReconciler(world.ctx)
    assert writes_of(await world.reconcile(reconciler, "voice")) == [("apply", "policies/status", "voice")]
    conditions = world.conditions(POLICY, "voice")
    assert (conditions["ReferencesResolved"], conditions["Ready"]) == (resolved, ready)
    assert world.events.reasons() == ([] if resolved[0] == "True" else [resolved[1]])
    assert await world.reconcile(reconciler, "voice") == []
    assert len(world.events.events) <= 1, "a problem is said once"


def _report(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


async def _reports(world: World, site_name: str, *reports: dict[str, Any]) -> None:
    await world.kube.apply(
        {
            "apiVersion": SITE.api_version,
            "kind": "Site",
            "metadata": {"name": site_name, "namespace": "ns"},
            "status": {"policies": list(reports)},
        },
        field_manager="patronus-agent",
        subresource="status",
        kind=SITE,
    )
    world.sync()


async def test_one_enforcing_site_gives_its_values() -> None:
    world = World(ROUTED, site("a"), site("b"), *PATHS)
    reconciler = PolicyReconciler(world.ctx)
    await world.reconcile(reconciler, "voice")
    report = _report(
        "voice",
        active=True,
        pathInUse="a-b-lte",
        matchedFlows=12,
        bytesRouted=3400,
        failoverCount=1,
        lastFailoverTime="2026-03-01T11:00:00.250Z",
    )
    await _reports(world, "a", report)
    await _reports(world, "b", _report("voice", active=True, matchedFlows=999))  # b does not enforce it
    assert writes_of(await world.reconcile(reconciler, "voice")) == [("apply", "policies/status", "voice")]
    status = world.status(POLICY, "voice")
    entry = {
        "site": "a",
        "active": True,
        "pathInUse": {"siteRef": "a", "pathId": "a-b-lte"},
        "matchedFlows": 12,
        "bytesRouted": 3400,
        "failoverCount": 1,
        "lastFailoverTime": "2026-03-01T11:00:00.250Z",
    }
    assert status["sites"] == [entry]
    assert {k: status[k] for k in entry if k != "site"} == {k: v for k, v in entry.items() if k != "site"}
    assert world.conditions(POLICY, "voice")["Ready"] == ("True", "Enforced")
    assert await world.reconcile(reconciler, "voice") == []


async def test_a_namespace_wide_policy_sums_every_sites_report() -> None:
    world = World(policy("web"), site("a"), site("b"), site("c"))
    reconciler = PolicyReconciler(world.ctx)
    await _reports(
        world,
        "a",
        _report(
            "web",
            active=True,
            matchedFlows=1,
            bytesRouted=10,
            failoverCount=2,
            lastFailoverTime="2026-03-01T10:00:00.000Z",
        ),
    )
    await _reports(
        world,
        "b",
        _report(
            "web", active=True, matchedFlows=2, bytesRouted=20, lastFailoverTime="2026-03-01T11:30:00.000Z"
        ),
        _report("other", active=True),
    )
    await world.reconcile(reconciler, "web")
    status = world.status(POLICY, "web")
    assert [s["site"] for s in status["sites"]] == ["a", "b"]
    assert (status["matchedFlows"], status["bytesRouted"], status["failoverCount"]) == (3, 30, 2)
    assert status["lastFailoverTime"] == "2026-03-01T11:30:00.000Z"
    assert status["active"] is False, "c has not installed it"
    assert "pathInUse" not in status, "no single path for several sites"
    assert world.conditions(POLICY, "web")["Ready"] == ("False", "AwaitingAgent")

    await _reports(world, "c", _report("web", active=True))
    await world.reconcile(reconciler, "web")
    assert world.status(POLICY, "web")["active"] is True
    assert world.conditions(POLICY, "web")["Ready"] == ("True", "Enforced")


async def test_reports_that_go_away_take_their_fields_with_them() -> None:
    world = World(ROUTED, site("a"), *PATHS)
    reconciler = PolicyReconciler(world.ctx)
    await _reports(world, "a", _report("voice", active=True, matchedFlows=5))
    await world.reconcile(reconciler, "voice")
    assert world.status(POLICY, "voice")["matchedFlows"] == 5
    await _reports(world, "a")
    await world.reconcile(reconciler, "voice")
    status = world.status(POLICY, "voice")
    assert not {"active", "matchedFlows", "sites"} & set(status), status


async def test_counters_alone_are_written_once_a_refresh_and_news_at_once() -> None:
    world = World(policy("web"), site("a"), site("b"))
    reconciler = PolicyReconciler(world.ctx)
    await _reports(world, "a", _report("web", active=True, matchedFlows=1, bytesRouted=10))
    await _reports(world, "b", _report("web", active=True, matchedFlows=2, bytesRouted=20))
    assert writes_of(await world.reconcile(reconciler, "web")) == [("apply", "policies/status", "web")]

    await _reports(world, "a", _report("web", active=True, matchedFlows=5, bytesRouted=50))
    assert await world.reconcile(reconciler, "web") == [], "counters alone wait"
    assert world.last_result is not None
    assert world.last_result.requeue_after == pytest.approx(COUNTERS_REFRESH)
    world.clock.advance(COUNTERS_REFRESH / 2)
    assert await world.reconcile(reconciler, "web") == []
    assert world.last_result is not None
    assert world.last_result.requeue_after == pytest.approx(COUNTERS_REFRESH / 2)
    world.clock.advance(COUNTERS_REFRESH / 2)
    assert writes_of(await world.reconcile(reconciler, "web")) == [("apply", "policies/status", "web")]
    assert world.status(POLICY, "web")["matchedFlows"] == 7

    await _reports(world, "b", _report("web", active=True, matchedFlows=9, failoverCount=1, pathInUse="x"))
    assert writes_of(await world.reconcile(reconciler, "web")) == [("apply", "policies/status", "web")], (
        "a failover is news: written at once, counters and all"
    )
    status = world.status(POLICY, "web")
    assert (status["failoverCount"], status["matchedFlows"]) == (1, 14)

    await _reports(world, "b", _report("web", active=False, matchedFlows=10))
    assert writes_of(await world.reconcile(reconciler, "web")) == [("apply", "policies/status", "web")]
    assert world.conditions(POLICY, "web")["Ready"] == ("False", "AwaitingAgent")


async def test_a_sites_reports_are_read_one_by_one() -> None:
    world = World(policy("web"), site("a"))
    reconciler = PolicyReconciler(world.ctx)
    await _reports(world, "a", _report("web", active=True, matchedFlows=3), _report("other", matchedFlows=-1))
    await world.reconcile(reconciler, "web")
    entry = world.status(POLICY, "web")["sites"][0]
    assert entry["matchedFlows"] == 3, "another policy's bad report is left out"
