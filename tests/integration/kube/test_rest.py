"""RestClient against the real API server: CRUD, server-side apply, and errors mapped to ApiError."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from patronus.controlplane.launcher import ControlPlane
from patronus.kube.errors import AlreadyExistsError, ApiError, ConflictError, NotFoundError
from patronus.kube.resource import CONFIG_MAP, SITE
from patronus.kube.rest import RestClient


@pytest.fixture
async def rest(control_plane: ControlPlane) -> AsyncIterator[RestClient]:
    async with RestClient.from_kubeconfig(control_plane.kubeconfig, field_manager="rest-test") as client:
        yield client


def configmap(namespace: str, name: str, **data: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


async def test_create_get_patch_delete(namespace: str, rest: RestClient) -> None:
    created = await rest.create(configmap(namespace, "a", k="1"))
    assert created["metadata"]["uid"]
    with pytest.raises(AlreadyExistsError) as excinfo:
        await rest.create(configmap(namespace, "a"))
    assert excinfo.value.status == 409
    assert excinfo.value.reason == "AlreadyExists"

    patched = await rest.patch_merge(CONFIG_MAP, namespace, "a", {"data": {"k": "2"}})
    assert patched["data"] == {"k": "2"}
    fetched = await rest.get(CONFIG_MAP, namespace, "a")
    assert fetched["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]

    await rest.delete(CONFIG_MAP, namespace, "a", propagation_policy="Background")
    with pytest.raises(NotFoundError) as missing:
        await rest.get(CONFIG_MAP, namespace, "a")
    assert missing.value.status == 404
    with pytest.raises(NotFoundError):
        await rest.delete(CONFIG_MAP, namespace, "a")


async def test_delete_precondition_conflict(namespace: str, rest: RestClient) -> None:
    await rest.create(configmap(namespace, "a"))
    with pytest.raises(ConflictError):
        await rest.delete(CONFIG_MAP, namespace, "a", preconditions={"uid": "not-the-uid"})


async def test_server_side_apply_owns_fields_and_conflicts(namespace: str, rest: RestClient) -> None:
    applied = await rest.apply(configmap(namespace, "a", mine="1"))
    managers = {entry["manager"] for entry in applied["metadata"]["managedFields"]}
    assert managers == {"rest-test"}
    # Another manager may not take the field without force ...
    with pytest.raises(ConflictError) as conflict:
        await rest.apply(configmap(namespace, "a", mine="2"), field_manager="intruder", force=False)
    assert conflict.value.status == 409
    # ... but may with it.
    forced = await rest.apply(configmap(namespace, "a", mine="2"), field_manager="intruder")
    assert forced["data"] == {"mine": "2"}


async def test_apply_a_custom_resource_and_its_status(namespace: str, rest: RestClient) -> None:
    site = {
        "apiVersion": SITE.api_version,
        "kind": "Site",
        "metadata": {"name": "hq", "namespace": namespace},
        "spec": {"location": "Amsterdam"},
    }
    with pytest.raises(ApiError) as invalid:  # the schema requires more: the 422 is mapped
        await rest.apply(site)
    assert invalid.value.status == 422
    assert invalid.value.reason == "Invalid"

    site["spec"] = {
        "location": "Amsterdam",
        "wireguard": {
            "publicKey": "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic=",
            "listenPort": 51820,
            "endpoints": ["203.0.113.100:51820"],
        },
    }
    created = await rest.apply(site)
    assert created["spec"]["location"] == "Amsterdam"
    status = await rest.apply({**site, "status": {"phase": "Active", "peers": 2}}, subresource="status")
    assert status["status"] == {"phase": "Active", "peers": 2}
    fetched = await rest.get(SITE, namespace, "hq")
    assert fetched["status"]["phase"] == "Active"


async def test_list_pages_and_watch(namespace: str, rest: RestClient) -> None:
    for i in range(3):
        await rest.create(configmap(namespace, f"c{i}"))
    first = await rest.list_page(CONFIG_MAP, namespace, limit=2)
    assert len(first["items"]) == 2
    token = first["metadata"]["continue"]
    second = await rest.list_page(CONFIG_MAP, namespace, limit=2, continue_token=token)
    assert [i["metadata"]["name"] for i in second["items"]] == ["c2"]
    assert not second["metadata"].get("continue")

    version = second["metadata"]["resourceVersion"]
    await rest.create(configmap(namespace, "c3"))
    events = []
    async with asyncio.timeout(10):
        async for event in rest.watch(CONFIG_MAP, namespace, resource_version=version, timeout_seconds=5):
            events.append(event)
            if event["type"] == "ADDED":
                break
    assert events[-1]["object"]["metadata"]["name"] == "c3"
