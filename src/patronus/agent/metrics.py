"""The agent's Prometheus exporter: its paths, policies, WireGuard peers and its own health.

On a private registry (:attr:`AgentMetrics.registry`), served on ``/metrics`` of the agent's metrics port.
Base units (seconds, bytes, ratios 0-1), ``_total`` counters, labels ``site``, ``path``, ``underlay``,
``destination``, ``policy``, ``peer`` (the peer site), ``interface``:

=================================================================  =========  ==============================
Series                                                             Type       What
=================================================================  =========  ==============================
``patronus_path_latency_seconds``                                  gauge      mean round trip, last check
``patronus_path_jitter_seconds``                                   gauge      mean successive RTT difference
``patronus_path_loss_ratio``                                       gauge      lost probes over the loss window
``patronus_path_health_score``                                     gauge      0-100 (E-model)
``patronus_path_state{state}``                                     gauge      1 for the current state
``patronus_path_probe_rtt_seconds``                                histogram  every answered probe
``patronus_path_probes_sent_total`` / ``_probes_lost_total``       counter    probes sent / lost
``patronus_policy_path_in_use{path}``                              gauge      1 for the kernel's path
``patronus_policy_failovers_total``                                counter    moves away from the primary
``patronus_policy_switch_errors_total``                            counter    switches the kernel refused
``patronus_policy_matched_bytes_total`` / ``_matched_flows_total``  counter    nftables counters
``patronus_wireguard_peer_receive_bytes_total`` / ``_transmit_``   counter    per peer and tunnel
``patronus_wireguard_peer_last_handshake_timestamp_seconds``       gauge      Unix time, 0 = never
``patronus_wireguard_peer_handshake_age_seconds``                  gauge      since the last handshake
``patronus_agent_info{version}``                                   gauge      1
``patronus_agent_config_info{digest}``                             gauge      1 for the running config
``patronus_agent_config_applied_timestamp_seconds``                gauge      last successful apply
``patronus_agent_config_applies_total{result}``                    counter    success / error
``patronus_agent_config_refused``                                  gauge      1 while the newest is refused
``patronus_agent_dataplane_error``                                 gauge      1 while the kernel lags
``patronus_agent_report_queue_length``                             gauge      reports waiting
``patronus_agent_reports_written_total`` / ``_failed_`` / ``_dropped_``  counter    status writes
``patronus_agent_task_restarts_total{task}``                       counter    supervised restarts
=================================================================  =========  ==============================

Values that live elsewhere (the latest checks, the kernel's counters, the report queue) are read when
Prometheus scrapes (:class:`SnapshotCollector`), from a :class:`Snapshot` the agent assembles in memory:
a scrape never runs a command or calls the API.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from patronus.agent.probe_stats import CheckResult

RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
STATES = ("up", "degraded", "down", "unknown")
PATH_LABELS = ["site", "path", "underlay", "destination"]


@dataclass(frozen=True)
class PathView:
    name: str
    underlay: str
    destination: str
    result: CheckResult | None


@dataclass(frozen=True)
class PolicyView:
    name: str
    path_in_use: str | None
    matched_bytes: int
    matched_flows: int


@dataclass(frozen=True)
class PeerView:
    interface: str
    underlay: str
    peer: str
    receive_bytes: int
    transmit_bytes: int
    last_handshake: int


@dataclass(frozen=True)
class Snapshot:
    """What the agent knows right now, for one scrape."""

    now: float = 0.0
    """Unix time of the scrape."""
    paths: list[PathView] = field(default_factory=list)
    policies: list[PolicyView] = field(default_factory=list)
    peers: list[PeerView] = field(default_factory=list)
    config_digest: str | None = None
    config_applied_at: float | None = None
    config_refused: bool = False
    dataplane_error: bool = False
    report_backlog: int = 0
    reports_written: int = 0
    reports_failed: int = 0
    reports_dropped: int = 0


class AgentMetrics:
    """The agent's metrics; call the ``observe_*`` methods as things happen."""

    def __init__(self, site: str, version: str, snapshot: Callable[[], Snapshot] = Snapshot) -> None:
        self.site = site
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.probe_rtt = Histogram(
            "patronus_path_probe_rtt_seconds", "Round trip of every answered probe.", PATH_LABELS,
            buckets=RTT_BUCKETS, registry=r,
        )  # fmt: skip
        self.probes_sent = Counter("patronus_path_probes_sent_total", "Probes sent.", PATH_LABELS, registry=r)
        self.probes_lost = Counter(
            "patronus_path_probes_lost_total", "Probes not answered in time.", PATH_LABELS, registry=r
        )
        policy = ["site", "policy"]
        self.failovers = Counter(
            "patronus_policy_failovers_total", "Moves of a policy away from its primary path.", policy,
            registry=r,
        )  # fmt: skip
        self.switch_errors = Counter(
            "patronus_policy_switch_errors_total", "Policy switches the kernel refused (retried).", policy,
            registry=r,
        )  # fmt: skip
        self.config_applies = Counter(
            "patronus_agent_config_applies_total", "Attempts to apply the configuration, by result.",
            ["site", "result"], registry=r,
        )  # fmt: skip
        self.task_restarts = Counter(
            "patronus_agent_task_restarts_total", "Supervised background tasks restarted after they ended.",
            ["site", "task"], registry=r,
        )  # fmt: skip
        info = Gauge("patronus_agent_info", "The agent's release.", ["site", "version"], registry=r)
        info.labels(site, version).set(1)
        r.register(SnapshotCollector(site, snapshot))
        self._paths: dict[str, tuple[str, str]] = {}  # path -> (underlay, destination) it was seen with
        self._policies: set[str] = set()

    def observe_check(self, path: str, underlay: str, destination: str, raw: CheckResult) -> None:
        labels = (self.site, path, underlay, destination)
        previous = self._paths.get(path)
        if previous is not None and previous != (underlay, destination):
            self.forget_path(path)
        self._paths[path] = (underlay, destination)
        histogram = self.probe_rtt.labels(*labels)
        for rtt in raw.rtts_ms:
            if rtt is not None:
                histogram.observe(rtt / 1000)
        self.probes_sent.labels(*labels).inc(raw.sent)
        self.probes_lost.labels(*labels).inc(raw.sent - raw.received)

    def forget_path(self, path: str) -> None:
        """Drop a removed path's series."""
        seen = self._paths.pop(path, None)
        if seen is None:
            return
        for metric in (self.probe_rtt, self.probes_sent, self.probes_lost):
            metric.remove(self.site, path, *seen)

    def retain_paths(self, paths: set[str]) -> None:
        for gone in set(self._paths) - paths:
            self.forget_path(gone)

    def retain_policies(self, policies: set[str]) -> None:
        """Per-policy counters for exactly ``policies``: a new policy's start at 0, so that its first
        failover is an increase Prometheus sees (a series born at 1 hides that move from rate())."""
        for policy in policies - self._policies:
            for counter in (self.failovers, self.switch_errors):
                counter.labels(self.site, policy)
        for policy in self._policies - policies:
            for counter in (self.failovers, self.switch_errors):
                counter.remove(self.site, policy)
        self._policies = set(policies)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class SnapshotCollector(Collector):
    """Series computed from a :class:`Snapshot` at scrape time."""

    def __init__(self, site: str, snapshot: Callable[[], Snapshot]) -> None:
        self.site = site
        self._snapshot = snapshot

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # not known before a scrape; keeps registration from calling collect

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snap = self._snapshot()
        yield from self._paths(snap)
        yield from self._policies(snap)
        yield from self._peers(snap)
        yield from self._health(snap)

    def _paths(self, snap: Snapshot) -> Iterator[GaugeMetricFamily]:
        latency = _gauge(
            "patronus_path_latency_seconds", "Mean probe round trip of the last check.", PATH_LABELS
        )
        jitter = _gauge(
            "patronus_path_jitter_seconds", "Mean difference of successive round trips.", PATH_LABELS
        )
        loss = _gauge("patronus_path_loss_ratio", "Share of probes lost over the loss window.", PATH_LABELS)
        health = _gauge("patronus_path_health_score", "Health score 0-100 (E-model).", PATH_LABELS)
        state = _gauge("patronus_path_state", "1 for the path's current state.", [*PATH_LABELS, "state"])
        for view in snap.paths:
            labels = [self.site, view.name, view.underlay, view.destination]
            current = view.result.state if view.result is not None else "unknown"
            for name in STATES:
                state.add_metric([*labels, name], 1.0 if name == current else 0.0)
            result = view.result
            if result is None or result.state == "unknown":
                continue
            if result.latency_ms is not None:
                latency.add_metric(labels, result.latency_ms / 1000)
            if result.jitter_ms is not None:
                jitter.add_metric(labels, result.jitter_ms / 1000)
            loss.add_metric(labels, result.loss_pct / 100)
            health.add_metric(labels, result.health_score)
        yield from (latency, jitter, loss, health, state)

    def _policies(self, snap: Snapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["site", "policy"]
        in_use = _gauge("patronus_policy_path_in_use", "1 for the path the kernel sends the policy over.",
                        [*labels, "path"])  # fmt: skip
        matched_bytes = CounterMetricFamily(
            "patronus_policy_matched_bytes", "Bytes the policy matched (nftables).", labels=labels
        )
        flows = CounterMetricFamily(
            "patronus_policy_matched_flows", "New flows the policy matched (nftables).", labels=labels
        )
        for view in snap.policies:
            if view.path_in_use is not None:
                in_use.add_metric([self.site, view.name, view.path_in_use], 1.0)
            matched_bytes.add_metric([self.site, view.name], view.matched_bytes)
            flows.add_metric([self.site, view.name], view.matched_flows)
        yield from (in_use, matched_bytes, flows)

    def _peers(self, snap: Snapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["site", "interface", "underlay", "peer"]
        rx = CounterMetricFamily(
            "patronus_wireguard_peer_receive_bytes", "Bytes received from the peer.", labels=labels
        )
        tx = CounterMetricFamily(
            "patronus_wireguard_peer_transmit_bytes", "Bytes sent to the peer.", labels=labels
        )
        handshake = _gauge("patronus_wireguard_peer_last_handshake_timestamp_seconds",
                           "Unix time of the latest handshake; 0 when none yet.", labels)  # fmt: skip
        age = _gauge("patronus_wireguard_peer_handshake_age_seconds",
                     "Seconds since the latest handshake (absent before the first).", labels)  # fmt: skip
        for view in snap.peers:
            values = [self.site, view.interface, view.underlay, view.peer]
            rx.add_metric(values, view.receive_bytes)
            tx.add_metric(values, view.transmit_bytes)
            handshake.add_metric(values, view.last_handshake)
            if view.last_handshake:
                age.add_metric(values, max(0.0, snap.now - view.last_handshake))
        yield from (rx, tx, handshake, age)

    def _health(self, snap: Snapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        site = [self.site]
        config = _gauge("patronus_agent_config_info", "1 for the configuration the data plane runs.",
                        ["site", "digest"])  # fmt: skip
        if snap.config_digest is not None:
            config.add_metric([self.site, snap.config_digest], 1.0)
        applied = _gauge("patronus_agent_config_applied_timestamp_seconds",
                         "Unix time of the last successful apply.", ["site"])  # fmt: skip
        if snap.config_applied_at is not None:
            applied.add_metric(site, snap.config_applied_at)
        refused = _gauge("patronus_agent_config_refused", "1 while the newest configuration is refused.",
                         ["site"])  # fmt: skip
        refused.add_metric(site, float(snap.config_refused))
        lagging = _gauge("patronus_agent_dataplane_error",
                         "1 while the kernel lags the configuration or a decision.", ["site"])  # fmt: skip
        lagging.add_metric(site, float(snap.dataplane_error))
        backlog = _gauge(
            "patronus_agent_report_queue_length", "Status reports waiting to be written.", ["site"]
        )
        backlog.add_metric(site, snap.report_backlog)
        yield from (config, applied, refused, lagging, backlog)
        for name, doc, value in (
            ("patronus_agent_reports_written", "Status reports written.", snap.reports_written),
            (
                "patronus_agent_reports_failed",
                "Status writes that failed and were retried.",
                snap.reports_failed,
            ),
            ("patronus_agent_reports_dropped", "Status reports given up.", snap.reports_dropped),
        ):
            counter = CounterMetricFamily(name, doc, labels=["site"])
            counter.add_metric(site, value)
            yield counter
