"""The supervisor's steps, each small and each registering its undo on one exit stack the moment it is
done; :func:`patronus.lab.supervisor.serve` runs them in order and then watches the running lab."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from patronus.controlplane import processes
from patronus.controlplane.launcher import ControlPlane
from patronus.kube.crds import install_crds
from patronus.kube.errors import AlreadyExistsError, NotFoundError
from patronus.kube.resource import CONFIG_MAP, PATH, ROLE_BINDING, SECRET, SERVICE_ACCOUNT, ResourceKind
from patronus.kube.rest import RestClient
from patronus.lab import control, network, observability
from patronus.lab.agents import Agents, agent_command, agent_kubeconfig
from patronus.lab.files import LabFiles, write_atomic
from patronus.lab.forwarder import LISTEN_HOST, LISTEN_PORT, Forwarder
from patronus.lab.impair import start_relay
from patronus.lab.manifests import (
    LAB_NAMESPACE,
    MESH_NAME,
    PATH_MONITORING,
    mesh_manifest,
    mesh_path_names,
    policy_manifests,
    site_manifest,
)
from patronus.lab.operator import Operator, start_operator
from patronus.lab.plan import LabPlan
from patronus.operator.site.children import child_names

LAB_FIELD_MANAGER = "patronus-lab"
CHILDREN_TIMEOUT = 90.0
POLL_INTERVAL = 0.2


class Stopped(Exception):
    """SIGTERM or SIGINT arrived while the lab was starting: unwind what exists and exit 0."""


class Progress:
    """One line per start-up step, to stderr (the supervisor's log) and to the file ``lab up`` follows."""

    def __init__(self, path: Path, stream: TextIO = sys.stderr) -> None:
        self.path = path
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:5.1f}s] {message}"
        print(f"lab: {line}", file=self.stream, flush=True)
        with self.path.open("a") as handle:
            handle.write(line + "\n")


class Supervisor:
    """The steps of :func:`~patronus.lab.supervisor.serve`; ``stack`` holds the undo of every step done."""

    def __init__(self, plan: LabPlan, files: LabFiles, stack: contextlib.AsyncExitStack) -> None:
        self.plan = plan
        self.files = files
        self.stack = stack
        self.stopping = asyncio.Event()
        self.say = Progress(files.progress)
        self.agents = Agents(self.say)
        self.plane: ControlPlane | None = None
        self.admin: RestClient | None = None
        self.operator: Operator | None = None
        self.urls: observability.Urls | None = None
        self.apiserver: control.ApiServerSwitch | None = None

    # -- helpers --------------------------------------------------------------------------------

    def check_stop(self) -> None:
        if self.stopping.is_set():
            raise Stopped

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake (and raise :class:`Stopped`) as soon as a stop is asked for."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        self.check_stop()

    async def wait_for(self, what: str, ready: Callable[[], Awaitable[bool]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            await self.sleep(POLL_INTERVAL)

    @property
    def rest(self) -> RestClient:
        assert self.admin is not None
        return self.admin

    @property
    def control_plane(self) -> ControlPlane:
        assert self.plane is not None
        return self.plane

    # -- steps ----------------------------------------------------------------------------------

    def build_network(self) -> None:
        self.say(f"creating {len(self.plan.namespaces)} network namespaces (prefix {self.plan.prefix})")
        self.stack.callback(network.destroy, self.plan)  # also undoes a partial create
        network.create(self.plan)
        relay = start_relay(self.plan, self.files.relay_log())
        self.stack.callback(processes.stop, relay)

    async def start_control_plane(self) -> None:
        self.say("starting etcd, kube-apiserver and kube-controller-manager")
        plane = ControlPlane(controller_manager=True)
        self.apiserver = control.ApiServerSwitch(plane, self.say)
        self.stack.callback(self.apiserver.close)  # after plane.stop: its thread may own kube-apiserver
        self.stack.callback(plane.stop)
        await self.sleep(0.01)  # let a pending signal be seen before the slow part
        plane.start()  # main thread: its children die with the thread that spawned them (PDEATHSIG)
        self.plane = plane
        write_atomic(self.files.kubeconfig, plane.kubeconfig.read_text(), 0o600)
        self.admin = RestClient.from_kubeconfig(plane.kubeconfig, field_manager=LAB_FIELD_MANAGER)
        self.stack.push_async_callback(self.admin.close)
        self.say("installing the CRDs")
        await install_crds(self.admin)
        await self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LAB_NAMESPACE}})

    async def start_operator(self) -> None:
        self.say("starting the operator")
        self.operator = await start_operator(self.control_plane.kubeconfig)
        self.stack.push_async_callback(self.operator.stop)
        manager = self.operator.manager
        await self.wait_for("the operator's caches", _const(manager.caches_synced), 60.0)

    async def create(self, obj: Mapping[str, Any]) -> None:
        with contextlib.suppress(AlreadyExistsError):
            await self.rest.create(obj)

    async def declare(self) -> None:
        names = [s.name for s in self.plan.sites]
        self.say(f"creating Sites {', '.join(names)} and the full Mesh {MESH_NAME}")
        for site in names:
            await self.create(site_manifest(self.plan, site))
        await self.create(mesh_manifest(self.plan))
        await self.wait_for("each Site's children", self.children_exist, CHILDREN_TIMEOUT)
        await self.tune_paths()
        self.say("creating the Policies voice and bulk")
        for policy in policy_manifests(self.plan):
            await self.create(policy)

    async def exists(self, kind: ResourceKind, name: str) -> bool:
        try:
            await self.rest.get(kind, LAB_NAMESPACE, name)
        except NotFoundError:
            return False
        return True

    async def children_exist(self) -> bool:
        for site in self.plan.sites:
            names = child_names(site.name)
            wanted = (
                (SECRET, names.secret),
                (CONFIG_MAP, names.config_map),
                (SERVICE_ACCOUNT, names.service_account),
                (ROLE_BINDING, names.role_binding),
            )
            for kind, name in wanted:
                if not await self.exists(kind, name):
                    return False
        return True

    async def tune_paths(self) -> None:
        """Probe every second rather than the default ten, so impairments show within seconds."""
        names = mesh_path_names(self.plan)
        self.say(f"waiting for the Mesh's {len(names)} Paths; setting their probe interval to 1s")

        async def all_there() -> bool:
            return all([await self.exists(PATH, name) for name in names])

        await self.wait_for("the Mesh's Paths", all_there, CHILDREN_TIMEOUT)
        for name in names:
            await self.rest.patch_merge(PATH, LAB_NAMESPACE, name, {"spec": {"monitoring": PATH_MONITORING}})

    async def start_forwarders(self) -> None:
        self.say(f"forwarding {LISTEN_HOST}:{LISTEN_PORT} in each site to the API server")
        forwarder = Forwarder("127.0.0.1", self.control_plane.apiserver_port)
        self.stack.push_async_callback(forwarder.close)
        await forwarder.start(site.namespace for site in self.plan.sites)

    async def start_agents(self) -> None:
        self.stack.push_async_callback(self.agents.stop)
        admin = yaml.safe_load(self.control_plane.kubeconfig.read_text())
        for site in self.plan.sites:
            self.check_stop()
            account = child_names(site.name).service_account
            minted = await asyncio.to_thread(
                self.control_plane.kubectl, "create", "token", account, "-n", LAB_NAMESPACE, "--duration=24h"
            )
            token = minted.stdout.strip()
            path = self.files.agent_kubeconfig(site.name)
            write_atomic(path, yaml.safe_dump(agent_kubeconfig(admin, account, token)), 0o600)
            command = agent_command(self.plan, site.name, path)
            self.agents.start(site.name, command, self.files.agent_log(site.name))
        self.say(f"started {len(self.plan.sites)} agents (logs in {self.files.logs})")

    async def start_observability(self) -> None:
        self.say("starting Prometheus (scraping the operator and the agents) and the dashboard")
        assert self.operator is not None

        async def mint(account: str) -> str:
            minted = await asyncio.to_thread(
                self.control_plane.kubectl, "create", "token", account, "-n", LAB_NAMESPACE, "--duration=24h"
            )
            return minted.stdout.strip()

        self.urls = await observability.start(
            plan=self.plan,
            root=self.files.root,
            logs=self.files.logs,
            operator_metrics_port=self.operator.manager.options.metrics_port,
            admin=self.rest,
            admin_kubeconfig=self.control_plane.kubeconfig,
            namespace=LAB_NAMESPACE,
            mint_token=mint,
            stack=self.stack,
        )

    async def start_control(self) -> None:
        assert self.apiserver is not None
        server = await control.serve(self.files.control, {"apiserver": self.apiserver.handle})
        self.stack.push_async_callback(server.wait_closed)
        self.stack.callback(server.close)

    def write_ready(self) -> None:
        ready = {
            "pid": os.getpid(),
            "prefix": self.plan.prefix,
            "kubeconfig": str(self.files.kubeconfig),
            "namespace": LAB_NAMESPACE,
            "sites": [s.name for s in self.plan.sites],
            "apiserver": self.control_plane.url,
            "kubectl": str(self.control_plane.binaries.kubectl),
            "logs": str(self.files.logs),
            "prometheus": self.urls.prometheus if self.urls else None,
            "dashboard": self.urls.dashboard if self.urls else None,
            "seconds": round(time.monotonic() - self.say.started, 1),
        }
        write_atomic(self.files.ready, json.dumps(ready, indent=2) + "\n")
        self.say(f"ready in {ready['seconds']}s")

    async def run_until_stopped(self) -> int:
        """Watch the parts: agents are reported, a dead control plane or operator ends the lab (code 1)."""
        while not self.stopping.is_set():
            self.agents.check()
            dead = [p.pid for p in self.control_plane.processes() if p.poll() is not None]
            if dead and not (self.apiserver is not None and self.apiserver.switching):
                self.say(f"a control-plane component exited (pids {dead}); stopping the lab")
                return 1
            if self.operator is not None and self.operator.task.done():
                self.say("the operator stopped unexpectedly; stopping the lab")
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)
        return 0


def _const(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def wrapped() -> bool:
        return check()

    return wrapped
