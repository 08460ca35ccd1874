"""Convergence benchmark: the real operator against a real API server, and a floor measured in the same run.

    .venv/bin/python bench/converge.py [--sites 1000] [--mesh-sites 40] [--policies 500] [--workers 5]

One control plane (etcd + kube-apiserver + kube-controller-manager on loopback) serves two phases:

Operator run: the operator (all four controllers, in this process, watching one fresh namespace) is
started, then N Sites, one full-mesh Mesh over the first M sites and P Policies are created as fast as a
client with ``--creators`` concurrent requests can. Odd-numbered sites carry a ``publicKey`` (external
sites: identity and RBAC children only); even-numbered sites have none, so the operator generates their
key and keeps it in a Secret. Even-numbered policies name a primary and a same-site backup Path of the
mesh; odd-numbered ones name no path (so every site enforces them). The clock runs from the first create
until every Site, Mesh and Policy shows ``status.observedGeneration == metadata.generation`` and every
Path the mesh implies exists with a current observedGeneration too. A separate process follows that
(a list and a watch per kind) and publishes counts in shared memory, so decoding the events never holds
the operator's GIL; a thread with an event loop of its own reads them every 0.1 s (the convergence time
is exact to 0.1 s) so that a busy operator loop cannot delay the measurement. (An earlier version
re-listed everything twice a second in this process: a third of its CPU went to the measurement.)
Watching continues until the operator has written nothing for ``--quiet`` seconds, so the time of its
*last* write is reported as well.

Floor (operator stopped, fresh namespace): a plain async client writes the same end state directly: the
same Sites, Mesh and Policies (POST), every child the operator made (the pure builders of
``patronus.operator.site.children`` with each site's rendered config copied from the operator's ConfigMap),
the Paths, and one status per Site/Path/Mesh/Policy (copied from the operator's final statuses). It uses
the operator's verbs (server-side apply for children and statuses) and a semaphore of 4 controllers x
``--workers`` requests in flight, the number of operator workers that write. Timed from the first create
until the last write is acknowledged. It runs ``--floor-runs`` times (default 2, each in a fresh
namespace), since on a small shared machine one floor run varied from 48 s to 65 s; the ratio is taken
against their median and, as a bound, against the fastest.

Reported: both times and their ratio, writes counted by our clients and by the API server
(``apiserver_request_total``, scraped before and after each phase; it also counts kube-controller-manager's
writes, e.g. ReplicaSets and Pods for the Deployments, which both phases cause alike), reconcile counts
and p50/p99 latency per controller, work-queue wait, CPU seconds of every process, and the peak RSS of
this process during the operator phase (VmHWM from /proc/self/status after resetting it through
/proc/self/clear_refs at the start of the phase, minus VmRSS at that moment; the creating and polling
client live in the same process and are included).

The machine this runs on is usually small and shared: expect the numbers to be noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import hashlib
import io
import json
import math
import multiprocessing
import os
import pstats
import re
import resource
import signal
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from patronus.api import Site
from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from patronus.kube.crds import install_crds
from patronus.kube.errors import ApiError, KubeConnectionError
from patronus.kube.resource import (
    CONFIG_MAP,
    DEPLOYMENT,
    MESH,
    PATH,
    POLICY,
    ROLE,
    ROLE_BINDING,
    SECRET,
    SERVICE,
    SERVICE_ACCOUNT,
    SITE,
    ResourceKind,
)
from patronus.kube.rest import RestClient
from patronus.operator.config import OperatorConfig, load_config
from patronus.operator.main import manager_options
from patronus.operator.mesh.manifest import path_manifest
from patronus.operator.reconcile.apply import FIELD_MANAGER, with_digest
from patronus.operator.site.children import CONFIG_KEY, SITE_LABEL, desired_children
from patronus.operator.wiring import register
from patronus.runtime.logs import configure_logging
from patronus.runtime.manager import Manager
from patronus.topology.mesh import plan_paths
from patronus.wireguard.keys import generate_private_key, public_key_for

GV = "sdwan.patronus.dev/v1alpha1"
MESH_NAME = "bench"
CONTROLLERS = ("site", "mesh", "path", "policy")
CHILD_KINDS: tuple[ResourceKind, ...] = (
    SECRET,
    CONFIG_MAP,
    SERVICE_ACCOUNT,
    ROLE,
    ROLE_BINDING,
    DEPLOYMENT,
    SERVICE,
)
MANAGED = "app.kubernetes.io/managed-by=patronus-operator"
POLL_PERIOD = 0.1
SERVICE_RANGE = "--service-cluster-ip-range=10.96.0.0/16"
# Each site's LoadBalancer Service (externalTrafficPolicy Local) takes a node port and a health-check
# node port: 1,000 per run, more than the default range (30000-32767) holds for three runs.
NODE_PORT_RANGE = "--service-node-port-range=30000-45000"
PROGRESS_EVERY = 10.0

Object = dict[str, Any]


# -- the workload -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    sites: list[Object]
    mesh: Object
    policies: list[Object]
    path_names: list[str]
    paths_from: dict[str, list[str]]  # site -> names of the mesh Paths starting there
    policies_at: dict[str, list[str]]  # site -> names of the policies it enforces

    @property
    def objects(self) -> int:
        return len(self.sites) + 1 + len(self.policies)


def site_name(index: int) -> str:
    return f"site-{index:04d}"


def make_workload(sites: int, mesh_sites: int, policies: int) -> Workload:
    if mesh_sites < 3 or mesh_sites > sites:
        raise SystemExit("--mesh-sites must be at least 3 (policies need two paths) and at most --sites")
    site_objs: list[Object] = []
    for index in range(sites):
        name = site_name(index)
        wireguard: dict[str, Any] = {"endpoints": [f"{name}.example.net:51820"]}
        if index % 2:  # a public key alone: an external site, its agent holds the private key
            wireguard["publicKey"] = public_key_for(generate_private_key())
        site_objs.append(
            {"apiVersion": GV, "kind": "Site", "metadata": {"name": name}, "spec": {"wireguard": wireguard}}
        )
    members = [site_name(i) for i in range(mesh_sites)]
    mesh: Object = {
        "apiVersion": GV,
        "kind": "Mesh",
        "metadata": {"name": MESH_NAME},
        "spec": {"sites": members, "topology": "full-mesh"},
    }
    plans = plan_paths(MESH_NAME, {m: ["default"] for m in members}, "full-mesh")
    by_pair = {(p.source, p.destination): p.name for p in plans}
    paths_from: dict[str, list[str]] = {}
    for plan in plans:
        paths_from.setdefault(plan.source, []).append(plan.name)
    policy_objs = []
    everywhere: list[str] = []
    policies_at: dict[str, list[str]] = {}
    for index in range(policies):
        name = f"policy-{index:04d}"
        spec: dict[str, Any]
        if index % 2 == 0:
            source = index // 2 % mesh_sites
            site, primary, backup = (members[source], members[(source + 1) % mesh_sites],
                                     members[(source + 2) % mesh_sites])  # fmt: skip
            spec = {
                "priority": index % 1000,
                "match": {"protocol": "udp", "dstPortRange": f"{5000 + index % 100}-{5100 + index % 100}"},
                "action": {
                    "type": "route",
                    "primaryPath": {"siteRef": site, "pathId": by_pair[(site, primary)]},
                    "backupPath": {"siteRef": site, "pathId": by_pair[(site, backup)]},
                    "qos": {"class": "business-critical", "bandwidth": "10Mbps"},
                },
                "failover": {"threshold": 70, "cooldown": "30s"},
            }
            policies_at.setdefault(site, []).append(name)
        else:
            spec = {
                "priority": index % 1000,
                "match": {"protocol": "tcp", "dstPortRange": "443,8443"},
                "action": {"type": "route", "qos": {"class": "interactive"}},
            }
            everywhere.append(name)
        policy_objs.append({"apiVersion": GV, "kind": "Policy", "metadata": {"name": name}, "spec": spec})
    for site_obj in site_objs:
        own = site_obj["metadata"]["name"]
        policies_at[own] = sorted(policies_at.get(own, []) + everywhere)
    return Workload(site_objs, mesh, policy_objs, sorted(by_pair.values()), paths_from, policies_at)


def in_namespace(obj: Mapping[str, Any], namespace: str) -> Object:
    copied = dict(obj)
    copied["metadata"] = {**obj["metadata"], "namespace": namespace}
    return copied


# -- measuring --------------------------------------------------------------------------------------------


class CountingRestClient(RestClient):
    """A RestClient that counts its writes by (verb, resource[/subresource]) and remembers the last one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: Counter[tuple[str, str]] = Counter()
        self.last_write = 0.0

    @classmethod
    def open(cls, kubeconfig: Path, field_manager: str) -> CountingRestClient:
        base = RestClient.from_kubeconfig(kubeconfig, field_manager=field_manager)
        return cls(base.http, field_manager=field_manager, timeout=base.timeout)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Object:
        result = await super().request(method, path, params=params, body=body, content_type=content_type)
        if method != "GET":
            self.writes[(method, _resource_of(path))] += 1
            self.last_write = time.monotonic()
        return result


def _resource_of(path: str) -> str:
    """``/api/v1/namespaces/ns/secrets/x`` -> ``secrets``; ``.../sites/x/status`` -> ``sites/status``."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts:
        rest = parts[parts.index("namespaces") + 2 :]
    else:
        rest = parts[2:] if parts[0] == "api" else parts[3:]
    if not rest:
        return "namespaces"
    return rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")


_REQUEST_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"}


def apiserver_requests(plane: ControlPlane) -> Counter[tuple[str, str]]:
    """``apiserver_request_total`` summed by (verb, resource[/subresource]), from the API server itself."""
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    counts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        match = _REQUEST_LINE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        resource_name = labels.get("resource", "") + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        counts[(labels.get("verb", ""), resource_name)] += int(float(match["value"]))
    return counts


def api_writes(delta: Mapping[tuple[str, str], int]) -> Counter[str]:
    writes: Counter[str] = Counter()
    for (verb, resource_name), count in delta.items():
        if verb in WRITE_VERBS and count > 0 and resource_name not in ("leases", "tokenreviews"):
            writes[f"{verb} {resource_name}"] += count
    return writes


def subtract(after: Counter[tuple[str, str]], before: Counter[tuple[str, str]]) -> Counter[tuple[str, str]]:
    return Counter(
        {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSnapshot:
    values: dict[str, float] = field(default_factory=dict)

    @classmethod
    def take(cls, plane: ControlPlane) -> CpuSnapshot:
        snap = cls({"this process (operator + clients)": self_cpu()})
        for process in plane.processes():
            name = Path(str(process.args[0] if isinstance(process.args, list) else process.args)).name
            with contextlib.suppress(OSError):
                snap.values[name] = cpu_seconds(process.pid)
        return snap

    def since(self, before: CpuSnapshot) -> dict[str, float]:
        return {name: value - before.values.get(name, 0.0) for name, value in self.values.items()}


def proc_status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# -- histograms -------------------------------------------------------------------------------------------


@dataclass
class Histogram:
    buckets: list[tuple[float, float]] = field(default_factory=list)  # (upper bound, cumulative count)
    count: float = 0.0
    total: float = 0.0

    def bucket_of(self, q: float) -> str:
        """The bucket the q-quantile falls in, as "lower-upper" seconds."""
        if self.count == 0:
            return "-"
        lower = 0.0
        for upper, cumulative in sorted(self.buckets):
            if cumulative >= q * self.count:
                return f"{lower:g}-{upper:g}s"
            lower = upper
        return f">{lower:g}s"

    def quantile(self, q: float) -> float:
        """Like Prometheus' histogram_quantile: linear within the bucket; inf past the last finite bound."""
        if self.count == 0:
            return float("nan")
        rank = q * self.count
        lower, below = 0.0, 0.0
        for upper, cumulative in sorted(self.buckets):
            if cumulative >= rank:
                if upper == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
            lower, below = upper, cumulative
        return lower


def histograms(manager: Manager, metric: str, label: str) -> dict[str, Histogram]:
    found: dict[str, Histogram] = {}
    for family in manager.metrics.registry.collect():
        if family.name != metric:
            continue
        for sample in family.samples:
            hist = found.setdefault(sample.labels.get(label, ""), Histogram())
            if sample.name.endswith("_bucket"):
                hist.buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                hist.count = sample.value
            elif sample.name.endswith("_sum"):
                hist.total = sample.value
    return found


def counter_by(manager: Manager, metric: str, *labels: str) -> dict[tuple[str, ...], float]:
    found: dict[tuple[str, ...], float] = {}
    for family in manager.metrics.registry.collect():
        if family.name != metric:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                found.setdefault(tuple(sample.labels.get(name, "") for name in labels), 0.0)
                found[tuple(sample.labels.get(name, "") for name in labels)] += sample.value
    return found


# -- listing and convergence ------------------------------------------------------------------------------


async def list_all(
    rest: RestClient, kind: ResourceKind, namespace: str, selector: str | None = None
) -> list[Object]:
    items: list[Object] = []
    token: str | None = None
    while True:
        page = await rest.list_page(kind, namespace, limit=500, continue_token=token, label_selector=selector)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items


def current(obj: Mapping[str, Any]) -> bool:
    generation = obj["metadata"].get("generation")
    return generation is not None and (obj.get("status") or {}).get("observedGeneration") == generation


@dataclass
class Progress:
    sites: int = 0
    mesh: int = 0
    policies: int = 0
    paths_exist: int = 0
    paths_current: int = 0

    def line(self, work: Workload) -> str:
        return (
            f"sites {self.sites}/{len(work.sites)}  mesh {self.mesh}/1  "
            f"policies {self.policies}/{len(work.policies)}  "
            f"paths {self.paths_current}/{self.paths_exist}/{len(work.path_names)} (current/exist/wanted)"
        )

    def done(self, work: Workload) -> bool:
        return (
            self.sites == len(work.sites)
            and self.mesh == 1
            and self.policies == len(work.policies)
            and self.paths_current == len(work.path_names)
        )


async def check(rest: RestClient, namespace: str, work: Workload, finished: set[str]) -> Progress:
    """One round of LISTs; kinds already all current are not listed again (specs never change here)."""
    progress = Progress()
    if "sites" in finished:
        progress.sites = len(work.sites)
    else:
        progress.sites = sum(current(o) for o in await list_all(rest, SITE, namespace))
    if "mesh" in finished:
        progress.mesh = 1
    else:
        progress.mesh = sum(current(o) for o in await list_all(rest, MESH, namespace))
    if "policies" in finished:
        progress.policies = len(work.policies)
    else:
        progress.policies = sum(current(o) for o in await list_all(rest, POLICY, namespace))
    if "paths" in finished:
        progress.paths_exist = progress.paths_current = len(work.path_names)
    else:
        wanted = set(work.path_names)
        paths = [p for p in await list_all(rest, PATH, namespace) if p["metadata"]["name"] in wanted]
        progress.paths_exist = len(paths)
        progress.paths_current = sum(current(p) for p in paths)
    for name, value, total in (
        ("sites", progress.sites, len(work.sites)),
        ("mesh", progress.mesh, 1),
        ("policies", progress.policies, len(work.policies)),
        ("paths", progress.paths_current, len(work.path_names)),
    ):
        if value == total:
            finished.add(name)
    return progress


class ConvergenceTracker:
    """Which Sites, Meshes, Policies and wanted Paths are current, kept up to date by watches.

    Re-listing the ~3,000 objects twice a second cost the API server and, worse, this process (the
    operator's own): decoding them took about a third of its CPU, under the same GIL as the operator. A
    watch costs one event per write, which the API server encodes once for every watcher anyway.
    """

    KINDS = (SITE, MESH, POLICY, PATH)

    def __init__(self, wanted_paths: Iterable[str]) -> None:
        self.wanted_paths = set(wanted_paths)
        self.current: dict[str, dict[str, bool]] = {kind.plural: {} for kind in self.KINDS}
        self.errors = 0

    def _see(self, kind: ResourceKind, obj: Object, *, deleted: bool = False) -> None:
        name = obj["metadata"]["name"]
        if kind is PATH and name not in self.wanted_paths:
            return
        states = self.current[kind.plural]
        if deleted:
            states.pop(name, None)
        else:
            states[name] = current(obj)

    async def follow(self, rest: RestClient, kind: ResourceKind, namespace: str) -> None:
        """List, then watch from the list's version; on any break, list again (bounded by the caller)."""
        while True:
            try:
                version = ""
                token: str | None = None
                listed: list[Object] = []
                while True:
                    page = await rest.list_page(kind, namespace, limit=500, continue_token=token)
                    listed += page.get("items") or []
                    version = (page.get("metadata") or {}).get("resourceVersion") or version
                    token = (page.get("metadata") or {}).get("continue")
                    if not token:
                        break
                self.current[kind.plural] = {}  # replaced only once the new list is complete
                for obj in listed:
                    self._see(kind, obj)
                async for event in rest.watch(kind, namespace, resource_version=version, timeout_seconds=600):
                    obj = event.get("object") or {}
                    if event.get("type") == "BOOKMARK" or not (obj.get("metadata") or {}).get("name"):
                        continue
                    self._see(kind, obj, deleted=event.get("type") == "DELETED")
            except (ApiError, KubeConnectionError):
                self.errors += 1
                await asyncio.sleep(0.5)

    def progress(self) -> Progress:
        sites, meshes, policies, paths = (self.current[kind.plural] for kind in self.KINDS)
        return Progress(
            sites=sum(sites.values()),
            mesh=sum(meshes.values()),
            policies=sum(policies.values()),
            paths_exist=len(paths),
            paths_current=sum(paths.values()),
        )


PROGRESS_FIELDS = 6  # sites, mesh, policies, paths existing, paths current, watch errors


def track_in_process(
    kubeconfig: str, namespace: str, wanted_paths: list[str], shared: Any, stop: Any
) -> None:
    """A separate process: follows convergence and publishes the counts in ``shared`` until ``stop``.

    Out of the operator's process, so that decoding the watch events never holds the operator's GIL.
    """
    tracker = ConvergenceTracker(wanted_paths)

    async def publish() -> None:
        while not stop.is_set():
            progress = tracker.progress()
            shared[:] = [
                progress.sites,
                progress.mesh,
                progress.policies,
                progress.paths_exist,
                progress.paths_current,
                tracker.errors,
            ]
            await asyncio.sleep(0.02)

    async def main() -> None:
        async with RestClient.from_kubeconfig(kubeconfig, field_manager="bench-poller") as poller:
            followers = [
                asyncio.create_task(tracker.follow(poller, kind, namespace)) for kind in tracker.KINDS
            ]
            await publish()
            for follower in followers:
                follower.cancel()
            await asyncio.gather(*followers, return_exceptions=True)

    asyncio.run(main())


# -- phase results ----------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    seconds: float | None  # None: did not converge in time
    client_writes: Counter[tuple[str, str]]
    api_delta: Counter[tuple[str, str]]
    cpu: dict[str, float]
    extra: dict[str, Any] = field(default_factory=dict)


async def bounded_gather(limit: int, jobs: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[Any]]) -> Any:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(run(job) for job in jobs))


# -- phase 1: the operator --------------------------------------------------------------------------------


def operator_config(namespace: str, args: argparse.Namespace) -> OperatorConfig:
    return load_config(
        {
            "WATCH_NAMESPACES": namespace,
            "LEADER_ELECTION_ENABLED": "false",
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(free_port()),
            "MAX_CONCURRENT_RECONCILES": str(args.workers),
            "RECONCILE_INTERVAL": args.reconcile_interval,
            "LOG_LEVEL": "warning",
            "POD_NAME": "bench-operator",
            "AGENT_IMAGE": "registry.example/patronus-agent:bench",
        }
    )


@dataclass
class OperatorOutcome:
    result: PhaseResult
    statuses: dict[str, dict[str, Object]]  # kind -> name -> final status
    configs: dict[str, str]  # site -> config.json the operator rendered
    children: Counter[str]


async def create_all(
    creator: RestClient, namespace: str, work: Workload, limit: int, done: list[float]
) -> None:
    objects = [*work.sites, work.mesh, *work.policies]

    def job(obj: Object) -> Callable[[], Awaitable[Object]]:
        return lambda: creator.create(in_namespace(obj, namespace))

    await bounded_gather(limit, [job(obj) for obj in objects])
    done.append(time.monotonic())


def reconciles_line(manager: Manager) -> str:
    done: Counter[str] = Counter()
    for (controller, _result), count in counter_by(
        manager, "patronus_operator_reconcile", "controller", "result"
    ).items():
        done[controller] += int(count)
    return " ".join(f"{name}={count}" for name, count in sorted(done.items()))


def queue_line(manager: Manager) -> str:
    queues = " ".join(f"{c.name}={len(c.queue)}+{len(c.queue.processing())}" for c in manager.controllers)
    return f"{queues} echoes skipped={manager.own_writes.skipped}"


@dataclass
class Watch:
    """What the watcher thread measured; times are seconds since the first create."""

    started: float
    converged: float | None = None
    last_write: float | None = None
    api_after: Counter[tuple[str, str]] = field(default_factory=Counter)
    cpu_after: CpuSnapshot = field(default_factory=CpuSnapshot)
    hwm_kib: int = 0
    maxrss_kib: int = 0


def watch_in_thread(
    plane: ControlPlane,
    manager: Manager,
    rest: CountingRestClient,
    *,
    namespace: str,
    work: Workload,
    created: list[float],
    args: argparse.Namespace,
    started: float,
) -> Watch:
    """Poll for convergence, then for quiet, on a thread and event loop of its own.

    The operator shares this process's main event loop; a separate loop keeps the measurement (and the
    deadline) independent of how well the operator lets its loop breathe.
    """
    watch = Watch(started)
    asyncio.run(_watch(plane, manager, rest, namespace, work, created, args, watch))
    # The end of the phase: measured here, not after the main loop gets round to it.
    watch.api_after = apiserver_requests(plane)
    watch.cpu_after = CpuSnapshot.take(plane)
    watch.hwm_kib = proc_status_kib("VmHWM")
    watch.maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return watch


async def _watch(  # noqa: PLR0917
    plane: ControlPlane,
    manager: Manager,
    rest: CountingRestClient,
    namespace: str,
    work: Workload,
    created: list[float],
    args: argparse.Namespace,
    watch: Watch,
) -> None:
    started = watch.started
    next_progress = started + PROGRESS_EVERY
    announced = False
    context = multiprocessing.get_context("spawn")
    shared = context.Array("q", PROGRESS_FIELDS, lock=False)
    stop = context.Event()
    tracker = context.Process(
        target=track_in_process,
        args=(str(plane.kubeconfig), namespace, work.path_names, shared, stop),
        name="convergence-tracker",
        daemon=True,
    )
    tracker.start()
    try:
        while time.monotonic() < started + args.timeout:
            round_started = time.monotonic()
            if created and not announced:
                announced = True
                print(f"  [{created[0] - started:7.1f}s] all {work.objects} objects created", flush=True)
            counts = list(shared)
            progress = Progress(*counts[:5])
            now = time.monotonic()
            if progress.done(work) and created:
                watch.converged = now - started
                print(f"  [{now - started:7.1f}s] converged: {progress.line(work)}", flush=True)
                print(
                    f"    reconciles until then: {reconciles_line(manager)}; {queue_line(manager)}",
                    flush=True,
                )
                break
            if now >= next_progress:
                print(
                    f"  [{now - started:7.1f}s] {progress.line(work)}  queues (waiting+busy) "
                    f"{queue_line(manager)}",
                    flush=True,
                )
                next_progress = now + PROGRESS_EVERY
            await asyncio.sleep(max(0.0, POLL_PERIOD - (time.monotonic() - round_started)))
        else:
            print(
                f"  [{time.monotonic() - started:7.1f}s] did not converge within {args.timeout:.0f}s",
                flush=True,
            )
    finally:
        stop.set()
        tracker.join(10)
        if tracker.is_alive():
            tracker.kill()
    if errors := shared[PROGRESS_FIELDS - 1]:
        print(f"  (the convergence watches broke and were re-listed {errors} times)", flush=True)
    # Until the operator has written nothing for --quiet seconds (bounded).
    deadline = time.monotonic() + max(args.quiet * 10, 60.0)
    while time.monotonic() < deadline:
        if rest.last_write and time.monotonic() - rest.last_write >= args.quiet:
            break
        await asyncio.sleep(0.25)
    watch.last_write = rest.last_write - started if rest.last_write else None


async def end_state(
    poller: RestClient, namespace: str
) -> tuple[dict[str, dict[str, Object]], dict[str, str], Counter[str]]:
    """Final statuses by kind and name, each site's rendered config, and the children by kind."""
    statuses: dict[str, dict[str, Object]] = {}
    for kind in (SITE, MESH, POLICY, PATH):
        items = await list_all(poller, kind, namespace)
        statuses[kind.kind] = {o["metadata"]["name"]: o.get("status") or {} for o in items}
    configs = {}
    for config_map in await list_all(poller, CONFIG_MAP, namespace, MANAGED):
        site = (config_map["metadata"].get("labels") or {}).get(SITE_LABEL, "")
        configs[site] = (config_map.get("data") or {}).get(CONFIG_KEY, "")
    children: Counter[str] = Counter()
    for kind in CHILD_KINDS:
        children[kind.kind] = len(await list_all(poller, kind, namespace, MANAGED))
    return statuses, configs, children


def profile_report(profiler: cProfile.Profile | None) -> str:
    if profiler is None:
        return ""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    if os.environ.get("CONVERGE_PROFILE_OUT"):
        stats.dump_stats(os.environ["CONVERGE_PROFILE_OUT"])  # for a closer look with pstats
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    return out.getvalue()


async def run_operator_phase(
    plane: ControlPlane, namespace: str, work: Workload, args: argparse.Namespace
) -> OperatorOutcome:
    config = operator_config(namespace, args)
    rest = CountingRestClient.open(plane.kubeconfig, "patronus-operator")
    creator = CountingRestClient.open(plane.kubeconfig, "bench-creator")
    poller = RestClient.from_kubeconfig(plane.kubeconfig, field_manager="bench-poller")
    manager = Manager(manager_options(config), rest)
    register(manager, config)

    rss_before = proc_status_kib("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hwm_reset = reset_peak_rss()
    task = asyncio.create_task(manager.run(install_signal_handlers=False))
    async with asyncio.timeout(120):
        while not manager.caches_synced():
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # let the controllers' workers start
    profiler = cProfile.Profile() if args.profile else None

    api_before = apiserver_requests(plane)
    cpu_before = CpuSnapshot.take(plane)
    if profiler is not None:
        profiler.enable()
    started = time.monotonic()
    created: list[float] = []
    creates = asyncio.create_task(create_all(creator, namespace, work, args.creators, created))
    watch = await asyncio.to_thread(
        watch_in_thread,
        plane,
        manager,
        rest,
        namespace=namespace,
        work=work,
        created=created,
        args=args,
        started=started,
    )
    if profiler is not None:
        profiler.disable()
    if not creates.done():
        creates.cancel()
    with contextlib.suppress(BaseException):
        await creates
    manager.stop()
    await asyncio.wait_for(task, 300)
    api_after, cpu = watch.api_after, watch.cpu_after.since(cpu_before)
    hwm, maxrss_after = watch.hwm_kib, watch.maxrss_kib
    converged, last_write = watch.converged, watch.last_write
    created_at = created[0] - started if created else None

    statuses, configs, children = await end_state(poller, namespace)
    extra = {
        "operator_writes": Counter(rest.writes),
        "created_at": created_at,
        "last_write": last_write,
        "reconciles": counter_by(manager, "patronus_operator_reconcile", "controller", "result"),
        "adds": counter_by(manager, "patronus_operator_workqueue_adds", "name"),
        "durations": histograms(manager, "patronus_operator_reconcile_duration_seconds", "controller"),
        "waits": histograms(manager, "patronus_operator_workqueue_queue_duration_seconds", "name"),
        "rss_before_kib": rss_before,
        "hwm_kib": hwm if hwm_reset else None,
        "maxrss_delta_kib": maxrss_after - maxrss_before,
        "maxrss_after_kib": maxrss_after,
        "profile": profile_report(profiler),
    }
    for closing in (rest, creator, poller):
        await closing.close()
    result = PhaseResult(
        "operator", converged, rest.writes + creator.writes, subtract(api_after, api_before), cpu, extra
    )
    return OperatorOutcome(result, statuses, configs, children)


# -- phase 2: the floor -----------------------------------------------------------------------------------


async def run_floor_phase(
    plane: ControlPlane,
    *,
    namespace: str,
    first_namespace: str,
    work: Workload,
    outcome: OperatorOutcome,
    args: argparse.Namespace,
) -> PhaseResult:
    rest = CountingRestClient.open(plane.kubeconfig, FIELD_MANAGER)
    config = operator_config(namespace, args)
    semaphore = asyncio.Semaphore(len(CONTROLLERS) * args.workers)
    statuses = outcome.statuses

    async def call(request: Awaitable[Object]) -> Object:
        async with semaphore:
            return await request

    async def write_status(kind: ResourceKind, name: str, status: Object) -> None:
        body = {
            "apiVersion": GV,
            "kind": kind.kind,
            "metadata": {"name": name, "namespace": namespace},
            "status": status or {"observedGeneration": 1},
        }
        await call(rest.apply(body, FIELD_MANAGER, True, "status", kind=kind))

    def overlay_address(text: str) -> str | None:
        address = json.loads(text).get("overlayAddress")  # the operator records it on the ConfigMap too
        return str(address) if address else None

    def rendered_config(site: str) -> str:
        text = outcome.configs.get(site) or f'{{"site":"{site}"}}'
        return text.replace(f'"namespace":"{first_namespace}"', f'"namespace":"{namespace}"')

    async def one_site(obj: Object) -> None:
        stored = await call(rest.create(in_namespace(obj, namespace)))
        name = stored["metadata"]["name"]
        model = Site.model_validate(stored)
        external = model.spec.wireguard.public_key is not None
        generated = None
        if not external:
            private = generate_private_key()
            generated = (private, public_key_for(private))
        text = rendered_config(name)
        manifests = desired_children(
            stored,
            model,
            config,
            external=external,
            secret_name=None,
            generated_key=generated,
            config_json=text,
            config_digest=hashlib.sha256(text.encode()).hexdigest(),
            path_names=work.paths_from.get(name, []),
            overlay_address=overlay_address(text),
        )
        await asyncio.gather(
            *(call(rest.apply(with_digest(m), FIELD_MANAGER, True)) for m in manifests),
            write_status(SITE, name, statuses.get("Site", {}).get(name, {})),
        )

    async def one_policy(obj: Object) -> None:
        await call(rest.create(in_namespace(obj, namespace)))
        name = obj["metadata"]["name"]
        await write_status(POLICY, name, statuses.get("Policy", {}).get(name, {}))

    async def the_mesh() -> None:
        stored = await call(rest.create(in_namespace(work.mesh, namespace)))
        members = work.mesh["spec"]["sites"]
        plans = plan_paths(MESH_NAME, {m: ["default"] for m in members}, "full-mesh")

        async def one_path(manifest: Object) -> None:
            await call(rest.apply(with_digest(manifest), FIELD_MANAGER, True, kind=PATH))
            name = manifest["metadata"]["name"]
            await write_status(PATH, name, statuses.get("Path", {}).get(name, {}))

        await asyncio.gather(*(one_path(path_manifest(stored, plan)) for plan in plans))
        await write_status(MESH, MESH_NAME, statuses.get("Mesh", {}).get(MESH_NAME, {}))

    api_before = apiserver_requests(plane)
    cpu_before = CpuSnapshot.take(plane)
    started = time.monotonic()
    await asyncio.gather(
        *(one_site(obj) for obj in work.sites),
        the_mesh(),
        *(one_policy(obj) for obj in work.policies),
    )
    elapsed = time.monotonic() - started
    api_after = apiserver_requests(plane)
    cpu = CpuSnapshot.take(plane).since(cpu_before)

    # Not timed: check the floor really reached the same end state.
    progress = await check(rest, namespace, work, set())
    children: Counter[str] = Counter()
    for kind in CHILD_KINDS:
        children[kind.kind] = len(await list_all(rest, kind, namespace, MANAGED))
    await rest.close()
    return PhaseResult(
        "floor",
        elapsed,
        Counter(rest.writes),
        subtract(api_after, api_before),
        cpu,
        {"progress": progress, "children": children},
    )


# -- report -----------------------------------------------------------------------------------------------


def _fmt_seconds(value: float | None) -> str:
    return "did not converge" if value is None else f"{value:8.1f} s"


def _ms(value: float) -> str:
    if math.isnan(value):
        return "      -"
    return f"{value * 1000:7.1f}" if value < 60 else "  >60 s"


def print_writes(title: str, writes: Mapping[str, int] | Mapping[tuple[str, str], int]) -> None:
    rows = sorted(((f"{k[0]} {k[1]}" if isinstance(k, tuple) else k), v) for k, v in writes.items() if v)
    print(f"  {title}: {sum(v for _, v in rows):,}")
    for name, count in rows:
        print(f"      {name:42s} {count:8,}")


def report(work: Workload, args: argparse.Namespace, op: OperatorOutcome, floors: list[PhaseResult]) -> None:
    # Details (writes, CPU) from the floor run with the median time; times from all of them.
    floor = sorted(floors, key=lambda f: f.seconds or math.inf)[(len(floors) - 1) // 2]
    print()
    print("=" * 100)
    mesh_sites = len(work.mesh["spec"]["sites"])
    print(
        f"workload: {len(work.sites)} sites ({(len(work.sites) + 1) // 2} with generated keys, "
        f"{len(work.sites) // 2} external with a publicKey), 1 full mesh of {mesh_sites} sites -> "
        f"{len(work.path_names)} paths, {len(work.policies)} policies ({(len(work.policies) + 1) // 2} "
        f"naming paths, {len(work.policies) // 2} enforced at every site)"
    )
    print(
        f"operator: {args.workers} workers x {len(CONTROLLERS)} controllers, resync "
        f"{args.reconcile_interval}; creator concurrency {args.creators}; floor concurrency "
        f"{len(CONTROLLERS) * args.workers}"
    )
    report_times(args, op.result, floors)
    print()
    print("objects:")
    print(f"  created: {work.objects} (sites+mesh+policies), paths wanted {len(work.path_names)}")
    print(f"  children the operator made:  {dict(op.children)}")
    print(f"  children the floor made:     {dict(floor.extra['children'])}")
    print(f"  floor end state check:       {floor.extra['progress'].line(work)}")
    report_writes(op.result, floor)
    report_reconciles(op.result.extra)
    report_memory(op.result.extra)


def report_times(args: argparse.Namespace, o: PhaseResult, floors: list[PhaseResult]) -> None:
    x = o.extra
    print()
    print("time, first create -> converged:")
    print(
        f"  operator: {_fmt_seconds(o.seconds)}   (creates acknowledged at {x['created_at'] or 0:.1f} s; "
        f"the operator's last write at {x['last_write'] or 0:.1f} s, then no write for {args.quiet:.0f} s)"
    )
    times = [f.seconds for f in floors if f.seconds]
    print(f"  floor:    {', '.join(_fmt_seconds(f.seconds) for f in floors)}  ({len(floors)} runs after it)")
    if o.seconds is not None and times:
        median = statistics.median(times)
        print(f"  ratio operator/floor: {o.seconds / median:.2f} against the median floor {median:.1f} s, "
              f"{o.seconds / min(times):.2f} against the fastest   (target <= 1.5)")  # fmt: skip
        if x["last_write"]:
            print(f"  ratio operator-last-write/floor: {x['last_write'] / median:.2f}")


def report_writes(o: PhaseResult, floor: PhaseResult) -> None:
    print()
    print("writes counted by our clients (verb resource):")
    print_writes("operator run, operator writes", o.extra["operator_writes"])
    print_writes("operator run, all (operator + creating client)", o.client_writes)
    print_writes("floor run, all", floor.client_writes)
    print()
    print(
        "writes counted by the API server (apiserver_request_total delta; includes kube-controller-manager):"
    )
    print_writes("operator run", api_writes(o.api_delta))
    print_writes("floor run", api_writes(floor.api_delta))
    reads = [
        sum(v for (verb, _), v in phase.api_delta.items() if verb in ("GET", "LIST", "WATCH"))
        for phase in (o, floor)
    ]
    print(f"  reads (GET/LIST/WATCH): operator run {reads[0]:,}, floor run {reads[1]:,}")
    print()
    print("CPU seconds during each phase (user+system):")
    for name in sorted(set(o.cpu) | set(floor.cpu)):
        print(
            f"  {name:40s} operator run {o.cpu.get(name, 0):8.1f}   floor run {floor.cpu.get(name, 0):8.1f}"
        )


def report_reconciles(x: Mapping[str, Any]) -> None:
    print()
    print("operator reconciles (patronus_operator_reconcile_total) and latency (from histogram buckets):")
    heads = (
        "reconciles",
        "errors",
        "requeue",
        "p50 ms",
        "p99 ms",
        "sum s",
        "q-adds",
        "wait mean",
        "wait p99",
    )
    print(f"  {'controller':10s} " + " ".join(f"{h:>10s}" for h in (*heads, "wait sum s")) + "  (ms)")
    reconciles: dict[tuple[str, ...], float] = x["reconciles"]
    for name in CONTROLLERS:
        hist: Histogram = x["durations"].get(name, Histogram())
        wait: Histogram = x["waits"].get(name, Histogram())
        cells = (
            f"{sum(v for (c, _), v in reconciles.items() if c == name):,.0f}",
            f"{reconciles.get((name, 'error'), 0):,.0f}",
            f"{reconciles.get((name, 'requeue'), 0) + reconciles.get((name, 'requeue_after'), 0):,.0f}",
            _ms(hist.quantile(0.5)),
            _ms(hist.quantile(0.99)),
            f"{hist.total:.1f}",
            f"{x['adds'].get((name,), 0):,.0f}",
            _ms(wait.total / wait.count if wait.count else float("nan")),
            wait.bucket_of(0.99),
            f"{wait.total:.1f}",
        )
        print(f"  {name:10s} " + " ".join(f"{cell:>10s}" for cell in cells))
    print(
        "  (p50/p99 interpolated inside the Prometheus buckets, so exact only to a bucket; "
        "sum = total seconds in reconciles;\n"
        "   q-adds = workqueue_adds_total; wait = workqueue_queue_duration_seconds, whose buckets are "
        "powers of ten:\n   its mean is exact, its p99 is only known to lie in the bucket shown)"
    )


def report_memory(x: Mapping[str, Any]) -> None:
    print()
    print("memory of this process (operator + creating/polling clients), operator phase:")
    print(f"  VmRSS when the phase started:                 {x['rss_before_kib'] / 1024:8.1f} MiB")
    if x["hwm_kib"] is not None:
        delta = (x["hwm_kib"] - x["rss_before_kib"]) / 1024
        print(f"  VmHWM at the end (peak since the reset):      {x['hwm_kib'] / 1024:8.1f} MiB")
        print(f"  peak RSS delta of the phase (VmHWM - VmRSS):  {delta:8.1f} MiB")
    print(
        f"  ru_maxrss after the phase:                    {x['maxrss_after_kib'] / 1024:8.1f} MiB "
        f"(grew {x['maxrss_delta_kib'] / 1024:.1f} MiB over the phase; ru_maxrss cannot be reset)"
    )
    if x["profile"]:
        print()
        print("cProfile of this process during the operator phase:")
        print(x["profile"])


# -- main -------------------------------------------------------------------------------------------------


async def run(plane: ControlPlane, work: Workload, args: argparse.Namespace) -> None:
    async with RestClient.from_kubeconfig(plane.kubeconfig, field_manager="bench-crds") as admin:
        await install_crds(admin)
    first = "bench-operator"
    floor_namespaces = [f"bench-floor-{index + 1}" for index in range(args.floor_runs)]
    for namespace in (first, *floor_namespaces):
        plane.kubectl("create", "namespace", namespace)
    print(f"operator run in namespace {first}:", flush=True)
    outcome = await run_operator_phase(plane, first, work, args)
    floors = []
    for namespace in floor_namespaces:
        print(f"floor run in namespace {namespace} (operator stopped):", flush=True)
        floor = await run_floor_phase(
            plane, namespace=namespace, first_namespace=first, work=work, outcome=outcome, args=args
        )
        print(f"  [{floor.seconds or 0:7.1f}s] floor done", flush=True)
        floors.append(floor)
    report(work, args, outcome, floors)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sites", type=int, default=1000)
    parser.add_argument("--mesh-sites", type=int, default=40)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--workers", type=int, default=5, help="MAX_CONCURRENT_RECONCILES")
    parser.add_argument("--creators", type=int, default=20, help="concurrent creates in the operator run")
    parser.add_argument("--reconcile-interval", default="30s", help="the operator's RECONCILE_INTERVAL")
    parser.add_argument("--timeout", type=float, default=1800.0, help="bound on the operator run, seconds")
    parser.add_argument("--quiet", type=float, default=5.0, help="seconds without operator writes = settled")
    parser.add_argument("--profile", action="store_true", help="cProfile this process in the operator run")
    parser.add_argument(
        "--floor-runs", type=int, default=2, help="floor repetitions; the ratio uses their median"
    )
    args = parser.parse_args()
    configure_logging("warning", "console")  # the operator's info lines are not results

    work = make_workload(args.sites, args.mesh_sites, args.policies)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # so `with` stops the control plane
    # 10.0.0.0/24 (the default here) has 254 Service IPs: one LoadBalancer Service per non-external site
    # in three namespaces needs more. The last --service-cluster-ip-range wins.
    ranges = [SERVICE_RANGE, NODE_PORT_RANGE]
    with ControlPlane(controller_manager=True, extra_apiserver_args=ranges) as plane:
        print(f"control plane up in {time.monotonic() - started:.1f} s", flush=True)
        asyncio.run(run(plane, work, args))
    print(f"\ntotal wall time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
