"""Kubernetes timestamps: RFC 3339 in UTC with a ``Z``, as the API server writes and expects them."""

from __future__ import annotations

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
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
