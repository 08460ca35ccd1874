from __future__ import annotations

from datetime import UTC, datetime

from patronus.kube.timestamps import format_time, parse_time

WHEN = datetime(2026, 11, 28, 10, 0, 5, 123456, tzinfo=UTC)


def test_format_whole_seconds_and_millis() -> None:
    assert format_time(WHEN) == "2026-11-28T10:00:05Z"
    assert format_time(WHEN, millis=True) == "2026-11-28T10:00:05.123Z"


def test_parse_round_trips_and_rejects_garbage() -> None:
    assert parse_time("2026-11-28T10:00:05Z") == WHEN.replace(microsecond=0)
    assert parse_time(format_time(WHEN, millis=True)) == WHEN.replace(microsecond=123000)
    assert parse_time(None) is None
    assert parse_time("") is None
    assert parse_time("yesterday") is None
