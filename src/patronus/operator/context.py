"""What every Patronus reconciler shares: the caches, the client, events, configuration and time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from patronus.kube.client import KubeClient
from patronus.kube.resource import ResourceKind
from patronus.operator.config import OperatorConfig
from patronus.operator.reconcile.apply import AppliedVersions
from patronus.runtime.clock import Clock
from patronus.runtime.events import EventType
from patronus.runtime.sources import KindCache


class EventSink(Protocol):
    """Where reconcilers record Events (the manager's EventRecorder; a list in unit tests)."""

    def event(self, obj: Mapping[str, Any], type_: EventType, reason: str, message: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Caches:
    """The four kinds, and the Sites' children by kind name (see ``site.kinds.CHILD_KINDS``), each
    filtered to what the operator made."""

    sites: KindCache
    paths: KindCache
    policies: KindCache
    meshes: KindCache
    children: Mapping[str, KindCache]

    def child(self, kind: ResourceKind) -> KindCache:
        return self.children[kind.kind]


@dataclass(frozen=True, slots=True)
class Context:
    caches: Caches
    client: KubeClient
    events: EventSink
    config: OperatorConfig
    clock: Clock
    applied: AppliedVersions = field(default_factory=AppliedVersions)  # children known to be current

    def now(self) -> datetime:
        return self.clock.now()
