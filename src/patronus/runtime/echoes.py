"""Echoes of a controller's own writes, so that they do not requeue the reconcile that made them.

Every write comes back as a watch event. For the reconcile that made it, that event holds nothing new:
the object now is what the reconcile computed. client-go keeps "expectations" for this; the rule here is
exact: a write returns the object's new resourceVersion, and an event carrying that very version, for an
object the reconcile of key K in controller C wrote, does not requeue K in C. Other controllers, other
keys, and every other version of the object are told as usual (a change someone else made comes with a
version of its own, so it still requeues K).

A relist folds every change since the last watch event into one version per object, so events replayed
from a LIST never count as echoes: a change made by someone else just before our write would be lost.
Where an echo is skipped, the periodic resync still looks at every object.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from patronus.kube.client import KubeClient
from patronus.kube.resource import ObjectKey, ResourceKind

Object = dict[str, Any]
Writer = tuple[str, ObjectKey]
"""(controller name, key of the reconcile that writes)."""
Identity = tuple[str, str, str, str]
"""(apiVersion, kind, namespace, name) of a written object."""

_writer: ContextVar[Writer | None] = ContextVar("patronus_writer", default=None)
_replaying: ContextVar[bool] = ContextVar("patronus_replaying", default=False)


@contextmanager
def writing_as(controller: str, key: ObjectKey) -> Iterator[None]:
    """Writes in this block (and in tasks it starts) are the reconcile of ``key`` in ``controller``."""
    token = _writer.set((controller, key))
    try:
        yield
    finally:
        _writer.reset(token)


@contextmanager
def replaying() -> Iterator[None]:
    """Events delivered in this block come from a LIST, not from a watch: none of them is an echo."""
    token = _replaying.set(True)
    try:
        yield
    finally:
        _replaying.reset(token)


def _identity(obj: Mapping[str, Any]) -> Identity:
    metadata = obj.get("metadata") or {}
    return (
        str(obj.get("apiVersion") or ""),
        str(obj.get("kind") or ""),
        str(metadata.get("namespace") or ""),
        str(metadata.get("name") or ""),
    )


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class OwnWrites:
    """The version each object got from its last write inside a reconcile, and who wrote it."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._written: dict[Identity, tuple[str, Writer]] = {}
        self.skipped = 0
        """Events recognised as echoes so far (a measure for benchmarks and tests)."""

    def record(self, result: Mapping[str, Any]) -> None:
        """Note the object a write returned, if the write was made inside a reconcile."""
        writer, version = _writer.get(), _version(result)
        if writer is None or not version:
            return
        identity = _identity(result)
        self._written.pop(identity, None)  # re-inserted last: eviction takes the oldest first
        self._written[identity] = (version, writer)
        if len(self._written) > self._max_entries:
            self._written.pop(next(iter(self._written)))

    def is_echo(self, obj: Mapping[str, Any], controller: str, key: ObjectKey) -> bool:
        """Whether ``obj`` (from a watch event) is exactly what the reconcile of ``key`` in
        ``controller`` wrote last. Sync and quick: event handlers call it."""
        if _replaying.get():
            return False
        identity = _identity(obj)
        written = self._written.get(identity)
        if written is None or written != (_version(obj), (controller, key)):
            return False
        self.skipped += 1
        self._forget_after_event(identity, written)
        return True

    def _forget_after_event(self, identity: Identity, written: tuple[str, Writer]) -> None:
        """Drop the entry once every handler of this event has run (they run in one call, and each may
        ask), so the table holds only writes whose echo has not come yet."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def forget() -> None:
            if self._written.get(identity) == written:
                del self._written[identity]

        loop.call_soon(forget)

    def __len__(self) -> int:
        return len(self._written)


class RecordingClient:
    """A :class:`KubeClient` that tells :class:`OwnWrites` the version every write returned."""

    def __init__(self, inner: KubeClient, writes: OwnWrites) -> None:
        self.inner = inner
        self.writes = writes

    @property
    def field_manager(self) -> str:
        return self.inner.field_manager

    @field_manager.setter
    def field_manager(self, value: str) -> None:
        self.inner.field_manager = value

    def _noted(self, result: Object) -> Object:
        self.writes.record(result)
        return result

    async def get(
        self, kind: ResourceKind, namespace: str | None, name: str, subresource: str | None = None
    ) -> Object:
        return await self.inner.get(kind, namespace, name, subresource)

    async def list_page(self, kind: ResourceKind, namespace: str | None = None, **options: Any) -> Object:
        return await self.inner.list_page(kind, namespace, **options)

    def watch(
        self, kind: ResourceKind, namespace: str | None = None, **options: Any
    ) -> AsyncIterator[Object]:
        return self.inner.watch(kind, namespace, **options)

    async def create(self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None) -> Object:
        return self._noted(await self.inner.create(obj, kind=kind))

    async def apply(
        self,
        obj: Mapping[str, Any],
        field_manager: str | None = None,
        force: bool = True,
        subresource: str | None = None,
        *,
        kind: ResourceKind | None = None,
    ) -> Object:
        return self._noted(await self.inner.apply(obj, field_manager, force, subresource, kind=kind))

    async def replace(
        self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None, subresource: str | None = None
    ) -> Object:
        return self._noted(await self.inner.replace(obj, kind=kind, subresource=subresource))

    async def patch_merge(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> Object:
        return self._noted(await self.inner.patch_merge(kind, namespace, name, patch, subresource))

    async def delete(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        propagation_policy: str | None = None,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> Object:
        return await self.inner.delete(kind, namespace, name, propagation_policy, preconditions=preconditions)

    async def close(self) -> None:
        await self.inner.close()
