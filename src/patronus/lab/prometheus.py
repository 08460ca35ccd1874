"""The lab's Prometheus: Debian's ``prometheus`` scraping the operator and every agent, with our rules.

The configuration and the rules are computed by pure functions; :func:`start` only writes them and runs
the binary on a loopback port. The lab wants faults to show within seconds, not minutes, so it scrapes
and evaluates every second and loads :func:`quicken`'s copy of ``deploy/monitoring/rules.yaml``: every
``for:`` and every range window divided by :data:`LAB_SPEEDUP` (``for: 10m`` becomes ``20s``,
``[5m]`` becomes ``[10s]``). The alert logic is the production file's; only its clock runs faster.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from patronus.controlplane import processes

LAB_SPEEDUP = 30
SCRAPE_INTERVAL = "1s"
AGENT_JOB = "patronus-agent"
OPERATOR_JOB = "patronus-operator"
RULES_FILE = Path(__file__).resolve().parents[3] / "deploy" / "monitoring" / "rules.yaml"
"""The rule file in the source tree (the lab runs from a checkout)."""
_READY_TIMEOUT = 60.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RANGE = re.compile(r"\[(\d+)([smhd])(?=[\]:])")
_DURATION = re.compile(r"(\d+)([smhd])")


class PrometheusError(RuntimeError):
    """Prometheus could not be started (missing binary, bad configuration, no readiness)."""


def _seconds(text: str) -> int:
    """``10m`` -> 600; only the single-unit durations our rule file uses."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"duration {text!r}: expected a number and one of s, m, h, d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _faster(seconds: int, speedup: int) -> str:
    return f"{max(1, round(seconds / speedup))}s"


def quicken(rules: Mapping[str, Any], speedup: int = LAB_SPEEDUP) -> dict[str, Any]:
    """A copy of a rule file (parsed) with every ``for:`` and range window ``speedup`` times shorter."""

    def window(match: re.Match[str]) -> str:
        return "[" + _faster(int(match.group(1)) * _UNITS[match.group(2)], speedup)

    groups = []
    for group in rules.get("groups") or ():
        new_rules = []
        for rule in group.get("rules") or ():
            copy = dict(rule)
            copy["expr"] = _RANGE.sub(window, str(rule["expr"]))
            if "for" in rule:
                copy["for"] = _faster(_seconds(str(rule["for"])), speedup)
            new_rules.append(copy)
        groups.append({**group, "rules": new_rules})
    return {**rules, "groups": groups}


def scrape_config(
    operator_port: int, agent_ports: Mapping[str, int], rule_file: Path, interval: str = SCRAPE_INTERVAL
) -> dict[str, Any]:
    """Prometheus' configuration: the operator, and each agent through its forwarder port.

    Agents label their own series with ``site``; ``honor_labels`` keeps those, and the target's ``site``
    label names the agent on ``up`` as well.
    """
    agents = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"site": site}}
        for site, port in sorted(agent_ports.items())
    ]
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(rule_file)],
        "scrape_configs": [
            {"job_name": OPERATOR_JOB, "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
            {"job_name": AGENT_JOB, "honor_labels": True, "static_configs": agents},
        ],
    }


def write_files(
    directory: Path, operator_port: int, agent_ports: Mapping[str, int], rules: Path = RULES_FILE
) -> Path:
    """Write ``prometheus.yml`` and the quickened ``rules.yaml`` into ``directory``; returns the config."""
    try:
        production = yaml.safe_load(rules.read_text())
    except FileNotFoundError as error:
        raise PrometheusError(f"no rule file at {rules} (the lab runs from a source checkout)") from error
    directory.mkdir(parents=True, exist_ok=True)
    rule_file = directory / "rules.yaml"
    rule_file.write_text(yaml.safe_dump(quicken(production), sort_keys=False))
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(operator_port, agent_ports, rule_file), sort_keys=False))
    return config


async def start(config: Path, data_dir: Path, port: int, log: Path, targets: int) -> subprocess.Popen[bytes]:
    """Run Prometheus on ``127.0.0.1:port`` and wait until it is ready; :class:`PrometheusError` if not.

    Ready means serving and scraping: ``/-/ready`` answers and all ``targets`` configured targets are
    active (Prometheus applies discovered targets a few seconds after it starts, so a caller that queries
    at once would otherwise see none).
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusError("no prometheus binary on PATH (Debian's package: apt-get install prometheus)")
    args = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    process = processes.spawn(args, log)
    deadline = time.monotonic() + _READY_TIMEOUT
    while not await asyncio.to_thread(_ready, port, targets):
        if process.poll() is not None or time.monotonic() > deadline:
            processes.stop(process)
            tail = log.read_text(errors="replace")[-2000:]
            raise PrometheusError(f"prometheus did not become ready; its log ({log}) ends:\n{tail}")
        await asyncio.sleep(0.2)
    return process


def _ready(port: int, targets: int) -> bool:
    base = f"http://127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1.0) as response:
            if int(response.status) != 200:
                return False
        with urllib.request.urlopen(f"{base}/api/v1/targets?state=active", timeout=1.0) as response:
            body = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return len(body.get("data", {}).get("activeTargets") or ()) >= targets
