"""The informer's in-memory store of one kind: objects by key, plus indexes over them.

Objects are the API server's JSON as plain dicts, stored lean (``metadata.managedFields`` dropped) and
shared with callers: treat what the cache returns as read-only, copy before changing it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from patronus.kube.resource import ObjectKey

Object = dict[str, Any]
IndexFunc = Callable[[Object], list[str]]

NAMESPACE_INDEX = "namespace"
OWNER_INDEX = "owner"
LABEL_INDEX = "label"


def lean(obj: Object) -> Object:
    """The object without ``metadata.managedFields`` (a shallow copy only when there is something to drop)."""
    metadata = obj.get("metadata")
    if not metadata or "managedFields" not in metadata:
        return obj
    slim = {k: v for k, v in metadata.items() if k != "managedFields"}
    return {**obj, "metadata": slim}


def object_resource_version(obj: Object) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def index_by_namespace(obj: Object) -> list[str]:
    return [obj["metadata"].get("namespace") or ""]


def index_by_owner(obj: Object) -> list[str]:
    return [ref["uid"] for ref in obj["metadata"].get("ownerReferences") or () if "uid" in ref]


def index_by_label(obj: Object) -> list[str]:
    return [f"{k}={v}" for k, v in (obj["metadata"].get("labels") or {}).items()]


class _Index:
    """value -> keys. Most values name one object (owner uids, unique labels), so a lone key is stored
    bare and only promoted to a set when a second arrives: a set costs ~200 bytes, a reference 8."""

    __slots__ = ("func", "values")

    def __init__(self, func: IndexFunc) -> None:
        self.func = func
        self.values: dict[str, ObjectKey | set[ObjectKey]] = {}

    def add(self, obj: Object, key: ObjectKey) -> None:
        self._add(self.func(obj), key)

    def remove(self, obj: Object, key: ObjectKey) -> None:
        self._remove(self.func(obj), key)

    def update(self, old: Object, new: Object, key: ObjectKey) -> None:
        """``remove(old)`` then ``add(new)``, which changes nothing when both give the same values (a
        status write usually moves no index: left alone, a Site reporting on 250 policies is not taken
        out of 250 sets and put back on every heartbeat)."""
        before, after = self.func(old), self.func(new)
        if before != after:
            self._remove(before, key)
            self._add(after, key)

    def _add(self, values: list[str], key: ObjectKey) -> None:
        for value in values:
            present = self.values.get(value)
            if present is None:
                self.values[value] = key
            elif isinstance(present, set):
                present.add(key)
            elif present != key:
                self.values[value] = {present, key}

    def _remove(self, values: list[str], key: ObjectKey) -> None:
        for value in values:
            present = self.values.get(value)
            if present is None:
                continue
            if isinstance(present, set):
                present.discard(key)
                if len(present) == 1:
                    self.values[value] = next(iter(present))
                elif not present:
                    del self.values[value]
            elif present == key:
                del self.values[value]

    def keys(self, value: str) -> list[ObjectKey]:
        present = self.values.get(value)
        if present is None:
            return []
        if isinstance(present, set):
            return list(present)
        return [present]


@dataclass(slots=True)
class ReplaceResult:
    """What a relist changed, for the informer to tell its handlers."""

    added: list[Object] = field(default_factory=list)
    updated: list[tuple[Object, Object]] = field(default_factory=list)  # (old, new)
    deleted: list[Object] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


class Indexer:
    """Objects of one kind by (namespace, name), with ``namespace``, ``owner`` and ``label`` indexes."""

    def __init__(self, transform: Callable[[Object], Object] = lean) -> None:
        self._transform = transform
        self._items: dict[ObjectKey, Object] = {}
        self._indexes: dict[str, _Index] = {
            NAMESPACE_INDEX: _Index(index_by_namespace),
            OWNER_INDEX: _Index(index_by_owner),
            LABEL_INDEX: _Index(index_by_label),
        }
        self.resource_version = ""  # of the last list (or event) applied

    def add_index(self, name: str, func: IndexFunc) -> None:
        """Index objects by ``func(obj)``; existing objects are indexed at once."""
        if name in self._indexes:
            raise ValueError(f"index {name!r} exists")
        index = _Index(func)
        for key, obj in self._items.items():
            index.add(obj, key)
        self._indexes[name] = index

    def upsert(self, obj: Object) -> tuple[Object | None, Object]:
        """Store the object; returns (the object it replaced or None, the stored lean object)."""
        stored = self._transform(obj)
        key = ObjectKey.of(stored)
        old = self._items.get(key)
        self._items[key] = stored
        if old is None:
            self._index(stored, key)
        else:
            for index in self._indexes.values():
                index.update(old, stored, key)
        return old, stored

    def delete(self, key: ObjectKey | Object) -> Object | None:
        """Remove by key or by object; returns the removed object, or None if there was none."""
        if not isinstance(key, ObjectKey):
            key = ObjectKey.of(key)
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(old, key)
        return old

    def replace(self, objects: Iterable[Object], resource_version: str) -> ReplaceResult:
        """Make the store exactly ``objects`` (a relist); returns the difference to what it held.

        Unchanged objects (same resourceVersion) are kept and not reported.
        """
        result = ReplaceResult()
        seen: set[ObjectKey] = set()
        for obj in objects:
            key = ObjectKey.of(obj)
            seen.add(key)
            old = self._items.get(key)
            if old is not None and object_resource_version(old) == object_resource_version(obj):
                continue
            old, stored = self.upsert(obj)
            if old is None:
                result.added.append(stored)
            else:
                result.updated.append((old, stored))
        for key in [key for key in self._items if key not in seen]:
            gone = self.delete(key)
            assert gone is not None
            result.deleted.append(gone)
        self.resource_version = resource_version
        return result

    def get(self, namespace: str | None, name: str) -> Object | None:
        return self._items.get(ObjectKey(namespace or "", name))

    def list(self, namespace: str | None = None) -> builtins.list[Object]:
        if namespace is None:
            return list(self._items.values())
        return [self._items[key] for key in self._indexes[NAMESPACE_INDEX].keys(namespace)]

    def by_index(self, name: str, value: str) -> builtins.list[Object]:
        """Objects whose index ``name`` yields ``value`` (e.g. ``by_index("label", "app=x")``)."""
        return [self._items[key] for key in self.index_keys(name, value)]

    def index_keys(self, name: str, value: str) -> builtins.list[ObjectKey]:
        try:
            index = self._indexes[name]
        except KeyError:
            raise KeyError(f"no index {name!r}") from None
        return index.keys(value)

    def keys(self, namespace: str | None = None) -> builtins.list[ObjectKey]:
        """The keys of the objects (in ``namespace``), without touching the objects."""
        if namespace is None:
            return list(self._items)
        return self._indexes[NAMESPACE_INDEX].keys(namespace)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[Object]:
        return iter(list(self._items.values()))

    def _index(self, obj: Object, key: ObjectKey) -> None:
        for index in self._indexes.values():
            index.add(obj, key)

    def _unindex(self, obj: Object, key: ObjectKey) -> None:
        for index in self._indexes.values():
            index.remove(obj, key)
