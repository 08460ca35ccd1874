"""Two real operator processes against the real API server: leadership, failover, metrics, readiness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import ConfigMap
from prometheus_client.parser import text_string_to_metric_families

from patronus.controlplane.launcher import ControlPlane
from patronus.controlplane.processes import free_port
from tests.integration.runtime.operator_app import ANNOTATION

REPO = Path(__file__).resolve().parents[3]
LEASE = "patronus-operator"


@dataclass
class OperatorProcess:
    identity: str
    metrics_port: int
    health_port: int
    process: subprocess.Popen[bytes]
    log: Path
    exit_codes: list[int] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Samples summed by metric name (labels dropped)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        return totals

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0


def _wait(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def start_operator(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(identity: str, **extra_env: str) -> OperatorProcess:
        metrics_port, health_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(control_plane.kubeconfig),
            "POD_NAME": identity,
            "POD_NAMESPACE": namespace,
            "WATCH_NAMESPACES": namespace,
            "BIND_ADDRESS": "127.0.0.1",
            "METRICS_PORT": str(metrics_port),
            "HEALTH_PROBE_PORT": str(health_port),
            "LOG_FORMAT": "json",
            **extra_env,
        }
        log = tmp_path / f"{identity}.log"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.runtime.operator_app"],
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        operator = OperatorProcess(identity, metrics_port, health_port, process, log)
        started.append(operator)
        _wait(
            lambda: operator.status("/healthz") == 200 or process.poll() is not None,
            30,
            f"{identity} to listen",
        )
        assert process.poll() is None, log.read_text()
        return operator

    yield start
    for operator in started:
        if operator.process.poll() is None:
            operator.process.kill()
            operator.process.wait(10)


def _holder(kube_client: Any, namespace: str) -> str | None:
    try:
        lease = kube_client.get(Lease, LEASE, namespace=namespace)
    except Exception:
        return None
    return lease.spec.holderIdentity or None


def _make_config_maps(kube_client: Any, namespace: str, names: list[str]) -> None:
    for name in names:
        kube_client.create(ConfigMap(metadata=ObjectMeta(name=name, namespace=namespace), data={"k": "v"}))


def _annotations(kube_client: Any, namespace: str, names: list[str]) -> dict[str, str | None]:
    return {
        name: (kube_client.get(ConfigMap, name, namespace=namespace).metadata.annotations or {}).get(
            ANNOTATION
        )
        for name in names
    }


def _leader_and_standby(
    kube_client: Any, namespace: str, a: OperatorProcess, b: OperatorProcess
) -> tuple[OperatorProcess, OperatorProcess]:
    holder = _wait(lambda: _holder(kube_client, namespace), 30, "a leader")
    return (a, b) if holder == a.identity else (b, a)


def test_exactly_one_reconciles_and_kill9_fails_over(
    start_operator: Any, kube_client: Any, namespace: str
) -> None:
    a = start_operator("operator-a")
    b = start_operator("operator-b")
    leader, standby = _leader_and_standby(kube_client, namespace, a, b)

    names = [f"cm-{i}" for i in range(5)]
    _make_config_maps(kube_client, namespace, names)
    _wait(lambda: all(_annotations(kube_client, namespace, names).values()), 30, "the leader to reconcile")
    assert set(_annotations(kube_client, namespace, names).values()) == {leader.identity}

    leader_metrics, standby_metrics = leader.metrics(), standby.metrics()
    assert leader_metrics["patronus_operator_leader"] == 1
    assert standby_metrics["patronus_operator_leader"] == 0
    assert leader_metrics["patronus_operator_reconcile_total"] >= len(names)
    assert standby_metrics.get("patronus_operator_reconcile_total", 0) == 0
    # Readiness is about caches, not leadership: the standby is ready too.
    assert leader.status("/ready") == 200
    assert standby.status("/ready") == 200

    killed_at = time.monotonic()
    leader.process.send_signal(signal.SIGKILL)
    _wait(lambda: _holder(kube_client, namespace) == standby.identity, 25, "the standby to take over", 0.05)
    takeover = time.monotonic() - killed_at
    # leaseDuration (15 s) + retryPeriod (2 s); measured from the kill, so it includes our polling.
    assert takeover <= 17.5, f"new leader after {takeover:.1f}s"
    print(f"kill -9 failover: new leader after {takeover:.2f}s")

    _make_config_maps(kube_client, namespace, ["after-failover"])
    _wait(
        lambda: (
            _annotations(kube_client, namespace, ["after-failover"])["after-failover"] == standby.identity
        ),
        30,
        "the new leader to reconcile",
    )


def test_sigterm_hands_over_within_three_seconds(
    start_operator: Any, kube_client: Any, namespace: str
) -> None:
    a = start_operator("operator-a")
    b = start_operator("operator-b")
    leader, standby = _leader_and_standby(kube_client, namespace, a, b)
    _wait(
        lambda: leader.metrics()["patronus_operator_leader"] == 1, 30, "the leader to start its controllers"
    )

    stopped_at = time.monotonic()
    leader.process.send_signal(signal.SIGTERM)
    _wait(lambda: _holder(kube_client, namespace) == standby.identity, 10, "the standby to take over", 0.05)
    handover = time.monotonic() - stopped_at
    assert handover <= 3.0, f"new leader after {handover:.1f}s"
    print(f"SIGTERM handover: new leader after {handover:.2f}s")
    assert leader.process.wait(30) == 0, leader.log.read_text()[-3000:]


def test_metrics_move_with_reconciles(start_operator: Any, kube_client: Any, namespace: str) -> None:
    operator = start_operator("solo", LEADER_ELECTION_ENABLED="false")
    _wait(lambda: operator.status("/ready") == 200, 30, "caches to sync")
    before = operator.metrics().get("patronus_operator_reconcile_total", 0)
    _make_config_maps(kube_client, namespace, ["m1", "m2", "m3"])
    _wait(lambda: all(_annotations(kube_client, namespace, ["m1", "m2", "m3"]).values()), 30, "reconciles")
    after = operator.metrics()
    assert after["patronus_operator_reconcile_total"] >= before + 3
    assert after["patronus_operator_reconcile_duration_seconds_count"] >= 3
    assert after["patronus_operator_workqueue_adds_total"] >= 3
    assert after.get("patronus_operator_reconcile_errors_total", 0) == 0


def _run_operator_cli(
    control_plane: ControlPlane, namespace: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patronus", "operator", "run"],
        env={
            **os.environ,
            "KUBECONFIG": str(control_plane.kubeconfig),
            "POD_NAMESPACE": namespace,
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(free_port()),
            "BIND_ADDRESS": "127.0.0.1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_environment_value_stops_start_up(control_plane: ControlPlane, namespace: str) -> None:
    result = _run_operator_cli(control_plane, namespace, MAX_CONCURRENT_RECONCILES="zero")
    assert result.returncode == 2
    assert "MAX_CONCURRENT_RECONCILES" in result.stderr
    assert '"zero"' in result.stderr or "'zero'" in result.stderr
    assert "environment" in result.stderr


def test_bad_configmap_value_stops_start_up(
    control_plane: ControlPlane, kube_client: Any, namespace: str
) -> None:
    kube_client.create(
        ConfigMap(
            metadata=ObjectMeta(name="patronus-operator-config", namespace=namespace),
            data={"RECONCILE_INTERVAL": "soon", "MAX_CONCURRENT_RECONCILES": "5"},
        )
    )
    result = _run_operator_cli(control_plane, namespace)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "RECONCILE_INTERVAL" in result.stderr
    assert "soon" in result.stderr
    assert "patronus-operator-config" in result.stderr
