"""The same scenarios against the real API server (RestClient) and the in-memory FakeKube.

The fake stands in for kube-apiserver in every reconciler unit test, so where controllers depend on the
API server's behaviour (resource versions, generations, server-side apply ownership, the status
subresource, watches, conflicts), this file proves the two agree.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from patronus.kube.client import KubeClient
from patronus.kube.errors import AlreadyExistsError, ConflictError, NotFoundError
from patronus.kube.fake import FakeKube
from patronus.kube.resource import CONFIG_MAP, SITE
from patronus.kube.rest import RestClient

ENDPOINTS = ["a.example.net:51820"]


@pytest.fixture(params=["real", "fake"])
async def api(request: pytest.FixtureRequest) -> AsyncIterator[KubeClient]:
    if request.param == "fake":
        fake = FakeKube(field_manager="contract")
        yield fake
        await fake.close()
        return
    control_plane = request.getfixturevalue("control_plane")
    client = RestClient.from_kubeconfig(control_plane.kubeconfig, field_manager="contract")
    yield client
    await client.close()


@pytest.fixture
def ns(request: pytest.FixtureRequest, api: KubeClient) -> str:
    if isinstance(api, FakeKube):
        return f"fake-{uuid.uuid4().hex[:6]}"
    return str(request.getfixturevalue("namespace"))


def config_map(ns: str, name: str = "cm", **data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


def site(ns: str, name: str = "a", **spec_extra: object) -> dict:
    spec = {"wireguard": {"endpoints": ENDPOINTS}, **spec_extra}
    return {
        "apiVersion": SITE.api_version,
        "kind": "Site",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


async def test_create_get_and_the_errors_for_taken_and_missing_names(api: KubeClient, ns: str) -> None:
    created = await api.create(config_map(ns, x="1"))
    meta = created["metadata"]
    assert meta["uid"]
    assert meta["resourceVersion"]
    assert meta["creationTimestamp"]
    assert (await api.get(CONFIG_MAP, ns, "cm"))["data"] == {"x": "1"}
    with pytest.raises(AlreadyExistsError):
        await api.create(config_map(ns, x="2"))
    with pytest.raises(NotFoundError):
        await api.get(CONFIG_MAP, ns, "missing")
    with pytest.raises(NotFoundError):
        await api.delete(CONFIG_MAP, ns, "missing")


async def test_an_apply_that_changes_nothing_keeps_the_resource_version(api: KubeClient, ns: str) -> None:
    first = await api.apply(config_map(ns, x="1"), field_manager="m1")
    again = await api.apply(config_map(ns, x="1"), field_manager="m1")
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    changed = await api.apply(config_map(ns, x="2"), field_manager="m1")
    assert changed["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]


async def test_apply_removes_what_the_manager_no_longer_sets_but_not_what_others_set(
    api: KubeClient, ns: str
) -> None:
    await api.apply(config_map(ns, a="1", b="2"), field_manager="m1")
    await api.apply(config_map(ns, c="3"), field_manager="m2")
    after = await api.apply(config_map(ns, a="1"), field_manager="m1")
    assert after["data"] == {"a": "1", "c": "3"}


async def test_apply_conflicts_without_force_and_takes_over_with_it(api: KubeClient, ns: str) -> None:
    await api.apply(config_map(ns, a="1"), field_manager="m1")
    with pytest.raises(ConflictError):
        await api.apply(config_map(ns, a="2"), field_manager="m2", force=False)
    taken = await api.apply(config_map(ns, a="2"), field_manager="m2", force=True)
    assert taken["data"] == {"a": "2"}
    # m1 lost the field: leaving it out of its next apply does not remove it.
    await api.apply(config_map(ns, other="x"), field_manager="m1")
    assert (await api.get(CONFIG_MAP, ns, "cm"))["data"] == {"a": "2", "other": "x"}


async def test_status_is_its_own_subresource_and_only_spec_moves_the_generation(
    api: KubeClient, ns: str
) -> None:
    created = await api.apply({**site(ns), "status": {"phase": "Active"}}, field_manager="user")
    assert created["metadata"]["generation"] == 1
    assert "status" not in created  # ignored on the main resource
    status = {"apiVersion": SITE.api_version, "kind": "Site", "metadata": {"name": "a", "namespace": ns}}
    written = await api.apply(
        {**status, "status": {"phase": "Pending"}}, field_manager="op", subresource="status"
    )
    assert written["status"] == {"phase": "Pending"}
    assert written["metadata"]["generation"] == 1
    respec = await api.apply(site(ns, location="Lisbon"), field_manager="user")
    assert respec["metadata"]["generation"] == 2
    assert respec["status"] == {"phase": "Pending"}  # a spec write leaves status alone


async def test_replace_refuses_a_stale_resource_version(api: KubeClient, ns: str) -> None:
    created = await api.create(config_map(ns, x="1"))
    updated = await api.replace({**created, "data": {"x": "2"}})
    assert updated["data"] == {"x": "2"}
    with pytest.raises(ConflictError):
        await api.replace({**created, "data": {"x": "3"}})  # still at the first version


async def test_merge_patch_sets_and_removes_keys(api: KubeClient, ns: str) -> None:
    await api.create(config_map(ns, x="1", y="2"))
    patched = await api.patch_merge(CONFIG_MAP, ns, "cm", {"data": {"x": None, "z": "3"}})
    assert patched["data"] == {"y": "2", "z": "3"}


async def test_lists_filter_by_labels_and_page(api: KubeClient, ns: str) -> None:
    for index in range(5):
        body = config_map(ns, f"cm{index}", v=str(index))
        body["metadata"]["labels"] = {"group": "even" if index % 2 == 0 else "odd"}
        await api.create(body)
    evens = await api.list_page(CONFIG_MAP, ns, label_selector="group=even")
    assert sorted(o["metadata"]["name"] for o in evens["items"]) == ["cm0", "cm2", "cm4"]
    named = await api.list_page(CONFIG_MAP, ns, field_selector="metadata.name=cm3")
    assert [o["metadata"]["name"] for o in named["items"]] == ["cm3"]
    names: list[str] = []
    token = None
    for _ in range(10):
        page = await api.list_page(CONFIG_MAP, ns, limit=2, continue_token=token, label_selector="group")
        names += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert sorted(names) == [f"cm{i}" for i in range(5)]


async def test_a_watch_replays_from_a_version_and_follows(api: KubeClient, ns: str) -> None:
    first = await api.create(config_map(ns, "w1"))
    since = first["metadata"]["resourceVersion"]
    await api.create(config_map(ns, "w2"))
    await api.delete(CONFIG_MAP, ns, "w1")
    seen: list[tuple[str, str]] = []

    async def follow() -> None:
        async for event in api.watch(CONFIG_MAP, ns, resource_version=since, timeout_seconds=10):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 3:
                return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    await api.create(config_map(ns, "w3"))
    await asyncio.wait_for(watcher, 10)
    assert seen == [("ADDED", "w2"), ("DELETED", "w1"), ("ADDED", "w3")]


async def test_finalizers_hold_a_deletion_until_they_are_removed(api: KubeClient, ns: str) -> None:
    body = config_map(ns, "held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    await api.create(body)
    await api.delete(CONFIG_MAP, ns, "held")
    held = await api.get(CONFIG_MAP, ns, "held")
    assert held["metadata"]["deletionTimestamp"]
    await api.patch_merge(CONFIG_MAP, ns, "held", {"metadata": {"finalizers": None}})
    for _ in range(50):
        try:
            await api.get(CONFIG_MAP, ns, "held")
        except NotFoundError:
            return
        await asyncio.sleep(0.1)
    pytest.fail("the object outlived its last finalizer")
