"""One reader over all the informers of a kind.

With ``WATCH_NAMESPACES`` set, the operator runs one informer per namespace (RBAC may grant nothing
cluster-wide); otherwise one informer for all namespaces. Controllers see the same ``KindCache`` either way.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable

from patronus.kube.resource import ObjectKey, ResourceKind
from patronus.runtime.cache import IndexFunc, Object
from patronus.runtime.informer import Informer, OnAdd, OnDelete, OnUpdate


class KindCache:
    """The cached objects of one kind, across the namespaces being watched."""

    def __init__(self, kind: ResourceKind, informers: Iterable[Informer]) -> None:
        self.kind = kind
        self.informers = list(informers)
        if not self.informers:
            raise ValueError(f"{kind}: at least one informer is needed")
        self._by_namespace = {informer.namespace: informer for informer in self.informers}

    def _for(self, namespace: str | None) -> builtins.list[Informer]:
        if None in self._by_namespace:
            return [self._by_namespace[None]]
        if namespace is None:
            return self.informers
        informer = self._by_namespace.get(namespace)
        return [informer] if informer else []

    def get(self, namespace: str | None, name: str) -> Object | None:
        for informer in self._for(namespace):
            found = informer.indexer.get(namespace, name)
            if found is not None:
                return found
        return None

    def list(self, namespace: str | None = None) -> builtins.list[Object]:
        return [obj for informer in self._for(namespace) for obj in informer.indexer.list(namespace)]

    def keys(self, namespace: str | None = None) -> builtins.list[ObjectKey]:
        """The keys of the cached objects (in ``namespace``): for a mapper that concerns them all, and
        cheaper than :meth:`list` then a key per object."""
        return [key for informer in self._for(namespace) for key in informer.indexer.keys(namespace)]

    def by_index(self, index: str, value: str) -> builtins.list[Object]:
        return [obj for informer in self.informers for obj in informer.indexer.by_index(index, value)]

    def add_index(self, name: str, func: IndexFunc) -> None:
        for informer in self.informers:
            informer.indexer.add_index(name, func)

    def add_handler(
        self,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
    ) -> None:
        for informer in self.informers:
            informer.add_handler(on_add, on_update, on_delete)

    def has_synced(self) -> bool:
        return all(informer.has_synced() for informer in self.informers)

    def __len__(self) -> int:
        return sum(len(informer.indexer) for informer in self.informers)

    def on_any_change(self, callback: Callable[[Object], None]) -> None:
        """Call ``callback`` with the new (or deleted) object on every change."""
        self.add_handler(callback, lambda _old, new: callback(new), callback)
