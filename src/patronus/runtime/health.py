"""Liveness and readiness probes (``/healthz``, ``/ready``) and the HTTP servers that expose them.

Kubernetes' probe format: one line per check, ``[+]name ok`` or ``[-]name failed``, then a verdict
line; 200 when every check passes, 500 otherwise. ``/healthz/<name>`` (and ``/ready/<name>``) runs one.

Liveness always includes ``eventloop``: a heartbeat task measures how late the loop wakes it, and a loop
that was blocked or starved past ``max_loop_lag`` within the last ``lag_window`` seconds is declared
dead so the kubelet restarts the pod. (While the loop is blocked nothing answers at all; the window makes
the lag visible to the probes that come after.)
Readiness is for "can serve" conditions such as caches synced; it must not depend on leadership, or a
healthy standby would be taken out of its Service and never get ready to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.logs import get_logger
from patronus.runtime.metrics import metrics_handler

log = get_logger(__name__)

Check = Callable[[], bool | Awaitable[bool]]
LOOP_CHECK = "eventloop"


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        # Like Kubernetes, failure details stay in our logs, not in an unauthenticated response.
        return f"[+]{self.name} ok" if self.ok else f"[-]{self.name} failed"


def render_results(results: list[CheckResult], what: str) -> tuple[int, str]:
    """Status code and body for a probe response."""
    ok = all(result.ok for result in results)
    lines = [result.line() for result in results]
    lines.append(f"{what} check {'passed' if ok else 'failed'}")
    return (200 if ok else 500), "\n".join(lines) + "\n"


class HttpServer:
    """An aiohttp application on one host:port; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._runner: web.AppRunner | None = None
        self._port = 0

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> None:
        if self._runner is not None:
            raise RuntimeError("server already started")
        runner = web.AppRunner(self.app, access_log=None)  # probes every few seconds would drown the logs
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        log.info("http server listening", host=host, port=self._port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        if self._runner is None:
            raise RuntimeError("server not started")
        return self._port


class HealthServer(HttpServer):
    """``/healthz`` (liveness) and ``/ready`` + ``/readyz`` (readiness), optionally ``/metrics`` too."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        heartbeat_interval: float = 1.0,
        max_loop_lag: float = 5.0,
        check_timeout: float = 5.0,
        lag_window: float = 10.0,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._handle_liveness)
        app.router.add_get("/healthz/{check}", self._handle_liveness)
        for path in ("/ready", "/readyz"):
            app.router.add_get(path, self._handle_readiness)
            app.router.add_get(path + "/{check}", self._handle_readiness)
        if metrics_registry is not None:
            app.router.add_get("/metrics", metrics_handler(metrics_registry))
        super().__init__(app)
        self._clock = clock or SystemClock()
        self._interval = heartbeat_interval
        self._max_lag = max_loop_lag
        self._check_timeout = check_timeout
        self._lag_window = lag_window
        self._lags: deque[tuple[float, float]] = deque()  # (when, lag) of recent heartbeats
        self._liveness: dict[str, Check] = {}
        self._readiness: dict[str, Check] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_beat: float | None = None

    # -- registration ---------------------------------------------------------------------------

    def add_liveness_check(self, name: str, check: Check) -> None:
        self._add(self._liveness, name, check)

    def add_readiness_check(self, name: str, check: Check) -> None:
        self._add(self._readiness, name, check)

    @staticmethod
    def _add(checks: dict[str, Check], name: str, check: Check) -> None:
        if name in checks or name == LOOP_CHECK:
            raise ValueError(f"a check named {name!r} is already registered")
        checks[name] = check

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self, host: str = "0.0.0.0", port: int = 0) -> None:
        self._last_beat = self._clock.monotonic()
        self._heartbeat = asyncio.create_task(self._beat(), name="health-heartbeat")
        try:
            await super().start(host, port)
        except BaseException:
            await self._stop_heartbeat()
            raise

    async def stop(self) -> None:
        await super().stop()
        await self._stop_heartbeat()

    async def _stop_heartbeat(self) -> None:
        task, self._heartbeat = self._heartbeat, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _beat(self) -> None:
        while True:
            before = self._clock.monotonic()
            await self._clock.sleep(self._interval)
            now = self._clock.monotonic()
            lag = max(0.0, now - before - self._interval)
            self._last_beat = now
            self._lags.append((now, lag))
            while self._lags and self._lags[0][0] < now - self._lag_window:
                self._lags.popleft()
            if lag > self._max_lag:
                log.warning("event loop lagging", lag_seconds=round(lag, 3))

    @property
    def loop_lag(self) -> float:
        """The worst heartbeat lag within the last ``lag_window`` seconds."""
        horizon = self._clock.monotonic() - self._lag_window
        return max((lag for when, lag in self._lags if when >= horizon), default=0.0)

    def loop_responsive(self) -> bool:
        """The heartbeat runs and the loop woke it no later than ``max_loop_lag``."""
        if self._heartbeat is None or self._heartbeat.done() or self._last_beat is None:
            return False
        silent_for = self._clock.monotonic() - self._last_beat
        return self.loop_lag <= self._max_lag and silent_for <= self._interval + self._max_lag

    # -- checks ---------------------------------------------------------------------------------

    async def liveness(self, only: str | None = None) -> list[CheckResult]:
        checks: dict[str, Check] = {LOOP_CHECK: self.loop_responsive, **self._liveness}
        return await self._run(checks, only)

    async def readiness(self, only: str | None = None) -> list[CheckResult]:
        return await self._run(self._readiness, only)

    async def _run(self, checks: dict[str, Check], only: str | None) -> list[CheckResult]:
        selected = checks if only is None else {only: checks[only]}
        return [await self._run_one(name, check) for name, check in selected.items()]

    async def _run_one(self, name: str, check: Check) -> CheckResult:
        try:
            outcome = check()
            if inspect.isawaitable(outcome):
                async with asyncio.timeout(self._check_timeout):
                    outcome = await outcome
        except Exception as exc:  # a broken check is a failed check, not a broken probe endpoint
            log.warning("health check raised", check=name, error=repr(exc))
            return CheckResult(name, False, repr(exc))
        if not outcome:
            log.info("health check failed", check=name)
        return CheckResult(name, bool(outcome))

    # -- HTTP -----------------------------------------------------------------------------------

    async def _handle_liveness(self, request: web.Request) -> web.Response:
        only = request.match_info.get("check")
        if only is not None and only != LOOP_CHECK and only not in self._liveness:
            raise web.HTTPNotFound(text=f"no liveness check named {only}\n")
        return _respond(await self.liveness(only), "healthz")

    async def _handle_readiness(self, request: web.Request) -> web.Response:
        only = request.match_info.get("check")
        if only is not None and only not in self._readiness:
            raise web.HTTPNotFound(text=f"no readiness check named {only}\n")
        return _respond(await self.readiness(only), "readyz")


def _respond(results: list[CheckResult], what: str) -> web.Response:
    status, body = render_results(results, what)
    return web.Response(status=status, text=body, headers={"Cache-Control": "no-store"})


class MetricsServer(HttpServer):
    """``/metrics`` for one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        app = web.Application()
        app.router.add_get("/metrics", metrics_handler(registry))
        super().__init__(app)


async def serve_metrics(registry: CollectorRegistry, host: str = "0.0.0.0", port: int = 0) -> MetricsServer:
    """Start a :class:`MetricsServer`; the caller stops it."""
    server = MetricsServer(registry)
    await server.start(host, port)
    return server
