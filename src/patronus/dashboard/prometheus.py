"""A path's history from Prometheus (``--prometheus-url``): the agents' exporter series, over a window.

The same :class:`~patronus.dashboard.history.Series` shape as the in-memory history, so the page does not
care where it came from. Four ``query_range`` calls on one step grid (latency, jitter, loss, health);
the series are converted to the page's units (ms, %). The path's name goes into PromQL, so it is checked
against the Kubernetes name rule first: nothing else can reach the query.
"""

from __future__ import annotations

import asyncio
import re

import aiohttp

from patronus.dashboard.history import Series

_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
QUERIES: dict[str, tuple[str, float]] = {
    "latencyMs": ("patronus_path_latency_seconds", 1000.0),
    "jitterMs": ("patronus_path_jitter_seconds", 1000.0),
    "lossPct": ("patronus_path_loss_ratio", 100.0),
    "healthScore": ("patronus_path_health_score", 1.0),
}
MAX_POINTS = 720


class PrometheusError(RuntimeError):
    """Prometheus answered with an error or not at all."""


def step_for(window: float) -> float:
    """A step that keeps a chart under :data:`MAX_POINTS` points, at least one second."""
    return max(1.0, window / MAX_POINTS)


def merge(columns: dict[str, dict[float, float]]) -> Series:
    """Per-field {time: value} maps -> aligned columns (None where a field has no sample at a time)."""
    times = sorted({t for values in columns.values() for t in values})

    def column(key: str) -> list[float | None]:
        values = columns.get(key, {})
        return [values.get(t) for t in times]

    return {
        "time": times,
        "latencyMs": column("latencyMs"),
        "jitterMs": column("jitterMs"),
        "lossPct": column("lossPct"),
        "healthScore": column("healthScore"),
        "state": ["" for _ in times],
    }


class PrometheusSource:
    """Reads path history from a Prometheus server's HTTP API."""

    def __init__(self, url: str, session: aiohttp.ClientSession, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def path_series(self, path: str, *, window: float, now: float) -> Series:
        if not _NAME.fullmatch(path):
            raise ValueError(f"not a path name: {path!r}")
        step = step_for(window)
        results = await asyncio.gather(
            *(
                self._range(f'max({metric}{{path="{path}"}}) * {scale:g}', now - window, now, step)
                for metric, scale in QUERIES.values()
            )
        )
        return merge(dict(zip(QUERIES, results, strict=True)))

    async def _range(self, query: str, start: float, end: float, step: float) -> dict[float, float]:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        try:
            async with self.session.get(
                f"{self.url}/api/v1/query_range", params=params, timeout=self.timeout
            ) as response:
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise PrometheusError(f"query_range {query!r}: {error}") from error
        if body.get("status") != "success":
            raise PrometheusError(f"query_range {query!r}: {body.get('error', 'failed')}")
        values: dict[float, float] = {}
        for result in body["data"]["result"]:
            for stamp, value in result.get("values", ()):
                values[float(stamp)] = float(value)
        return values
