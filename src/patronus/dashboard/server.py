"""The dashboard's HTTP surface (aiohttp): the page, its JSON, and a Server-Sent Events stream.

Read-only: every route is a GET but ``POST /login``, which only sets the cookie a browser's
EventSource needs to carry the token. Everything but the login page, the probes and the static files
(public code, no data) passes :func:`auth_middleware` when a reviewer is configured.

- ``GET /api/snapshot``: all Sites, Paths, Policies and recent Events of the namespace, as views.
- ``GET /api/stream``: ``snapshot`` first, then a ``delta`` per flush; the stream re-checks the token
  every heartbeat, so a revoked user stops receiving within a TTL.
- ``GET /api/paths/{name}/history?window=SECONDS``: from Prometheus if configured, else from memory.
- ``GET /api/policies/{name}/timeline``: the policy's path switches seen by this dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from patronus.dashboard.auth import Decision, Reviewer
from patronus.dashboard.prometheus import PrometheusError, PrometheusSource
from patronus.dashboard.watcher import Watcher

STATIC = Path(__file__).parent / "static"
COOKIE = "patronus_dashboard_token"
HEARTBEAT = 15.0
MAX_WINDOW = 7 * 86400.0
DEFAULT_WINDOW = 900.0
_PUBLIC = ("/login", "/healthz", "/ready", "/static/")
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Dashboard:
    """What the handlers need; stored on the application."""

    watcher: Watcher
    reviewer: Reviewer | None = None
    prometheus: PrometheusSource | None = None


DASHBOARD = web.AppKey("dashboard", Dashboard)
USER = web.RequestKey("user", str)
TOKEN = web.RequestKey("token", str)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def request_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


def _refuse(request: web.Request, decision: Decision) -> web.StreamResponse:
    """401/403/503, as JSON for the API and a redirect to the login page for a page load."""
    if decision.status == 401 and request.method == "GET" and not request.path.startswith("/api/"):
        raise web.HTTPSeeOther("/login")
    response = _json({"error": decision.reason or "unauthorized"}, decision.status)
    if decision.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="patronus-dashboard"'
        response.del_cookie(COOKIE, path="/")
    return response


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    reviewer = request.app[DASHBOARD].reviewer
    if reviewer is None or request.path.startswith(_PUBLIC):
        return await handler(request)
    token = request_token(request)
    decision = await reviewer.review(token) if token else Decision(401, reason="no bearer token")
    if not decision.allowed:
        return _refuse(request, decision)
    request[USER] = decision.user or ""
    request[TOKEN] = token or ""
    return await handler(request)


async def index(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def login_page(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-cache"})


async def login(request: web.Request) -> web.StreamResponse:
    """Check a pasted token and keep it in an HttpOnly, SameSite=Strict cookie."""
    form = await request.post()
    token = str(form.get("token", "")).strip()
    reviewer = request.app[DASHBOARD].reviewer
    decision = await reviewer.review(token) if reviewer and token else Decision(200)
    if not token:
        return _json({"error": "no token"}, 401)
    if not decision.allowed:
        return _json({"error": decision.reason}, decision.status)
    response = web.Response(status=303, headers={"Location": "/"})
    secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(COOKIE, token, path="/", httponly=True, samesite="Strict", secure=secure)
    return response


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def ready(request: web.Request) -> web.Response:
    synced = request.app[DASHBOARD].watcher.synced()
    return web.Response(text="ok\n" if synced else "caches not synced\n", status=200 if synced else 503)


async def snapshot(request: web.Request) -> web.Response:
    return _json({**request.app[DASHBOARD].watcher.snapshot(), "user": request.get(USER)})


def _window(request: web.Request) -> float:
    try:
        window = float(request.query.get("window", DEFAULT_WINDOW))
    except ValueError:
        raise web.HTTPBadRequest(text="window: seconds expected") from None
    return min(max(window, 10.0), MAX_WINDOW)


async def path_history(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD]
    name = request.match_info["name"]
    if dashboard.watcher.get("paths", name) is None:
        raise web.HTTPNotFound(text=f"no path {name}")
    window, now = _window(request), time.time()
    note = None
    if dashboard.prometheus is not None:
        try:
            series = await dashboard.prometheus.path_series(name, window=window, now=now)
        except (PrometheusError, ValueError) as error:
            return _json({"source": "prometheus", "error": str(error)}, 502)
        if series["time"]:
            return _json({"source": "prometheus", "series": series})
        note = "Prometheus has no samples of this path"  # e.g. its agent is not scraped (yet)
    series = dashboard.watcher.history.series(name, since=now - window)
    return _json({"source": "memory", "note": note, "series": series})


async def policy_timeline(request: web.Request) -> web.Response:
    watcher = request.app[DASHBOARD].watcher
    name = request.match_info["name"]
    if watcher.get("policies", name) is None:
        raise web.HTTPNotFound(text=f"no policy {name}")
    return _json({"switches": watcher.switches(name)})


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")


async def stream(request: web.Request) -> web.StreamResponse:
    dashboard = request.app[DASHBOARD]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    subscriber = dashboard.watcher.subscribe()
    try:
        await _send(response, "snapshot", dashboard.watcher.snapshot())
        while True:
            try:
                message = await asyncio.wait_for(subscriber.queue.get(), HEARTBEAT)
            except TimeoutError:
                if not await _still_allowed(request):
                    break
                await response.write(b": heartbeat\n\n")
                continue
            if message["type"] == "overflow":
                break  # the browser reconnects and starts from a snapshot
            await _send(response, "delta", message)
    except (ConnectionError, RuntimeError):
        pass  # the browser went away
    finally:
        dashboard.watcher.unsubscribe(subscriber)
    return response


async def _still_allowed(request: web.Request) -> bool:
    reviewer, token = request.app[DASHBOARD].reviewer, request.get(TOKEN)
    if reviewer is None or not token:
        return True
    return (await reviewer.review(token)).allowed


def make_app(dashboard: Dashboard) -> web.Application:
    app = web.Application(middlewares=[security_headers, auth_middleware])
    app[DASHBOARD] = dashboard
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ready", ready)
    app.router.add_get("/api/snapshot", snapshot)
    app.router.add_get("/api/stream", stream)
    app.router.add_get("/api/paths/{name}/history", path_history)
    app.router.add_get("/api/policies/{name}/timeline", policy_timeline)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
    return app


async def close_streams(app: web.Application) -> None:
    """On shutdown: end every open stream, so the server does not wait for browsers to hang up."""
    watcher = app[DASHBOARD].watcher
    for subscriber in list(watcher.subscribers):
        with contextlib.suppress(asyncio.QueueFull):
            subscriber.queue.put_nowait({"type": "overflow"})
