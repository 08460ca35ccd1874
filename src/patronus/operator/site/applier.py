"""Applies a Site's children, in two waves, and writes its status beside the second.

Children that refer to others (see ``ChildKind.second_wave``) wait for the first wave; the status waits
too, since it publishes the public key, which must not happen before the key's Secret is stored. Within
a wave the writes run concurrently, so a new site costs two API round trips, not eight.

When neither what the children are built from nor the versions the cache holds of them moved since a
pass that found every child current, nothing is built or compared at all: the status is written (if it
changed) and that is the whole reconcile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from patronus.kube.resource import ObjectKey, ResourceKind
from patronus.operator.context import Context
from patronus.operator.reconcile.apply import apply_stamped, create_stamped, needs_apply
from patronus.operator.site.children.names import child_names
from patronus.operator.site.kinds import CHILD_KINDS, CHILD_KINDS_BY_NAME

Manifest = dict[str, Any]
Versions = tuple[tuple[str, str] | None, ...]


class ChildrenApplier:
    """Brings Sites' children up to date (one instance per operator process)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._current: dict[ObjectKey, tuple[Hashable, Versions]] = {}  # inputs of a pass that wrote nothing

    def forget(self, key: ObjectKey) -> None:
        self._current.pop(key, None)

    async def apply(
        self,
        key: ObjectKey,
        inputs: Hashable,
        build: Callable[[], Sequence[Manifest]],
        write_status: Callable[[], Awaitable[object]],
        *,
        create_first: str | None = None,
    ) -> None:
        """Apply what ``build()`` returns where the cache does not hold it yet, then ``write_status()``.

        ``inputs`` identifies everything ``build`` reads: equal inputs and unchanged cached children mean
        there is nothing to build. A stale child of kind ``create_first`` is created (never applied:
        :class:`~patronus.kube.errors.AlreadyExistsError` if it exists) before anything else is written.
        """
        memo = (inputs, self.versions(key))
        if self._current.get(key) == memo:
            await write_status()
            return
        stale = self._stale(key.namespace, build())
        for kind, stamped in stale:
            if kind.kind == create_first:
                await create_stamped(self.ctx.client, kind, stamped, self.ctx.applied)
        rest = [(k, s) for k, s in stale if k.kind != create_first]
        first = [(k, s) for k, s in rest if not CHILD_KINDS_BY_NAME[k.kind].second_wave]
        second = [(k, s) for k, s in rest if CHILD_KINDS_BY_NAME[k.kind].second_wave]
        await self._wave(first)
        await self._wave(second, write_status)
        if not stale:
            self._current[key] = memo

    def versions(self, key: ObjectKey) -> Versions:
        """(uid, resourceVersion) of each child the cache holds for the site, None where it has none."""
        names = child_names(key.name)
        versions: list[tuple[str, str] | None] = []
        for child in CHILD_KINDS:
            cached = self.ctx.caches.child(child.resource).get(key.namespace, getattr(names, child.field))
            meta = (cached or {}).get("metadata") or {}
            versions.append((meta.get("uid", ""), meta.get("resourceVersion", "")) if cached else None)
        return tuple(versions)

    def _stale(self, namespace: str, desired: Sequence[Manifest]) -> list[tuple[ResourceKind, Manifest]]:
        """The desired children the cache does not hold yet, stamped with their digest. No I/O."""
        stale = []
        for manifest in desired:
            kind = CHILD_KINDS_BY_NAME[manifest["kind"]].resource
            cached = self.ctx.caches.child(kind).get(namespace, manifest["metadata"]["name"])
            stamped = needs_apply(kind, manifest, cached, self.ctx.applied)
            if stamped is not None:
                stale.append((kind, stamped))
        return stale

    async def _wave(
        self,
        writes: Sequence[tuple[ResourceKind, Manifest]],
        alongside: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Apply ``writes`` (and run ``alongside``) concurrently; the first failure is raised."""
        calls: list[Awaitable[object]] = [
            apply_stamped(self.ctx.client, kind, stamped, self.ctx.applied) for kind, stamped in writes
        ]
        if alongside is not None:
            calls.append(alongside())
        if len(calls) <= 1:
            for call in calls:
                await call  # one write needs no task
            return
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
