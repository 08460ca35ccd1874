"""Structured logging: structlog for our code, the standard library routed through the same renderer.

``configure_logging("info", "json")`` once at start-up; then ``get_logger(__name__)`` anywhere. Values
bound with :func:`bind_reconcile_context` (contextvars, so per asyncio task) appear on every line logged
inside the ``with`` block, including lines from stdlib loggers.
"""

from __future__ import annotations

import logging
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
FORMATS = ("json", "console")
_HANDLER_NAME = "patronus"


def _orjson_dumps(event: EventDict, **_: Any) -> str:
    # default=str: a stray datetime or exception in a log call must not break logging.
    return orjson.dumps(event, default=str).decode()


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # aiohttp and friends attach duplicate colourised messages; they only clutter JSON.
    event.pop("color_message", None)
    return event


def configure_logging(level: str = "info", fmt: str = "json", *, stream: TextIO | None = None) -> None:
    """Configure structlog and the root stdlib logger; safe to call again (tests, reloads)."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: must be one of {', '.join(FORMATS)}")

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        # A plain-text traceback: no local variables (they may hold secrets), one field to read.
        tail: list[Processor] = [structlog.processors.format_exc_info, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        tail = [renderer]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: reconfiguring (tests, a changed LOG_LEVEL) must reach loggers made earlier.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level.lower()])
    # One line per HTTP request drowns everything else at info; keep the clients' warnings only.
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(LEVELS[level.lower()], logging.WARNING))


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger


def new_reconcile_id() -> str:
    """A short random id (8 hex digits) that ties together the lines of one reconcile."""
    return secrets.token_hex(4)


@contextmanager
def bind_reconcile_context(
    controller: str, namespace: str | None, name: str, reconcile_id: str | None = None
) -> Iterator[str]:
    """Put controller, namespace, name and reconcile_id on every log line in the block; yields the id.

    Bound in contextvars, so concurrent reconciles in other asyncio tasks keep their own values, and
    the previous values come back when the block ends.
    """
    reconcile_id = reconcile_id or new_reconcile_id()
    with structlog.contextvars.bound_contextvars(
        controller=controller, namespace=namespace or "", name=name, reconcile_id=reconcile_id
    ):
        yield reconcile_id
