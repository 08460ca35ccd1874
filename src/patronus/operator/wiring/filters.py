"""Update filters: which changes to a watched object concern the controllers that watch it. Pure.

Creations and deletions always count; these decide about updates, so that the status writes that
happen all the time (a Path's report on every check, a Site's heartbeat, a Deployment's pods coming up)
requeue only what they concern. Pure, but for :func:`lease_renewal_matters`, which reads the owning
Site from its cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from patronus.kube.timestamps import parse_time
from patronus.operator.reconcile.parsed import VOLATILE_METADATA
from patronus.operator.site.children.data import PUBLIC_KEY
from patronus.operator.site.children.names import OVERLAY_ADDRESS_ANNOTATION
from patronus.runtime.cache import Object
from patronus.runtime.sources import KindCache


def spec_changed(old: Object, new: Object) -> bool:
    """The spec moved (metadata.generation), not just the status."""
    return bool(old.get("metadata", {}).get("generation") != new.get("metadata", {}).get("generation"))


def _reason(obj: Object, kind: str) -> Any:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c.get("reason") for c in conditions if isinstance(c, dict) and c.get("type") == kind), None)


def spec_or_agent_reporting_changed(old: Object, new: Object) -> bool:
    """What a Path reads from its source Site: its spec, and whether its agent went quiet (a quiet agent's
    path reports are not trusted, however recent). A Site's first report (no condition, then a fresh
    one) concerns no Path."""
    quiet_before = _reason(old, "AgentReporting") == "HeartbeatStale"
    return spec_changed(old, new) or quiet_before != (_reason(new, "AgentReporting") == "HeartbeatStale")


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


def _state(report: Any) -> tuple[Any, ...] | None:
    if not isinstance(report, dict):
        return None
    get = report.get
    return get("name"), get("active"), get("pathInUse"), get("failoverCount"), get("lastFailoverTime")


def policy_states_changed(old: Object, new: Object) -> bool:
    """A site's spec, or where one of its policies stands (installed, path in use, failovers): worth
    showing at once, unlike its counters, which move with every report."""
    if spec_changed(old, new):
        return True
    before, after = _policy_reports(old) or [], _policy_reports(new) or []
    if len(before) == len(after) and all(map(_same_state, before, after)):
        return False  # the usual report: the same policies in the same order, counters moved at most
    return _policy_states(old) != _policy_states(new)


def _same_state(before: Any, after: Any) -> bool:
    state = _state(before)
    return state is not None and state == _state(after)


def _without_status(obj: Object) -> Object:
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in VOLATILE_METADATA}
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


# What agents rewrite about their own objects all the time (``patronus.agent.reporting``), and which the
# object's own reconcile does not read, or reads only as "is the report fresh".
_SITE_REPORTS = frozenset({"lastHeartbeatTime", "policies"})
_PATH_REPORTS = frozenset({"lastChecked", "health"})


def _status_without(obj: Object, fields: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in (obj.get("status") or {}).items() if k not in fields}


def _condition(obj: Object, kind: str) -> Any:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c.get("status") for c in conditions if isinstance(c, dict) and c.get("type") == kind), None)


def _report_matters(old: Object, new: Object, stamp: str, condition: str) -> bool:
    """Whether a new report time can change what the reconcile writes.

    While the operator shows the reports as fresh (``condition`` True), a newer stamp changes nothing it
    writes: staleness is found later (a Site's by the scan of ``site.heartbeats``, a Path's by the
    requeue its last reconcile asked for), which reads the newest stamp then. The first report, one
    after a silence the operator noticed, one taken back, or a stamp that moved backwards (a requeue
    already planned would come too late) do count.
    """
    old_stamp, new_stamp = (old.get("status") or {}).get(stamp), (new.get("status") or {}).get(stamp)
    if old_stamp == new_stamp:
        return False
    if new_stamp is None or _condition(new, condition) != "True":
        return True
    old_time, new_time = parse_time(old_stamp), parse_time(new_stamp)
    return old_time is None or new_time is None or new_time < old_time


def _beyond_reports(old: Object, new: Object, reports: frozenset[str], stamp: str, condition: str) -> bool:
    if more_than_status_changed(old, new) or _status_without(old, reports) != _status_without(new, reports):
        return True
    return _report_matters(old, new, stamp, condition)


def site_changed_beyond_heartbeat(old: Object, new: Object) -> bool:
    """A Site changed in what its own reconcile reads: anything but its agent's policy reports (which the
    Policy controller reads) and its heartbeat while the site counts as reporting; the agent rewrites
    both about every 10 s."""
    return _beyond_reports(old, new, _SITE_REPORTS, "lastHeartbeatTime", "AgentReporting")


def path_changed_beyond_check(old: Object, new: Object) -> bool:
    """A Path changed in what its own reconcile reads: anything but its agent's measurements (which the
    Path's reconcile does not read) and check time while the path counts as reporting; the agent
    rewrites both after every check."""
    return _beyond_reports(old, new, _PATH_REPORTS, "lastChecked", "Reporting")


_RENEWAL = frozenset({"renewTime", "holderIdentity", "acquireTime"})


_NESTED = frozenset({"metadata", "spec", "status"})


def _equal_but(a: Mapping[str, Any], b: Mapping[str, Any], skip: frozenset[str]) -> bool:
    """``a`` and ``b`` equal in every key but ``skip``, compared in place (no copies)."""
    return a.keys() - skip == b.keys() - skip and all(a[k] == b[k] for k in a if k not in skip)


def _renewal_only(old: Object, new: Object) -> bool:
    """Nothing but a renewal (and the status, which a Lease does not have) differs."""
    return (
        _equal_but(old, new, _NESTED)
        and _equal_but(old.get("metadata") or {}, new.get("metadata") or {}, VOLATILE_METADATA)
        and _equal_but(old.get("spec") or {}, new.get("spec") or {}, _RENEWAL)
    )


def _owning_site(sites: KindCache, lease: Object) -> Object | None:
    metadata = lease.get("metadata") or {}
    for owner in metadata.get("ownerReferences") or ():
        if owner.get("kind") == "Site" and owner.get("controller"):
            return sites.get(metadata.get("namespace") or "", owner.get("name") or "")
    return None


def lease_renewal_matters(sites: KindCache, old: Object, new: Object) -> bool:
    """An agent's heartbeat Lease changed in what its Site's reconcile reads: more than a renewal, or a
    renewal of a site not shown as reporting (as for Site reports, see :func:`_report_matters`: while
    it is, staleness is found by the scan of ``site.heartbeats``). Every agent renews every
    10 s, so this runs a hundred times a second at 1,000 sites and must stay cheap."""
    if not _renewal_only(old, new):
        return True
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if old_spec.get("renewTime") == new_spec.get("renewTime"):
        return False
    site = _owning_site(sites, new)
    if site is None or _condition(site, "AgentReporting") != "True":
        return True
    old_time, new_time = parse_time(old_spec.get("renewTime")), parse_time(new_spec.get("renewTime"))
    return old_time is None or new_time is None or new_time < old_time
