"""Path controller: checks both sites exist, and never lets a Path whose agent went quiet look up.

The source site's agent writes ``status.state``/``health``/``lastChecked`` (its own field manager). This
controller writes the conditions, and overrides ``state`` with ``unknown`` once the last report is older
than three monitoring intervals; the agent's next report takes the field back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from patronus.api import Path
from patronus.api.parsers import parse_duration
from patronus.kube.resource import PATH, ObjectKey
from patronus.kube.timestamps import parse_time
from patronus.operator.apply import apply_status_if_changed
from patronus.operator.conditions import Cond, merge
from patronus.operator.controllers.context import Context
from patronus.operator.parsed import parsed_or_error
from patronus.runtime.controller import Result
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

STALE_AFTER_INTERVALS = 3
MIN_STALE_AFTER = 1.0


def report_age(status: dict[str, Any], now: datetime) -> float | None:
    """Seconds since the agent's last check, or None if it never reported."""
    when = parse_time(status.get("lastChecked"))
    return None if when is None else (now - when).total_seconds()


class PathReconciler:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._last_state: dict[ObjectKey, str] = {}

    async def reconcile(self, key: ObjectKey) -> Result | None:
        obj = self.ctx.caches.paths.get(key.namespace, key.name)
        if obj is None:
            self._last_state.pop(key, None)
            return None
        status = dict(obj.get("status") or {})
        generation = obj["metadata"].get("generation")
        now = self.ctx.now()
        path = parsed_or_error(Path, obj)
        if isinstance(path, ValidationError):
            conditions = [Cond("Ready", "False", "InvalidSpec", _short(path))]
            await self._write(
                obj,
                {
                    "conditions": merge(status.get("conditions"), conditions, now=now, generation=generation),
                    "observedGeneration": generation,
                },
            )
            return None

        missing = [
            site
            for site in (path.spec.source.site_ref, path.spec.destination.site_ref)
            if self.ctx.caches.sites.get(key.namespace, site) is None
        ]
        interval = parse_duration(path.spec.monitoring.interval)
        # At least a second: a report's write takes time, and an older agent stamps whole seconds.
        stale_after = max(STALE_AFTER_INTERVALS * interval, MIN_STALE_AFTER)
        age = report_age(status, now)
        fresh = age is not None and age <= stale_after
        reported_state = status.get("state") if fresh else None

        desired: dict[str, Any] = {"observedGeneration": generation}
        if not fresh:
            desired["state"] = "unknown"
        state = reported_state or "unknown"

        conditions = [
            Cond("SitesResolved", "False", "SiteNotFound", f"sites not found: {', '.join(missing)}")
            if missing
            else Cond("SitesResolved", "True", "SitesExist"),
            Cond("Reporting", "True", "ReportFresh")
            if fresh
            else Cond("Reporting", "False", "NeverReported", "the source site's agent has not reported yet")
            if age is None
            else Cond(
                "Reporting",
                "False",
                "ReportStale",
                f"no report for more than {STALE_AFTER_INTERVALS} monitoring intervals",
            ),
            _ready(missing, fresh, state),
        ]
        desired["conditions"] = merge(status.get("conditions"), conditions, now=now, generation=generation)
        await self._write(obj, desired)
        self._emit_transition(key, obj, state)
        if fresh and age is not None and path.spec.monitoring.enabled:
            return Result(requeue_after=max(stale_after - age, 0.0) + 0.5)
        return None

    async def _write(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        await apply_status_if_changed(self.ctx.client, PATH, obj, status)

    def _emit_transition(self, key: ObjectKey, obj: dict[str, Any], state: str) -> None:
        before = self._last_state.get(key)
        self._last_state[key] = state
        if before is None or before == state:
            return
        if state == "up":
            self.ctx.events.event(obj, "Normal", "PathUp", f"path is up (was {before})")
        elif state in ("down", "degraded"):
            reason = "PathDown" if state == "down" else "PathDegraded"
            self.ctx.events.event(obj, "Warning", reason, f"path is {state} (was {before})")
        elif state == "unknown" and before == "up":
            self.ctx.events.event(
                obj, "Warning", "PathStale", "no recent report from the source site's agent"
            )


def _ready(missing: list[str], fresh: bool, state: str) -> Cond:
    if missing:
        return Cond("Ready", "False", "SiteNotFound", f"sites not found: {', '.join(missing)}")
    if not fresh:
        return Cond("Ready", "Unknown", "NoRecentReport", "no recent report from the source site's agent")
    if state != "up":
        return Cond("Ready", "False", f"Path{state.capitalize()}", f"path is {state}")
    return Cond("Ready", "True", "PathUp")


def _short(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:3])
