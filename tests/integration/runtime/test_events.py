"""EventRecorder against the real API server: aggregation into one Event, and the spam filter."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from lightkube import AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace

from patronus.kube.rest import RestClient
from patronus.runtime.events import EventRecorder

COMPONENT = "patronus-operator-test"


@pytest.fixture
async def client(control_plane) -> AsyncIterator[AsyncClient]:
    """lightkube, to check what the recorder wrote with a client that is not the recorder's own."""
    api = AsyncClient(KubeConfig.from_file(control_plane.kubeconfig))
    yield api
    await api.close()


@pytest.fixture
async def rest(control_plane) -> AsyncIterator[RestClient]:
    api = RestClient.from_kubeconfig(control_plane.kubeconfig)
    yield api
    await api.close()


async def _involved(client: AsyncClient, namespace: str, name: str) -> dict:
    created = await client.create(ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace)))
    return created.to_dict()


async def _events(client: AsyncClient, namespace: str) -> list[Event]:
    return [event async for event in client.list(Event, namespace=namespace)]


async def test_repeated_events_aggregate_into_one_event(client, rest, namespace):
    obj = await _involved(client, namespace, "flappy")
    recorder = EventRecorder(rest, COMPONENT, host="test-host")
    writer = asyncio.create_task(recorder.run())
    try:
        recorder.event(obj, "Warning", "ProbeFailed", "path a-b lost 3 probes")
        await asyncio.sleep(1.1)  # lastTimestamp has whole seconds: make the last one visibly later
        for _ in range(4):
            recorder.event(obj, "Warning", "ProbeFailed", "path a-b lost 3 probes")
        recorder.event(obj, "Normal", "ProbeRecovered", "path a-b is up")
    finally:
        await recorder.aclose()
    assert writer.done()

    events = await _events(client, namespace)
    failed = [event for event in events if event.reason == "ProbeFailed"]
    assert len(failed) == 1, [event.metadata.name for event in events]
    event = failed[0]
    assert event.count == 5
    assert event.type == "Warning"
    assert event.message == "path a-b lost 3 probes"
    assert event.lastTimestamp > event.firstTimestamp
    assert event.source.component == COMPONENT
    assert event.source.host == "test-host"
    assert event.involvedObject.kind == "ConfigMap"
    assert event.involvedObject.name == "flappy"
    assert event.involvedObject.uid == obj["metadata"]["uid"]
    assert event.metadata.name.startswith("flappy.")

    recovered = [event for event in events if event.reason == "ProbeRecovered"]
    assert [event.count for event in recovered] == [1]
    assert recorder.dropped_total == 0


async def test_a_flood_from_one_object_is_rate_limited(client, rest, namespace):
    noisy = await _involved(client, namespace, "noisy")
    quiet = await _involved(client, namespace, "quiet")
    drops: Counter[str] = Counter()
    recorder = EventRecorder(rest, COMPONENT, on_drop=lambda reason: drops.update([reason]))
    writer = asyncio.create_task(recorder.run())
    try:
        for i in range(100):
            recorder.event(noisy, "Warning", "Flapping", f"flap number {i}")
        recorder.event(quiet, "Normal", "Synced", "all good")  # other objects have their own budget
    finally:
        await recorder.aclose()
    await writer

    events = await _events(client, namespace)
    by_object = Counter(event.involvedObject.name for event in events)
    assert by_object["noisy"] == 25  # client-go's burst
    assert by_object["quiet"] == 1
    assert drops == {"rate_limited": 75}
    assert recorder.dropped == {"rate_limited": 75}
    written = sorted(int(event.message.split()[-1]) for event in events if event.reason == "Flapping")
    assert written == list(range(25))  # the first ones get through, the excess is dropped


async def test_events_for_cluster_scoped_objects_go_to_default(client, rest, namespace):
    # Events about a Namespace (cluster-scoped) live in "default", as client-go puts them.
    ns_obj = (await client.get(Namespace, namespace)).to_dict()
    recorder = EventRecorder(rest, COMPONENT)
    writer = asyncio.create_task(recorder.run())
    recorder.event(ns_obj, "Normal", "Adopted", f"namespace {namespace} adopted")
    await recorder.aclose()
    await writer
    events = [
        event
        async for event in client.list(Event, namespace="default")
        if event.involvedObject.name == namespace and event.reason == "Adopted"
    ]
    assert len(events) == 1
    assert events[0].involvedObject.kind == "Namespace"
    await client.delete(Event, events[0].metadata.name, namespace="default")
