"""The agent's identity and what it may do: a ServiceAccount, a Role and its RoleBinding. Pure.

The agent reads its own Site, its own Paths and ConfigMap, and its key Secret, each by name; it writes
only its own Site's and Paths' status and its own heartbeat Lease, and creates Events. It has no access
to Policies (their status is the operator's, aggregated from the Sites' reports) and none to another
site's objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from patronus.api.meta import API_GROUP
from patronus.api.reporting import HEARTBEAT_STALE_AFTER
from patronus.operator.site.children.names import child_metadata, child_names, site_identity

LEASE_GROUP = "coordination.k8s.io"
LEASE_DURATION_SECONDS = int(HEARTBEAT_STALE_AFTER)
"""What the Lease tells a reader; the operator's rule is ``api.reporting.HEARTBEAT_STALE_AFTER``."""
_READ = ("get", "list", "watch")
# get too: `kubectl patch --subresource=status` and client-go read the subresource before writing it.
_WRITE_STATUS = ("get", "patch")


def heartbeat_lease(site_obj: Mapping[str, Any]) -> dict[str, Any]:
    """The Lease the agent renews every few seconds as its heartbeat (as kubelets renew theirs).

    A renewal is a write of a small object that only the Site controller watches, instead of a rewrite of
    the whole Site status, which every controller watching Sites would decode. The operator makes it, so
    no agent can create (or squat) another site's Lease; the agent may only renew its own, by name.
    """
    site_name, _ = site_identity(site_obj)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": child_metadata(site_obj, child_names(site_name).lease),
        "spec": {"leaseDurationSeconds": LEASE_DURATION_SECONDS},
    }


def service_account(site_obj: Mapping[str, Any]) -> dict[str, Any]:
    """The agent's identity: one per site, so the Role can be scoped to that site alone."""
    site_name, _ = site_identity(site_obj)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(site_obj, child_names(site_name).service_account),
    }


def _rule(api_group: str, resource: str, verbs: Sequence[str], names: Sequence[str] | None) -> dict[str, Any]:
    """One PolicyRule with sorted lists; ``names=None`` means the resource cannot be limited by name."""
    rule: dict[str, Any] = {"apiGroups": [api_group], "resources": [resource], "verbs": sorted(verbs)}
    if names is not None:
        rule["resourceNames"] = sorted(set(names))
    return rule


def _read_and_status_rules(resource: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """Read ``resource`` and write its status, by name; nothing at all when there are no names.

    An empty resourceNames list means every name to Kubernetes, so "no paths" must be no rule.
    """
    if not names:
        return []
    return [
        _rule(API_GROUP, resource, _READ, names),
        _rule(API_GROUP, f"{resource}/status", _WRITE_STATUS, names),
    ]


def _rule_order(rule: Mapping[str, Any]) -> tuple[str, ...]:
    return (rule["apiGroups"][0], rule["resources"][0], ",".join(rule["verbs"]))


def agent_role(
    site_obj: Mapping[str, Any], *, path_names: Sequence[str], secret_name: str | None
) -> dict[str, Any]:
    """Least privilege for the agent: its own Site, Paths, ConfigMap and key Secret, by name.

    list and watch with resourceNames work only with a ``metadata.name`` field selector, which is how the
    agent watches single objects. ``secret_name`` is the Secret with the site's private key (none for an
    external site, whose agent holds its own). Events cannot be limited by name (their names are
    generated), so the agent may create Events but not change any that exist.
    """
    site_name, _ = site_identity(site_obj)
    names = child_names(site_name)
    rules = [
        *_read_and_status_rules("sites", [site_name]),
        *_read_and_status_rules("paths", path_names),
        _rule("", "configmaps", _READ, [names.config_map]),
        # Renewed by server-side apply; the operator created it, so the agent needs no "create".
        _rule(LEASE_GROUP, "leases", ("get", "patch"), [names.lease]),
        _rule("", "events", ["create"], None),
    ]
    if secret_name:
        rules.append(_rule("", "secrets", ["get"], [secret_name]))
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": child_metadata(site_obj, names.role),
        "rules": sorted(rules, key=_rule_order),
    }


def agent_role_binding(site_obj: Mapping[str, Any]) -> dict[str, Any]:
    """Binds the agent's Role to its ServiceAccount and nothing else."""
    site_name, namespace = site_identity(site_obj)
    names = child_names(site_name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": child_metadata(site_obj, names.role_binding),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": names.role},
        "subjects": [{"kind": "ServiceAccount", "name": names.service_account, "namespace": namespace}],
    }
