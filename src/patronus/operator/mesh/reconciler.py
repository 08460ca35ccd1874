"""Mesh controller: the Paths a mesh implies, created, kept and pruned; the mesh's status.

One Path per direction and underlay between the site pairs of the topology, owned by the Mesh (so
deleting the Mesh garbage-collects them) and named deterministically. Sites the mesh lists but that do
not exist are reported, not guessed at; their Paths appear when they do. The computing is in ``plan``
(no writes); this module does the writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from patronus.api import Mesh
from patronus.kube.errors import NotFoundError
from patronus.kube.resource import MESH, PATH, ObjectKey
from patronus.operator.context import Context
from patronus.operator.mesh.plan import PlannedPaths, diff, members, mesh_status, plan, plan_inputs
from patronus.operator.reconcile.apply import apply_stamped, apply_status_if_changed
from patronus.operator.reconcile.opening import Opening
from patronus.runtime.cache import OWNER_INDEX
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
        changes = diff(planned, key.namespace, self.ctx.caches.paths, owned, self.ctx.applied)
        await self._write_paths(changes.writes)
        await self._prune(key.namespace, changes.prunes)
        status = mesh_status(
            opened.status,
            found,
            len(planned.manifests),
            changes.kept,
            now=opened.now,
            generation=opened.generation,
        )
        await apply_status_if_changed(self.ctx.client, MESH, obj, status, optional=("overallHealth",))
        return None

    def _forget(self, key: ObjectKey) -> None:
        self._planned.pop(key, None)

    async def _write_paths(self, writes: Sequence[dict[str, Any]]) -> None:
        """Apply the Paths that need it, a few at a time."""
        limit = asyncio.Semaphore(PATH_WRITE_CONCURRENCY)

        async def write(stamped: dict[str, Any]) -> None:
            async with limit:
                await apply_stamped(self.ctx.client, PATH, stamped, self.ctx.applied)

        await asyncio.gather(*(write(stamped) for stamped in writes))

    async def _prune(self, namespace: str, names: Sequence[str]) -> None:
        for name in names:
            log.info("pruning path no longer in the mesh", path=name)
            with contextlib.suppress(NotFoundError):
                await self.ctx.client.delete(PATH, namespace, name)
