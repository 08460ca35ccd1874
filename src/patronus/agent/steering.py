"""Where traffic goes, decided from path checks: each policy's path, and the path unmatched traffic takes.

Pure: :meth:`Steering.observe` returns what should change; the agent makes the kernel change and
confirms, so a change the kernel refused is proposed again at the next check.

- **Policies**: one :class:`~patronus.agent.failover.FailoverState` per policy (fast failover, failback
  after the cooldown). A configuration change keeps a policy's current choice while that path still
  exists, so editing a policy's QoS does not move its traffic back to the primary.
- **Unmatched traffic**: the main-table routes to a destination site start on the primary underlay; a
  destination moves to its healthiest path when the current one is down or another is clearly
  (:data:`UNMATCHED_MARGIN` points) healthier. A move is proposed until :meth:`Steering.commit_route`
  confirms it.
- Checks of a path that has never answered (state ``unknown``) are ignored: at start nothing is known
  yet, and acting on it would be a false alarm (:mod:`patronus.agent.path_monitor` turns a path that
  stays silent into ``down`` after its grace period).
"""

from __future__ import annotations

from dataclasses import dataclass

from patronus.agent.failover import Decision, FailoverPolicy, FailoverState, healthiest
from patronus.agent.probe_stats import CheckResult
from patronus.api.agentconfig import AgentConfig, PolicyConfig

UNMATCHED_MARGIN = 5.0
"""Health points another path must gain before unmatched traffic to a destination moves to it."""
_ANY_PATH = ""
"""The watcher key of policies without a primary path: every check concerns them."""


@dataclass(frozen=True)
class RouteChange:
    """Send unmatched traffic for ``cidrs`` (the destination site's prefixes) through ``interface``."""

    destination: str
    path: str
    interface: str
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class Steps:
    """What one check changes: policies to switch, main-table routes to move."""

    decisions: tuple[Decision, ...] = ()
    routes: tuple[RouteChange, ...] = ()


class Steering:
    """The decisions of one site's agent; :meth:`configure` with each configuration it applies."""

    def __init__(self) -> None:
        self._policies: dict[str, PolicyConfig] = {}
        self._failover: dict[str, FailoverState] = {}
        # Which failover states a path's checks concern: the policies naming it, and those without a
        # primary (they consider every path), so a check costs its own policies, not all of them.
        self._watchers: dict[str, list[FailoverState]] = {}
        self._by_destination: dict[str, list[str]] = {}  # destination site -> its paths
        self._path_route: dict[str, tuple[str, str]] = {}  # path -> (destination site, interface)
        self._peer_cidrs: dict[str, tuple[str, ...]] = {}  # destination site -> its prefixes
        self._primary_interface: str | None = None
        self._unmatched: dict[str, str] = {}  # destination site -> the path its main routes use
        self._latest: dict[str, CheckResult] = {}

    def configure(self, config: AgentConfig) -> None:
        """Take a new configuration; the main-table routes are assumed back on the primary underlay."""
        known_paths = {path.name for path in config.paths}
        failover: dict[str, FailoverState] = {}
        for policy in config.policies:
            previous = self._failover.get(policy.name)
            if previous is not None and self._policies.get(policy.name) == policy:
                failover[policy.name] = previous
                continue
            state = FailoverState(FailoverPolicy.from_config(policy))
            if previous is not None and previous.path_in_use in known_paths:
                state.path_in_use = previous.path_in_use
            failover[policy.name] = state
        self._failover = failover
        self._policies = {policy.name: policy for policy in config.policies}
        self._watchers = {}
        for state in failover.values():
            named = (state.policy.primary, state.policy.backup)
            for path in {p for p in named if p is not None} or {_ANY_PATH}:
                self._watchers.setdefault(path, []).append(state)
        self._path_route = {
            path.name: (path.destination, path.interface) for path in config.paths if path.interface
        }
        self._by_destination = {}
        for name, (destination, _interface) in self._path_route.items():
            self._by_destination.setdefault(destination, []).append(name)
        primary = config.interfaces[0] if config.interfaces else None
        self._primary_interface = primary.name if primary else None
        self._peer_cidrs = {peer.site: tuple(peer.allowed_ips) for peer in (primary.peers if primary else ())}
        self._unmatched = {}
        self._latest = {name: result for name, result in self._latest.items() if name in known_paths}

    # -- queries ------------------------------------------------------------------------------------

    @property
    def policies(self) -> list[str]:
        return list(self._policies)

    def policy(self, name: str) -> PolicyConfig | None:
        return self._policies.get(name)

    def primary(self, policy: str) -> str | None:
        config = self._policies.get(policy)
        return config.action.primary_path if config else None

    def unmatched_routes(self) -> dict[str, str]:
        """Prefix -> interface, for every destination whose unmatched traffic was moved off the primary."""
        routes = {}
        for destination, path in self._unmatched.items():
            interface = self._path_route[path][1] if path in self._path_route else None
            if interface is None or interface == self._primary_interface:
                continue
            for cidr in self._peer_cidrs.get(destination, ()):
                routes[cidr] = interface
        return routes

    def wanted_paths(self) -> dict[str, str | None]:
        """Policy -> the path its traffic should take now."""
        return {name: state.path_in_use for name, state in self._failover.items()}

    # -- decisions ----------------------------------------------------------------------------------

    def observe(self, path: str, result: CheckResult, now: float) -> Steps:
        """Take one (measured) check of ``path`` at monotonic time ``now``."""
        if result.state == "unknown":
            return Steps()
        self._latest[path] = result
        decisions = []
        for state in [*self._watchers.get(path, ()), *self._watchers.get(_ANY_PATH, ())]:
            decision = state.observe(path, result, now)
            if decision is not None and decision.previous != decision.path:
                decisions.append(decision)
        route = self._unmatched_change(path)
        return Steps(tuple(decisions), (route,) if route is not None else ())

    def commit_route(self, change: RouteChange) -> None:
        """The kernel now sends ``change.destination``'s unmatched traffic over ``change.path``."""
        self._unmatched[change.destination] = change.path

    def _unmatched_change(self, path: str) -> RouteChange | None:
        if path not in self._path_route:
            return None
        destination = self._path_route[path][0]
        candidates = {
            name: self._latest[name] for name in self._by_destination[destination] if name in self._latest
        }
        # Until moved, a destination's traffic is where the main table sends it: the primary's path. Judge
        # nothing before that path has answered, or whichever path reports first at start would win.
        current = self._unmatched.get(destination) or self._primary_path(destination)
        if current is None or current not in candidates:
            return None
        best = healthiest(candidates)
        if best is None or best == current:
            return None
        if (
            not candidates[current].is_down
            and candidates[best].health_score - candidates[current].health_score < UNMATCHED_MARGIN
        ):
            return None
        interface = self._path_route[best][1]
        return RouteChange(destination, best, interface, self._peer_cidrs.get(destination, ()))

    def _primary_path(self, destination: str) -> str | None:
        return next(
            (
                name
                for name in self._by_destination.get(destination, ())
                if self._path_route[name][1] == self._primary_interface
            ),
            None,
        )
