"""Kubernetes timestamps: RFC 3339 in UTC with a ``Z``, as the API server writes and expects them."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any


def format_time(when: datetime, *, millis: bool = False) -> str:
    """``2026-11-28T10:00:00Z``; with ``millis``, ``2026-11-28T10:00:00.123Z`` (metav1.Time has whole
    seconds; fields typed date-time in our CRDs take the finer form)."""
    if not millis:
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def format_micro_time(when: datetime) -> str:
    """metav1.MicroTime: six fractional digits, UTC (``2026-11-28T10:00:00.000000Z``)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> datetime | None:
    """The time in ``value``, or None when it is missing or not RFC 3339."""
    if not value:
        return None
    return _parse_text(value if isinstance(value, str) else str(value))


@functools.lru_cache(maxsize=8192)
def _parse_text(text: str) -> datetime | None:
    # Memoised: the operator's heartbeat scan reads every Site's and Lease's time every 2 s, and each
    # changes only every 10 s (datetimes are immutable, so sharing one is safe).
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
