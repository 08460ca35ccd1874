"""Waiting for a condition in tests: one helper, bounded in time, that says what it waited for.

``eventually`` polls a check (a plain function or a coroutine function) until it returns something truthy
and returns that value; on timeout it fails with ``what`` and the last value seen, so a failure explains
itself instead of ending in a bare TimeoutError.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

Check = Callable[[], Any] | Callable[[], Awaitable[Any]]


async def eventually(
    check: Check, *, timeout: float = 30.0, what: str = "the condition", interval: float = 0.1
) -> Any:
    """Poll ``check`` on the running event loop until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last value: {last!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], T], *, timeout: float = 30.0, what: str = "the condition", interval: float = 0.1
) -> T:
    """The same for code without an event loop (lab tests drive processes from plain threads)."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last value: {last!r})")
        time.sleep(interval)
