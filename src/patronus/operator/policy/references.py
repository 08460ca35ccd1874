"""Whether a Policy can work at all: its enforcing site and both paths exist and start at that site."""

from __future__ import annotations

from patronus.api import Policy
from patronus.api.policy import PathRef
from patronus.operator.reconcile.conditions import Cond
from patronus.runtime.sources import KindCache


def check_references(policy: Policy, namespace: str, sites: KindCache, paths: KindCache) -> Cond:
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
