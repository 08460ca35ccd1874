"""The kernel side of one site: make the data plane match a :class:`~patronus.agent.desired.DataPlanePlan`,
switch a policy's path, move unmatched traffic, read counters, and tear everything down.

Each operation runs its commands (``ip``, ``wg``, ``nft``, ``tc`` through a
:class:`~patronus.agent.dataplane.commands.Runner`) in a worker thread, so the event loop keeps probing
while the kernel is changed. Applies run one at a time; a failover waits only for what it touches (the
policy table while it is rendered, the main routes while they are set), never for a whole apply, so a
periodic resync cannot hold up a failover. Reading counters waits for nothing.

Applying is idempotent: interfaces and peers are synced incrementally, routes replaced, and the policy
table and the htb classes are rebuilt only when what they are made of changed (rebuilding the table
would reset its counters, rebuilding qdiscs their queues), or when the table has gone missing. So the
agent can apply the same plan again on a timer to repair drift.

:attr:`DataPlane.kernel_paths` is the truth about each policy's path: what the ``policy_path`` map holds
after the last successful render or switch, never what was only intended.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from patronus.agent.dataplane import cleanup, qos, validate
from patronus.agent.dataplane.commands import CommandError, Runner, run
from patronus.agent.dataplane.peersync import PeerFailure, PeerSyncResult, Resolver, resolve
from patronus.agent.dataplane.routing import (
    TABLE_NAME,
    PathRouting,
    PolicyCounters,
    apply_nftables,
    ensure_path_route,
    read_counters,
    route_table_for,
)
from patronus.agent.dataplane.wireguard import PeerCounters, WireGuardInterface
from patronus.agent.desired import REPLY_TABLE, DataPlanePlan, qos_minors, routing_policies
from patronus.agent.steering import RouteChange
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

DEFAULT_LINK_RATE_BPS = 10_000_000_000
"""htb's root rate: effectively unlimited; the policy classes carry the caps."""

T = TypeVar("T")


@dataclass(frozen=True)
class CounterSample:
    """The kernel's counters at one moment: per policy (nft) and per WireGuard peer (interface, key)."""

    policies: Mapping[str, PolicyCounters] = field(default_factory=dict)
    peers: Mapping[tuple[str, str], PeerCounters] = field(default_factory=dict)


class DataPlane:
    """Applies plans and single changes to the kernel; see the module docstring."""

    def __init__(
        self,
        *,
        runner: Runner = run,
        netns: str | None = None,
        clock: Clock | None = None,
        resolver: Resolver = resolve,
    ) -> None:
        """``clock`` times the peers' retries (``peers_due`` is on its monotonic scale); ``resolver``
        turns endpoint host names into addresses."""
        self.netns = netns
        self._run = runner
        self._clock = clock or SystemClock()
        self._resolver = resolver
        self._apply_lock = asyncio.Lock()
        self._table_lock = threading.Lock()  # the nft policy table: full renders and switches
        self._routes_lock = threading.Lock()  # the main-table routes of unmatched traffic
        self.routing = PathRouting(netns, runner=runner)
        self.interfaces: dict[str, WireGuardInterface] = {}
        self.kernel_paths: dict[str, str | None] = {}
        self.plan: DataPlanePlan | None = None
        """The last plan applied in full."""
        self._main_routes: set[str] = set()
        self._routing_inputs: Any = None
        self._qos_applied: dict[str, list[qos.QosEntry]] = {}
        self._peer_syncs: dict[str, PeerSyncResult] = {}  # interface -> its last peer sync

    @property
    def peer_failures(self) -> dict[str, PeerFailure]:
        """Peers that could not be applied (one bad peer never blocks the others), by public key."""
        return {key: f for result in self._peer_syncs.values() for key, f in result.failed.items()}

    @property
    def peers_due(self) -> float | None:
        """When (monotonic) a failed peer is to be tried again or a host name resolved again; None: never."""
        due = [r.next_due for r in self._peer_syncs.values() if r.next_due is not None]
        return min(due) if due else None

    async def _serialized(self, work: Callable[[], T]) -> T:
        async with self._apply_lock:
            return await asyncio.to_thread(work)

    # -- operations ---------------------------------------------------------------------------------

    async def apply(
        self,
        plan: DataPlanePlan,
        private_key: str,
        paths: Mapping[str, str | None],
        unmatched: Mapping[str, str] | None = None,
    ) -> None:
        """Converge on ``plan``, each policy on ``paths[policy]``, unmatched traffic to a prefix through
        ``unmatched[prefix]`` (an interface; default the primary). Raises CommandError on the first failure
        (what was done stays done; applying again continues from there)."""
        await self._serialized(lambda: self._apply(plan, private_key, paths, unmatched or {}))

    async def resync_peers(self) -> None:
        """Retry failed peers whose backoff is over and re-resolve host names that are due, without a
        whole apply."""
        await self._serialized(self._resync_peers)

    async def switch(self, policy: str, path: str) -> None:
        """Point ``policy`` at ``path`` (one atomic nft map update); CommandError or KeyError if not."""
        await asyncio.to_thread(self._switch, policy, path)

    async def route_unmatched(self, change: RouteChange) -> None:
        """Send the destination's unmatched traffic through ``change.interface``."""
        await asyncio.to_thread(self._route, change)

    async def set_main_routes(self, plan: DataPlanePlan, unmatched: Mapping[str, str]) -> None:
        """Set the main-table routes of ``plan`` again, with ``unmatched`` moves."""
        await asyncio.to_thread(self._set_main_routes, plan, unmatched)

    async def counters(self) -> CounterSample:
        """Per-policy and per-peer counters; a part that cannot be read is left out."""
        return await asyncio.to_thread(self._counters)

    async def teardown(self, extra_interfaces: Iterable[str] = ()) -> list[str]:
        """Remove our interfaces (also ``extra_interfaces``: ones a previous run left), rules, tables and
        qdiscs; the interface names it removed (or found already gone). Safe on a half-built or already
        clean state."""
        names = sorted(set(self.interfaces) | set(extra_interfaces))
        await self._serialized(lambda: self._teardown(names))
        return names

    # -- the work, in a worker thread -----------------------------------------------------------------

    def _apply(
        self,
        plan: DataPlanePlan,
        private_key: str,
        paths: Mapping[str, str | None],
        unmatched: Mapping[str, str],
    ) -> None:
        for iface in plan.interfaces:
            wg = self.interfaces.get(iface.name)
            if wg is None:
                wg = WireGuardInterface(
                    iface.name,
                    listen_port=iface.listen_port,
                    private_key=private_key,
                    netns=self.netns,
                    runner=self._run,
                    clock=self._clock,
                    resolver=self._resolver,
                )
                self.interfaces[iface.name] = wg
            wg.listen_port, wg.address = iface.listen_port, f"{plan.overlay}/32"
            wg.ensure()
            self._peer_syncs[iface.name] = wg.sync_peers(iface.peers)
            if iface.destinations:
                table = route_table_for(iface.mark)
                ensure_path_route(
                    iface.underlay, iface.mark, table, iface.name, iface.destinations,
                    netns=self.netns, runner=self._run,
                )  # fmt: skip
        for gone in sorted(set(self.interfaces) - set(plan.interface_names)):
            self.interfaces.pop(gone).remove()
            self._peer_syncs.pop(gone, None)
        self._set_main_routes(plan, unmatched)
        apply_nftables(plan.reply_script, self.netns, self._run)
        self._apply_policies(plan, paths)
        self.plan = plan

    def _resync_peers(self) -> None:
        for name, wg in list(self.interfaces.items()):
            self._peer_syncs[name] = wg.resync()

    def _set_main_routes(self, plan: DataPlanePlan, unmatched: Mapping[str, str]) -> None:
        """Unmarked traffic to any peer goes through the primary underlay's tunnel, or where the steering
        moved it."""
        wanted = set(plan.main_routes)
        primary = plan.primary_interface
        with self._routes_lock:
            if primary is not None:
                for cidr in sorted(wanted):
                    device = validate.interface(unmatched.get(cidr, primary))
                    self._run(
                        ["ip", "route", "replace", validate.cidr(cidr), "dev", device], netns=self.netns
                    )
            for cidr in sorted(self._main_routes - wanted):
                self._run(["ip", "route", "del", validate.cidr(cidr)], netns=self.netns, check=False)
            self._main_routes = wanted

    def _table_present(self) -> bool:
        listed = self._run(["nft", "list", "tables"], netns=self.netns, check=False)
        return f"table inet {TABLE_NAME}" in listed.stdout.splitlines()

    def _apply_policies(self, plan: DataPlanePlan, paths: Mapping[str, str | None]) -> None:
        minors = qos_minors(plan)
        ports = sorted({iface.listen_port for iface in plan.interfaces})
        inputs = (plan.policies, dict(plan.path_marks), minors, ports)
        with self._table_lock:
            if inputs != self._routing_inputs or not self._table_present():
                policies = routing_policies(plan, paths)
                self.routing.apply(policies, plan.path_marks, priorities=minors, tunnel_ports=ports)
                self._routing_inputs = inputs
                self.kernel_paths = {p.name: p.path for p in policies}
        classes = sorted(plan.shaped)
        for name in plan.interface_names:
            # Only when the classes change: htb refuses a `replace` of its root with new parameters, and
            # rebuilding queues on every unrelated configuration change would reset them for nothing.
            if self._qos_applied.get(name) == classes:
                continue
            qos.clear(name, self.netns, self._run)
            if classes:
                qos.apply_htb(name, classes, DEFAULT_LINK_RATE_BPS, self.netns, self._run)
            self._qos_applied[name] = classes

    def _switch(self, policy: str, path: str) -> None:
        with self._table_lock:
            self.routing.switch(policy, path)
            self.kernel_paths[policy] = path

    def _route(self, change: RouteChange) -> None:
        with self._routes_lock:
            device = validate.interface(change.interface)
            for cidr in change.cidrs:
                self._run(["ip", "route", "replace", validate.cidr(cidr), "dev", device], netns=self.netns)

    def _counters(self) -> CounterSample:
        policies = read_counters(self.netns, runner=self._run)
        peers: dict[tuple[str, str], PeerCounters] = {}
        for name, wg in list(self.interfaces.items()):  # an apply may change the dict meanwhile
            try:
                for key, counters in wg.counters().items():
                    peers[(name, key)] = counters
            except (CommandError, ValueError) as error:
                log.debug("could not read a tunnel's counters", interface=name, error=str(error))
        return CounterSample(policies, peers)

    def _teardown(self, names: list[str]) -> None:
        with self._table_lock, self._routes_lock:
            cleanup.teardown(self.netns, names, runner=self._run)
            self._run(["nft", "delete", "table", "inet", REPLY_TABLE], netns=self.netns, check=False)
            self.interfaces.clear()
            self.kernel_paths.clear()
            self._main_routes.clear()
            self._routing_inputs = None
            self._qos_applied.clear()
            self._peer_syncs.clear()
            self.plan = None
