"""The informer against a real kube-apiserver: paging, events, outages, 410 Gone, silent watches.

Tests that stop the API server or compact etcd run their own control plane, not the session one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from patronus.controlplane.launcher import ControlPlane
from patronus.kube.resource import CONFIG_MAP, NAMESPACE, ResourceKind
from patronus.kube.rest import RestClient
from patronus.runtime.informer import Informer

Obj = dict[str, Any]


# -- helpers --------------------------------------------------------------------------------------


class Recorder:
    """What the handlers were told, and the world as they would rebuild it from those calls alone."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.updated: list[str] = []
        self.deleted: list[str] = []
        self.view: dict[str, Obj] = {}

    def on_add(self, obj: Obj) -> None:
        self.added.append(name_of(obj))
        self.view[name_of(obj)] = obj

    def on_update(self, old: Obj, new: Obj) -> None:
        assert name_of(old) == name_of(new)
        self.updated.append(name_of(new))
        self.view[name_of(new)] = new

    def on_delete(self, obj: Obj) -> None:
        self.deleted.append(name_of(obj))
        self.view.pop(name_of(obj), None)

    def versions(self) -> dict[str, str]:
        return {name: obj["metadata"]["resourceVersion"] for name, obj in self.view.items()}


def name_of(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def configmap(namespace: str, name: str, **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


async def server_versions(rest: RestClient, namespace: str) -> dict[str, str]:
    """A fresh, unpaged LIST: name -> resourceVersion."""
    page = await rest.list_page(CONFIG_MAP, namespace, limit=None)
    return {item["metadata"]["name"]: item["metadata"]["resourceVersion"] for item in page["items"]}


def cache_versions(informer: Informer) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in informer.indexer.list()}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
    assert await check(), what


async def converged(informer: Informer, recorder: Recorder, rest: RestClient, namespace: str) -> bool:
    """Cache and handler view both equal a fresh LIST of the server."""
    truth = await server_versions(rest, namespace)
    return cache_versions(informer) == truth and recorder.versions() == truth


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        assert await informer.wait_for_sync(15), "informer did not sync"
        yield task
    finally:
        informer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


def start_apiserver(plane: ControlPlane) -> None:
    """On the main thread, blocking the loop for a moment: the child is tied to its spawning thread's
    life (PR_SET_PDEATHSIG), so starting it from a to_thread worker would kill it with that worker."""
    plane.start_apiserver()


async def new_namespace(rest: RestClient) -> str:
    name = f"inf-{uuid.uuid4().hex[:8]}"
    await rest.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, kind=NAMESPACE)
    return name


class CountingRest(RestClient):
    """The real client, counting LIST pages (to see pagination happen)."""

    pages = 0

    async def list_page(self, kind: ResourceKind, namespace: str | None = None, **kwargs: Any) -> Obj:
        self.pages += 1
        return await super().list_page(kind, namespace, **kwargs)


@pytest.fixture
async def rest(control_plane: ControlPlane) -> AsyncIterator[RestClient]:
    client = RestClient.from_kubeconfig(control_plane.kubeconfig, field_manager="informer-test")
    yield client
    await client.close()


@pytest.fixture(scope="module")
def private_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        yield plane


@pytest.fixture
async def private_rest(private_plane: ControlPlane) -> AsyncIterator[RestClient]:
    client = RestClient.from_kubeconfig(private_plane.kubeconfig, field_manager="informer-test")
    yield client
    await client.close()


# -- the tests ------------------------------------------------------------------------------------


async def test_paginated_list_then_watch_delivers_every_change(
    control_plane: ControlPlane, namespace: str, rest: RestClient
) -> None:
    for i in range(12):
        await rest.create(configmap(namespace, f"cm-{i:02d}", n=str(i)))
    counting = CountingRest(rest.http)
    informer = Informer(counting, CONFIG_MAP, namespace, page_size=5)
    recorder = Recorder()
    informer.add_handler(recorder.on_add, recorder.on_update, recorder.on_delete)
    assert not informer.has_synced()

    async with running(informer):
        assert counting.pages == 3  # 5 + 5 + 2
        assert informer.stats.lists == 1
        assert sorted(recorder.added) == [f"cm-{i:02d}" for i in range(12)]
        assert cache_versions(informer) == await server_versions(rest, namespace)
        assert informer.last_activity is not None
        listed = informer.indexer.get(namespace, "cm-03")
        assert listed is not None
        assert listed["kind"] == "ConfigMap"  # filled in for list items
        assert listed["apiVersion"] == "v1"
        assert "managedFields" not in listed["metadata"]

        await rest.create(configmap(namespace, "fresh"))
        await rest.patch_merge(CONFIG_MAP, namespace, "cm-00", {"data": {"n": "changed"}})
        await rest.apply(configmap(namespace, "cm-01", n="applied"))
        await rest.delete(CONFIG_MAP, namespace, "cm-02")
        await eventually(lambda: converged(informer, recorder, rest, namespace), 10, "watch converged")

        assert "fresh" in recorder.added
        assert {"cm-00", "cm-01"} <= set(recorder.updated)
        assert recorder.deleted == ["cm-02"]
        changed = informer.indexer.get(namespace, "cm-00")
        assert changed is not None
        assert changed["data"] == {"n": "changed"}
        assert recorder.view["cm-01"]["data"] == {"n": "applied"}
        assert informer.stats.lists == 1  # all of that came over the watch
        assert informer.stats.errors == 0


async def test_label_selector_limits_the_cache(
    control_plane: ControlPlane, namespace: str, rest: RestClient
) -> None:
    wanted = configmap(namespace, "wanted")
    wanted["metadata"]["labels"] = {"app": "patronus"}
    await rest.create(wanted)
    await rest.create(configmap(namespace, "other"))
    informer = Informer(rest, CONFIG_MAP, namespace, label_selector="app=patronus")
    async with running(informer):
        assert [o["metadata"]["name"] for o in informer.indexer.by_index("label", "app=patronus")] == [
            "wanted"
        ]
        assert len(informer.indexer) == 1


async def test_late_handler_hears_about_cached_objects(
    control_plane: ControlPlane, namespace: str, rest: RestClient
) -> None:
    await rest.create(configmap(namespace, "early"))
    informer = Informer(rest, CONFIG_MAP, namespace)
    async with running(informer):
        recorder = Recorder()
        informer.add_handler(recorder.on_add)
        assert recorder.added == ["early"]


async def test_failing_handler_does_not_stop_the_informer(
    control_plane: ControlPlane, namespace: str, rest: RestClient
) -> None:
    informer = Informer(rest, CONFIG_MAP, namespace)

    def explode(obj: Obj) -> None:
        raise RuntimeError("handler bug")

    recorder = Recorder()
    informer.add_handler(explode)
    informer.add_handler(recorder.on_add)
    async with running(informer):
        await rest.create(configmap(namespace, "a"))
        await rest.create(configmap(namespace, "b"))
        await eventually(lambda: _true(recorder.added == ["a", "b"]), 10, "both adds delivered")


async def _true(value: bool) -> bool:
    return value


async def test_silent_watch_is_dropped_and_resumed_without_relist(
    control_plane: ControlPlane, namespace: str, rest: RestClient
) -> None:
    # No changes and no bookmark for well over a second (bookmarks come about once a minute).
    informer = Informer(rest, CONFIG_MAP, namespace, inactivity_timeout=1.0, watch_timeout=600)
    recorder = Recorder()
    informer.add_handler(recorder.on_add, recorder.on_update, recorder.on_delete)
    async with running(informer):
        await eventually(
            lambda: _true(informer.stats.inactivity_reconnects >= 2), 10, "two silent watches dropped"
        )
        assert informer.stats.watches >= 3
        assert informer.stats.lists == 1  # resumed from the resourceVersion, no relist
        assert informer.stats.gone == 0
        await rest.create(configmap(namespace, "after-silence"))
        await eventually(lambda: _true(recorder.added == ["after-silence"]), 10, "event after reconnects")


async def test_changes_around_apiserver_restarts_are_all_seen(
    private_plane: ControlPlane, private_rest: RestClient
) -> None:
    rest = private_rest
    namespace = await new_namespace(rest)
    for i in range(6):
        await rest.create(configmap(namespace, f"cm-{i}", v="0"))
    informer = Informer(rest, CONFIG_MAP, namespace, backoff_initial=0.05, backoff_max=0.5)
    recorder = Recorder()
    informer.add_handler(recorder.on_add, recorder.on_update, recorder.on_delete)

    async with running(informer):
        # Outage 1: the watch breaks; changes land right after the server is back.
        await asyncio.to_thread(private_plane.stop_apiserver)
        await eventually(lambda: _true(informer.stats.errors > 0), 10, "the informer noticed the outage")
        start_apiserver(private_plane)
        await rest.create(configmap(namespace, "new-1"))
        await rest.patch_merge(CONFIG_MAP, namespace, "cm-0", {"data": {"v": "1"}})
        await rest.delete(CONFIG_MAP, namespace, "cm-1")

        # Outage 2: changes right before the server goes away, possibly before the watch relays them.
        await rest.create(configmap(namespace, "new-2"))
        await rest.patch_merge(CONFIG_MAP, namespace, "cm-2", {"data": {"v": "2"}})
        await rest.delete(CONFIG_MAP, namespace, "cm-3")
        await asyncio.to_thread(private_plane.stop_apiserver)
        await asyncio.sleep(1.0)
        start_apiserver(private_plane)

        await eventually(
            lambda: converged(informer, recorder, rest, namespace), 30, "converged after outages"
        )
        assert {"new-1", "new-2"} <= set(recorder.added)
        assert sorted(recorder.deleted) == ["cm-1", "cm-3"]
        assert {"cm-0", "cm-2"} <= set(recorder.updated)
        assert recorder.view["cm-0"]["data"] == {"v": "1"}
        assert recorder.view["cm-2"]["data"] == {"v": "2"}
        assert informer.stats.errors >= 2
        assert informer.last_activity is not None


async def _compacted_away_scenario(plane: ControlPlane, rest: RestClient, *, restart: bool) -> Informer:
    namespace = await new_namespace(rest)
    for i in range(20):
        await rest.create(configmap(namespace, f"cm-{i:02d}", v="0"))
    informer = Informer(rest, CONFIG_MAP, namespace, backoff_initial=0.05, backoff_max=0.5, page_size=7)
    recorder = Recorder()
    informer.add_handler(recorder.on_add, recorder.on_update, recorder.on_delete)
    async with running(informer):
        old_version = informer.resource_version
        informer.pause()  # no connection: the changes below are not seen as they happen
        for i in range(10):
            await rest.create(configmap(namespace, f"new-{i:02d}"))
        for i in range(5):
            await rest.patch_merge(CONFIG_MAP, namespace, f"cm-{i:02d}", {"data": {"v": "1"}})
        for i in range(5, 13):
            await rest.delete(CONFIG_MAP, namespace, f"cm-{i:02d}")
        await asyncio.to_thread(plane.compact_etcd)
        if restart:
            await asyncio.to_thread(plane.stop_apiserver)
            start_apiserver(plane)
        assert informer.stats.gone == 0
        assert informer.resource_version == old_version

        informer.resume()  # watches from the compacted version: the real server says 410
        await eventually(lambda: converged(informer, recorder, rest, namespace), 30, "converged after 410")
        assert informer.stats.gone >= 1
        assert informer.stats.lists >= 2
        assert sorted(recorder.deleted) == [f"cm-{i:02d}" for i in range(5, 13)]
        assert {f"new-{i:02d}" for i in range(10)} <= set(recorder.added)
        assert sorted(recorder.updated) == [f"cm-{i:02d}" for i in range(5)]
        assert all(recorder.view[f"cm-{i:02d}"]["data"] == {"v": "1"} for i in range(5))
        # And it keeps watching after the relist.
        await rest.create(configmap(namespace, "after-relist"))
        await eventually(lambda: _true("after-relist" in recorder.added), 10, "watch resumed after relist")
    return informer


async def test_compacted_resource_version_relists_without_missing_anything(
    private_plane: ControlPlane, private_rest: RestClient
) -> None:
    # The watch cache would still serve the old version; a restart re-primes it, as etcd compacted it.
    await _compacted_away_scenario(private_plane, private_rest, restart=True)


async def test_etcd_compaction_alone_yields_gone_and_relist() -> None:
    # Watches served straight from etcd, so etcd compaction alone yields 410 Gone.
    with ControlPlane(extra_apiserver_args=["--watch-cache=false"]) as plane:
        async with RestClient.from_kubeconfig(plane.kubeconfig) as rest:
            await _compacted_away_scenario(plane, rest, restart=False)
