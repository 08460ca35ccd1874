"""The fake's object store: objects by (plural, namespace, name), one global ``resourceVersion`` counter,
the event history that watches replay, and the garbage collector.

Objects get a ``uid``, a ``creationTimestamp`` and ``generation`` 1 when created; an update that changes
nothing is no write (no new resourceVersion, no event); ``generation`` counts changes to anything but
metadata and status. Removing an object removes its dependents by owner reference when garbage
collection is on, as kube-controller-manager would. Synchronous: the server wakes its watches.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from patronus.kube.client import Object
from patronus.kube.errors import AlreadyExistsError, ApiError
from patronus.kube.fake.apply import STATUS_SUBRESOURCE_KINDS, Managed, leaf_paths, scoped
from patronus.kube.resource import ResourceKind
from patronus.kube.timestamps import format_time

Key = tuple[str, str, str]  # (plural, namespace, name)
Event = tuple[int, str, str, Object]  # (resourceVersion, plural, watch event type, object)


@dataclass(slots=True)
class Stored:
    obj: Object
    managed: Managed = field(default_factory=dict)


class ObjectStore:
    """What the fake API server holds; every method returns the stored object itself, not a copy."""

    def __init__(self, *, history: int, garbage_collect: bool, now: Callable[[], datetime]) -> None:
        self.garbage_collect = garbage_collect
        self.objects: dict[Key, Stored] = {}
        self.history: deque[Event] = deque(maxlen=history)
        self.current = 0
        self.oldest = 0  # watches from below this revision are Gone
        self._now = now
        self._kinds: dict[str, ResourceKind] = {}
        self._revision = itertools.count(1)

    def compact(self) -> int:
        """Forget the event history: watches from any earlier resourceVersion now get 410 Gone."""
        self.history.clear()
        self.oldest = self.current + 1
        return self.current

    def create(self, kind: ResourceKind, body: Object, *, manager: str) -> Object:
        meta = body.setdefault("metadata", {})
        namespace = meta.get("namespace") or ""
        if kind.namespaced and not namespace:
            raise ApiError(400, "BadRequest", f"{kind.kind} needs a namespace")
        key = (kind.plural, namespace, meta["name"])
        if key in self.objects:
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
        stored = Stored(drop_none(body))
        stored.managed[manager] = {"": leaf_paths(scoped(body, kind, ""))}
        return self._commit(kind, key, stored, "ADDED")

    def update(self, kind: ResourceKind, key: Key, stored: Stored, updated: Object) -> Object:
        """Store ``updated`` in place of ``stored``; an object deleted with no finalizers left goes."""
        before = stored.obj
        if _content(updated) == _content(before):
            return before  # no change: no new resourceVersion, no event
        if _spec(updated) != _spec(before):
            updated["metadata"]["generation"] = int(before["metadata"].get("generation") or 1) + 1
        stored.obj = updated
        meta = updated["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.remove(kind, key)
            return updated
        return self._commit(kind, key, stored, "MODIFIED")

    def remove(self, kind: ResourceKind, key: Key) -> None:
        stored = self.objects.pop(key)
        revision = next(self._revision)
        self.current = revision
        gone = copy.deepcopy(stored.obj)
        gone["metadata"]["resourceVersion"] = str(revision)
        self._remember(revision, kind.plural, "DELETED", gone)
        if self.garbage_collect:
            uid = stored.obj["metadata"].get("uid")
            for other_key, other in list(self.objects.items()):
                refs = other.obj["metadata"].get("ownerReferences") or []
                if other_key in self.objects and any(ref.get("uid") == uid for ref in refs):
                    self.remove(self._kinds[other_key[0]], other_key)

    def _commit(self, kind: ResourceKind, key: Key, stored: Stored, event: str) -> Object:
        revision = next(self._revision)
        self.current = revision
        stored.obj["metadata"]["resourceVersion"] = str(revision)
        self.objects[key] = stored
        self._kinds[kind.plural] = kind
        self._remember(revision, kind.plural, event, copy.deepcopy(stored.obj))
        return stored.obj

    def _remember(self, revision: int, plural: str, event: str, obj: Object) -> None:
        if len(self.history) == self.history.maxlen:
            # The oldest event falls off: a watch from before it could miss it, so it is Gone now.
            self.oldest = self.history[0][0] + 1
        self.history.append((revision, plural, event, obj))


def drop_none(obj: Any) -> Any:
    """What the API server stores: no null values."""
    if isinstance(obj, dict):
        return {k: drop_none(v) for k, v in obj.items() if v is not None}
    return obj


def _content(obj: Object) -> Object:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "generation")}
    return {**obj, "metadata": meta}


def _spec(obj: Object) -> Object:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
