"""The lab supervisor: one long-running process that owns everything a running lab is made of.

``patronus lab up`` starts it detached (``patronus lab serve``) and waits for its ready file. In order it
builds the lab network and the delay relay, a real control plane with the CRDs, runs the operator in
its own event loop, declares the Sites, a full Mesh and two example Policies, then gives every site an
agent: a process inside the site's network namespace (and in its own mount namespace, because
wireguard-go keeps its control sockets in ``/var/run/wireguard`` and every site uses the same interface
names), with its own ServiceAccount token and a forwarder that makes the API server reachable on the
site's ``127.0.0.1:6443``.

Every step is registered for undoing the moment it has been done, on one exit stack, so SIGTERM, SIGINT
or a failure half-way all unwind the same way, in reverse: agents, forwarders, operator, control plane,
relay, network; then the state directory is removed except its ``logs``. An agent that fails is logged
and left alone: the lab is still useful (and testable) without one.

Once ready it answers requests on its control socket (:mod:`patronus.lab.control`): ``patronus lab
apiserver stop|start`` takes the API server away and brings it back while everything else runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import string
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from patronus.controlplane import processes
from patronus.controlplane.launcher import ControlPlane
from patronus.kube.crds import install_crds
from patronus.kube.errors import AlreadyExistsError, NotFoundError
from patronus.kube.resource import (
    CONFIG_MAP,
    MESH,
    PATH,
    POLICY,
    ROLE_BINDING,
    SECRET,
    SERVICE_ACCOUNT,
    SITE,
    ResourceKind,
)
from patronus.kube.rest import RestClient
from patronus.lab import control, network, observability
from patronus.lab.forwarder import LISTEN_HOST, LISTEN_PORT, Forwarder
from patronus.lab.impair import start_relay
from patronus.lab.plan import LabPlan, plan_lab
from patronus.operator.config import load_config
from patronus.operator.main import FIELD_MANAGER, manager_options
from patronus.operator.site.children import child_names
from patronus.operator.wiring import register
from patronus.runtime.logs import configure_logging
from patronus.runtime.manager import Manager
from patronus.topology.mesh import path_name

LAB_NAMESPACE = "lab"
MESH_NAME = "lab-mesh"
UNDERLAYS = ("fiber", "lte")
LISTEN_PORTS = {"fiber": 51820, "lte": 51821}
PATH_MONITORING = {"interval": "1s", "probesPerCheck": 5}
LAB_FIELD_MANAGER = "patronus-lab"
AGENT_STOP_TIMEOUT = 10.0
CHILDREN_TIMEOUT = 90.0
POLL_INTERVAL = 0.2


def lab_home() -> Path:
    """Where every lab keeps its files: ``$PATRONUS_CACHE/lab`` (default ``~/.cache/patronus/lab``)."""
    return Path(os.environ.get("PATRONUS_CACHE", Path.home() / ".cache" / "patronus")) / "lab"


@dataclass(frozen=True)
class LabFiles:
    """The files of one lab (one prefix), shared by the supervisor and the CLI so they agree on names."""

    root: Path

    @classmethod
    def for_prefix(cls, prefix: str) -> LabFiles:
        return cls(lab_home() / prefix)

    @property
    def pid(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def ready(self) -> Path:
        """Written last by the supervisor: the lab is up; holds the admin kubeconfig path and the sites."""
        return self.root / "ready.json"

    @property
    def plan(self) -> Path:
        """Written first: how to rebuild the plan (for ``impair``, and to clean up after a ``kill -9``)."""
        return self.root / "plan.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def control(self) -> Path:
        """The supervisor's control socket (in a directory only its owner may enter)."""
        return self.root / "control" / "supervisor.sock"

    @property
    def progress(self) -> Path:
        return self.root / "progress.log"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    def agent_kubeconfig(self, site: str) -> Path:
        return self.root / "agents" / f"{site}.kubeconfig"

    def agent_log(self, site: str) -> Path:
        return self.logs / f"agent-{site}.log"

    def relay_log(self) -> Path:
        return self.logs / "relay.log"

    def load_plan(self) -> LabPlan:
        """The saved plan; ``FileNotFoundError`` when no lab was started with this prefix."""
        saved = json.loads(self.plan.read_text())
        return plan_lab(saved["sites"], saved["underlays"], saved["prefix"])

    def save_plan(self, plan: LabPlan) -> None:
        data = {"prefix": plan.prefix, "sites": [s.name for s in plan.sites], "underlays": plan.underlays}
        _write_atomic(self.plan, json.dumps(data, indent=2) + "\n")

    def clean(self) -> None:
        """Remove everything but the logs, which are what one reads after a lab went wrong."""
        if not self.root.is_dir():
            return
        for entry in self.root.iterdir():
            if entry == self.logs:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Readers (the CLI polling for the ready file) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def site_names(count: int) -> list[str]:
    """``a``, ``b``, ``c`` ... then ``s27``, ``s28`` ...: short, since they appear in every Path name."""
    letters = string.ascii_lowercase
    return [letters[i] if i < len(letters) else f"s{i + 1}" for i in range(count)]


# -- manifests (pure) -----------------------------------------------------------------------------------


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": LAB_NAMESPACE}


def site_manifest(plan: LabPlan, site: str) -> dict[str, Any]:
    """A Site with no public key (the operator generates the pair) and one underlay per lab link."""
    endpoints = {u: plan.endpoint(site, u, LISTEN_PORTS[u]) for u in plan.underlays}
    return {
        "apiVersion": SITE.api_version,
        "kind": "Site",
        "metadata": _meta(site),
        "spec": {
            "location": f"lab namespace {plan.site(site).namespace}",
            "wireguard": {
                "listenPort": LISTEN_PORTS[plan.underlays[0]],
                "endpoints": list(endpoints.values()),
            },
            "underlays": [
                {"name": u, "endpoint": endpoints[u], "listenPort": LISTEN_PORTS[u]} for u in plan.underlays
            ],
            "subnets": [plan.site(site).lan_subnet],
        },
    }


def mesh_manifest(plan: LabPlan) -> dict[str, Any]:
    return {
        "apiVersion": MESH.api_version,
        "kind": "Mesh",
        "metadata": _meta(MESH_NAME),
        "spec": {"sites": [s.name for s in plan.sites], "topology": "full-mesh"},
    }


def mesh_path_names(plan: LabPlan) -> list[str]:
    """The Paths the full Mesh implies: every ordered pair of sites, every underlay."""
    names = [s.name for s in plan.sites]
    return [
        path_name(MESH_NAME, source, destination, underlay)
        for source in names
        for destination in names
        if source != destination
        for underlay in plan.underlays
    ]


def policy_manifests(plan: LabPlan) -> list[dict[str, Any]]:
    """Two examples enforced at the first site toward the second: voice with failover, bulk on LTE."""
    a, b = plan.sites[0].name, plan.sites[1].name

    def ref(underlay: str) -> dict[str, str]:
        return {"siteRef": a, "pathId": path_name(MESH_NAME, a, b, underlay)}

    voice = {
        "priority": 100,
        "match": {"protocol": "udp", "dstPortRange": "5060,10000-20000"},
        "action": {
            "type": "route",
            "primaryPath": ref("fiber"),
            "backupPath": ref("lte"),
            "qos": {"class": "realtime", "bandwidth": "20Mbps"},
        },
        "failover": {"threshold": 70, "cooldown": "10s"},
    }
    bulk = {
        "priority": 10,
        "match": {"protocol": "tcp", "dstPortRange": "873"},
        "action": {
            "type": "route",
            "primaryPath": ref("lte"),
            "qos": {"class": "bulk", "bandwidth": "10Mbps"},
        },
    }
    return [
        {"apiVersion": POLICY.api_version, "kind": "Policy", "metadata": _meta(name), "spec": spec}
        for name, spec in (("voice", voice), ("bulk", bulk))
    ]


def agent_kubeconfig(admin_kubeconfig: Mapping[str, Any], user: str, token: str) -> dict[str, Any]:
    """The admin kubeconfig's cluster (same CA), reached through the forwarder, with the agent's token."""
    config: dict[str, Any] = json.loads(json.dumps(admin_kubeconfig))  # a deep copy of plain data
    config["clusters"][0]["cluster"]["server"] = f"https://{LISTEN_HOST}:{LISTEN_PORT}"
    config["users"] = [{"name": user, "user": {"token": token}}]
    context = config["contexts"][0]["context"]
    context["user"] = user
    context["namespace"] = LAB_NAMESPACE
    return config


def agent_command(plan: LabPlan, site: str, kubeconfig: Path, python: str = sys.executable) -> list[str]:
    """The agent in the site's network namespace and a private mount namespace with its own wireguard dir,
    told the names the operator gave its ConfigMap and key Secret (its health and metrics ports are the
    defaults, inside the site's namespace)."""
    names = child_names(site)
    agent = shlex.join(
        [
            python, "-m", "patronus", "agent", "run", "--site", site, "--namespace", LAB_NAMESPACE,
            "--config-map", names.config_map, "--key-secret", names.secret, "--kubeconfig", str(kubeconfig),
        ]
    )  # fmt: skip
    inner = f"mkdir -p /var/run/wireguard && mount -t tmpfs tmpfs /var/run/wireguard && exec {agent}"
    return [
        "ip", "netns", "exec", plan.site(site).namespace,
        "unshare", "--mount", "--propagation", "private", "sh", "-c", inner,
    ]  # fmt: skip


# -- the running lab ----------------------------------------------------------------------------------


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


@dataclass
class Agents:
    """The agent processes, one per site; a failed one is reported once and not restarted."""

    say: Callable[[str], None]
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    def start(self, site: str, args: Sequence[str], log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.running[site] = processes.spawn(args, log, env=env)

    def check(self) -> None:
        for site, process in self.running.items():
            if process.poll() is not None and site not in self.reported:
                self.reported.add(site)
                self.say(f"agent {site} exited with code {process.returncode} (its log says why)")

    async def stop(self, timeout: float = AGENT_STOP_TIMEOUT) -> None:
        """SIGTERM to all at once (they tear down in parallel), then SIGKILL what is left after ``timeout``.

        Async on purpose: while the agents tear down they may still talk to the API server, through the
        forwarders that this same loop serves.
        """
        for process in self.running.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(p.poll() is None for p in self.running.values()):
            await asyncio.sleep(0.05)
        for process in self.running.values():
            processes.stop(process, timeout=1.0)
        self.running.clear()


@dataclass
class Operator:
    """The operator's manager running as a task of the supervisor's loop, with its two clients."""

    manager: Manager
    task: asyncio.Task[int]
    client: RestClient

    async def stop(self) -> None:
        self.manager.stop()
        try:
            await asyncio.wait_for(self.task, 60.0)
        except (Exception, asyncio.CancelledError):
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        finally:
            await self.client.close()


async def start_operator(kubeconfig: Path) -> Operator:
    """The operator as in production, but watching only the lab namespace and with no leader election."""
    config = load_config(
        {
            "WATCH_NAMESPACES": LAB_NAMESPACE,
            "LEADER_ELECTION_ENABLED": "false",
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(processes.free_port()),
            "HEALTH_PROBE_PORT": str(processes.free_port()),
            "POD_NAME": "lab-operator",
            "AGENT_IMAGE": "patronus-lab/agent:local",
            "RECONCILE_INTERVAL": "30s",
        }
    )
    client = RestClient.from_kubeconfig(kubeconfig, field_manager=FIELD_MANAGER)
    manager = Manager(manager_options(config), client)
    register(manager, config)
    task = asyncio.create_task(manager.run(install_signal_handlers=False), name="operator")
    return Operator(manager, task, client)


class Supervisor:
    """The steps of :func:`serve`, each small; ``stack`` holds the undo of every step already done."""

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
        _write_atomic(self.files.kubeconfig, plane.kubeconfig.read_text(), 0o600)
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
            _write_atomic(path, yaml.safe_dump(agent_kubeconfig(admin, account, token)), 0o600)
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
        _write_atomic(self.files.ready, json.dumps(ready, indent=2) + "\n")
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


async def _bring_up(supervisor: Supervisor) -> None:
    supervisor.build_network()
    supervisor.check_stop()
    await supervisor.start_control_plane()
    supervisor.check_stop()
    await supervisor.start_operator()
    await supervisor.declare()
    await supervisor.start_forwarders()
    await supervisor.start_agents()
    await supervisor.start_observability()
    await supervisor.start_control()
    supervisor.write_ready()


async def serve(sites: int = 3, prefix: str = "pl", state_dir: Path | None = None) -> int:
    """Run a lab of ``sites`` sites until SIGTERM or SIGINT; returns the exit code (0 after a clean stop).

    Whatever happens, on return nothing of the lab is left: no namespace, interface or process, and of
    the state directory only ``logs``.
    """
    if sites < 2:
        raise ValueError("a lab needs at least 2 sites (the example policies run from a to b)")
    files = LabFiles(state_dir) if state_dir is not None else LabFiles.for_prefix(prefix)
    files.logs.mkdir(parents=True, exist_ok=True)
    files.progress.unlink(missing_ok=True)
    files.ready.unlink(missing_ok=True)
    plan = plan_lab(site_names(sites), UNDERLAYS, prefix)
    files.save_plan(plan)
    _write_atomic(files.pid, f"{os.getpid()}\n")
    configure_logging("info", "console")
    loop = asyncio.get_running_loop()
    code = 0
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(files.clean)  # registered first, so it runs last
        supervisor = Supervisor(plan, files, stack)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stopping.set)
            stack.callback(loop.remove_signal_handler, signum)
        stack.callback(supervisor.say, "stopped; nothing of the lab is left")
        try:
            await _bring_up(supervisor)
            code = await supervisor.run_until_stopped()
        except Stopped:
            supervisor.say("stop requested while starting")
        except Exception as error:
            traceback.print_exc()
            supervisor.say(f"failed: {error}")
            code = 1
        finally:
            supervisor.say("stopping: agents, forwarders, operator, control plane, relay, network")
    return code
