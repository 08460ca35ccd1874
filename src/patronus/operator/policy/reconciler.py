"""Policy controller: whether a policy can work, and how it works at every site that enforces it.

``references`` checks that the enforcing site and both paths exist; ``aggregate`` sums up the enforcing
sites' reports (their agents write them in their own Site's status; no agent writes a Policy). Ready is
``Enforced`` once every enforcing site has installed the policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from patronus.api import Policy, Site
from patronus.api.reporting import STATUS_REFRESH
from patronus.api.site import SitePolicyReport
from patronus.kube.resource import POLICY, ObjectKey
from patronus.operator.context import Caches, Context
from patronus.operator.indexes import ALL_SITES, BY_REPORTED_POLICY, policy_sites, ref
from patronus.operator.policy.aggregate import (
    AGGREGATED_FIELDS,
    Installed,
    aggregate,
    site_entry,
    without_counters,
)
from patronus.operator.policy.references import check_references
from patronus.operator.reconcile.apply import apply_status, status_holds
from patronus.operator.reconcile.conditions import Cond, find, merge
from patronus.operator.reconcile.opening import Opening
from patronus.operator.reconcile.parsed import parsed, per_version
from patronus.runtime.cache import Object
from patronus.runtime.controller import Result

COUNTERS_REFRESH = STATUS_REFRESH
"""Seconds between status writes that only move a Policy's counters."""


def reports_of(caches: Caches, namespace: str, policy: str) -> dict[str, dict[str, Any]]:
    """Each site's ``status.sites`` entry for ``policy``, by site (found through the index of reported
    policies)."""
    entries = {}
    for obj in caches.sites.by_index(BY_REPORTED_POLICY, ref(namespace, policy)):
        entry = per_version("site-policy-entries", obj, _site_entries).get(policy)
        if entry is not None:
            entries[obj["metadata"]["name"]] = entry
    return entries


def _site_entries(obj: Object) -> dict[str, dict[str, Any]]:
    """A site's reports as Policy status entries, by policy: made once per Site version and shared,
    read-only, by every policy's reconcile (a namespace-wide policy's reads one entry of every site's).
    None from a site whose spec does not validate; a report that does not validate is left out."""
    if parsed(Site, obj) is None:
        return {}
    site = obj["metadata"]["name"]
    entries = {}
    for raw in (obj.get("status") or {}).get("policies") or ():
        try:
            report = SitePolicyReport.model_validate(raw)
        except ValidationError:
            continue
        entries[report.name] = site_entry(site, report)
    return entries


def enforcing_sites(caches: Caches, obj: Object) -> list[str]:
    """The existing sites that enforce the policy: the one its paths start at, or every site."""
    namespace = obj["metadata"].get("namespace") or ""
    refs = policy_sites(obj)
    if refs == [ref(namespace, ALL_SITES)]:
        return [site["metadata"]["name"] for site in caches.sites.list(namespace)]
    names = [value.partition("/")[2] for value in refs]
    return [name for name in names if caches.sites.get(namespace, name) is not None]


def ready_condition(resolved: Cond, installed: Installed | None) -> Cond:
    """Enforced once every enforcing site installed it; ``installed`` is None when no site reported."""
    if resolved.status != "True":
        return Cond("Ready", "False", resolved.reason, resolved.message)
    if installed is not None and installed.everywhere:
        return Cond("Ready", "True", "Enforced")
    message = (
        f"{installed.active} of {installed.enforcing} enforcing sites have installed it"
        if installed is not None
        else "no enforcing site's agent has installed it yet"
    )
    return Cond("Ready", "False", "AwaitingAgent", message)


class PolicyReconciler:
    """Writes a Policy's status when where it stands changes (references, installation, the path in use,
    failovers: at once), and its traffic counters at most once per :data:`COUNTERS_REFRESH`: agents
    report them once a minute each, and a namespace-wide policy's status is a list of every site's
    entry, which the resync would otherwise rewrite (and every watcher decode) every 30 s."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.opening = Opening(ctx, POLICY, ctx.caches.policies, Policy, forget=self._forget)
        self._written: dict[ObjectKey, float] = {}  # monotonic time of the last status write, per Policy

    async def reconcile(self, key: ObjectKey) -> Result | None:
        opened = await self.opening.open(key)
        if opened is None:
            return None
        caches = self.ctx.caches
        resolved = check_references(opened.model, key.namespace, caches.sites, caches.paths)
        # Counting a namespace-wide policy's sites costs a walk of the namespace: only with reports.
        reports = reports_of(caches, key.namespace, key.name)
        fields, installed = aggregate(enforcing_sites(caches, opened.obj), reports) if reports else ({}, None)
        previous = opened.status.get("conditions")
        desired = {
            **fields,
            "conditions": merge(
                previous,
                [resolved, ready_condition(resolved, installed)],
                now=opened.now,
                generation=opened.generation,
            ),
            "observedGeneration": opened.generation,
        }
        if status_holds(opened.status, desired, optional=AGGREGATED_FIELDS):
            return None
        wait = self._counters_wait(key, opened.status, desired)
        if wait > 0:
            return Result(requeue_after=wait)
        await apply_status(self.ctx.client, POLICY, opened.obj, desired)
        self._written[key] = self.ctx.clock.monotonic()
        if resolved.status != "True" and _newly_unresolved(previous):
            self.ctx.events.event(opened.obj, "Warning", resolved.reason, resolved.message)
        return None

    def _counters_wait(self, key: ObjectKey, current: Mapping[str, Any], desired: Mapping[str, Any]) -> float:
        """Seconds to hold back a write that would change only counters (0: write now)."""
        last = self._written.get(key)
        if last is None:
            return 0.0
        wait = COUNTERS_REFRESH - (self.ctx.clock.monotonic() - last)
        if wait <= 0:
            return 0.0
        counters_only = status_holds(
            without_counters(current), without_counters(desired), optional=AGGREGATED_FIELDS
        )
        return wait if counters_only else 0.0

    def _forget(self, key: ObjectKey) -> None:
        self._written.pop(key, None)


def _newly_unresolved(previous: list[Mapping[str, object]] | None) -> bool:
    """The references were resolved before (or nothing was said yet): worth an Event."""
    before = find(previous, "ReferencesResolved")
    return before is None or before.get("status") == "True"
