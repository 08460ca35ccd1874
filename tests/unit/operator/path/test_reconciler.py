"""The Path reconciler against FakeKube: both sites exist, and a quiet agent's Path never looks up."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.kube.resource import PATH
from patronus.operator.path.reconciler import PathReconciler
from patronus.operator.wiring.filters import path_changed_beyond_check
from tests.unit.operator.world import START, World, path, site, writes_of

FRESH = "2026-03-01T11:59:58.000Z"  # 2 s before the world's clock: within 3 refreshes of 60 s
STALE = "2026-03-01T11:56:50.000Z"  # 190 s before
QUIET = {
    "conditions": [
        {
            "type": "AgentReporting",
            "status": "False",
            "reason": "HeartbeatStale",
            "message": "no heartbeat for more than 30s",
            "lastTransitionTime": "2026-03-01T11:59:00Z",
        }
    ]
}

# objects -> (writes, state written by the operator or None, (Reporting, Ready) reasons)
CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[str, str, str]], str | None, tuple[str, str]]] = {
    "never reported": (
        [site("a"), site("b"), path("p", "a", "b")],
        [("apply", "paths/status", "p")],
        "unknown",
        ("NeverReported", "NoRecentReport"),
    ),
    "fresh report, up": (
        [site("a"), site("b"), path("p", "a", "b", state="up", lastChecked=FRESH)],
        [("apply", "paths/status", "p")],
        None,
        ("ReportFresh", "PathUp"),
    ),
    "fresh report, down": (
        [site("a"), site("b"), path("p", "a", "b", state="down", lastChecked=FRESH)],
        [("apply", "paths/status", "p")],
        None,
        ("ReportFresh", "PathDown"),
    ),
    "stale report": (
        [site("a"), site("b"), path("p", "a", "b", state="up", lastChecked=STALE)],
        [("apply", "paths/status", "p")],
        "unknown",
        ("ReportStale", "NoRecentReport"),
    ),
    "fresh report of a quiet agent": (
        [site("a", status=QUIET), site("b"), path("p", "a", "b", state="up", lastChecked=FRESH)],
        [("apply", "paths/status", "p")],
        "unknown",
        ("AgentQuiet", "NoRecentReport"),
    ),
    "a site is missing": (
        [site("a"), path("p", "a", "b", state="up", lastChecked=FRESH)],
        [("apply", "paths/status", "p")],
        None,
        ("ReportFresh", "SiteNotFound"),
    ),
    "invalid spec": ([path("p", "a", "a")], [("apply", "paths/status", "p")], None, ("", "InvalidSpec")),
    "deleted": ([site("a")], [], None, ("", "")),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_one_reconcile_writes_exactly(case: str) -> None:
    objects, expected, state, (reporting, ready) = CASES[case]
    world = World(*objects)
    assert world.clock.now() == START
    reconciler = PathReconciler(world.ctx)
    assert writes_of(await world.reconcile(reconciler, "p")) == expected
    if not expected:
        return
    conditions = world.conditions(PATH, "p")
    assert conditions["Ready"][1] == ready
    if reporting:
        assert conditions["Reporting"][1] == reporting
    if state is not None:
        assert world.status(PATH, "p")["state"] == state
    assert await world.reconcile(reconciler, "p") == [], "and nothing more"


async def test_a_path_going_quiet_turns_unknown_with_an_event_and_a_requeue_before() -> None:
    world = World(site("a"), site("b"), path("p", "a", "b", state="up", lastChecked=FRESH))
    reconciler = PathReconciler(world.ctx)
    await world.reconcile(reconciler, "p")
    assert world.last_result is not None
    assert world.last_result.requeue_after == pytest.approx(178.5), "looked at again when it would go stale"
    world.clock.advance(190)
    await world.reconcile(reconciler, "p")
    assert world.status(PATH, "p")["state"] == "unknown"
    assert world.events.reasons() == ["PathStale"]


async def _agent_checks(world: World, **status: Any) -> None:
    body = {"apiVersion": PATH.api_version, "kind": "Path", "metadata": {"name": "p", "namespace": "ns"}}
    await world.kube.apply(
        {**body, "status": status}, field_manager="patronus-agent", subresource="status", kind=PATH
    )
    world.sync()


async def test_a_check_the_path_controller_drops_would_have_written_nothing() -> None:
    """The proof for ``path_changed_beyond_check``: an update it rejects leaves the reconcile's writes
    unchanged, and the requeue the last reconcile asked for still finds the reports going stale."""
    world = World(site("a"), site("b"), path("p", "a", "b"))
    reconciler = PathReconciler(world.ctx)
    await world.reconcile(reconciler, "p")
    never = world.get(PATH, "p")
    await _agent_checks(world, state="up", lastChecked=world.later(0), health={"healthScore": 97.0})
    assert path_changed_beyond_check(never, world.get(PATH, "p")), "the first report counts"
    await world.reconcile(reconciler, "p")
    assert world.conditions(PATH, "p")["Ready"] == ("True", "PathUp")
    for score in (91.0, 88.5):  # checks that only move the time and the measurements: dropped
        world.clock.advance(10)
        before = world.get(PATH, "p")
        await _agent_checks(world, state="up", lastChecked=world.later(0), health={"healthScore": score})
        assert not path_changed_beyond_check(before, world.get(PATH, "p"))
        assert await world.reconcile(PathReconciler(world.ctx), "p") == []
    world.clock.advance(160.5)  # the requeue asked for at the first report
    assert await world.reconcile(reconciler, "p") == []
    assert world.last_result is not None
    assert world.last_result.requeue_after == pytest.approx(20.0)
    world.clock.advance(20.0)
    assert writes_of(await world.reconcile(reconciler, "p")) == [("apply", "paths/status", "p")]
    assert world.status(PATH, "p")["state"] == "unknown"
    stale = world.get(PATH, "p")
    await _agent_checks(world, state="up", lastChecked=world.later(0), health={"healthScore": 97.0})
    assert path_changed_beyond_check(stale, world.get(PATH, "p")), "the report after a silence counts"
