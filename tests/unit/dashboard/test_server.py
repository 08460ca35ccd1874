"""The dashboard's HTTP surface over an in-memory API: authentication, the JSON, and the live stream."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from patronus.dashboard.auth import Decision
from patronus.dashboard.server import COOKIE, STATIC, Dashboard, make_app
from patronus.dashboard.watcher import Watcher
from patronus.kube.fake import FakeKube
from patronus.kube.resource import PATH, SITE
from tests.unit.dashboard.world import NAMESPACE, path_name, path_status, world


class Reviewer:
    async def review(self, token: str) -> Decision:
        return {
            "good": Decision(200, user="alice"),
            "no-rbac": Decision(403, user="bob", reason="bob may not list sites"),
        }.get(token, Decision(401, reason="the token was not accepted"))


@pytest.fixture
async def kube() -> FakeKube:
    fake = FakeKube()
    fake.seed(*world())
    return fake


@pytest.fixture
async def client(kube: FakeKube) -> AsyncIterator[TestClient]:
    watcher = Watcher(kube, NAMESPACE, flush_interval=0.05)
    task = asyncio.create_task(watcher.run())
    for _ in range(100):
        if watcher.synced():
            break
        await asyncio.sleep(0.02)
    async with TestClient(TestServer(make_app(Dashboard(watcher, Reviewer())))) as test_client:
        yield test_client
    watcher.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_unauthenticated_requests_are_refused(client: TestClient) -> None:
    response = await client.get("/api/snapshot")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/api/snapshot", headers=bearer("forged"))).status == 401
    assert (await client.get("/api/stream")).status == 401
    page = await client.get("/", allow_redirects=False)
    assert (page.status, page.headers["Location"]) == (303, "/login")
    denied = await client.get("/api/snapshot", headers=bearer("no-rbac"))
    assert denied.status == 403
    assert (await denied.json())["error"] == "bob may not list sites"


async def test_public_routes_need_no_token(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/ready")).status == 200
    login = await client.get("/login")
    assert login.status == 200
    assert "Sign in" in await login.text()
    assert (await client.get("/static/app.js")).status == 200


async def test_snapshot_holds_the_namespace(client: TestClient) -> None:
    response = await client.get("/api/snapshot", headers=bearer("good"))
    assert response.status == 200
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    body = await response.json()
    assert body["user"] == "alice"
    assert [s["name"] for s in body["sites"]] == ["a", "b", "c"]
    assert len(body["paths"]) == 12
    assert [p["pathInUse"] for p in body["policies"]] == ["m-a-b-fiber"]
    assert [e["reason"] for e in body["events"]] == ["PathUp"]  # the Pod's event is not ours


async def test_login_sets_an_http_only_strict_cookie(client: TestClient) -> None:
    refused = await client.post("/login", data={"token": "forged"}, allow_redirects=False)
    assert refused.status == 401
    response = await client.post("/login", data={"token": "good"}, allow_redirects=False)
    assert response.status == 303
    cookie = response.cookies[COOKIE]
    assert cookie.value == "good"
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert (await client.get("/api/snapshot")).status == 200  # the cookie jar sends it


async def read_event(stream: asyncio.StreamReader | object) -> tuple[str, dict[str, object]]:
    name, data = "", b""
    while True:
        line = await stream.readline()  # type: ignore[attr-defined]
        if line == b"\n" and name:
            return name, orjson.loads(data)
        if line.startswith(b"event: "):
            name = line[7:].strip().decode()
        elif line.startswith(b"data: "):
            data = line[6:].strip()


async def test_stream_sends_a_snapshot_then_deltas(client: TestClient, kube: FakeKube) -> None:
    response = await client.get("/api/stream", headers=bearer("good"))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    name, snapshot = await asyncio.wait_for(read_event(response.content), 5)
    assert name == "snapshot"
    assert len(snapshot["paths"]) == 12  # type: ignore[arg-type]
    cut = path_name("a", "b", "fiber")
    status = path_status("down", "2026-11-30T10:00:05.000Z")
    await kube.patch_merge(PATH, NAMESPACE, cut, {"metadata": {"name": cut}, "status": status}, "status")

    async def until_down() -> dict[str, object]:
        while True:  # the informers' first listing may still be on its way as a delta
            name, delta = await read_event(response.content)
            assert name == "delta"
            states = {p["name"]: p["state"] for p in delta["paths"]}  # type: ignore[union-attr, index]
            if states.get(cut) == "down":
                return delta

    delta = await asyncio.wait_for(until_down(), 5)
    assert delta["deleted"] == {"sites": [], "paths": [], "policies": [], "events": []}
    response.close()


async def test_history_from_memory(client: TestClient, kube: FakeKube) -> None:
    name = path_name("a", "c", "lte")
    for second in (1, 2, 3):
        status = path_status("up", f"2099-01-01T00:00:0{second}.000Z", latency=float(second))
        await kube.patch_merge(
            PATH, NAMESPACE, name, {"metadata": {"name": name}, "status": status}, "status"
        )
    await asyncio.sleep(0.2)
    response = await client.get(f"/api/paths/{name}/history?window=100000000", headers=bearer("good"))
    body = await response.json()
    assert body["source"] == "memory"
    assert body["series"]["latencyMs"][-3:] == [1.0, 2.0, 3.0]
    missing = await client.get("/api/paths/nope/history", headers=bearer("good"))
    assert missing.status == 404


async def test_a_sites_policy_report_moves_the_policy_at_once(client: TestClient, kube: FakeKube) -> None:
    response = await client.get("/api/stream", headers=bearer("good"))
    await asyncio.wait_for(read_event(response.content), 5)
    report = {"name": "voice", "active": True, "pathInUse": path_name("a", "b", "lte"), "failoverCount": 1}
    await kube.patch_merge(
        SITE, NAMESPACE, "a", {"metadata": {"name": "a"}, "status": {"policies": [report]}}, "status"
    )

    async def until_on_backup() -> dict[str, object]:
        while True:
            _, delta = await read_event(response.content)
            voice = [p for p in delta["policies"] if p["name"] == "voice"]  # type: ignore[union-attr, index]
            if voice and voice[0]["onBackup"]:
                return delta

    delta = await asyncio.wait_for(until_on_backup(), 5)
    assert [s["toPath"] for s in delta["switches"]] == [path_name("a", "b", "lte")]  # type: ignore[union-attr, index]
    response.close()


def test_every_asset_the_pages_load_is_in_the_package() -> None:
    """The libraries come from web/package-lock.json via make setup; nothing is fetched from elsewhere."""
    for page in ("index.html", "login.html"):
        html = (STATIC / page).read_text()
        sources = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
        assert sources
        for source in sources:
            assert (STATIC / source.removeprefix("/static/")).is_file(), f"{page}: {source} is missing"
        assert "http://" not in html
        assert "https://" not in html
