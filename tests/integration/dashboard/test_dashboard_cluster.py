"""The dashboard against a real API server: RBAC decides who may look, and the page's data follows watches.

Three real ServiceAccount tokens: one bound to a Role that may list Sites in the namespace, one with a
Role elsewhere, one with nothing. The dashboard runs as the admin (as its own ServiceAccount would, with
``system:auth-delegator``) and asks the API server with TokenReview and SubjectAccessReview.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from patronus.controlplane.launcher import ControlPlane
from patronus.dashboard.app import DashboardOptions, serve
from patronus.kube.errors import AlreadyExistsError
from patronus.kube.resource import NAMESPACE, PATH
from patronus.kube.rest import RestClient
from tests.unit.dashboard.test_server import read_event
from tests.unit.dashboard.world import path, path_status, site


def viewer_rbac(namespace: str, account: str, bind_in: str) -> list[dict[str, Any]]:
    meta = {"name": account, "namespace": bind_in}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [{"apiGroups": ["sdwan.patronus.dev"], "resources": ["sites"], "verbs": ["list"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]


def token(control_plane: ControlPlane, namespace: str, account: str) -> str:
    minted = control_plane.kubectl("create", "token", account, "-n", namespace, "--duration=10m")
    return minted.stdout.strip()


@pytest.fixture
async def dashboard(control_plane: ControlPlane, namespace: str) -> AsyncIterator[tuple[str, RestClient]]:
    rest = RestClient.from_kubeconfig(control_plane.kubeconfig)
    for obj in (site("a"), site("b"), path("a", "b", "fiber", path_status("up", "2026-11-30T10:00:00Z"))):
        await rest.create({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})
    urls: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(serve(DashboardOptions(namespace, "127.0.0.1", 0), rest, stop, urls.append))
    while not urls:
        assert not task.done(), task
        await asyncio.sleep(0.05)
    try:
        yield urls[0], rest
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        await rest.close()


async def test_rbac_decides_who_sees_the_dashboard(
    control_plane: ControlPlane, namespace: str, dashboard: tuple[str, RestClient]
) -> None:
    url, rest = dashboard
    other = f"{namespace}-other"
    await rest.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        for account, bind_in in (("viewer", namespace), ("elsewhere", other), ("nobody", None)):
            for obj in viewer_rbac(namespace, account, bind_in or namespace)[: 1 if bind_in is None else 3]:
                with contextlib.suppress(AlreadyExistsError):
                    await rest.create(obj)
        tokens = {name: token(control_plane, namespace, name) for name in ("viewer", "elsewhere", "nobody")}
        async with aiohttp.ClientSession() as http:

            async def status(token_value: str | None) -> int:
                headers = {"Authorization": f"Bearer {token_value}"} if token_value else {}
                async with http.get(f"{url}api/snapshot", headers=headers) as response:
                    return response.status

            assert await status(None) == 401
            assert await status("not-a-token") == 401
            assert await status(tokens["nobody"]) == 403
            assert await status(tokens["elsewhere"]) == 403
            assert await status(tokens["viewer"]) == 200
            async with http.get(
                f"{url}api/snapshot", headers={"Authorization": f"Bearer {tokens['viewer']}"}
            ) as r:
                body = await r.json()
            assert body["user"] == f"system:serviceaccount:{namespace}:viewer"
            assert [s["name"] for s in body["sites"]] == ["a", "b"]
    finally:
        await rest.delete(NAMESPACE, None, other)


async def test_a_status_write_reaches_the_stream(
    control_plane: ControlPlane, namespace: str, dashboard: tuple[str, RestClient]
) -> None:
    url, rest = dashboard
    for obj in viewer_rbac(namespace, "viewer", namespace):
        await rest.create(obj)
    headers = {"Authorization": f"Bearer {token(control_plane, namespace, 'viewer')}"}
    name = "m-a-b-fiber"
    async with aiohttp.ClientSession() as http, http.get(f"{url}api/stream", headers=headers) as response:
        assert response.status == 200
        event, snapshot = await asyncio.wait_for(read_event(response.content), 10)
        assert event == "snapshot"
        assert [(p["name"], p["state"]) for p in snapshot["paths"]] == [(name, "unknown")]  # no report yet
        status = {"metadata": {"name": name}, "status": path_status("down", "2026-11-30T10:00:09Z")}
        await rest.patch_merge(PATH, namespace, name, status, subresource="status")

        async def until_down() -> None:
            while True:
                event, delta = await read_event(response.content)
                assert event == "delta"
                if any(p["name"] == name and p["state"] == "down" for p in delta["paths"]):
                    return

        await asyncio.wait_for(until_down(), 10)
