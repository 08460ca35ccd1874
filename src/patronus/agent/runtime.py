"""The site agent: turns the rendered configuration into tunnels, routes and rules, probes every Path,
fails policies over, and reports.

Routing model: every underlay has a mark and a routing table that reaches all peers (their overlay
addresses and subnets) through that underlay's WireGuard interface. A Path is (destination, underlay), so
steering a policy to a Path means giving its packets that underlay's mark; failover is one nft map update.
Probes carry their path's mark (SO_MARK) so they measure the tunnel they stand for, and replies leave by the
tunnel the probe came in on (conntrack mark), so one underlay's failure never looks like another's.
Unmatched traffic follows the main table, through the primary underlay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from patronus.agent import keys as key_source
from patronus.agent.dataplane import cleanup, qos
from patronus.agent.dataplane.commands import CommandError, run
from patronus.agent.dataplane.routing import (
    PathRouting,
    RoutingPolicy,
    assign_path_marks,
    ensure_path_route,
    read_counters,
    route_table_for,
)
from patronus.agent.dataplane.wireguard import PeerSpec, WireGuardInterface
from patronus.agent.failover import Decision, FailoverPolicy, FailoverState, healthiest
from patronus.agent.probe_stats import CheckResult, PathState
from patronus.agent.prober import PathProber, ProbeResponder
from patronus.agent.reporter import StatusReporter
from patronus.api.agentconfig import parse_agent_config
from patronus.kube.errors import ApiError, NotFoundError
from patronus.kube.resource import CONFIG_MAP
from patronus.kube.rest import RestClient
from patronus.kube.timestamps import format_time
from patronus.runtime.clock import Clock, SystemClock
from patronus.runtime.informer import Informer
from patronus.runtime.logs import get_logger
from patronus.topology.health import health_score

log = get_logger(__name__)

PROBE_PORT = 51900
LOSS_WINDOW_PROBES = 100  # loss and health are judged over about this many recent probes
DEGRADED_BELOW = 70.0
UNMATCHED_MARGIN = 5.0  # health points another path must gain before unmatched traffic moves to it
HEARTBEAT_INTERVAL = 10.0  # the operator calls a site quiet after three missed beats
POLICY_REPORT_INTERVAL = 5.0
REPLY_TABLE = "patronus_replies"
DEFAULT_LINK_RATE_BPS = 10_000_000_000  # htb's root: effectively unlimited; classes carry the caps


@dataclass
class AgentOptions:
    site: str
    namespace: str
    probe_port: int = PROBE_PORT
    key_file: Path | None = None
    key_secret: str | None = None  # default: <site>-wireguard


@dataclass
class _ProberSpec:
    target: str
    mark: int
    interval: float
    probes: int


@dataclass
class _State:
    interfaces: dict[str, WireGuardInterface] = field(default_factory=dict)
    probers: dict[str, tuple[_ProberSpec, PathProber]] = field(default_factory=dict)
    failover: dict[str, FailoverState] = field(default_factory=dict)
    policy_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    path_underlay: dict[str, str] = field(default_factory=dict)
    main_routes: set[str] = field(default_factory=set)
    primary_interface: str | None = None
    reported: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    last_failover: dict[str, datetime] = field(default_factory=dict)
    loss_windows: dict[str, deque[tuple[int, int]]] = field(default_factory=dict)
    qos_applied: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)
    # Unmatched traffic: per destination site, the path its main-table routes use now.
    path_route: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (destination, interface)
    peer_cidrs: dict[str, list[str]] = field(default_factory=dict)
    unmatched_choice: dict[str, str] = field(default_factory=dict)
    latest: dict[str, CheckResult] = field(default_factory=dict)


class SiteAgent:
    def __init__(self, options: AgentOptions, rest: RestClient, *, clock: Clock | None = None) -> None:
        self.options = options
        self.rest = rest
        self.clock = clock or SystemClock()
        self.reporter = StatusReporter(rest, options.namespace, options.site, clock=self.clock)
        self.routing = PathRouting()
        self.state = _State()
        self._config_changed = asyncio.Event()
        self._config: dict[str, Any] | None = None
        self._private_key: str | None = None
        self._log = log.bind(site=options.site, namespace=options.namespace)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        informer = Informer(
            self.rest,
            CONFIG_MAP,
            self.options.namespace,
            field_selector=f"metadata.name={self.options.site}-agent",
        )
        informer.add_handler(self._on_config, lambda _old, new: self._on_config(new), None)
        responder = ProbeResponder("0.0.0.0", self.options.probe_port)
        await responder.start()
        tasks = [
            asyncio.create_task(informer.run(), name="config-informer"),
            asyncio.create_task(self._heartbeat_loop(stop), name="heartbeat"),
            asyncio.create_task(self._policy_report_loop(stop), name="policy-report"),
        ]
        self._log.info("agent started", probe_port=responder.port)
        try:
            while not stop.is_set():
                waiter = asyncio.create_task(self._config_changed.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if stop.is_set():
                    break
                self._config_changed.clear()
                if self._config is not None:
                    try:
                        await self.apply(self._config)
                    except (CommandError, ApiError, key_source.KeyUnavailable, OSError) as error:
                        self._log.warning("could not apply the configuration; retrying", error=str(error))
                        await asyncio.sleep(2)
                        self._config_changed.set()
        finally:
            informer.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            responder.stop()
            await self.teardown()
            self._log.info("agent stopped")

    def _on_config(self, obj: dict[str, Any]) -> None:
        try:
            parsed = parse_agent_config((obj.get("data") or {})["config.json"])
        except (KeyError, ValueError) as error:
            self._log.warning("ignoring an unreadable configuration", error=str(error))
            return
        self._config = parsed.model_dump(mode="json", by_alias=True)
        self._config_changed.set()

    async def teardown(self) -> None:
        for _spec, prober in self.state.probers.values():
            await prober.stop()
        self.state.probers.clear()
        interfaces = list(self.state.interfaces)
        await asyncio.to_thread(cleanup.teardown, None, interfaces)
        await asyncio.to_thread(run, ["nft", "delete", "table", "inet", REPLY_TABLE], check=False)
        self.state.interfaces.clear()

    # -- applying the configuration ---------------------------------------------------------------

    async def _key(self) -> str:
        if self._private_key is None:
            if self.options.key_file is not None:
                self._private_key = key_source.key_from_file(self.options.key_file)
            else:
                secret = self.options.key_secret or f"{self.options.site}-wireguard"
                try:
                    self._private_key = await key_source.key_from_secret(
                        self.rest, self.options.namespace, secret
                    )
                except NotFoundError as error:
                    raise key_source.KeyUnavailable(f"Secret {secret} not found yet") from error
        return self._private_key

    async def apply(self, config: dict[str, Any]) -> None:
        """Converge the data plane on ``config``; what is already right is left alone (tunnels stay up)."""
        private_key = await self._key()
        overlay = config.get("overlayAddress")
        if not overlay:
            raise key_source.KeyUnavailable("no overlay address assigned yet")
        interfaces = config.get("interfaces") or []
        marks = assign_path_marks([iface["underlay"] for iface in interfaces])
        for iface in interfaces:
            await asyncio.to_thread(
                self._ensure_interface, iface, overlay, private_key, marks[iface["underlay"]]
            )
        for gone in set(self.state.interfaces) - {iface["name"] for iface in interfaces}:
            await asyncio.to_thread(self.state.interfaces.pop(gone).remove)
        if interfaces:
            await asyncio.to_thread(self._main_routes, interfaces[0])
        await asyncio.to_thread(self._reply_marking, interfaces, marks)

        paths = {p["name"]: p for p in config.get("paths") or []}
        self.state.path_underlay = {name: p["underlay"] for name, p in paths.items()}
        self.state.path_route = {
            name: (str(p["destination"]), str(p["interface"]))
            for name, p in paths.items()
            if p.get("interface")
        }
        self.state.peer_cidrs = {
            str(peer["site"]): list(peer.get("allowedIPs") or [])
            for iface in interfaces[:1]
            for peer in iface.get("peers") or []
        }
        self.state.unmatched_choice = {}  # the main routes were just reset to the primary underlay
        await self._sync_probers(paths, marks, overlay)
        self._sync_policies(config.get("policies") or [])
        path_marks = {name: marks[p["underlay"]] for name, p in paths.items() if p["underlay"] in marks}
        await asyncio.to_thread(self._apply_routing, path_marks, [iface["name"] for iface in interfaces])
        self._log.info(
            "configuration applied",
            interfaces=len(interfaces),
            paths=len(paths),
            policies=len(self.state.policy_configs),
        )

    def _ensure_interface(self, iface: dict[str, Any], overlay: str, private_key: str, mark: int) -> None:
        name = iface["name"]
        wg = self.state.interfaces.get(name)
        if wg is None:
            wg = WireGuardInterface(
                name, listen_port=int(iface["listenPort"]), address=f"{overlay}/32", private_key=private_key
            )
            self.state.interfaces[name] = wg
        wg.ensure()
        peers = [PeerSpec.from_config(peer) for peer in iface.get("peers") or []]
        wg.sync_peers(peers)
        destinations = sorted(
            {cidr for peer in iface.get("peers") or [] for cidr in peer.get("allowedIPs") or []}
        )
        if destinations:
            ensure_path_route(iface["underlay"], mark, route_table_for(mark), name, destinations)

    def _main_routes(self, primary: dict[str, Any]) -> None:
        """Unmarked traffic to any peer goes through the primary underlay's tunnel."""
        wanted = {cidr for peer in primary.get("peers") or [] for cidr in peer.get("allowedIPs") or []}
        for cidr in sorted(wanted):
            run(["ip", "route", "replace", cidr, "dev", primary["name"]])
        for cidr in sorted(self.state.main_routes - wanted):
            run(["ip", "route", "del", cidr], check=False)
        self.state.main_routes = wanted
        self.state.primary_interface = primary["name"]

    def _reply_marking(self, interfaces: list[dict[str, Any]], marks: dict[str, int]) -> None:
        """Answer a probe through the tunnel it arrived on: remember the tunnel in conntrack, mark replies."""
        lines = [
            f"table inet {REPLY_TABLE}",
            f"delete table inet {REPLY_TABLE}",
            f"table inet {REPLY_TABLE} {{",
            "\tchain input {",
            "\t\ttype filter hook input priority mangle; policy accept;",
        ]
        for iface in interfaces:
            lines.append(f'\t\tiifname "{iface["name"]}" ct mark set {hex(marks[iface["underlay"]])}')
        lines += ["\t}", "\tchain output {", "\t\ttype route hook output priority mangle; policy accept;"]
        for iface in interfaces:
            mark = hex(marks[iface["underlay"]])
            lines.append(f"\t\tmeta mark 0 ct mark {mark} meta mark set {mark}")
        # Forwarded flows too: a flow a peer opened over lte gets its replies back over lte, not over the
        # primary (which may be the very link that failed and made the peer move to lte).
        tunnels = ", ".join(f'"{iface["name"]}"' for iface in interfaces) or '"-"'
        lines += [
            "\t}",
            "\tchain prerouting {",
            "\t\ttype filter hook prerouting priority mangle - 10; policy accept;",
        ]
        for iface in interfaces:
            lines.append(
                f'\t\tiifname "{iface["name"]}" ct state new ct mark set {hex(marks[iface["underlay"]])}'
            )
        for iface in interfaces:
            mark = hex(marks[iface["underlay"]])
            lines.append(f"\t\tiifname != {{ {tunnels} }} meta mark 0 ct mark {mark} meta mark set {mark}")
        lines += ["\t}", "}"]
        run(["nft", "-f", "-"], input="\n".join(lines) + "\n")

    async def _sync_probers(
        self, paths: dict[str, dict[str, Any]], marks: dict[str, int], overlay: str
    ) -> None:
        wanted: dict[str, _ProberSpec] = {}
        for name, path in paths.items():
            monitoring = path.get("monitoring") or {}
            target = path.get("destinationAddress")
            if not monitoring.get("enabled", True) or not target or path["underlay"] not in marks:
                continue
            wanted[name] = _ProberSpec(
                str(target).split("/")[0],
                marks[path["underlay"]],
                float(monitoring.get("intervalSeconds") or 10),
                int(monitoring.get("probesPerCheck") or 5),
            )
        for name in list(self.state.probers):
            spec, prober = self.state.probers[name]
            if wanted.get(name) != spec:
                await prober.stop()
                del self.state.probers[name]
        for name, spec in wanted.items():
            if name in self.state.probers:
                continue
            prober = PathProber(
                name,
                spec.target,
                self.options.probe_port,
                interval=spec.interval,
                probes_per_check=spec.probes,
                on_check=self._on_check,
                clock=self.clock,
                source_host=overlay,
                mark=spec.mark,
            )
            await prober.start()
            self.state.probers[name] = (spec, prober)

    def _sync_policies(self, policies: list[dict[str, Any]]) -> None:
        configs = {p["name"]: p for p in policies}
        for name, policy in configs.items():
            if self.state.policy_configs.get(name) != policy or name not in self.state.failover:
                previous = self.state.failover.get(name)
                state = FailoverState(FailoverPolicy.from_config(policy))
                if previous is not None and previous.path_in_use in self.state.path_underlay:
                    state.path_in_use = previous.path_in_use  # keep the current choice across config edits
                self.state.failover[name] = state
        for gone in set(self.state.failover) - set(configs):
            del self.state.failover[gone]
        self.state.policy_configs = configs

    def _apply_routing(self, path_marks: dict[str, int], interfaces: list[str]) -> None:
        # A policy whose path has no mark (no tunnel for it yet) is installed unrouted: counted, not steered.
        policies = []
        for name, config in self.state.policy_configs.items():
            path = self._path_in_use(name, config)
            policies.append(RoutingPolicy.from_config(config, path=path if path in path_marks else None))
        minors = qos.class_minors([p.name for p in policies])
        self.routing.apply(policies, path_marks, priorities=minors)
        classes = [
            (p.name, p.qos_class or "default", int(p.bandwidth_bps)) for p in policies if p.bandwidth_bps
        ]
        for name in interfaces:
            # Only when the classes change: htb refuses a `replace` of its root with new parameters, and
            # rebuilding queues on every unrelated configuration change would reset them for nothing.
            if self.state.qos_applied.get(name) == classes:
                continue
            qos.clear(name)
            if classes:
                qos.apply_htb(name, classes, DEFAULT_LINK_RATE_BPS)
            self.state.qos_applied[name] = classes

    def _path_in_use(self, name: str, config: dict[str, Any]) -> str | None:
        state = self.state.failover.get(name)
        if state is not None and state.path_in_use:
            return state.path_in_use
        return (config.get("action") or {}).get("primaryPath")

    # -- measurements and decisions ---------------------------------------------------------------

    def _smoothed(self, path: str, result: CheckResult) -> CheckResult:
        """The check with loss (and so health) over the last LOSS_WINDOW_PROBES probes.

        One lost probe of five is 20 % loss for that check, a health of about 45: failing voice over on a
        single lost packet would flap it for nothing. A whole check lost still means down at once.
        """
        window = self.state.loss_windows.setdefault(path, deque())
        window.append((result.sent, result.received))
        while sum(sent for sent, _ in window) - window[0][0] >= LOSS_WINDOW_PROBES:
            window.popleft()
        sent = sum(s for s, _ in window)
        received = sum(r for _, r in window)
        loss = 100.0 * (sent - received) / sent if sent else result.loss_pct
        health = health_score(result.latency_ms or 0.0, result.jitter_ms or 0.0, loss)
        state: PathState = "down" if result.received == 0 else "degraded" if health < DEGRADED_BELOW else "up"
        return replace(result, loss_pct=loss, health_score=0.0 if state == "down" else health, state=state)

    def _steer_unmatched(self, path: str, result: CheckResult) -> list[list[str]]:
        """The main-table routes to change so that a destination's unmatched traffic uses its healthiest
        path; a path is left only when it is down or another is clearly (5 points) healthier."""
        self.state.latest[path] = result
        if path not in self.state.path_route:
            return []
        destination = self.state.path_route[path][0]
        candidates = {
            name: self.state.latest[name]
            for name, (dest, _iface) in self.state.path_route.items()
            if dest == destination and name in self.state.latest
        }
        current = self.state.unmatched_choice.get(destination)
        best = healthiest(candidates)
        if best is None or best == current:
            return []
        if (
            current in candidates
            and not candidates[current].is_down
            and candidates[best].health_score - candidates[current].health_score < UNMATCHED_MARGIN
        ):
            return []
        if current is None and self._primary_interface_path(destination) == best:
            self.state.unmatched_choice[destination] = best  # already where the main table sends it
            return []
        self.state.unmatched_choice[destination] = best
        interface = self.state.path_route[best][1]
        return [
            ["ip", "route", "replace", cidr, "dev", interface]
            for cidr in self.state.peer_cidrs.get(destination, [])
        ]

    def _primary_interface_path(self, destination: str) -> str | None:
        return next(
            (
                name
                for name, (dest, iface) in self.state.path_route.items()
                if dest == destination and iface == self.state.primary_interface
            ),
            None,
        )

    async def _on_check(self, path: str, raw: CheckResult) -> None:
        result = self._smoothed(path, raw)
        for command in self._steer_unmatched(path, result):
            try:
                await asyncio.to_thread(run, command)
            except CommandError as error:
                self._log.warning("could not steer unmatched traffic", path=path, error=str(error))
        now = self.clock.monotonic()
        for name, state in self.state.failover.items():
            decision = state.observe(path, result, now)
            if decision is not None and decision.previous != decision.path:
                await self._switch(name, decision)
        try:
            await self.reporter.path_check(path, result)
        except ApiError as error:
            self._log.warning("could not report a path check", path=path, error=str(error))

    async def _switch(self, policy: str, decision: Decision) -> None:
        if decision.path is None:
            return
        try:
            await asyncio.to_thread(self.routing.switch, policy, decision.path)
        except (KeyError, CommandError) as error:
            self._log.warning("could not switch a policy's path", policy=policy, error=str(error))
            return
        self.state.last_failover[policy] = self.clock.now()
        self._log.info(
            "policy switched path",
            policy=policy,
            previous=decision.previous,
            path=decision.path,
            reason=decision.reason,
        )
        # Status first: it is what `kubectl get policies -w` shows; the Event is the history.
        await self._report_policy(policy, force=True)
        await self._event(
            policy,
            "PolicyFailover" if decision.path != self._primary(policy) else "PolicyFailback",
            f"traffic moved from {decision.previous} to {decision.path}: {decision.reason}",
        )

    def _primary(self, policy: str) -> str | None:
        return (self.state.policy_configs.get(policy, {}).get("action") or {}).get("primaryPath")

    async def _event(self, policy: str, reason: str, message: str) -> None:
        now = format_time(self.clock.now())
        try:
            await self.rest.create(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"generateName": f"{policy}.", "namespace": self.options.namespace},
                    "involvedObject": {
                        "apiVersion": "sdwan.patronus.dev/v1alpha1",
                        "kind": "Policy",
                        "name": policy,
                        "namespace": self.options.namespace,
                    },
                    "reason": reason,
                    "message": message,
                    "type": "Normal" if reason == "PolicyFailback" else "Warning",
                    "source": {"component": "patronus-agent", "host": self.options.site},
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                }
            )
        except ApiError as error:
            self._log.warning("could not record an event", reason=reason, error=str(error))

    async def _report_policy(self, policy: str, *, force: bool = False, counters: Any = None) -> None:
        state = self.state.failover.get(policy)
        if state is None:
            return
        packets_bytes_flows = counters.get(policy) if counters else None
        flows = int(packets_bytes_flows.new_flows) if packets_bytes_flows else 0
        routed = int(packets_bytes_flows.bytes) if packets_bytes_flows else 0
        snapshot = (state.path_in_use, flows, routed, state.failover_count)
        if not force and self.state.reported.get(policy) == snapshot:
            return
        try:
            await self.reporter.policy(
                policy,
                path_in_use=state.path_in_use or self._primary(policy),
                matched_flows=flows,
                bytes_routed=routed,
                failover_count=state.failover_count,
                last_failover=self.state.last_failover.get(policy),
            )
            self.state.reported[policy] = snapshot
        except ApiError as error:
            self._log.warning("could not report a policy", policy=policy, error=str(error))

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.reporter.heartbeat()
            except ApiError as error:
                self._log.warning("heartbeat failed", error=str(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL)

    async def _policy_report_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLICY_REPORT_INTERVAL)
            if not self.state.policy_configs:
                continue
            try:
                counters = await asyncio.to_thread(read_counters)
            except CommandError:
                counters = {}
            for policy in list(self.state.failover):
                await self._report_policy(policy, counters=counters)
