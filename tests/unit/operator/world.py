"""A world for reconciler unit tests: FakeKube, the operator's real caches over it, a fake clock.

The caches are the production ones (``build_caches`` on a Manager whose informers never run); ``sync()``
copies the fake API server's objects into them, as the informers would, so a test decides exactly when
the cache catches up. ``reconcile()`` runs one reconcile and returns the writes it made.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from patronus.api.meta import GROUP_VERSION
from patronus.kube.fake import FakeKube, Request, matches_labels
from patronus.kube.resource import ObjectKey, ResourceKind
from patronus.kube.timestamps import format_time
from patronus.operator.config import OperatorConfig, load_config
from patronus.operator.context import Caches, Context
from patronus.operator.wiring.caches import build_caches
from patronus.runtime.clock import FakeClock
from patronus.runtime.controller import Reconciler, Result
from patronus.runtime.manager import Manager, ManagerOptions
from patronus.runtime.sources import KindCache

NS = "ns"
START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@dataclass(slots=True)
class RecordedEvents:
    """Stands in for the EventRecorder: the Events reconcilers asked for, as (object, type, reason)."""

    events: list[tuple[str, str, str, str]] = field(default_factory=list)

    def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], type_, reason, message))

    def reasons(self) -> list[str]:
        return [reason for _, _, reason, _ in self.events]


class World:
    def __init__(self, *objects: Mapping[str, Any], config: OperatorConfig | None = None) -> None:
        self.clock = FakeClock(wall=START)
        self.kube = FakeKube(field_manager="test", now=self.clock.now)
        self.kube.seed(*objects)
        manager = Manager(ManagerOptions(identity="unit"), self.kube, clock=self.clock)
        self.caches: Caches = build_caches(manager)
        self.events = RecordedEvents()
        self.ctx = Context(
            caches=self.caches,
            client=self.kube,
            events=self.events,
            config=config or load_config({"AGENT_IMAGE": "registry.example/agent:v1"}),
            clock=self.clock,
        )
        self.sync()

    def all_caches(self) -> list[KindCache]:
        c = self.caches
        return [c.sites, c.paths, c.policies, c.meshes, *c.children.values()]

    def sync(self) -> None:
        """The informers catch up: every cache holds what the fake API server holds (by selector)."""
        version = str(self.kube.resource_version)
        for cache in self.all_caches():
            for informer in cache.informers:
                stored = [
                    obj
                    for obj in self.kube.objects(cache.kind, informer.namespace)
                    if matches_labels(obj, informer.label_selector)
                ]
                informer.indexer.replace(stored, version)

    def seed(self, *objects: Mapping[str, Any]) -> None:
        self.kube.seed(*objects)
        self.sync()

    async def reconcile(self, reconciler: Reconciler, name: str, *, sync: bool = True) -> list[Request]:
        """One reconcile of ``name`` in NS; the writes it made. The caches catch up afterwards."""
        mark = self.kube.mark()
        self.last_result: Result | None = await reconciler.reconcile(ObjectKey(NS, name))
        if sync:
            self.sync()
        return self.kube.writes(mark)

    def get(self, kind: ResourceKind, name: str) -> dict[str, Any]:
        found = self.kube.object(kind, NS, name)
        assert found is not None, f"{kind.kind} {name} does not exist"
        return found

    def status(self, kind: ResourceKind, name: str) -> dict[str, Any]:
        return dict(self.get(kind, name).get("status") or {})

    def conditions(self, kind: ResourceKind, name: str) -> dict[str, tuple[str, str]]:
        """Each condition's (status, reason), by type."""
        return {
            c["type"]: (c["status"], c["reason"]) for c in self.status(kind, name).get("conditions") or []
        }

    def later(self, seconds: float) -> str:
        """A timestamp ``seconds`` after now, as an agent would write it."""
        return format_time(self.clock.now() + timedelta(seconds=seconds), millis=True)


def writes_of(requests: list[Request]) -> list[tuple[str, str, str]]:
    """(verb, resource[/subresource], name) of each write, in order."""
    return [(r.verb, f"{r.kind}/{r.subresource}" if r.subresource else r.kind, r.name) for r in requests]


# -- objects ------------------------------------------------------------------------------------------------


def site(name: str, *, status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"wireguard": {"endpoints": [f"{name}.example.net:51820"]}, **spec}
    obj: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": "Site",
        "metadata": {"name": name, "namespace": NS},
        "spec": body,
    }
    if status is not None:
        obj["status"] = status
    return obj


def mesh(name: str, sites: list[str], topology: str = "full-mesh") -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Mesh",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"sites": sites, "topology": topology},
    }


def path(name: str, source: str, destination: str, **status: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": GROUP_VERSION,
        "kind": "Path",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"source": {"siteRef": source}, "destination": {"siteRef": destination}},
    }
    if status:
        obj["status"] = status
    return obj


def policy(name: str, *, primary: tuple[str, str] | None = None, backup: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {"type": "route"}
    if primary is not None:
        action["primaryPath"] = {"siteRef": primary[0], "pathId": primary[1]}
        if backup is not None:
            action["backupPath"] = {"siteRef": primary[0], "pathId": backup}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "Policy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"match": {"protocol": "udp", "dstPortRange": "5060"}, "action": action},
    }


def secret(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": NS}
    if labels:
        metadata["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
