"""``patronus dashboard`` as a long-running process: informers, the HTTP server, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from patronus.dashboard.auth import KubeReviewer
from patronus.dashboard.prometheus import PrometheusSource
from patronus.dashboard.server import Dashboard, close_streams, make_app
from patronus.dashboard.watcher import Watcher
from patronus.kube.client import KubeClient
from patronus.runtime.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class DashboardOptions:
    namespace: str
    bind: str = "127.0.0.1"
    port: int = 8090
    prometheus_url: str | None = None
    auth: bool = True
    flush_interval: float = 0.25


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: DashboardOptions) -> None:
    """Refuse a dashboard without authentication anywhere but on loopback."""
    if not options.auth and not is_loopback(options.bind):
        raise ValueError(f"--no-auth is only allowed on a loopback address, not {options.bind}")


async def serve(
    options: DashboardOptions,
    client: KubeClient,
    stop: asyncio.Event,
    on_listening: Callable[[str], None] = lambda _url: None,
) -> None:
    """Serve until ``stop`` is set; ``on_listening`` gets the URL once the socket is bound."""
    check_options(options)
    watcher = Watcher(client, options.namespace, flush_interval=options.flush_interval)
    reviewer = KubeReviewer(client, options.namespace) if options.auth else None
    async with aiohttp.ClientSession() as session:
        prometheus = PrometheusSource(options.prometheus_url, session) if options.prometheus_url else None
        app = make_app(Dashboard(watcher, reviewer, prometheus))
        app.on_shutdown.append(close_streams)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        watching = asyncio.create_task(watcher.run(), name="dashboard-watcher")
        try:
            site = web.TCPSite(runner, options.bind, options.port)
            await site.start()
            port = int(runner.addresses[0][1])
            host = f"[{options.bind}]" if ":" in options.bind else options.bind
            url = f"http://{host}:{port}/"
            log.info("dashboard listening", url=url, namespace=options.namespace, auth=options.auth)
            on_listening(url)
            await stop.wait()
        finally:
            watcher.stop()
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watching
            await runner.cleanup()
