"""What every Patronus reconciler shares: the caches, the REST client, events, configuration, time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from patronus.kube.client import KubeClient
from patronus.operator.apply import AppliedVersions
from patronus.operator.config import OperatorConfig
from patronus.runtime.clock import Clock
from patronus.runtime.events import EventRecorder
from patronus.runtime.sources import KindCache


@dataclass(frozen=True, slots=True)
class Caches:
    sites: KindCache
    paths: KindCache
    policies: KindCache
    meshes: KindCache
    # Children, filtered to what the operator made (label app.kubernetes.io/managed-by).
    secrets: KindCache
    config_maps: KindCache
    service_accounts: KindCache
    roles: KindCache
    role_bindings: KindCache
    deployments: KindCache
    pvcs: KindCache
    services: KindCache


@dataclass(frozen=True, slots=True)
class Context:
    caches: Caches
    client: KubeClient
    events: EventRecorder
    config: OperatorConfig
    clock: Clock
    applied: AppliedVersions = field(default_factory=AppliedVersions)  # children known to be current

    def now(self) -> datetime:
        return self.clock.now()
