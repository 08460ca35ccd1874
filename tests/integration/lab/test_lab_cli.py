"""`patronus lab up/status/down`: the lab's own lifecycle, whether or not its agents do anything useful.

Nothing here depends on the agent's behaviour: the Sites and Paths listed by ``lab status`` are made by
the operator before the lab reports ready, and the leak checks look at every process that was inside the
lab's namespaces (agents, wireguard-go, the relay), whatever it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patronus.controlplane.launcher import Binaries
from patronus.lab import network
from patronus.lab.forwarder import LISTEN_HOST, LISTEN_PORT, Forwarder
from patronus.lab.supervisor import LabFiles
from tests.integration.lab import require_root, unique_prefix

_UP_TIMEOUT = 300
_DOWN_TIMEOUT = 90


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A private cache (the lab's files) but the already built control plane, so nothing is rebuilt."""
    require_root()
    binaries = Binaries.locate()
    return {
        **os.environ,
        "PATRONUS_CACHE": str(tmp_path),
        "PATRONUS_CONTROLPLANE_DIR": str(binaries.directory),
    }


def _patronus(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "patronus", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _netns_pids(namespaces: list[str]) -> set[int]:
    pids: set[int] = set()
    for ns in namespaces:
        output = subprocess.run(
            ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
        ).stdout
        pids |= {int(word) for word in output.split()}
    return pids


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        output = subprocess.run(
            ["pgrep", "-P", str(frontier.pop())], capture_output=True, text=True, check=False
        ).stdout
        children = {int(word) for word in output.split()} - found
        found |= children
        frontier += children
    return found


def _alive(pids: set[int]) -> set[int]:
    """Pids that still exist and are not zombies."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _mentioning(text: str) -> set[int]:
    """Processes whose command line contains ``text`` (the lab's state directory, say)."""
    output = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True, check=False).stdout
    return {int(word) for word in output.split()} - {os.getpid()}


def _wait_gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := _alive(pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_lab_up_status_down_leaves_nothing(env: dict[str, str]) -> None:
    prefix = unique_prefix()
    files = LabFiles(Path(env["PATRONUS_CACHE"]) / "lab" / prefix)
    started = time.monotonic()
    up = _patronus("lab", "up", "--sites", "2", "--prefix", prefix, env=env, timeout=_UP_TIMEOUT)
    up_seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stderr
        ready = json.loads(files.ready.read_text())
        assert up.stdout.strip() == f"export KUBECONFIG={ready['kubeconfig']}"
        assert "ready in" in up.stderr
        assert "patronus lab impair a/fiber" in up.stderr
        supervisor = int(files.pid.read_text())
        plan = files.load_plan()
        assert network.namespaces_present(prefix) == sorted(plan.namespaces)

        status = _patronus("lab", "status", "--prefix", prefix, env=env, timeout=60)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        for site in ("a", "b"):
            assert any(line.split()[:1] == [site] for line in lines), status.stdout
        for path in ("lab-mesh.a.b.fiber", "lab-mesh.a.b.lte", "lab-mesh.b.a.fiber", "lab-mesh.b.a.lte"):
            assert any(line.startswith(path) for line in lines), status.stdout
        for policy in ("voice", "bulk"):
            assert any(line.split()[:1] == [policy] for line in lines), status.stdout

        again = _patronus("lab", "up", "--sites", "2", "--prefix", prefix, env=env, timeout=60)
        assert again.returncode == 0
        assert "already running" in again.stderr
        inside = _netns_pids(list(plan.namespaces))
        tree = _descendants(supervisor)
        assert tree, "the supervisor has no children (control plane, relay, agents)"
    finally:
        down = _patronus("lab", "down", "--prefix", prefix, env=env, timeout=_DOWN_TIMEOUT)
    assert down.returncode == 0, down.stderr
    print(f"lab up took {up_seconds:.1f}s")

    assert network.namespaces_present(prefix) == []
    assert _wait_gone({supervisor, *tree, *inside}) == set()
    assert _alive(_mentioning(str(files.root))) == set(), "an agent (or other lab process) is left"
    assert [p.name for p in files.root.iterdir()] == ["logs"]
    assert {p.name for p in files.logs.iterdir()} >= {
        "supervisor.log",
        "relay.log",
        "agent-a.log",
        "agent-b.log",
    }
    status = _patronus("lab", "status", "--prefix", prefix, env=env, timeout=30)
    assert status.returncode == 1
    assert "not running" in status.stdout


def test_sigterm_while_starting_unwinds_everything(env: dict[str, str]) -> None:
    prefix = unique_prefix()
    files = LabFiles(Path(env["PATRONUS_CACHE"]) / "lab" / prefix)
    log = Path(env["PATRONUS_CACHE"]) / "serve.log"  # a file, not a pipe nobody drains while it runs
    with log.open("wb") as handle:
        serve = subprocess.Popen(
            [sys.executable, "-m", "patronus", "lab", "serve", "--sites", "2", "--prefix", prefix],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "starting the operator" not in (files.progress.read_text() if files.progress.exists() else ""):
            assert serve.poll() is None, "the supervisor exited while starting"
            assert time.monotonic() < deadline, "the supervisor never got going"
            time.sleep(0.1)
        inside = _netns_pids(list(files.load_plan().namespaces))
        tree = _descendants(serve.pid)
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=_DOWN_TIMEOUT)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(10)
            _patronus("lab", "down", "--prefix", prefix, env=env, timeout=_DOWN_TIMEOUT)
    assert serve.returncode == 0, log.read_text(errors="replace")[-3000:]
    assert network.namespaces_present(prefix) == []
    assert _wait_gone({*tree, *inside}) == set()
    assert [p.name for p in files.root.iterdir()] == ["logs"]


async def test_forwarder_proxies_from_inside_a_namespace_to_the_root_namespace() -> None:
    require_root()
    ns = f"{unique_prefix()}-fwd"
    network.run(["ip", "netns", "add", ns])
    forwarder: Forwarder | None = None
    received = bytearray()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
            writer.write(data.upper())
            await writer.drain()
        writer.close()  # after the client's half-close: the reply is complete

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        network.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        forwarder = Forwarder("127.0.0.1", upstream.sockets[0].getsockname()[1])
        await forwarder.start([ns])
        client = network.netns_socket(ns, socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        await asyncio.get_running_loop().sock_connect(client, (LISTEN_HOST, LISTEN_PORT))
        reader, writer = await asyncio.open_connection(sock=client)
        payload = b"hello" * 100_000  # more than one chunk each way
        writer.write(payload)
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert reply == payload.upper()
        assert bytes(received) == payload
    finally:
        if forwarder is not None:
            await forwarder.close()
        upstream.close()
        network.run(["ip", "netns", "del", ns], check=False)
    assert network.namespaces_present(ns.split("-", maxsplit=1)[0]) == []


def test_down_names_a_lab_it_cannot_find_and_never_calls_it_down(env: dict[str, str]) -> None:
    prefix = unique_prefix()
    nothing = _patronus("lab", "down", "--prefix", prefix, env=env, timeout=_DOWN_TIMEOUT)
    assert nothing.returncode == 0, nothing.stderr
    assert f"lab {prefix} is not running" in nothing.stderr
    assert "is down" not in nothing.stderr

    # A namespace of this prefix, but no files under this cache: `lab up` ran with another PATRONUS_CACHE.
    stray = f"{prefix}-wan"
    network.run(["ip", "netns", "add", stray])
    try:
        elsewhere = _patronus("lab", "down", "--prefix", prefix, env=env, timeout=_DOWN_TIMEOUT)
    finally:
        network.run(["ip", "netns", "del", stray])
    assert elsewhere.returncode == 1
    assert stray in elsewhere.stderr
    assert "PATRONUS_CACHE" in elsewhere.stderr
    assert "is down" not in elsewhere.stderr
