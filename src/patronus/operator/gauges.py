"""The per-kind gauges, computed from the caches at scrape time (so they can never drift from them)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from patronus.operator.context import Caches
from patronus.operator.reconcile.conditions import find
from patronus.runtime.sources import KindCache

SITE_PHASES = ("Pending", "Active", "Degraded", "Failed")
PATH_STATES = ("up", "degraded", "down", "unknown")


def _count(cache: KindCache, field: str, known: tuple[str, ...], missing: str) -> Counter[str]:
    counts: Counter[str] = Counter({value: 0 for value in known})
    for obj in cache.list():
        counts[str((obj.get("status") or {}).get(field) or missing)] += 1
    return counts


def _ready_counts(cache: KindCache) -> Counter[str]:
    counts: Counter[str] = Counter({"True": 0, "False": 0, "Unknown": 0})
    for obj in cache.list():
        cond = find((obj.get("status") or {}).get("conditions"), "Ready")
        counts[str(cond.get("status")) if cond else "Unknown"] += 1
    return counts


class ResourceGauges(Collector):
    def __init__(self, caches: Caches) -> None:
        self.caches = caches

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sites = GaugeMetricFamily("patronus_operator_sites_total", "Sites by phase.", labels=["phase"])
        for phase, n in sorted(_count(self.caches.sites, "phase", SITE_PHASES, "Pending").items()):
            sites.add_metric([phase], n)
        paths = GaugeMetricFamily("patronus_operator_paths_total", "Paths by state.", labels=["state"])
        for state, n in sorted(_count(self.caches.paths, "state", PATH_STATES, "unknown").items()):
            paths.add_metric([state], n)
        policies = GaugeMetricFamily(
            "patronus_operator_policies_total", "Policies by their Ready condition.", labels=["ready"]
        )
        for ready, n in sorted(_ready_counts(self.caches.policies).items()):
            policies.add_metric([ready], n)
        meshes = GaugeMetricFamily(
            "patronus_operator_meshes_total", "Meshes by their Ready condition.", labels=["ready"]
        )
        for ready, n in sorted(_ready_counts(self.caches.meshes).items()):
            meshes.add_metric([ready], n)
        yield from (sites, paths, policies, meshes)
