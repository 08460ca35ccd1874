"""The health and metrics servers on real sockets (127.0.0.1, free ports), scraped over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from patronus.runtime.health import HealthServer, serve_metrics
from patronus.runtime.metrics import OperatorMetrics

HOST = "127.0.0.1"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as response:
        return response.status, await response.text()


async def test_metrics_endpoint_serves_the_operator_registry(http):
    metrics = OperatorMetrics()
    metrics.observe_reconcile("site", "success", 0.2)
    metrics.observe_reconcile("site", "error", 1.5)
    metrics.set_leader(True)
    queue = metrics.queue_metrics()
    queue.added("site")
    queue.depth("site", 3)
    queue.retried("site")
    queue.latency("site", 0.01)
    queue.work_duration("site", 0.5)
    metrics.event_dropped("rate_limited")

    server = await serve_metrics(metrics.registry, HOST, 0)
    try:
        async with http.get(f"http://{HOST}:{server.port}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    finally:
        await server.stop()

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert (
        samples[("patronus_operator_reconcile_total", (("controller", "site"), ("result", "success")))] == 1
    )
    assert samples[("patronus_operator_reconcile_total", (("controller", "site"), ("result", "error")))] == 1
    assert samples[("patronus_operator_reconcile_errors_total", (("controller", "site"),))] == 1
    assert samples[("patronus_operator_reconcile_duration_seconds_count", (("controller", "site"),))] == 2
    assert samples[("patronus_operator_reconcile_duration_seconds_sum", (("controller", "site"),))] == 1.7
    assert samples[("patronus_operator_leader", ())] == 1
    assert samples[("patronus_operator_workqueue_depth", (("name", "site"),))] == 3
    assert samples[("patronus_operator_workqueue_adds_total", (("name", "site"),))] == 1
    assert samples[("patronus_operator_workqueue_retries_total", (("name", "site"),))] == 1
    assert samples[("patronus_operator_workqueue_queue_duration_seconds_count", (("name", "site"),))] == 1
    assert samples[("patronus_operator_workqueue_work_duration_seconds_sum", (("name", "site"),))] == 0.5
    assert samples[("patronus_operator_events_dropped_total", (("reason", "rate_limited"),))] == 1
    # A private registry: none of prometheus_client's default process/platform collectors leak in.
    assert not any(name.startswith(("process_", "python_")) for name, _ in samples)


async def test_ready_fails_until_the_readiness_check_passes(http):
    synced = False
    server = HealthServer(heartbeat_interval=0.05)
    server.add_readiness_check("caches-synced", lambda: synced)
    await server.start(HOST, 0)
    try:
        base = f"http://{HOST}:{server.port}"
        status, body = await _get(http, f"{base}/ready")
        assert status == 500
        assert "[-]caches-synced failed" in body
        assert body.rstrip().endswith("readyz check failed")

        synced = True
        for path in ("/ready", "/readyz", "/ready/caches-synced"):
            status, body = await _get(http, base + path)
            assert status == 200, path
            assert "[+]caches-synced ok" in body

        status, _ = await _get(http, f"{base}/ready/no-such-check")
        assert status == 404
    finally:
        await server.stop()


async def test_healthz_reports_liveness_checks_and_event_loop_lag(http):
    watches_alive = True

    async def watches() -> bool:
        return watches_alive

    server = HealthServer(heartbeat_interval=0.05, max_loop_lag=0.3, lag_window=1.0)
    server.add_liveness_check("watches", watches)
    server.add_readiness_check("never", lambda: False)  # readiness never affects liveness
    await server.start(HOST, 0)
    try:
        url = f"http://{HOST}:{server.port}/healthz"
        status, body = await _get(http, url)
        assert status == 200, body
        assert body.splitlines() == ["[+]eventloop ok", "[+]watches ok", "healthz check passed"]

        watches_alive = False
        status, body = await _get(http, url)
        assert status == 500
        assert "[-]watches failed" in body
        assert "[+]eventloop ok" in body
        watches_alive = True

        time.sleep(0.6)  # block the event loop longer than max_loop_lag
        await asyncio.sleep(0.1)  # let the heartbeat notice
        assert server.loop_lag > 0.3
        status, body = await _get(http, url)
        assert status == 500
        assert "[-]eventloop failed" in body

        await asyncio.sleep(1.2)  # the lag window passes with a healthy loop
        assert server.loop_lag < 0.3
        status, body = await _get(http, url)
        assert status == 200, body  # the loop recovered, so did liveness
    finally:
        await server.stop()


async def test_health_server_binds_a_free_port_and_stops_cleanly(http):
    server = HealthServer()
    await server.start(HOST, 0)
    port = server.port
    assert port > 0
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await _get(http, f"http://{HOST}:{port}/healthz")
