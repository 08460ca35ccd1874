"""Policy controller: validates a policy's references and reports why it cannot be enforced.

The enforcing site's agent installs the policy and writes ``active``, ``pathInUse``, the counters and the
failover record; this controller writes the conditions that say whether the policy can work at all.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from patronus.api import Policy
from patronus.api.policy import PathRef
from patronus.kube.resource import POLICY, ObjectKey
from patronus.operator.apply import apply_status_if_changed
from patronus.operator.conditions import Cond, merge
from patronus.operator.controllers.context import Context
from patronus.operator.parsed import parsed_or_error
from patronus.runtime.controller import Result


def check_references(policy: Policy, namespace: str, sites: Any, paths: Any) -> Cond:
    """ReferencesResolved: the enforcing site and both paths exist, and the paths start at that site."""
    action = policy.spec.action
    refs: list[tuple[str, PathRef]] = [
        (role, ref)
        for role, ref in (("primaryPath", action.primary_path), ("backupPath", action.backup_path))
        if ref is not None
    ]
    for role, ref in refs:
        if sites.get(namespace, ref.site_ref) is None:
            return Cond(
                "ReferencesResolved",
                "False",
                "SiteNotFound",
                f"action.{role}.siteRef: site {ref.site_ref} does not exist",
            )
        path = paths.get(namespace, ref.path_id)
        if path is None:
            return Cond(
                "ReferencesResolved",
                "False",
                "PathNotFound",
                f"action.{role}.pathId: path {ref.path_id} does not exist",
            )
        source = ((path.get("spec") or {}).get("source") or {}).get("siteRef")
        if source != ref.site_ref:
            return Cond(
                "ReferencesResolved",
                "False",
                "PathNotFromSite",
                f"action.{role}.pathId: path {ref.path_id} starts at {source}, not at {ref.site_ref}",
            )
    return Cond("ReferencesResolved", "True", "ReferencesExist")


class PolicyReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def reconcile(self, key: ObjectKey) -> Result | None:
        obj = self.ctx.caches.policies.get(key.namespace, key.name)
        if obj is None:
            return None
        status = obj.get("status") or {}
        generation = obj["metadata"].get("generation")
        policy = parsed_or_error(Policy, obj)
        if isinstance(policy, ValidationError):
            resolved = Cond("ReferencesResolved", "False", "InvalidSpec", str(policy.errors()[0]["msg"]))
        else:
            resolved = check_references(policy, key.namespace, self.ctx.caches.sites, self.ctx.caches.paths)
        if resolved.status != "True":
            ready = Cond("Ready", "False", resolved.reason, resolved.message)
        elif status.get("active"):
            ready = Cond("Ready", "True", "Enforced")
        else:
            ready = Cond("Ready", "False", "AwaitingAgent", "no enforcing site's agent has installed it yet")
        previous = status.get("conditions")
        was_resolved = any(
            c.get("type") == "ReferencesResolved" and c.get("status") == "True" for c in previous or []
        )
        desired = {
            "conditions": merge(previous, [resolved, ready], now=self.ctx.now(), generation=generation),
            "observedGeneration": generation,
        }
        written = await apply_status_if_changed(self.ctx.client, POLICY, obj, desired)
        if written is not None and resolved.status != "True" and (was_resolved or not previous):
            self.ctx.events.event(obj, "Warning", resolved.reason, resolved.message)
        return None
