"""configure_logging: JSON and console output, stdlib routing, levels, and the reconcile context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from patronus.runtime.logs import bind_reconcile_context, configure_logging, get_logger, new_reconcile_id


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    # Leave logging as pytest expects it: our handler off the root logger, no bound context.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "patronus"]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_level_logger_and_timestamp(stream):
    configure_logging("info", "json", stream=stream)
    get_logger("patronus.test").info("site reconciled", sites=3)
    (record,) = lines(stream)
    assert record["event"] == "site reconciled"
    assert record["sites"] == 3
    assert record["level"] == "info"
    assert record["logger"] == "patronus.test"
    assert record["timestamp"].endswith("Z")


def test_stdlib_logging_goes_through_the_same_renderer(stream):
    configure_logging("info", "json", stream=stream)
    logging.getLogger("aiohttp.server").warning("peer %s went away", "10.0.0.1")
    (record,) = lines(stream)
    assert record == {
        **record,
        "event": "peer 10.0.0.1 went away",
        "level": "warning",
        "logger": "aiohttp.server",
    }


def test_level_filters_both_structlog_and_stdlib(stream):
    configure_logging("warning", "json", stream=stream)
    log = get_logger("x")
    log.info("hidden")
    logging.getLogger("y").info("hidden too")
    log.warning("shown")
    assert [record["event"] for record in lines(stream)] == ["shown"]


def test_reconfiguring_reaches_loggers_made_earlier(stream):
    log = get_logger("early")
    configure_logging("error", "json", stream=stream)
    log.warning("hidden")
    configure_logging("debug", "json", stream=stream)
    log.debug("shown")
    assert [record["event"] for record in lines(stream)] == ["shown"]
    assert sum(h.get_name() == "patronus" for h in logging.getLogger().handlers) == 1


def test_exceptions_are_rendered_as_text_without_locals(stream):
    configure_logging("info", "json", stream=stream)
    secret = "hunter2"  # noqa: F841 - a local that must not leak into the log
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("x").exception("failed")
    (record,) = lines(stream)
    assert "RuntimeError: boom" in record["exception"]
    assert "hunter2" not in stream.getvalue()


def test_console_format_is_human_readable(stream):
    configure_logging("info", "console", stream=stream)
    get_logger("x").info("hello", site="a")
    text = stream.getvalue()
    assert "hello" in text
    assert "site=a" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_bad_level_or_format_is_rejected():
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", "json")
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml")


def test_reconcile_context_is_on_every_line_of_the_block_only(stream):
    configure_logging("info", "json", stream=stream)
    log = get_logger("controller")
    with bind_reconcile_context("site", "ns-1", "site-a", "abc12345") as reconcile_id:
        log.info("start")
        logging.getLogger("lightkube").info("GET /apis/...")
    log.info("outside")
    start, stdlib, outside = lines(stream)
    assert reconcile_id == "abc12345"
    for record in (start, stdlib):
        assert record["controller"] == "site"
        assert record["namespace"] == "ns-1"
        assert record["name"] == "site-a"
        assert record["reconcile_id"] == "abc12345"
    assert "reconcile_id" not in outside


async def test_concurrent_reconciles_keep_their_own_context(stream):
    configure_logging("info", "json", stream=stream)
    log = get_logger("controller")

    async def reconcile(name: str) -> None:
        with bind_reconcile_context("site", "ns", name):
            await asyncio.sleep(0.01)
            log.info("done", who=name)

    await asyncio.gather(*(reconcile(f"site-{i}") for i in range(5)))
    records = lines(stream)
    assert len(records) == 5
    assert all(record["name"] == record["who"] for record in records)
    assert len({record["reconcile_id"] for record in records}) == 5


def test_reconcile_ids_are_short_and_distinct():
    ids = {new_reconcile_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 8 and int(i, 16) >= 0 for i in ids)
