"""FakeKube: the :class:`~patronus.kube.client.KubeClient` verbs over the in-memory store, the watches that
follow it, and the helpers a test uses to seed, inspect and break it (see the package docstring)."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from patronus.kube.client import Object
from patronus.kube.errors import ApiError, ConflictError, GoneError, NotFoundError
from patronus.kube.fake.apply import (
    STATUS_SUBRESOURCE_KINDS,
    FieldPath,
    merge_patch,
    scope_of,
    scoped,
    server_side_apply,
    user_metadata,
)
from patronus.kube.fake.requests import Injected, Request
from patronus.kube.fake.selectors import matches_fields, matches_labels
from patronus.kube.fake.store import ObjectStore, drop_none
from patronus.kube.resource import ResourceKind, kind_of
from patronus.kube.timestamps import format_time


class FakeKube:
    """An in-memory Kubernetes API with the semantics listed in the module docstring."""

    def __init__(
        self,
        *,
        field_manager: str = "fake-client",
        history: int = 10_000,
        garbage_collect: bool = True,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """``now`` gives the wall time for creation and deletion timestamps (a fake clock's ``now``)."""
        self.field_manager = field_manager
        self._now = now
        self._store = ObjectStore(history=history, garbage_collect=garbage_collect, now=now)
        self._objects = self._store.objects  # read directly by the verbs below
        self.requests: list[Request] = []
        self._changed = asyncio.Condition()
        self._injected: list[Injected] = []
        self._closed = False

    @property
    def garbage_collect(self) -> bool:
        """Whether removing an object removes its dependents (by owner reference)."""
        return self._store.garbage_collect

    @garbage_collect.setter
    def garbage_collect(self, value: bool) -> None:
        self._store.garbage_collect = value

    # -- test helpers -------------------------------------------------------------------------------

    def seed(self, *objects: Mapping[str, Any], kind: ResourceKind | None = None) -> list[Object]:
        """Store objects as if created earlier, without recording requests; returns the stored copies."""
        stored = []
        for obj in objects:
            resource = kind or kind_of(obj)
            stored.append(self._store.create(resource, copy.deepcopy(dict(obj)), manager="seed"))
        return stored

    def object(self, kind: ResourceKind, namespace: str | None, name: str) -> Object | None:
        """The stored object (a copy), or None."""
        found = self._objects.get((kind.plural, namespace or "", name))
        return copy.deepcopy(found.obj) if found else None

    def objects(self, kind: ResourceKind, namespace: str | None = None) -> list[Object]:
        """Every stored object of a kind (in a namespace), sorted by namespace and name."""
        return [
            copy.deepcopy(stored.obj)
            for (plural, ns, _), stored in sorted(self._objects.items())
            if plural == kind.plural and (namespace is None or ns == namespace)
        ]

    def writes(self, since: int = 0) -> list[Request]:
        """The write requests from index ``since`` of :attr:`requests` on."""
        return [r for r in self.requests[since:] if r.is_write]

    def mark(self) -> int:
        """An index into :attr:`requests` to pass to :meth:`writes` later."""
        return len(self.requests)

    def managers(self, kind: ResourceKind, namespace: str | None, name: str) -> dict[str, set[FieldPath]]:
        """Field manager -> the fields (paths) it owns, over the main resource and status together."""
        stored = self._objects.get((kind.plural, namespace or "", name))
        if stored is None:
            return {}
        return {m: set().union(*scopes.values()) for m, scopes in stored.managed.items()}

    def fail_next(
        self,
        error: Exception,
        *,
        verb: str | None = None,
        kind: ResourceKind | None = None,
        name: str | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` matching requests raise ``error`` (a KubeError, or ConnectionError)."""
        self._injected.append(Injected(verb, kind.plural if kind else None, name, error, times))

    def compact(self) -> int:
        """Forget the event history: watches from any earlier resourceVersion now get 410 Gone."""
        return self._store.compact()

    @property
    def resource_version(self) -> int:
        return self._store.current

    # -- reads --------------------------------------------------------------------------------------

    async def get(
        self, kind: ResourceKind, namespace: str | None, name: str, subresource: str | None = None
    ) -> Object:
        self._record("get", kind, namespace, name, subresource)
        stored = self._objects.get((kind.plural, namespace or "", name))
        if stored is None:
            raise _not_found(kind, name)
        return copy.deepcopy(stored.obj)

    async def list_page(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        limit: int | None = 500,
        continue_token: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
    ) -> Object:
        self._record("list", kind, namespace, "")
        matching = [
            stored.obj
            for (plural, ns, _), stored in sorted(self._objects.items())
            if plural == kind.plural
            and (not namespace or ns == namespace)
            and matches_labels(stored.obj, label_selector)
            and matches_fields(stored.obj, field_selector)
        ]
        offset, revision = _decode_continue(continue_token) if continue_token else (0, self._store.current)
        page = matching[offset : offset + limit] if limit else matching[offset:]
        metadata: dict[str, Any] = {"resourceVersion": str(revision)}
        if limit and offset + limit < len(matching):
            metadata["continue"] = f"{offset + limit}:{revision}"
        return {"kind": f"{kind.kind}List", "metadata": metadata, "items": copy.deepcopy(page)}

    async def watch(
        self,
        kind: ResourceKind,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
        label_selector: str | None = None,
        field_selector: str | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[Object]:
        self._record("watch", kind, namespace, "")
        store = self._store
        since = int(resource_version) if resource_version else store.current
        if since + 1 < store.oldest:
            raise GoneError(410, "Expired", f"too old resource version: {since} ({store.oldest - 1})")
        deadline = asyncio.get_running_loop().time() + timeout_seconds if timeout_seconds else None
        seen = since
        while not self._closed:
            if seen + 1 < store.oldest:
                raise GoneError(410, "Expired", f"too old resource version: {seen} ({store.oldest - 1})")
            for revision, plural, type_, obj in list(store.history):
                if revision <= seen or plural != kind.plural:
                    continue
                seen = revision
                meta = obj["metadata"]
                if namespace and meta.get("namespace") != namespace:
                    continue
                if matches_labels(obj, label_selector) and matches_fields(obj, field_selector):
                    yield {"type": type_, "object": copy.deepcopy(obj)}
            seen = max(seen, store.current)
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return

    # -- writes -------------------------------------------------------------------------------------

    async def create(self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None) -> Object:
        resource = kind or kind_of(obj)
        body = copy.deepcopy(dict(obj))
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        self._record("create", resource, meta.get("namespace"), meta.get("name", ""), body=body)
        created = self._store.create(resource, body, manager=self.field_manager)
        await self._notify()
        return copy.deepcopy(created)

    async def apply(
        self,
        obj: Mapping[str, Any],
        field_manager: str | None = None,
        force: bool = True,
        subresource: str | None = None,
        *,
        kind: ResourceKind | None = None,
    ) -> Object:
        resource = kind or kind_of(obj)
        manager = field_manager or self.field_manager
        body = copy.deepcopy(dict(obj))
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta["name"]
        self._record("apply", resource, namespace, name, subresource, field_manager=manager, body=body)
        key = (resource.plural, namespace, name)
        if key not in self._objects:
            if subresource:
                raise _not_found(resource, name)
            created = self._store.create(resource, body, manager=manager)
            await self._notify()
            return copy.deepcopy(created)
        stored = self._objects[key]
        scope = scope_of(resource, subresource)
        intent = scoped(body, resource, scope)
        updated = server_side_apply(stored.obj, stored.managed, intent, manager, scope, force=force)
        result = self._store.update(resource, key, stored, updated)
        await self._notify()
        return copy.deepcopy(result)

    async def replace(
        self, obj: Mapping[str, Any], *, kind: ResourceKind | None = None, subresource: str | None = None
    ) -> Object:
        resource = kind or kind_of(obj)
        body = copy.deepcopy(dict(obj))
        meta = body.get("metadata") or {}
        namespace, name = meta.get("namespace") or "", meta["name"]
        self._record("replace", resource, namespace, name, subresource, body=body)
        key = (resource.plural, namespace, name)
        stored = self._objects.get(key)
        if stored is None:
            raise _not_found(resource, name)
        wanted_version = meta.get("resourceVersion")
        if wanted_version and wanted_version != stored.obj["metadata"]["resourceVersion"]:
            raise ConflictError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        scope = scope_of(resource, subresource)
        updated = copy.deepcopy(stored.obj)
        if scope == "status":
            updated["status"] = body.get("status")
        else:
            kept_status = stored.obj.get("status") if resource.plural in STATUS_SUBRESOURCE_KINDS else None
            updated = {**body, "metadata": {**stored.obj["metadata"], **user_metadata(meta)}}
            if kept_status is not None:
                updated["status"] = kept_status
        result = self._store.update(resource, key, stored, drop_none(updated))
        await self._notify()
        return copy.deepcopy(result)

    async def patch_merge(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        subresource: str | None = None,
    ) -> Object:
        self._record("patch", kind, namespace, name, subresource, body=dict(patch))
        key = (kind.plural, namespace or "", name)
        stored = self._objects.get(key)
        if stored is None:
            raise _not_found(kind, name)
        scope = scope_of(kind, subresource)
        merged = merge_patch(stored.obj, scoped(dict(patch), kind, scope))
        result = self._store.update(kind, key, stored, merged)
        await self._notify()
        return copy.deepcopy(result)

    async def delete(
        self,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        propagation_policy: str | None = None,
        *,
        preconditions: Mapping[str, str] | None = None,
    ) -> Object:
        self._record("delete", kind, namespace, name)
        key = (kind.plural, namespace or "", name)
        stored = self._objects.get(key)
        if stored is None:
            raise _not_found(kind, name)
        meta = stored.obj["metadata"]
        for field_name, wanted in (preconditions or {}).items():
            if meta.get(field_name) != wanted:
                raise ConflictError(409, "Conflict", f"precondition failed: {field_name} is not {wanted}")
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                updated = copy.deepcopy(stored.obj)
                updated["metadata"]["deletionTimestamp"] = format_time(self._now())
                self._store.update(kind, key, stored, updated)
                await self._notify()
            return copy.deepcopy(self._objects[key].obj)
        self._store.remove(kind, key)
        await self._notify()
        return {"kind": "Status", "apiVersion": "v1", "status": "Success"}

    async def close(self) -> None:
        self._closed = True
        await self._notify()

    # -- internals ----------------------------------------------------------------------------------

    def _record(
        self,
        verb: str,
        kind: ResourceKind,
        namespace: str | None,
        name: str,
        subresource: str | None = None,
        *,
        field_manager: str | None = None,
        body: Object | None = None,
    ) -> None:
        request = Request(
            verb, kind.plural, namespace or "", name, subresource, field_manager, copy.deepcopy(body)
        )
        self.requests.append(request)
        for injected in self._injected:
            if injected.matches(request):
                injected.times -= 1
                raise injected.error
        self._injected = [i for i in self._injected if i.times > 0]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


def _decode_continue(token: str) -> tuple[int, int]:
    try:
        offset, revision = token.split(":", 1)
        return int(offset), int(revision)
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid continue token {token!r}") from None


def _not_found(kind: ResourceKind, name: str) -> NotFoundError:
    return NotFoundError(404, "NotFound", f'{kind.plural} "{name}" not found')
