"""The Path reconciler against FakeKube: both sites exist, and a quiet agent's Path never looks up."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.kube.resource import PATH
from patronus.operator.path.reconciler import PathReconciler
from tests.unit.operator.world import START, World, path, site, writes_of

FRESH = "2026-03-01T11:59:58.000Z"  # 2 s before the world's clock: within 3 x 10 s
STALE = "2026-03-01T11:59:00.000Z"  # 60 s before

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
    assert world.last_result.requeue_after == pytest.approx(28.5), "looked at again when it would go stale"
    world.clock.advance(40)
    await world.reconcile(reconciler, "p")
    assert world.status(PATH, "p")["state"] == "unknown"
    assert world.events.reasons() == ["PathStale"]
