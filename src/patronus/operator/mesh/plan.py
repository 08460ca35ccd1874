"""A Mesh's plan, the difference to what exists, and its status. No writes.

The plan is the Paths the topology implies over the listed sites that exist (``topology.plan_paths``),
as stamped manifests, kept while the mesh and its sites stay the same: a big mesh implies thousands of
Paths, and re-planning and re-stamping them on every reconcile was most of its cost. The diff finds the
few Paths that need a write without a task per Path (an unchanged one costs a cache lookup), and the
Paths the mesh owns that it no longer wants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from patronus.api import Mesh, Site
from patronus.kube.resource import PATH
from patronus.operator.mesh.manifest import path_manifest
from patronus.operator.reconcile.apply import AppliedVersions, is_stale, with_digest
from patronus.operator.reconcile.conditions import Cond, merge
from patronus.operator.reconcile.parsed import parsed
from patronus.runtime.cache import Object
from patronus.runtime.sources import KindCache
from patronus.topology import mean_health, mesh_hubs, plan_paths

PATH_NAME_TAKEN = "PathNameTaken"
_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Members:
    """The listed sites that exist (with their underlays, primary first) and those that do not."""

    existing: dict[str, list[str]]
    missing: list[str]


@dataclass(frozen=True, slots=True)
class PlannedPaths:
    """A mesh's Paths as stamped manifests by name, and what they were planned from."""

    inputs: tuple[Any, ...]
    manifests: list[tuple[str, dict[str, Any]]]

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.manifests}


@dataclass(frozen=True, slots=True)
class PathDiff:
    creates: list[dict[str, Any]] = field(default_factory=list)
    """Stamped manifests of Paths that do not exist yet: created, never applied, so a Path someone else
    made meanwhile under the same name is refused by the API server rather than taken over."""
    updates: list[dict[str, Any]] = field(default_factory=list)
    """Stamped manifests of the mesh's own Paths that differ from the plan."""
    taken: dict[str, str] = field(default_factory=dict)
    """Planned names held by a Path this mesh does not control, with who does: left alone, reported."""
    prunes: list[str] = field(default_factory=list)
    """Paths the mesh owns and no longer wants."""
    kept: list[Object] = field(default_factory=list)
    """Paths the mesh owns and wants, as cached (what its status sums up)."""


def controller_of(obj: Object) -> Mapping[str, Any] | None:
    """The owner reference marked as controller, if any."""
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((o for o in owners if o.get("controller")), None)


def _holder(cached: Object) -> str:
    owner = controller_of(cached)
    return f"{owner.get('kind')} {owner.get('name')}" if owner else "no controller"


def members(mesh: Mesh, namespace: str, sites: KindCache) -> Members:
    existing: dict[str, list[str]] = {}
    missing: list[str] = []
    for name in mesh.spec.sites:
        site = parsed(Site, sites.get(namespace, name))  # memoised: a mesh reads every member
        if site is None:
            missing.append(name)
        else:
            existing[name] = site.spec.underlay_names() or ["default"]
    return Members(existing, missing)


def plan_inputs(mesh_obj: Object, found: Members) -> tuple[Any, ...]:
    meta = mesh_obj["metadata"]
    sites = tuple((site, tuple(underlays)) for site, underlays in found.existing.items())
    return (meta.get("uid"), meta.get("generation"), sites)


def plan(mesh_obj: Object, mesh: Mesh, found: Members) -> PlannedPaths:
    """Every Path the mesh wants. The default hub is the first *listed* site: if it is missing, no
    spoke is promoted in its place."""
    plans = plan_paths(mesh.metadata.name, found.existing, mesh.spec.topology, mesh_hubs(mesh))
    manifests = [(p.name, with_digest(path_manifest(mesh_obj, p))) for p in plans]
    return PlannedPaths(plan_inputs(mesh_obj, found), manifests)


def diff(
    planned: PlannedPaths,
    mesh_obj: Object,
    paths: KindCache,
    owned: Sequence[Object],
    applied: AppliedVersions,
) -> PathDiff:
    """What to create, update and prune so that the Paths are the plan, and which planned names another
    object holds. No I/O."""
    namespace, uid = mesh_obj["metadata"]["namespace"], mesh_obj["metadata"]["uid"]
    result = PathDiff()
    for name, stamped in planned.manifests:
        cached = paths.get(namespace, name)
        if cached is None:
            result.creates.append(stamped)
        elif (controller_of(cached) or {}).get("uid") != uid:
            result.taken[name] = _holder(cached)
        elif is_stale(PATH, stamped, cached, applied):
            result.updates.append(stamped)
    wanted = planned.names
    result.prunes.extend(sorted(p["metadata"]["name"] for p in owned if p["metadata"]["name"] not in wanted))
    result.kept.extend(
        p for p in owned if p["metadata"]["name"] in wanted and p["metadata"]["name"] not in result.taken
    )
    return result


def sites_condition(missing: Sequence[str]) -> Cond:
    if missing:
        return Cond("SitesResolved", "False", "SitesMissing", f"sites not found: {', '.join(missing)}")
    return Cond("SitesResolved", "True", "SitesExist")


def paths_condition(taken: Mapping[str, str]) -> Cond:
    """Whether every Path the mesh needs is its own; a name someone else holds is reported, not seized."""
    if not taken:
        return Cond("PathsOwned", "True", "AllOwned")
    shown = ", ".join(f"{name} ({holder})" for name, holder in sorted(taken.items())[:_SHOWN])
    more = f" and {len(taken) - _SHOWN} more" if len(taken) > _SHOWN else ""
    message = f"Paths this mesh needs exist and are not its own, so it leaves them alone: {shown}{more}"
    return Cond("PathsOwned", "False", PATH_NAME_TAKEN, message)


def ready_condition(missing: Sequence[str], taken: Mapping[str, str], up: int, wanted: int) -> Cond:
    if wanted and up == wanted:
        return Cond("Ready", "True", "AllPathsUp")
    reason = "SitesMissing" if missing else PATH_NAME_TAKEN if taken else "PathsNotUp"
    return Cond("Ready", "False", reason, f"{up} of {wanted} paths up")


def mesh_status(
    previous: Mapping[str, Any],
    found: Members,
    wanted: int,
    kept: Sequence[Object],
    taken: Mapping[str, str],
    *,
    now: datetime,
    generation: int | None,
) -> dict[str, Any]:
    """The Mesh's status: sites, Paths, how many are up and their mean health. Pure."""
    up = [p for p in kept if (p.get("status") or {}).get("state") == "up"]
    health = mean_health(((p.get("status") or {}).get("health") or {}).get("healthScore") for p in up)
    conditions = [
        sites_condition(found.missing),
        paths_condition(taken),
        ready_condition(found.missing, taken, len(up), wanted),
    ]
    status: dict[str, Any] = {
        "totalSites": len(found.existing),
        "totalPaths": wanted,
        "activePaths": len(up),
        "missingSites": found.missing,
        "conditions": merge(previous.get("conditions"), conditions, now=now, generation=generation),
        "observedGeneration": generation,
    }
    if health is not None:
        status["overallHealth"] = round(health, 1)
    return status
