"""Mesh controller: the Paths a mesh implies, created, kept and pruned; the mesh's status.

One Path per direction and underlay between the site pairs of the topology, owned by the Mesh (so
deleting the Mesh garbage-collects them) and named deterministically. Sites the mesh lists but that do
not exist are reported, not guessed at; their Paths appear when they do. A Path of a needed name that the
mesh does not control is reported (``PathsOwned=False``), never rewritten, and new Paths are created
rather than applied, so one made by someone else in the meantime is not taken over either. The computing
is in ``plan`` (no writes); this module does the writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from patronus.api import Mesh
from patronus.kube.errors import AlreadyExistsError, NotFoundError
from patronus.kube.resource import MESH, PATH, ObjectKey
from patronus.operator.context import Context
from patronus.operator.mesh.plan import (
    PATH_NAME_TAKEN,
    PathDiff,
    PlannedPaths,
    diff,
    members,
    mesh_status,
    plan,
    plan_inputs,
)
from patronus.operator.reconcile.apply import apply_stamped, apply_status_if_changed, create_stamped
from patronus.operator.reconcile.conditions import find
from patronus.operator.reconcile.opening import Opening
from patronus.runtime.cache import OWNER_INDEX, Object
from patronus.runtime.controller import Result
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

PATH_WRITE_CONCURRENCY = 16


class MeshReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._planned: dict[ObjectKey, PlannedPaths] = {}
        self.opening = Opening(ctx, MESH, ctx.caches.meshes, Mesh, forget=self._forget)

    async def reconcile(self, key: ObjectKey) -> Result | None:
        opened = await self.opening.open(key)
        if opened is None:
            return None  # a deleted mesh's Paths are garbage-collected through their owner reference
        obj, mesh = opened.obj, opened.model
        found = members(mesh, key.namespace, self.ctx.caches.sites)
        planned = self._planned.get(key)
        if planned is None or planned.inputs != plan_inputs(obj, found):
            planned = self._planned[key] = plan(obj, mesh, found)
        owned = self.ctx.caches.paths.by_index(OWNER_INDEX, obj["metadata"]["uid"])
        changes = diff(planned, obj, self.ctx.caches.paths, owned, self.ctx.applied)
        taken = {**changes.taken, **await self._write_paths(changes)}
        await self._prune(key.namespace, changes.prunes)
        status = mesh_status(
            opened.status,
            found,
            len(planned.manifests),
            changes.kept,
            taken,
            now=opened.now,
            generation=opened.generation,
        )
        written = await apply_status_if_changed(
            self.ctx.client, MESH, obj, status, optional=("overallHealth",)
        )
        if written is not None:
            self._tell_taken(obj, opened.status, status)
        return None

    def _tell_taken(self, obj: Object, before: dict[str, Any], after: dict[str, Any]) -> None:
        """A Warning Event when names the mesh needs are newly held by others."""
        was, now = find(before.get("conditions"), "PathsOwned"), find(after["conditions"], "PathsOwned")
        if now is not None and now.get("status") == "False" and (was is None or was.get("status") == "True"):
            self.ctx.events.event(obj, "Warning", PATH_NAME_TAKEN, str(now.get("message", "")))

    def _forget(self, key: ObjectKey) -> None:
        self._planned.pop(key, None)

    async def _write_paths(self, changes: PathDiff) -> dict[str, str]:
        """Create the new Paths and update the stale ones, a few at a time; returns the names someone
        else took in the meantime (the cache had not seen them yet)."""
        limit = asyncio.Semaphore(PATH_WRITE_CONCURRENCY)
        refused: dict[str, str] = {}

        async def create(stamped: dict[str, Any]) -> None:
            async with limit:
                try:
                    await create_stamped(self.ctx.client, PATH, stamped, self.ctx.applied)
                except AlreadyExistsError:
                    refused[stamped["metadata"]["name"]] = "made by someone else just now"

        async def update(stamped: dict[str, Any]) -> None:
            async with limit:
                await apply_stamped(self.ctx.client, PATH, stamped, self.ctx.applied)

        await asyncio.gather(*(create(s) for s in changes.creates), *(update(s) for s in changes.updates))
        return refused

    async def _prune(self, namespace: str, names: Sequence[str]) -> None:
        for name in names:
            log.info("pruning path no longer in the mesh", path=name)
            with contextlib.suppress(NotFoundError):
                await self.ctx.client.delete(PATH, namespace, name)
