"""The agent against the real API server, with its real data plane: two sites in network namespaces.

Sites a and b, each a network namespace with two underlays between them (fiber on one veth pair, lte on
another), each running ``patronus agent run`` as the lab does, reaching the session's API server through
the lab's forwarder. Configurations are written by the test (no operator runs), so the test decides every
name: the ConfigMaps are deliberately not ``<site>-agent``.

In order (they share the two agents):
1. the API server stops; the agent keeps probing, fails voice over when the fiber is cut, and routes
   (policy and unmatched traffic) over lte; when the API server returns, the heartbeat and the policy's
   failover record catch up;
2. a configuration with an unknown schema version is refused (Warning Event, ``status.agent.configError``)
   while the data plane keeps running;
3. the Site is deleted: the agent removes its data plane and exits 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from patronus.controlplane import ControlPlane
from patronus.kube.timestamps import parse_time
from patronus.lab.forwarder import LISTEN_PORT, Forwarder
from patronus.lab.network import netns_socket
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.root

UNDERLAYS = {"fiber": ("192.168.81", 51820), "lte": ("192.168.82", 51821)}
OVERLAY = {"a": "100.96.0.1", "b": "100.96.0.2"}
METRICS_PORT = 9102
VOICE_PORT = 5060


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30).stdout


def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """``eventually_sync``, with a failing read (the API server restarting, a field not there yet) counted
    as not yet."""

    def attempt() -> Any:
        try:
            return check()
        except (KeyError, TypeError, ValueError, subprocess.SubprocessError, OSError):
            return None

    return eventually_sync(attempt, timeout=timeout, what=what, interval=interval)


@dataclass
class Pair:
    """Two sites' namespaces, their agents, and the API objects that configure them."""

    plane: ControlPlane
    namespace: str
    suffix: str
    keys: dict[str, str]
    workdir: Path
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def netns(self, site: str) -> str:
        return f"pg-{self.suffix}-{site}"

    def interface(self, site: str, underlay: str) -> str:
        return f"wg{self.suffix}{site}{underlay[0]}"

    def path(self, underlay: str) -> str:
        return f"m-a-b-{underlay}"

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        return self.plane.kubectl("-n", self.namespace, *args, input_text=input_text).stdout

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-o", "json")))

    def site_status(self, site: str) -> dict[str, Any]:
        return dict(self.get("sites.sdwan.patronus.dev", site).get("status") or {})

    def voice(self) -> dict[str, Any]:
        policies = self.site_status("a").get("policies") or []
        return next((dict(p) for p in policies if p["name"] == "voice"), {})

    def metrics(self, site: str) -> str:
        return http_get(self.netns(site), METRICS_PORT, "/metrics")[1]

    def in_ns(self, site: str, *args: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.netns(site), *args, check=check)


def http_get(netns: str, port: int, path: str) -> tuple[int, str]:
    """A plain HTTP GET to 127.0.0.1:port inside ``netns``."""
    sock = netns_socket(netns, socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in Prometheus text output."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{key}="{val}"' in series for key, val in labels.items()):
            return float(value)
    return None


def agent_config(pair: Pair, site: str, *, schema_version: int = 2) -> str:
    other = "b" if site == "a" else "a"
    octet = "1" if site == "a" else "2"
    far = "2" if site == "a" else "1"
    interfaces = [
        {
            "underlay": underlay,
            "name": pair.interface(site, underlay),
            "listenPort": port,
            "endpoint": f"{net}.{octet}:{port}",
            "peers": [
                {
                    "site": other,
                    "publicKey": public_key_for(pair.keys[other]),
                    "endpoint": f"{net}.{far}:{port}",
                    "allowedIPs": [f"{OVERLAY[other]}/32"],
                    "persistentKeepalive": 5,
                }
            ],
        }
        for underlay, (net, port) in UNDERLAYS.items()
    ]
    paths, policies = [], []
    if site == "a":
        paths = [
            {"name": pair.path(u), "destination": "b", "destinationAddress": OVERLAY["b"], "underlay": u,
             "interface": pair.interface("a", u),
             "monitoring": {"enabled": True, "intervalSeconds": 0.5, "probesPerCheck": 5}}
            for u in UNDERLAYS
        ]  # fmt: skip
        policies = [
            {"name": "voice", "priority": 100,
             "match": {"protocol": "udp", "dstPorts": [[VOICE_PORT, VOICE_PORT]]},
             "action": {"primaryPath": pair.path("fiber"), "backupPath": pair.path("lte")},
             "failover": {"threshold": 70, "cooldownSeconds": 5}},
        ]  # fmt: skip
    config = {
        "schemaVersion": schema_version,
        "site": site,
        "namespace": pair.namespace,
        "overlayAddress": OVERLAY[site],
        "interfaces": interfaces,
        "paths": paths,
        "policies": policies,
    }
    return json.dumps(config)


def objects(pair: Pair) -> list[dict[str, Any]]:
    ns = pair.namespace
    items: list[dict[str, Any]] = []
    for site in ("a", "b"):
        items += [
            {"apiVersion": "sdwan.patronus.dev/v1alpha1", "kind": "Site",
             "metadata": {"name": site, "namespace": ns},
             "spec": {"location": site,
                      "wireguard": {"publicKey": public_key_for(pair.keys[site]),
                                    "endpoints": [f"192.168.81.{1 if site == 'a' else 2}:51820"]}}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cfg-{site}-x1", "namespace": ns},
             "data": {"config.json": agent_config(pair, site)}},
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"key-{site}", "namespace": ns},
             "data": {"wg": base64.b64encode(pair.keys[site].encode()).decode()}},
        ]  # fmt: skip
    for underlay in UNDERLAYS:
        items.append(
            {"apiVersion": "sdwan.patronus.dev/v1alpha1", "kind": "Path",
             "metadata": {"name": pair.path(underlay), "namespace": ns},
             "spec": {"source": {"siteRef": "a"}, "destination": {"siteRef": "b"}, "underlay": underlay}}
        )  # fmt: skip
    return items


def create_network(pair: Pair) -> None:
    a, b = pair.netns("a"), pair.netns("b")
    for ns in (a, b):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    for index, (net, _port) in enumerate(UNDERLAYS.values()):
        left, right = f"v{pair.suffix}a{index}", f"v{pair.suffix}b{index}"
        sh("ip", "link", "add", left, "netns", a, "type", "veth", "peer", "name", right, "netns", b)
        for ns, dev, octet in ((a, left, "1"), (b, right, "2")):
            sh("ip", "-n", ns, "address", "add", f"{net}.{octet}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")


def start_agent(pair: Pair, site: str) -> subprocess.Popen[bytes]:
    admin = yaml.safe_load(pair.plane.kubeconfig.read_text())
    admin["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{LISTEN_PORT}"
    kubeconfig = pair.workdir / f"{site}.kubeconfig"
    kubeconfig.touch(0o600)
    kubeconfig.write_text(yaml.safe_dump(admin))
    log = (pair.workdir / f"agent-{site}.log").open("wb")
    command = [
        "ip", "netns", "exec", pair.netns(site), sys.executable, "-m", "patronus", "agent", "run",
        "--site", site, "--namespace", pair.namespace, "--config-map", f"cfg-{site}-x1",
        "--key-secret", f"key-{site}", "--key-secret-key", "wg", "--kubeconfig", str(kubeconfig),
        "--metrics-port", str(METRICS_PORT),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOG_FORMAT": "console"}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


class ForwarderThread:
    """The lab's API forwarder on an event loop of its own, listening inside both namespaces."""

    def __init__(self, port: int, namespaces: list[str]) -> None:
        self.loop = asyncio.new_event_loop()
        self.forwarder = Forwarder("127.0.0.1", port)
        self.thread = threading.Thread(target=self.loop.run_forever, name="forwarder", daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.forwarder.start(namespaces), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.forwarder.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def pair(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    suffix = uuid.uuid4().hex[:4]
    namespace = f"agent-{suffix}"
    keys = {site: generate_private_key() for site in ("a", "b")}
    result = Pair(control_plane, namespace, suffix, keys, tmp_path_factory.mktemp("agents"))
    control_plane.kubectl("create", "namespace", namespace)
    forwarder: ForwarderThread | None = None
    try:
        create_network(result)
        forwarder = ForwarderThread(control_plane.apiserver_port, [result.netns("a"), result.netns("b")])
        result.kubectl("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                   "items": objects(result)}))  # fmt: skip
        for site in ("a", "b"):
            result.agents[site] = start_agent(result, site)
        yield result
    finally:
        for process in result.agents.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in result.agents.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        for site in result.agents:  # shown by pytest when a test failed
            lines = (result.workdir / f"agent-{site}.log").read_text(errors="replace").splitlines()
            print(f"--- agent {site}, last lines:", *lines[-40:], sep="\n")
        if forwarder is not None:
            forwarder.close()
        for site in ("a", "b"):
            sh("ip", "netns", "del", result.netns(site), check=False)
        control_plane.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def voice_gets_through(pair: Pair, port: int) -> bool:
    """One UDP datagram from a to b's overlay address on ``port`` arrives."""
    receiver = netns_socket(pair.netns("b"), socket.AF_INET, socket.SOCK_DGRAM)
    sender = netns_socket(pair.netns("a"), socket.AF_INET, socket.SOCK_DGRAM)
    with receiver, sender:
        receiver.bind((OVERLAY["b"], port))
        receiver.settimeout(0.5)
        for _ in range(5):
            sender.sendto(b"hello", (OVERLAY["b"], port))
            with contextlib.suppress(TimeoutError):
                if receiver.recvfrom(100)[0] == b"hello":
                    return True
    return False


def lte_transmitted(pair: Pair) -> int:
    out = pair.in_ns("a", "wg", "show", pair.interface("a", "lte"), "transfer")
    return sum(int(line.split("\t")[2]) for line in out.splitlines() if line.strip())


def test_the_wan_keeps_working_while_the_api_server_is_away(pair: Pair, control_plane: ControlPlane) -> None:
    fiber, lte = pair.path("fiber"), pair.path("lte")
    eventually(lambda: pair.voice().get("pathInUse") == fiber, 60, "a's first report")
    eventually(lambda: pair.get("paths.sdwan.patronus.dev", fiber)["status"]["state"] == "up", 60, "fiber up")
    assert http_get(pair.netns("a"), 8081, "/ready")[0] == 200
    assert http_get(pair.netns("a"), 8081, "/healthz")[0] == 200

    control_plane.stop_apiserver()
    try:
        stopped = datetime.now(UTC)
        sent_before = sample(pair.metrics("a"), "patronus_path_probes_sent_total", path=fiber) or 0
        pair.in_ns("a", "ip", "link", "set", f"v{pair.suffix}a0", "down")  # cut the fiber
        cut = time.monotonic()
        eventually(
            lambda: sample(pair.metrics("a"), "patronus_policy_path_in_use", policy="voice", path=lte) == 1,
            10, "voice to fail over to lte with the API away",
        )  # fmt: skip
        print(f"failover {time.monotonic() - cut:.2f}s after the cut, with the API server down")
        before = lte_transmitted(pair)
        assert eventually(lambda: voice_gets_through(pair, VOICE_PORT), 10, "voice over lte")
        assert lte_transmitted(pair) > before
        assert eventually(lambda: voice_gets_through(pair, 9100), 10, "unmatched traffic over lte")

        # Still probing: a check counts once each of its probes is answered or lost (0.5 s after it was
        # sent), and the failover came earlier than that, from the prober's early verdict.
        def probes_counted() -> bool:
            sent = sample(pair.metrics("a"), "patronus_path_probes_sent_total", path=fiber)
            return (sent or 0) > sent_before

        assert eventually(probes_counted, 5, "the cut fiber's probes still counted")
        text = pair.metrics("a")
        assert (
            sample(text, "patronus_agent_report_queue_length") or 0
        ) >= 1  # reports wait, nothing else does
        assert (sample(text, "patronus_agent_reports_failed_total") or 0) >= 1
        time.sleep(max(0.0, 15 - (time.monotonic() - cut)))  # the API stays away a while
    finally:
        control_plane.start_apiserver()
        pair.in_ns("a", "ip", "link", "set", f"v{pair.suffix}a0", "up")
    back = datetime.now(UTC)

    def caught_up() -> bool:
        beat = parse_time(pair.site_status("a").get("lastHeartbeatTime"))
        return beat is not None and beat > back and pair.voice().get("failoverCount") == 1

    eventually(caught_up, 40, "the heartbeat and the failover record to catch up")
    record = pair.voice()
    failed_over_at = parse_time(record["lastFailoverTime"])
    assert failed_over_at is not None
    assert stopped <= failed_over_at <= back  # it happened while the API was away, and says so

    def failover_event() -> bool:
        events = pair.kubectl("get", "events", "--field-selector", "involvedObject.name=voice", "-o", "json")
        return "PolicyFailover" in {e["reason"] for e in json.loads(events)["items"]}

    # Events are retried 2, 4, 6 ... s apart: the one from the outage may come a little after the status.
    eventually(failover_event, 60, "the PolicyFailover Event from the outage")
    # The fiber is back: voice returns after the 5 s cooldown, and the report says so.
    eventually(lambda: pair.voice().get("pathInUse") == fiber, 40, "voice back on fiber")
    assert sample(pair.metrics("a"), "patronus_policy_failovers_total", policy="voice") == 1


def test_a_refused_configuration_keeps_the_data_plane(pair: Pair) -> None:
    good = pair.site_status("a")["agent"]["configDigest"]
    patch = {"data": {"config.json": agent_config(pair, "a", schema_version=9)}}
    pair.kubectl("patch", "configmap", "cfg-a-x1", "--type=merge", "-p", json.dumps(patch))
    eventually(lambda: pair.site_status("a")["agent"].get("configError"), 20, "configError")
    assert "schemaVersion 9" in pair.site_status("a")["agent"]["configError"]
    assert pair.site_status("a")["agent"]["configDigest"] == good
    events = json.loads(
        pair.kubectl("get", "events", "--field-selector", "involvedObject.name=a", "-o", "json")
    )
    refused = [e for e in events["items"] if e["reason"] == "ConfigRefused"]
    assert refused
    assert refused[0]["type"] == "Warning"
    assert refused[0]["involvedObject"]["kind"] == "Site"
    assert voice_gets_through(pair, VOICE_PORT)  # the last good data plane still runs
    eventually(lambda: sample(pair.metrics("a"), "patronus_agent_config_refused") == 1, 10, "the gauge")
    patch = {"data": {"config.json": agent_config(pair, "a")}}
    pair.kubectl("patch", "configmap", "cfg-a-x1", "--type=merge", "-p", json.dumps(patch))
    eventually(lambda: "configError" not in pair.site_status("a")["agent"], 20, "configError to clear")


def test_a_deleted_site_tears_its_agent_down(pair: Pair) -> None:
    agent = pair.agents["a"]
    assert pair.interface("a", "fiber") in pair.in_ns("a", "ip", "link", "show")
    pair.kubectl("delete", "sites.sdwan.patronus.dev", "a", "--wait=false")
    assert agent.wait(60) == 0
    links = pair.in_ns("a", "ip", "link", "show")
    assert pair.interface("a", "fiber") not in links
    assert pair.interface("a", "lte") not in links
    assert "patronus" not in pair.in_ns("a", "nft", "list", "tables")
    assert pair.agents["b"].poll() is None  # the other site's agent is unaffected
