"""Update filters: which changes to a watched object concern the controllers that watch it. Pure.

Creations and deletions always count; these decide about updates, so that the status writes that
happen all the time (a Path's report on every check, a Site's heartbeat, a Deployment's pods coming up)
requeue only what they concern.
"""

from __future__ import annotations

from typing import Any

from patronus.operator.site.children.data import PUBLIC_KEY
from patronus.operator.site.children.names import OVERLAY_ADDRESS_ANNOTATION
from patronus.runtime.cache import Object


def spec_changed(old: Object, new: Object) -> bool:
    """The spec moved (metadata.generation), not just the status."""
    return bool(old.get("metadata", {}).get("generation") != new.get("metadata", {}).get("generation"))


def never(_old: Object, _new: Object) -> bool:
    """No update counts: only creations and deletions do."""
    return False


def path_summary_changed(old: Object, new: Object) -> bool:
    """What a site reads from its Paths: their spec, state and health score (an agent rewrites a Path's
    status on every check; when only lastChecked moved, the site has nothing new to say)."""
    old_status, new_status = old.get("status") or {}, new.get("status") or {}
    return (
        spec_changed(old, new)
        or old_status.get("state") != new_status.get("state")
        or (old_status.get("health") or {}).get("healthScore")
        != (new_status.get("health") or {}).get("healthScore")
    )


_POLICY_STATE = ("active", "pathInUse", "failoverCount", "lastFailoverTime")


def _policy_reports(obj: Object) -> Any:
    return (obj.get("status") or {}).get("policies")


def _policy_states(obj: Object) -> dict[Any, tuple[Any, ...]]:
    reports = _policy_reports(obj) or []
    return {r.get("name"): tuple(r.get(k) for k in _POLICY_STATE) for r in reports if isinstance(r, dict)}


def policy_reports_changed(old: Object, new: Object) -> bool:
    """What a Policy reads from a Site: its spec and its agent's policy reports (not its heartbeat)."""
    return spec_changed(old, new) or _policy_reports(old) != _policy_reports(new)


def policy_states_changed(old: Object, new: Object) -> bool:
    """A site's spec, or where one of its policies stands (installed, path in use, failovers): worth
    showing at once, unlike its counters, which move with every report."""
    return spec_changed(old, new) or _policy_states(old) != _policy_states(new)


def _without_status(obj: Object) -> Object:
    metadata = {
        k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")
    }
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": metadata}


def more_than_status_changed(old: Object, new: Object) -> bool:
    """Something a Site's child is built from moved: not only its status (kube-controller-manager
    rewrites a Deployment's status as its pods come and go, which concerns no Site)."""
    return _without_status(old) != _without_status(new)


def public_key_changed(old: Object, new: Object) -> bool:
    """A key Secret now holds another public key: the site's peers must be told."""
    return bool((old.get("data") or {}).get(PUBLIC_KEY) != (new.get("data") or {}).get(PUBLIC_KEY))


def overlay_address_changed(old: Object, new: Object) -> bool:
    """A site's ConfigMap records another overlay address: the site's peers must be told."""
    old_notes = old.get("metadata", {}).get("annotations") or {}
    new_notes = new.get("metadata", {}).get("annotations") or {}
    return bool(old_notes.get(OVERLAY_ADDRESS_ANNOTATION) != new_notes.get(OVERLAY_ADDRESS_ANNOTATION))
