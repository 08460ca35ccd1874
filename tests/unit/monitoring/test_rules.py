"""The alert and recording rules and the Grafana dashboard, checked by Prometheus' own promtool.

``promtool test rules`` runs deploy/monitoring/tests/rules_test.yaml: every alert fires on its fault,
waits out its ``for:``, and stays quiet on healthy series. The lab's quickened copy must still be a valid
rule file, and every PromQL expression of the dashboard must parse (promtool checks them as recording
rules). Every metric the rules and the dashboard use must be documented in the README's metrics table.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from patronus.lab.prometheus import RULES_FILE, quicken, scrape_config

ROOT = Path(__file__).resolve().parents[3]
MONITORING = ROOT / "deploy" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$site": ".*",
    "$path": ".*",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: scripts/bootstrap.sh installs Debian's prometheus package")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def dashboard_exprs(*, annotations: bool = True) -> list[str]:
    """Every panel's PromQL (and the annotations', unless ``annotations`` is false)."""
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets") or ()]
    if annotations:
        exprs += [a["expr"] for a in board["annotations"]["list"] if "expr" in a]
    return exprs


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    result = promtool("test", "rules", str(MONITORING / "tests" / "rules_test.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((MONITORING / "tests" / "rules_test.yaml").read_text())
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test") or ()
        if case.get("exp_alerts")
    }
    assert alerts == fired
    assert {
        "PatronusPathDown",
        "PatronusPathDegraded",
        "PatronusFailoverFlapping",
        "PatronusSiteAgentStale",
        "PatronusOperatorReconcileErrors",
        "PatronusOperatorLeaderMissing",
    } <= alerts


def test_quicken_divides_windows_and_waits() -> None:
    rules = {
        "groups": [
            {
                "name": "g",
                "rules": [
                    {"alert": "A", "expr": "increase(x[30m]) > 2 and rate(y[5m:1m]) > 0", "for": "10m"},
                    {"alert": "B", "expr": "up == 0", "for": "1m"},
                    {"record": "r", "expr": "max_over_time(z[1h])"},
                    {"alert": "C", "expr": "z > 1", "for": "15s"},
                ],
            }
        ]
    }
    fast = quicken(rules, 30)["groups"][0]["rules"]
    assert fast[0] == {"alert": "A", "expr": "increase(x[60s]) > 2 and rate(y[10s:1m]) > 0", "for": "20s"}
    assert fast[1]["for"] == "2s"
    assert fast[2]["expr"] == "max_over_time(z[120s])"
    assert fast[3]["for"] == "1s"  # never below a second
    assert rules["groups"][0]["rules"][0]["for"] == "10m"  # the input is left alone


def test_the_labs_quickened_rules_are_valid(tmp_path: Path) -> None:
    fast = tmp_path / "rules.yaml"
    fast.write_text(yaml.safe_dump(quicken(yaml.safe_load(RULES_FILE.read_text()))))
    result = promtool("check", "rules", str(fast))
    assert result.returncode == 0, result.stdout + result.stderr
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(8080, {"a": 41000, "b": 41001}, fast)))
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 25
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:panel_{i}", "expr": grafana_to_promql(e)}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    checked = tmp_path / "panels.yaml"
    checked.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(checked))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_covers_the_issue() -> None:
    board = json.loads(DASHBOARD.read_text())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Mesh overview", "Paths", "Policies and failovers", "Operator"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    text = " ".join(dashboard_exprs())
    for metric in ("latency_seconds", "loss_ratio", "health_score", "failovers_total", "matched_bytes_total"):
        assert f"patronus_path_{metric}" in text or f"patronus_policy_{metric}" in text
    assert "patronus_operator_reconcile_total" in text


def test_every_metric_used_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `(patronus_[a-z_]+)`", readme, flags=re.MULTILINE))
    used = set(
        re.findall(
            r"\bpatronus_(?:agent|operator|path|policy|wireguard)_[a-z_]+",
            RULES_FILE.read_text() + DASHBOARD.read_text(),
        )
    )
    used = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert documented, "the README has no metrics table"
    assert used - documented == set()
