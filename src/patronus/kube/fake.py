"""An in-memory API server behind the :class:`~patronus.kube.client.KubeClient` protocol, for unit tests.

It keeps what controllers depend on, the way kube-apiserver does it:

- objects get a ``uid``, a ``creationTimestamp``, one global ``resourceVersion`` counter (bumped only
  when an object really changes, so a no-op apply is no write), and ``generation`` bumped when anything
  but metadata and status changes;
- kinds with a status subresource (our CRDs, Deployments, Services, PVCs, Namespaces) ignore ``status``
  on the main resource and everything but ``status`` on the subresource;
- server-side apply tracks the fields each field manager set: a manager's apply removes the fields it set
  before and leaves out now (unless another manager also owns them), takes over fields others own with
  ``force``, and conflicts (409) without it. Lists are atomic, as an untyped schema makes them;
- ``replace`` checks ``resourceVersion`` (409 when stale), ``create`` refuses a taken name (409
  AlreadyExists) and fills ``generateName``, ``delete`` honours finalizers (``deletionTimestamp``) and,
  with ``garbage_collect``, removes dependents by owner reference as kube-controller-manager would;
- ``list_page`` filters by label and field selectors (``=``, ``==``, ``!=``, existence) and pages with
  continue tokens; ``watch`` replays events after a resourceVersion, then follows new ones, and raises
  :class:`~patronus.kube.errors.GoneError` for a version older than the history it keeps (``compact()``).

Every request is recorded in :attr:`FakeKube.requests`, so a test can say "this reconcile writes exactly
these" with :meth:`FakeKube.writes`. :meth:`FakeKube.fail_next` injects an error for the next matching
request. Not modelled: admission (schemas, CEL, RBAC), defaulting, and anything the tests against the real
API server cover.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from patronus.kube.client import Object
from patronus.kube.errors import (
    AlreadyExistsError,
    ApiError,
    ConflictError,
    GoneError,
    KubeError,
    NotFoundError,
)
from patronus.kube.resource import (
    DEPLOYMENT,
    MESH,
    NAMESPACE,
    PATH,
    PERSISTENT_VOLUME_CLAIM,
    POLICY,
    SERVICE,
    SITE,
    ResourceKind,
    kind_of,
)
from patronus.kube.timestamps import format_time

STATUS_SUBRESOURCE_KINDS = frozenset(
    k.plural for k in (SITE, PATH, POLICY, MESH, DEPLOYMENT, SERVICE, PERSISTENT_VOLUME_CLAIM, NAMESPACE)
)
WRITE_VERBS = frozenset({"create", "apply", "replace", "patch", "delete"})

FieldPath = tuple[str, ...]
Key = tuple[str, str, str]  # (plural, namespace, name)


@dataclass(frozen=True, slots=True)
class Request:
    """One call the fake answered (or failed on purpose)."""

    verb: str
    kind: str
    namespace: str
    name: str
    subresource: str | None = None
    field_manager: str | None = None
    body: Object | None = None

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


@dataclass(slots=True)
class _Injected:
    verb: str | None
    kind: str | None
    name: str | None
    error: Exception
    times: int


@dataclass(slots=True)
class _Stored:
    obj: Object
    # field manager -> (subresource scope: "" or "status") -> the leaf paths it set
    managed: dict[str, dict[str, set[FieldPath]]] = field(default_factory=dict)


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
        self.garbage_collect = garbage_collect
        self.requests: list[Request] = []
        self._objects: dict[Key, _Stored] = {}
        self._kinds: dict[str, ResourceKind] = {}
        self._revision = itertools.count(1)
        self._current = 0
        self._history: deque[tuple[int, str, str, Object]] = deque(maxlen=history)  # (rv, plural, type, obj)
        self._oldest = 0  # watches from below this revision are Gone
        self._changed = asyncio.Condition()
        self._injected: list[_Injected] = []
        self._closed = False

    # -- test helpers -------------------------------------------------------------------------------

    def seed(self, *objects: Mapping[str, Any], kind: ResourceKind | None = None) -> list[Object]:
        """Store objects as if created earlier, without recording requests; returns the stored copies."""
        stored = []
        for obj in objects:
            resource = kind or kind_of(obj)
            stored.append(self._create(resource, copy.deepcopy(dict(obj)), manager="seed"))
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
        self._injected.append(_Injected(verb, kind.plural if kind else None, name, error, times))

    def compact(self) -> int:
        """Forget the event history: watches from any earlier resourceVersion now get 410 Gone."""
        self._history.clear()
        self._oldest = self._current + 1
        return self._current

    @property
    def resource_version(self) -> int:
        return self._current

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
        offset, revision = _decode_continue(continue_token) if continue_token else (0, self._current)
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
        since = int(resource_version) if resource_version else self._current
        if since + 1 < self._oldest:
            raise GoneError(410, "Expired", f"too old resource version: {since} ({self._oldest - 1})")
        deadline = asyncio.get_running_loop().time() + timeout_seconds if timeout_seconds else None
        seen = since
        while not self._closed:
            if seen + 1 < self._oldest:
                raise GoneError(410, "Expired", f"too old resource version: {seen} ({self._oldest - 1})")
            for revision, plural, type_, obj in list(self._history):
                if revision <= seen or plural != kind.plural:
                    continue
                seen = revision
                meta = obj["metadata"]
                if namespace and meta.get("namespace") != namespace:
                    continue
                if matches_labels(obj, label_selector) and matches_fields(obj, field_selector):
                    yield {"type": type_, "object": copy.deepcopy(obj)}
            seen = max(seen, self._current)
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
        created = self._create(resource, body, manager=self.field_manager)
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
            created = self._create(resource, body, manager=manager)
            await self._notify()
            return copy.deepcopy(created)
        stored = self._objects[key]
        scope = _scope(resource, subresource)
        intent = _scoped(body, resource, scope)
        updated = _server_side_apply(stored, intent, manager, scope, force=force)
        result = self._store(resource, key, stored, updated)
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
        scope = _scope(resource, subresource)
        updated = copy.deepcopy(stored.obj)
        if scope == "status":
            updated["status"] = body.get("status")
        else:
            kept_status = stored.obj.get("status") if resource.plural in STATUS_SUBRESOURCE_KINDS else None
            updated = {**body, "metadata": {**stored.obj["metadata"], **_user_metadata(meta)}}
            if kept_status is not None:
                updated["status"] = kept_status
        result = self._store(resource, key, stored, _drop_none(updated))
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
        scope = _scope(kind, subresource)
        merged = merge_patch(stored.obj, _scoped(dict(patch), kind, scope))
        result = self._store(kind, key, stored, merged)
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
                self._store(kind, key, stored, updated)
                await self._notify()
            return copy.deepcopy(self._objects[key].obj)
        self._remove(kind, key)
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
        self.requests.append(
            Request(verb, kind.plural, namespace or "", name, subresource, field_manager, copy.deepcopy(body))
        )
        for injected in self._injected:
            if (
                injected.times > 0
                and injected.verb in (None, verb)
                and injected.kind in (None, kind.plural)
                and injected.name in (None, name)
            ):
                injected.times -= 1
                raise injected.error
        self._injected = [i for i in self._injected if i.times > 0]

    def _create(self, kind: ResourceKind, body: Object, *, manager: str) -> Object:
        meta = body.setdefault("metadata", {})
        namespace = meta.get("namespace") or ""
        if kind.namespaced and not namespace:
            raise ApiError(400, "BadRequest", f"{kind.kind} needs a namespace")
        key = (kind.plural, namespace, meta["name"])
        if key in self._objects:
            raise AlreadyExistsError(409, "AlreadyExists", f'{kind.plural} "{meta["name"]}" already exists')
        body.setdefault("apiVersion", kind.api_version)
        body.setdefault("kind", kind.kind)
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=format_time(self._now()),
            generation=1,
        )
        meta.pop("resourceVersion", None)
        if kind.plural in STATUS_SUBRESOURCE_KINDS and manager != "seed":
            body.pop("status", None)
        stored = _Stored(_drop_none(body))
        stored.managed[manager] = {"": _leaf_paths(_scoped(body, kind, ""))}
        return self._commit(kind, key, stored, "ADDED")

    def _store(self, kind: ResourceKind, key: Key, stored: _Stored, updated: Object) -> Object:
        before = stored.obj
        if _content(updated) == _content(before):
            return before  # no change: no new resourceVersion, no event
        if _spec(updated) != _spec(before):
            updated["metadata"]["generation"] = int(before["metadata"].get("generation") or 1) + 1
        stored.obj = updated
        meta = updated["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(kind, key)
            return updated
        return self._commit(kind, key, stored, "MODIFIED")

    def _commit(self, kind: ResourceKind, key: Key, stored: _Stored, event: str) -> Object:
        revision = next(self._revision)
        self._current = revision
        stored.obj["metadata"]["resourceVersion"] = str(revision)
        self._objects[key] = stored
        self._kinds[kind.plural] = kind
        self._remember(revision, kind.plural, event, copy.deepcopy(stored.obj))
        return stored.obj

    def _remove(self, kind: ResourceKind, key: Key) -> None:
        stored = self._objects.pop(key)
        revision = next(self._revision)
        self._current = revision
        gone = copy.deepcopy(stored.obj)
        gone["metadata"]["resourceVersion"] = str(revision)
        self._remember(revision, kind.plural, "DELETED", gone)
        if self.garbage_collect:
            uid = stored.obj["metadata"].get("uid")
            for other_key, other in list(self._objects.items()):
                refs = other.obj["metadata"].get("ownerReferences") or []
                if other_key in self._objects and any(ref.get("uid") == uid for ref in refs):
                    self._remove(self._kinds[other_key[0]], other_key)

    def _remember(self, revision: int, plural: str, event: str, obj: Object) -> None:
        if len(self._history) == self._history.maxlen:
            # The oldest event falls off: a watch from before it could miss it, so it is Gone now.
            self._oldest = self._history[0][0] + 1
        self._history.append((revision, plural, event, obj))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()


# -- server-side apply ---------------------------------------------------------------------------------


def _scope(kind: ResourceKind, subresource: str | None) -> str:
    if subresource not in (None, "status"):
        raise ApiError(404, "NotFound", f"the fake serves no {subresource} subresource")
    return "status" if subresource == "status" and kind.plural in STATUS_SUBRESOURCE_KINDS else ""


def _scoped(body: Object, kind: ResourceKind, scope: str) -> Object:
    """What of ``body`` a write to ``scope`` may set: status alone, or everything but status."""
    identity = {k: v for k, v in body.items() if k in ("apiVersion", "kind")}
    if scope == "status":
        return {**identity, "status": body.get("status") or {}}
    if kind.plural in STATUS_SUBRESOURCE_KINDS:
        return {k: v for k, v in body.items() if k != "status"}
    return body


_IDENTITY_FIELDS = frozenset({"apiVersion", "kind"})
_SYSTEM_METADATA = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"}
)


def _leaf_paths(obj: Any, prefix: FieldPath = ()) -> set[FieldPath]:
    """The paths a manager sets: every leaf; a list is one leaf (atomic)."""
    if isinstance(obj, dict) and obj:
        paths: set[FieldPath] = set()
        for key, value in obj.items():
            if not prefix and key in _IDENTITY_FIELDS:
                continue
            if prefix == ("metadata",) and key in _SYSTEM_METADATA:
                continue
            paths |= _leaf_paths(value, (*prefix, key))
        return paths
    return {prefix} if prefix else set()


def _get(obj: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _set(obj: Object, path: FieldPath, value: Any) -> None:
    for part in path[:-1]:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = obj[part] = {}
        obj = child
    obj[path[-1]] = copy.deepcopy(value)


def _unset(obj: Object, path: FieldPath) -> None:
    parents = []
    node: Any = obj
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return
        parents.append((node, part))
        node = node[part]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, part in reversed(parents):  # empty maps left behind go too, as the API server prunes them
        if parent[part] == {}:
            del parent[part]


_MISSING = object()


def _server_side_apply(stored: _Stored, intent: Object, manager: str, scope: str, *, force: bool) -> Object:
    applied = _leaf_paths(intent)
    others = {m: s.get(scope, set()) for m, s in stored.managed.items() if m != manager}
    conflicts = sorted(
        ".".join(path)
        for owner, paths in others.items()
        for path in applied & paths
        if _get(stored.obj, path) != _get(intent, path)
    )
    if conflicts and not force:
        raise ConflictError(409, "Conflict", f"Apply failed with conflicts: {', '.join(conflicts)}")
    updated = copy.deepcopy(stored.obj)
    previously = stored.managed.get(manager, {}).get(scope, set())
    still_owned = set().union(*others.values()) if others else set()
    for path in previously - applied - still_owned:
        _unset(updated, path)
    for path in applied:
        _set(updated, path, _get(intent, path))
        for paths in others.values():
            if path in paths and _get(stored.obj, path) != _get(intent, path):
                paths.discard(path)  # force took it over
    stored.managed.setdefault(manager, {})[scope] = applied
    for owner, paths in others.items():
        stored.managed[owner][scope] = paths
    return updated


# -- selectors, merge patch, small helpers -----------------------------------------------------------------


def matches_labels(obj: Mapping[str, Any], selector: str | None) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma-separated."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in _terms(selector):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def matches_fields(obj: Mapping[str, Any], selector: str | None) -> bool:
    """Field selectors on ``metadata.name`` and ``metadata.namespace`` (what every list supports)."""
    for term in _terms(selector):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        actual = _get(obj, tuple(key.strip().split(".")))
        if (actual == value.strip()) == negate:
            return False
    return True


def _terms(selector: str | None) -> Iterable[str]:
    return [term.strip() for term in (selector or "").split(",") if term.strip()]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _content(obj: Object) -> Object:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "generation")}
    return {**obj, "metadata": meta}


def _spec(obj: Object) -> Object:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _user_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in _SYSTEM_METADATA}


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def _decode_continue(token: str) -> tuple[int, int]:
    try:
        offset, revision = token.split(":", 1)
        return int(offset), int(revision)
    except ValueError:
        raise ApiError(400, "BadRequest", f"invalid continue token {token!r}") from None


def _not_found(kind: ResourceKind, name: str) -> NotFoundError:
    return NotFoundError(404, "NotFound", f'{kind.plural} "{name}" not found')


__all__ = ["FakeKube", "KubeError", "Request", "matches_fields", "matches_labels", "merge_patch"]
