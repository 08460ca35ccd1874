"""The agent's exporter: the series it promises, and `promtool check metrics` finds nothing to fix."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from patronus.agent.metrics import AgentMetrics, PathView, PeerView, PolicyView, Snapshot
from patronus.agent.probe_stats import summarize
from tests.unit.agent.fakes import FIBER, LTE

CHECK = summarize([10.0, 12.0, None, 11.0, 10.0])


def snapshot() -> Snapshot:
    return Snapshot(
        now=1_000_100.0,
        paths=[PathView(FIBER, "fiber", "b", CHECK), PathView(LTE, "lte", "b", None)],
        policies=[PolicyView("voice", LTE, 1500, 3)],
        peers=[
            PeerView("wg-fiber", "fiber", "b", 100, 200, 1_000_000),
            PeerView("wg-lte", "lte", "b", 0, 148, 0),
        ],
        config_digest="ab" * 32,
        config_applied_at=1_000_000.0,
        report_backlog=4,
        reports_written=7,
    )


def exported() -> tuple[str, dict[str, float]]:
    metrics = AgentMetrics("a", "0.1.0", snapshot)
    metrics.observe_check(FIBER, "fiber", "b", CHECK)
    metrics.failovers.labels("a", "voice").inc()
    metrics.config_applies.labels("a", "success").inc()
    metrics.task_restarts.labels("a", "reports").inc(0)
    text = generate_latest(metrics.registry).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return text, samples


def test_the_series_in_base_units() -> None:
    _, samples = exported()
    path = "destination=b,path=m-a-b-fiber,site=a,underlay=fiber"
    assert samples[f"patronus_path_latency_seconds{{{path}}}"] == pytest.approx(CHECK.latency_ms / 1000)
    assert samples[f"patronus_path_loss_ratio{{{path}}}"] == pytest.approx(0.2)
    assert samples[f"patronus_path_health_score{{{path}}}"] == pytest.approx(CHECK.health_score)
    state = "destination=b,path=m-a-b-fiber,site=a,state={},underlay=fiber"
    assert samples[f"patronus_path_state{{{state.format('degraded')}}}"] == 1  # 20 % loss in one check
    assert samples[f"patronus_path_state{{{state.format('up')}}}"] == 0
    lte = "destination=b,path=m-a-b-lte,site=a,state=unknown,underlay=lte"
    assert samples[f"patronus_path_state{{{lte}}}"] == 1  # not checked yet
    assert "patronus_path_latency_seconds{destination=b,path=m-a-b-lte,site=a,underlay=lte}" not in samples
    assert samples[f"patronus_path_probe_rtt_seconds_count{{{path}}}"] == 4
    assert samples[f"patronus_path_probes_lost_total{{{path}}}"] == 1
    assert samples["patronus_policy_path_in_use{path=m-a-b-lte,policy=voice,site=a}"] == 1
    assert samples["patronus_policy_matched_bytes_total{policy=voice,site=a}"] == 1500
    assert samples["patronus_policy_failovers_total{policy=voice,site=a}"] == 1
    peer = "interface=wg-fiber,peer=b,site=a,underlay=fiber"
    assert samples[f"patronus_wireguard_peer_transmit_bytes_total{{{peer}}}"] == 200
    assert samples[f"patronus_wireguard_peer_handshake_age_seconds{{{peer}}}"] == 100
    assert (
        "patronus_wireguard_peer_handshake_age_seconds{interface=wg-lte,peer=b,site=a,underlay=lte}"
        not in samples
    )
    assert samples[f"patronus_agent_config_info{{digest={'ab' * 32},site=a}}"] == 1
    assert samples["patronus_agent_report_queue_length{site=a}"] == 4
    assert samples["patronus_agent_info{site=a,version=0.1.0}"] == 1


def test_a_policy_s_counters_exist_at_zero_before_its_first_failover() -> None:
    metrics = AgentMetrics("a", "0.1.0")
    metrics.retain_policies({"voice", "bulk"})
    text = generate_latest(metrics.registry).decode()
    assert 'patronus_policy_failovers_total{policy="voice",site="a"} 0.0' in text
    assert 'patronus_policy_switch_errors_total{policy="bulk",site="a"} 0.0' in text
    metrics.retain_policies({"bulk"})
    assert 'policy="voice"' not in generate_latest(metrics.registry).decode()


def test_a_removed_path_loses_its_series() -> None:
    metrics = AgentMetrics("a", "0.1.0")
    metrics.observe_check(FIBER, "fiber", "b", CHECK)
    metrics.retain_paths(set())
    assert FIBER not in generate_latest(metrics.registry).decode()


def test_promtool_finds_nothing_to_fix() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, (
        "promtool (Debian package prometheus) is needed: scripts/bootstrap.sh installs it"
    )
    text, _ = exported()
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    advice = (result.stdout + result.stderr).strip()
    assert advice == "", advice
