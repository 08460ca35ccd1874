"""Policy controller: whether a policy can work, and how it works at every site that enforces it.

``references`` checks that the enforcing site and both paths exist; ``aggregate`` sums up the enforcing
sites' reports (their agents write them in their own Site's status; no agent writes a Policy). Ready is
``Enforced`` once every enforcing site has installed the policy.
"""

from __future__ import annotations

from collections.abc import Mapping

from patronus.api import Policy, Site
from patronus.api.site import SitePolicyReport
from patronus.kube.resource import POLICY, ObjectKey
from patronus.operator.context import Caches, Context
from patronus.operator.indexes import ALL_SITES, BY_REPORTED_POLICY, policy_sites, ref
from patronus.operator.policy.aggregate import AGGREGATED_FIELDS, Installed, aggregate
from patronus.operator.policy.references import check_references
from patronus.operator.reconcile.apply import apply_status_if_changed
from patronus.operator.reconcile.conditions import Cond, find, merge
from patronus.operator.reconcile.opening import Opening
from patronus.operator.reconcile.parsed import parsed, per_version
from patronus.runtime.cache import Object
from patronus.runtime.controller import Result


def reports_of(caches: Caches, namespace: str, policy: str) -> dict[str, SitePolicyReport]:
    """Each site's report on ``policy``, by site (found through the index of reported policies)."""
    reports = {}
    for obj in caches.sites.by_index(BY_REPORTED_POLICY, ref(namespace, policy)):
        report = per_version("site-policy-reports", obj, _site_reports).get(policy)
        if report is not None:
            reports[obj["metadata"]["name"]] = report
    return reports


def _site_reports(obj: Object) -> dict[str, SitePolicyReport]:
    """A site's policy reports by policy (none from a site that does not validate). A namespace-wide
    policy's reconcile reads one entry of every site's list: looked up, not searched."""
    site = parsed(Site, obj)
    status = site.status if site is not None else None
    return {report.name: report for report in (status.policies if status is not None else None) or ()}


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
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.opening = Opening(ctx, POLICY, ctx.caches.policies, Policy)

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
        written = await apply_status_if_changed(
            self.ctx.client, POLICY, opened.obj, desired, optional=AGGREGATED_FIELDS
        )
        if written is not None and resolved.status != "True" and _newly_unresolved(previous):
            self.ctx.events.event(opened.obj, "Warning", resolved.reason, resolved.message)
        return None


def _newly_unresolved(previous: list[Mapping[str, object]] | None) -> bool:
    """The references were resolved before (or nothing was said yet): worth an Event."""
    before = find(previous, "ReferencesResolved")
    return before is None or before.get("status") == "True"
