"""Controller-runtime benchmark: no-op reconcile throughput from the cache, and cache memory per object.

    .venv/bin/python bench/runtime.py [--objects 10000] [--workers 5] [--rounds 3]

Throughput: every cached object's key goes through the real WorkQueue and Controller (rate limiter,
metrics, structured-log context) to a reconciler that only reads the object from the cache. The floor,
measured in the same run, is a bare asyncio.Queue feeding the same number of workers doing the same
cache read: the ratio is the price of dedup, per-key exclusivity, backoff bookkeeping and metrics.

Memory: tracemalloc's count of bytes the Indexer holds for N Site objects shaped like the API server's
(with managedFields, which the cache drops), against the same objects kept as plain decoded JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
from typing import Any, cast

import orjson

from patronus.kube.resource import SITE, ObjectKey
from patronus.kube.rest import RestClient
from patronus.runtime.cache import Indexer
from patronus.runtime.controller import Controller, Result
from patronus.runtime.informer import Informer
from patronus.runtime.logs import configure_logging
from patronus.runtime.metrics import OperatorMetrics
from patronus.runtime.sources import KindCache

SITE_TEMPLATE: dict[str, Any] = {
    "apiVersion": "sdwan.patronus.dev/v1alpha1",
    "kind": "Site",
    "metadata": {
        "name": "branch-0",
        "namespace": "patronus-system",
        "uid": "6f1c7d1e-7c1b-4a53-9f5e-0d9a7c3e2b11",
        "resourceVersion": "123456",
        "generation": 3,
        "creationTimestamp": "2026-11-28T10:00:00Z",
        "labels": {"app.kubernetes.io/name": "patronus", "patronus.dev/region": "us-east"},
        "managedFields": [
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "sdwan.patronus.dev/v1alpha1",
                "time": "2026-11-28T10:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/name": {}}},
                    "f:spec": {
                        ".": {},
                        "f:location": {},
                        "f:wireguard": {".": {}, "f:endpoints": {}, "f:listenPort": {}, "f:publicKey": {}},
                    },
                },
            },
            {
                "manager": "patronus-operator",
                "operation": "Apply",
                "apiVersion": "sdwan.patronus.dev/v1alpha1",
                "time": "2026-11-28T10:00:05Z",
                "fieldsType": "FieldsV1",
                "subresource": "status",
                "fieldsV1": {
                    "f:status": {
                        "f:phase": {},
                        "f:peers": {},
                        "f:activePaths": {},
                        "f:healthScore": {},
                        "f:conditions": {'k:{"type":"Ready"}': {".": {}, "f:status": {}}},
                    }
                },
            },
        ],
    },
    "spec": {
        "location": "New York, NY",
        "wireguard": {
            "publicKey": "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic=",
            "listenPort": 51820,
            "endpoints": ["203.0.113.100:51820"],
            "persistentKeepalive": 25,
        },
        "resources": {"cpu": "2", "memory": "4Gi"},
        "mesh": {"enabled": True, "peerWith": ["branch-1", "branch-2"]},
    },
    "status": {
        "phase": "Active",
        "peers": 2,
        "activePaths": 4,
        "healthScore": 98.4,
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "AgentReporting",
                "message": "",
                "lastTransitionTime": "2026-11-28T10:00:05Z",
                "observedGeneration": 3,
            }
        ],
    },
}


def make_sites(count: int) -> list[dict[str, Any]]:
    raw = orjson.dumps(SITE_TEMPLATE)
    sites = []
    for index in range(count):
        site = orjson.loads(raw)  # a fresh, unshared tree, like a decoded API response
        site["metadata"]["name"] = f"branch-{index}"
        site["metadata"]["uid"] = f"6f1c7d1e-7c1b-4a53-9f5e-{index:012d}"
        site["metadata"]["resourceVersion"] = str(100000 + index)
        sites.append(site)
    return sites


def kind_cache(sites: list[dict[str, Any]]) -> KindCache:
    informer = Informer(cast(RestClient, None), SITE)  # never run: the benchmark fills its cache directly
    for site in sites:
        informer.indexer.upsert(site)
    return KindCache(SITE, [informer])


class NoopReconciler:
    def __init__(self, cache: KindCache, expected: int) -> None:
        self.cache = cache
        self.expected = expected
        self.count = 0
        self.finished = asyncio.Event()

    async def reconcile(self, key: ObjectKey) -> Result | None:
        self.cache.get(key.namespace, key.name)
        self.count += 1
        if self.count == self.expected:
            self.finished.set()
        return None


async def runtime_throughput(cache: KindCache, workers: int) -> float:
    keys = [ObjectKey.of(obj) for obj in cache.list()]
    reconciler = NoopReconciler(cache, len(keys))
    controller = Controller(
        "bench", reconciler, cache, workers=workers, resync_period=None, metrics=OperatorMetrics()
    )
    run = asyncio.create_task(controller.run())
    await asyncio.sleep(0)
    started = time.perf_counter()
    for key in keys:
        controller.queue.add(key)
    await reconciler.finished.wait()
    elapsed = time.perf_counter() - started
    await controller.shutdown(5)
    await run
    return len(keys) / elapsed


async def floor_throughput(cache: KindCache, workers: int) -> float:
    keys = [ObjectKey.of(obj) for obj in cache.list()]
    queue: asyncio.Queue[ObjectKey] = asyncio.Queue()
    done = asyncio.Event()
    count = 0

    async def worker() -> None:
        nonlocal count
        while True:
            key = await queue.get()
            cache.get(key.namespace, key.name)
            await asyncio.sleep(0)  # the same one suspension the reconciler's await gives
            count += 1
            if count == len(keys):
                done.set()
            queue.task_done()

    tasks = [asyncio.create_task(worker()) for _ in range(workers)]
    started = time.perf_counter()
    for key in keys:
        queue.put_nowait(key)
    await done.wait()
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return len(keys) / elapsed


def measure_bytes(build: Any) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, held


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configure_logging("warning", "console")  # the controller's start/stop lines are not results

    sites = make_sites(args.objects)
    cache = kind_cache(sites)
    runtime, floor = [], []
    for _ in range(args.rounds):  # interleaved, so machine noise hits both alike
        floor.append(asyncio.run(floor_throughput(cache, args.workers)))
        runtime.append(asyncio.run(runtime_throughput(cache, args.workers)))
    r, f = statistics.median(runtime), statistics.median(floor)
    print(
        f"no-op reconcile throughput, {args.objects} cached objects, {args.workers} workers, "
        f"median of {args.rounds}:"
    )
    print(f"  runtime (WorkQueue + Controller): {r:10,.0f} keys/s   rounds: {_rounds(runtime)}")
    print(f"  floor (bare asyncio.Queue):       {f:10,.0f} keys/s   rounds: {_rounds(floor)}")
    print(f"  ratio runtime/floor: {r / f:.2f}")

    json_bytes = sum(len(orjson.dumps(site)) for site in sites)
    cached, indexer = measure_bytes(lambda: _filled_indexer(make_sites(args.objects)))
    plain, kept = measure_bytes(lambda: make_sites(args.objects))
    n = args.objects
    print(f"\ncache memory at {n} Site objects (tracemalloc):")
    print(f"  Indexer (lean, indexed):        {cached / n:8,.0f} B/object   total {cached / 2**20:6.1f} MiB")
    print(f"  plain decoded JSON (no cache):  {plain / n:8,.0f} B/object   total {plain / 2**20:6.1f} MiB")
    print(f"  serialized JSON size:           {json_bytes / n:8,.0f} B/object")
    print(f"  ratio Indexer/plain: {cached / plain:.2f}")
    if len(indexer) != n or len(kept) != n:
        raise SystemExit("benchmark bug: not every object was held")


def _rounds(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


def _filled_indexer(sites: list[dict[str, Any]]) -> Indexer:
    indexer = Indexer()
    for site in sites:
        indexer.upsert(site)
    sites.clear()
    return indexer


if __name__ == "__main__":
    main()
