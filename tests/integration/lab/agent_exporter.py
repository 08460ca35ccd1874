"""Reads a lab agent's exporter (``/metrics``) from inside its site's namespace, with no child process.

The API shows a path's health when it changes materially and once a minute (``patronus.api.reporting``);
the exporter shows every check, so tests of measurement accuracy read it here.
"""

from __future__ import annotations

import socket
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from patronus.lab import network
from patronus.lab.plan import LabPlan

METRICS_PORT = 9102  # the agent's default, inside its site's namespace


def agent_http(plan: LabPlan, site: str, port: int, path: str) -> tuple[int, str]:
    """GET from an agent's health or metrics server, inside the site's namespace; (0, "") if none."""
    sock = network.netns_socket(plan.site(site).namespace, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            response = b"".join(iter(lambda: sock.recv(65536), b""))
        except OSError:
            return 0, ""
    head, _, body = response.decode(errors="replace").partition("\r\n\r\n")
    return int(head.split(" ")[1]), body


def agent_samples(plan: LabPlan, site: str, name: str) -> list[Sample] | None:
    """Samples of one series of the agent's exporter; None if it does not answer."""
    code, text = agent_http(plan, site, METRICS_PORT, "/metrics")
    if code != 200:
        return None
    families = text_string_to_metric_families(text)
    return [sample for family in families for sample in family.samples if sample.name == name]


def path_health(plan: LabPlan, site: str, path: str) -> dict[str, Any]:
    """The agent's latest check of ``path`` in the API's spelling (``latencyMs``, ``jitterMs``,
    ``packetLossPct``, ``healthScore``); only what it has measured."""
    series = {
        "latencyMs": ("patronus_path_latency_seconds", 1000.0),
        "jitterMs": ("patronus_path_jitter_seconds", 1000.0),
        "packetLossPct": ("patronus_path_loss_ratio", 100.0),
        "healthScore": ("patronus_path_health_score", 1.0),
    }
    _, text = agent_http(plan, site, METRICS_PORT, "/metrics")
    wanted = {name: (field, scale) for field, (name, scale) in series.items()}
    health: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted and sample.labels.get("path") == path:
                field, scale = wanted[sample.name]
                health[field] = sample.value * scale
    return health
