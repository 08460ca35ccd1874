"""Which reports are worth a write: a changed one at once, an unchanged one once per refresh. Pure.

What "changed" means is the caller's: for a Site, anything but its counters and the report's time; for a
Path, its state or a material move of its health (:func:`same_path_report`). Each report is compared
with the last one let through, not the last one seen, so a slow drift is written once it adds up.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from patronus.api.reporting import STATUS_REFRESH

Status = Mapping[str, Any]

HEALTH_SCORE_STEP = 2.0
"""Points of health score that count as a change (the operator sums scores up per Site and Mesh)."""
LOSS_STEP_PCT = 1.0
LATENCY_STEP_RATIO = 0.2
LATENCY_STEP_MIN_MS = 1.0
_COUNTERS = frozenset({"matchedFlows", "bytesRouted"})


@dataclass(frozen=True, slots=True)
class _Written:
    status: Status
    at: float


class ReportGate:
    """Remembers, per object, the last report let through and when (monotonic seconds)."""

    def __init__(self, same: Callable[[Status, Status], bool], refresh: float = STATUS_REFRESH) -> None:
        self._same = same
        self.refresh = refresh
        self._last: dict[str, _Written] = {}

    def due(self, key: str, status: Status, now: float, *, always: bool = False) -> bool:
        """Whether ``status`` should be written now (``always``: yes); if so, it becomes the one later
        reports are compared with."""
        last = self._last.get(key)
        unchanged = last is not None and now - last.at < self.refresh and self._same(last.status, status)
        if unchanged and not always:
            return False
        self._last[key] = _Written(status, now)
        return True

    def retain(self, keys: Collection[str]) -> None:
        """Forget objects no longer reported (a path removed from the configuration)."""
        self._last = {key: written for key, written in self._last.items() if key in keys}


def _without_counters(status: Status) -> dict[str, Any]:
    policies = [
        {k: v for k, v in entry.items() if k not in _COUNTERS} if isinstance(entry, Mapping) else entry
        for entry in status.get("policies") or ()
    ]
    return {**{k: v for k, v in status.items() if k != "lastHeartbeatTime"}, "policies": policies}


def same_site_report(before: Status, after: Status) -> bool:
    """Equal but for the report's time and the policies' counters, which move with every packet."""
    return _without_counters(before) == _without_counters(after)


def _moved(before: Any, after: Any, step: float) -> bool:
    if before is None or after is None:
        return before is not after
    return bool(abs(float(after) - float(before)) >= step)


def _latency_moved(before: Any, after: Any) -> bool:
    if before is None or after is None:
        return before is not after
    step = max(LATENCY_STEP_MIN_MS, LATENCY_STEP_RATIO * float(before))
    return bool(abs(float(after) - float(before)) >= step)


def same_path_report(before: Status, after: Status) -> bool:
    """The same state, and health within the steps above: a path's latency and score wobble with every
    check, and a write per wobble per path is what the API server cannot carry at scale."""
    if before.get("state") != after.get("state"):
        return False
    old, new = before.get("health") or {}, after.get("health") or {}
    return not (
        _moved(old.get("healthScore"), new.get("healthScore"), HEALTH_SCORE_STEP)
        or _moved(old.get("packetLossPct"), new.get("packetLossPct"), LOSS_STEP_PCT)
        or _latency_moved(old.get("latencyMs"), new.get("latencyMs"))
    )
