"""metav1.Condition bookkeeping: a condition's lastTransitionTime moves only when its status flips."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from patronus.kube.timestamps import format_time

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True, slots=True)
class Cond:
    """A condition as a reconcile wants it; times and generation are filled in by :func:`merge`."""

    type: str
    status: Status
    reason: str
    message: str = ""


def merge(
    previous: Iterable[Mapping[str, Any]] | None,
    wanted: Iterable[Cond],
    *,
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """The conditions to write: ``wanted``, keeping each one's lastTransitionTime unless its status changed.

    Conditions not in ``wanted`` are dropped (this controller owns the whole list it writes). ``now`` is
    truncated to whole seconds, the precision the API server stores, so an unchanged world compares equal.
    """
    before = {c.get("type"): c for c in previous or ()}
    stamp = format_time(now)
    merged = []
    for cond in wanted:
        old = before.get(cond.type)
        changed = old is None or old.get("status") != cond.status
        entry: dict[str, Any] = {
            "type": cond.type,
            "status": cond.status,
            "reason": cond.reason,
            "message": cond.message,
            "lastTransitionTime": stamp if changed or old is None else old.get("lastTransitionTime", stamp),
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        merged.append(entry)
    return sorted(merged, key=lambda c: str(c["type"]))


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)
