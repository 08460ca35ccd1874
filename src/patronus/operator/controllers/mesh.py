"""Mesh controller: the Paths a mesh implies, created, kept and pruned; the mesh's status.

One Path per direction and underlay between the site pairs of the topology, owned by the Mesh (so
deleting the Mesh garbage-collects them) and named deterministically. Sites the mesh lists but that do
not exist are reported, not guessed at; their Paths appear when they do.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from patronus.api import Mesh, Site
from patronus.api.meta import GROUP_VERSION
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import MESH, PATH, ObjectKey
from patronus.operator.apply import apply_stamped, apply_status_if_changed, is_stale, with_digest
from patronus.operator.conditions import Cond, merge
from patronus.operator.controllers.context import Context
from patronus.operator.indexes import SITE_LABEL
from patronus.operator.parsed import parsed, parsed_or_error
from patronus.runtime.controller import Result
from patronus.runtime.logs import get_logger
from patronus.topology import PathPlan, mean_health, mesh_hubs, plan_paths

log = get_logger(__name__)

MESH_LABEL = "sdwan.patronus.dev/mesh"
PATH_WRITE_CONCURRENCY = 16
DESTINATION_LABEL = "sdwan.patronus.dev/destination"


def path_manifest(mesh_obj: dict[str, Any], plan: PathPlan) -> dict[str, Any]:
    meta = mesh_obj["metadata"]
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Path",
        "metadata": {
            "name": plan.name,
            "namespace": meta["namespace"],
            "labels": {
                "app.kubernetes.io/managed-by": "patronus-operator",
                MESH_LABEL: plan.mesh,
                SITE_LABEL: plan.source,
                DESTINATION_LABEL: plan.destination,
            },
            "ownerReferences": [
                {
                    "apiVersion": GROUP_VERSION,
                    "kind": "Mesh",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "source": {"siteRef": plan.source},
            "destination": {"siteRef": plan.destination},
            "type": "vpn",
            "underlay": plan.underlay,
        },
    }


def underlays_of(site_obj: dict[str, Any]) -> list[str]:
    site = parsed(Site, site_obj)  # memoised: a mesh reconcile reads every member site
    return site.spec.underlay_names() if site is not None else []


@dataclass(frozen=True, slots=True)
class PlannedPaths:
    """A mesh's Paths, as stamped manifests by name, and what they were planned from."""

    inputs: tuple[Any, ...]
    manifests: list[tuple[str, dict[str, Any]]]


class MeshReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._planned: dict[ObjectKey, PlannedPaths] = {}

    async def reconcile(self, key: ObjectKey) -> Result | None:
        caches = self.ctx.caches
        obj = caches.meshes.get(key.namespace, key.name)
        if obj is None:
            self._planned.pop(key, None)
            return None  # its Paths are garbage-collected through their owner reference
        status = obj.get("status") or {}
        generation = obj["metadata"].get("generation")
        mesh = parsed_or_error(Mesh, obj)
        if isinstance(mesh, ValidationError):
            conditions = [Cond("Ready", "False", "InvalidSpec", str(mesh.errors()[0]["msg"]))]
            await apply_status_if_changed(
                self.ctx.client,
                MESH,
                obj,
                {
                    "conditions": merge(
                        status.get("conditions"), conditions, now=self.ctx.now(), generation=generation
                    ),
                    "observedGeneration": generation,
                },
            )
            return None

        existing: dict[str, list[str]] = {}
        missing: list[str] = []
        for site in mesh.spec.sites:
            site_obj = caches.sites.get(key.namespace, site)
            if site_obj is None:
                missing.append(site)
            else:
                existing[site] = underlays_of(site_obj) or ["default"]
        # The default hub is the first *listed* site: if it is missing, no spoke is promoted in its place.
        inputs = (
            obj["metadata"].get("uid"),
            generation,
            tuple((site, tuple(underlays)) for site, underlays in existing.items()),
        )
        planned = self._planned.get(key)
        if planned is None or planned.inputs != inputs:
            plans = plan_paths(key.name, existing, mesh.spec.topology, mesh_hubs(mesh))
            planned = PlannedPaths(
                inputs, [(plan.name, with_digest(path_manifest(obj, plan))) for plan in plans]
            )
            self._planned[key] = planned

        # A big mesh implies thousands of Paths: find the few that need a write without leaving the
        # loop (a task per Path, most with nothing to do, was most of a reconcile's cost), then write
        # those a few at a time. The plan and its stamped manifests are kept while the mesh and its
        # sites stay the same, so an unchanged Path costs a cache lookup.
        writes = []
        for name, stamped in planned.manifests:
            cached = caches.paths.get(key.namespace, name)
            if is_stale(PATH, stamped, cached, self.ctx.applied):
                writes.append(stamped)
        limit = asyncio.Semaphore(PATH_WRITE_CONCURRENCY)

        async def write(stamped: dict[str, Any]) -> None:
            async with limit:
                await apply_stamped(self.ctx.client, PATH, stamped, self.ctx.applied)

        await asyncio.gather(*(write(stamped) for stamped in writes))
        wanted = {name for name, _ in planned.manifests}
        owned = [p for p in caches.paths.by_index("owner", obj["metadata"]["uid"])]
        for path in owned:
            name = path["metadata"]["name"]
            if name not in wanted:
                log.info("pruning path no longer in the mesh", path=name)
                with contextlib.suppress(NotFoundError):
                    await self.ctx.client.delete(PATH, key.namespace, name)

        mine = [p for p in owned if p["metadata"]["name"] in wanted]
        up = [p for p in mine if (p.get("status") or {}).get("state") == "up"]
        health = mean_health(((p.get("status") or {}).get("health") or {}).get("healthScore") for p in up)
        conditions = [
            Cond("SitesResolved", "False", "SitesMissing", f"sites not found: {', '.join(missing)}")
            if missing
            else Cond("SitesResolved", "True", "SitesExist"),
            Cond("Ready", "True", "AllPathsUp")
            if wanted and len(up) == len(wanted)
            else Cond(
                "Ready",
                "False",
                "SitesMissing" if missing else "PathsNotUp",
                f"{len(up)} of {len(wanted)} paths up",
            ),
        ]
        desired: dict[str, Any] = {
            "totalSites": len(existing),
            "totalPaths": len(wanted),
            "activePaths": len(up),
            "missingSites": missing,
            "conditions": merge(
                status.get("conditions"), conditions, now=self.ctx.now(), generation=generation
            ),
            "observedGeneration": generation,
        }
        if health is not None:
            desired["overallHealth"] = round(health, 1)
        await apply_status_if_changed(self.ctx.client, MESH, obj, desired, optional=("overallHealth",))
        return None
