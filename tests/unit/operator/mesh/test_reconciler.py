"""The Mesh reconciler against FakeKube: the Paths it writes and prunes, and its status."""

from __future__ import annotations

from typing import Any

import pytest

from patronus.kube.resource import MESH, PATH
from patronus.operator.mesh.reconciler import MeshReconciler
from tests.unit.operator.world import World, mesh, path, site, writes_of

FULL = ["m.a.b.default", "m.a.c.default", "m.b.a.default", "m.b.c.default", "m.c.a.default", "m.c.b.default"]

CASES: dict[str, tuple[list[dict[str, Any]], list[tuple[str, str, str]]]] = {
    "full mesh of three: six Paths, then the status": (
        [site("a"), site("b"), site("c"), mesh("m", ["a", "b", "c"])],
        [*(("create", "paths", name) for name in FULL), ("apply", "meshes/status", "m")],
    ),
    "hub and spokes: the hub pairs with each spoke": (
        [site("a"), site("b"), site("c"), mesh("m", ["a", "b", "c"], "hub-spoke")],
        [
            *(
                ("create", "paths", n)
                for n in ["m.a.b.default", "m.a.c.default", "m.b.a.default", "m.c.a.default"]
            ),
            ("apply", "meshes/status", "m"),
        ],
    ),
    "missing hub: no spoke is promoted": (
        [site("b"), site("c"), mesh("m", ["a", "b", "c"], "hub-spoke")],
        [("apply", "meshes/status", "m")],
    ),
    "invalid spec: only the status": (
        [site("a"), mesh("m", ["a", "a"])],
        [("apply", "meshes/status", "m")],
    ),
    "deleted: nothing": ([site("a")], []),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_one_reconcile_writes_exactly(case: str) -> None:
    objects, expected = CASES[case]
    world = World(*objects)
    assert writes_of(await world.reconcile(MeshReconciler(world.ctx), "m")) == expected


@pytest.mark.parametrize("case", sorted(CASES))
async def test_an_unchanged_mesh_writes_nothing(case: str) -> None:
    objects, _ = CASES[case]
    world = World(*objects)
    await world.reconcile(MeshReconciler(world.ctx), "m")
    assert await world.reconcile(MeshReconciler(world.ctx), "m") == []


async def test_paths_no_longer_implied_are_pruned_and_the_status_follows() -> None:
    world = World(site("a"), site("b"), site("c"), mesh("m", ["a", "b", "c"]))
    reconciler = MeshReconciler(world.ctx)
    await world.reconcile(reconciler, "m")
    await world.kube.patch_merge(MESH, "ns", "m", {"spec": {"sites": ["a", "b", "d"]}})
    world.sync()
    writes = writes_of(await world.reconcile(reconciler, "m"))
    assert writes == [
        *(
            ("delete", "paths", n)
            for n in ["m.a.c.default", "m.b.c.default", "m.c.a.default", "m.c.b.default"]
        ),
        ("apply", "meshes/status", "m"),
    ]
    status = world.status(MESH, "m")
    assert (status["totalSites"], status["totalPaths"], status["missingSites"]) == (2, 2, ["d"])
    assert world.conditions(MESH, "m") == {
        "PathsOwned": ("True", "AllOwned"),
        "Ready": ("False", "SitesMissing"),
        "SitesResolved": ("False", "SitesMissing"),
    }


async def test_a_path_changed_by_hand_is_put_back() -> None:
    world = World(site("a"), site("b"), mesh("m", ["a", "b"]))
    reconciler = MeshReconciler(world.ctx)
    await world.reconcile(reconciler, "m")
    await world.kube.patch_merge(PATH, "ns", "m.a.b.default", {"spec": {"underlay": "lte"}})
    world.sync()
    assert writes_of(await world.reconcile(reconciler, "m")) == [("apply", "paths", "m.a.b.default")]
    assert world.get(PATH, "m.a.b.default")["spec"]["underlay"] == "default"


async def test_the_status_sums_up_the_paths_that_are_up() -> None:
    world = World(site("a"), site("b"), mesh("m", ["a", "b"]))
    reconciler = MeshReconciler(world.ctx)
    await world.reconcile(reconciler, "m")
    for name, score in (("m.a.b.default", 90.0), ("m.b.a.default", 80.0)):
        status = {"state": "up", "health": {"healthScore": score}}
        await world.kube.apply(
            {
                "apiVersion": PATH.api_version,
                "kind": "Path",
                "metadata": {"name": name, "namespace": "ns"},
                "status": status,
            },
            field_manager="patronus-agent",
            subresource="status",
        )
    world.sync()
    assert writes_of(await world.reconcile(reconciler, "m")) == [("apply", "meshes/status", "m")]
    status = world.status(MESH, "m")
    assert (status["activePaths"], status["overallHealth"]) == (2, 85.0)
    assert world.conditions(MESH, "m")["Ready"] == ("True", "AllPathsUp")


async def test_a_path_the_mesh_does_not_own_is_reported_never_taken_over() -> None:
    """A user's Path, or another owner's, under a name the mesh needs stays as it is."""
    users = path("m.a.b.default", "a", "b")
    users["spec"]["underlay"] = "mine"
    world = World(site("a"), site("b"), mesh("m", ["a", "b"]), users)
    before = world.get(PATH, "m.a.b.default")
    reconciler = MeshReconciler(world.ctx)
    assert writes_of(await world.reconcile(reconciler, "m")) == [
        ("create", "paths", "m.b.a.default"),
        ("apply", "meshes/status", "m"),
    ]
    assert world.get(PATH, "m.a.b.default") == before
    assert world.conditions(MESH, "m")["PathsOwned"] == ("False", "PathNameTaken")
    assert world.conditions(MESH, "m")["Ready"] == ("False", "PathNameTaken")
    message = next(c["message"] for c in world.status(MESH, "m")["conditions"] if c["type"] == "PathsOwned")
    assert "m.a.b.default (no controller)" in message
    assert world.events.reasons() == ["PathNameTaken"]
    assert await world.reconcile(reconciler, "m") == [], "said once, nothing rewritten"

    await world.kube.delete(PATH, "ns", "m.a.b.default")
    world.sync()
    assert writes_of(await world.reconcile(reconciler, "m")) == [
        ("create", "paths", "m.a.b.default"),
        ("apply", "meshes/status", "m"),
    ]
    assert world.conditions(MESH, "m")["PathsOwned"] == ("True", "AllOwned")


async def test_a_path_made_while_the_cache_lagged_is_not_taken_over() -> None:
    world = World(site("a"), site("b"), mesh("m", ["a", "b"]))
    users = path("m.a.b.default", "a", "b")
    await world.kube.create(users)  # not in the cache yet
    reconciler = MeshReconciler(world.ctx)
    await world.reconcile(reconciler, "m")
    stored = world.get(PATH, "m.a.b.default")
    assert "ownerReferences" not in stored["metadata"]
    assert world.conditions(MESH, "m")["PathsOwned"] == ("False", "PathNameTaken")
