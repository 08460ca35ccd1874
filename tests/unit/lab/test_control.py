"""The lab's control channel: the wire format, a round trip over a real Unix socket, and the API server
switch against a stand-in control plane (which thread it acts on, what it does twice, a failed start)."""

from __future__ import annotations

import asyncio
import stat
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from patronus.controlplane.launcher import ControlPlane
from patronus.lab import control
from patronus.lab.control import ApiServerSwitch, ControlError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"command": "apiserver", "action": "stop"}\n', ("apiserver", "stop")),
        (control.encode_request("apiserver", "start"), ("apiserver", "start")),
    ],
)
def test_requests_are_read(line: bytes, expected: tuple[str, str]) -> None:
    assert control.parse_request(line) == expected


@pytest.mark.parametrize(
    "line",
    [b"", b"stop\n", b"[]\n", b'{"command": "apiserver"}\n', b'{"command": 1, "action": "stop"}\n'],
)
def test_anything_else_is_refused(line: bytes) -> None:
    with pytest.raises(ControlError):
        control.parse_request(line)


def test_a_failed_reply_raises_with_the_supervisors_message() -> None:
    assert control.parse_reply(b'{"ok": true, "state": "running"}\n') == {"ok": True, "state": "running"}
    with pytest.raises(ControlError, match="no such thing"):
        control.parse_reply(b'{"ok": false, "error": "no such thing"}\n')
    with pytest.raises(ControlError, match="no valid reply"):
        control.parse_reply(b"")


async def test_a_request_round_trip_over_the_socket(tmp_path: Path) -> None:
    async def echo(action: str) -> dict[str, Any]:
        if action == "fail":
            raise RuntimeError("it broke")
        return {"state": action}

    path = tmp_path / "control" / "supervisor.sock"
    server = await control.serve(path, {"echo": echo})
    try:
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

        def ask(command: str, action: str) -> dict[str, Any]:
            return control.request(path, command, action, timeout=10)

        assert await asyncio.to_thread(ask, "echo", "hello") == {"ok": True, "state": "hello"}
        with pytest.raises(ControlError, match="RuntimeError: it broke"):
            await asyncio.to_thread(ask, "echo", "fail")
        with pytest.raises(ControlError, match="unknown command 'other'; known: echo"):
            await asyncio.to_thread(ask, "other", "x")
    finally:
        server.close()
        await server.wait_closed()
    with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
        control.request(path, "echo", "hello", timeout=1)


class FakePlane:
    """Records which thread stops and starts kube-apiserver; ``fail_start`` makes a start fail."""

    url = "https://127.0.0.1:6443"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_start = False

    def stop_apiserver(self) -> None:
        self.calls.append(("stop", threading.get_ident()))

    def start_apiserver(self) -> None:
        self.calls.append(("start", threading.get_ident()))
        if self.fail_start:
            raise RuntimeError("kube-apiserver /readyz: the process exited")


async def test_the_switch_stops_and_starts_once_each_on_one_thread_off_the_loop() -> None:
    plane = FakePlane()
    said: list[str] = []
    switch = ApiServerSwitch(cast(ControlPlane, plane), said.append)
    try:
        assert (await switch.handle("status"))["state"] == "running"
        assert (await switch.handle("stop"))["state"] == "stopped"
        assert (await switch.handle("stop"))["state"] == "stopped"  # already: nothing more to do
        assert (await switch.handle("start"))["state"] == "running"
        assert (await switch.handle("start"))["state"] == "running"
        with pytest.raises(ControlError, match="unknown action 'restart'"):
            await switch.handle("restart")
    finally:
        switch.close()
    assert [name for name, _ in plane.calls] == ["stop", "start"]
    threads = {thread for _, thread in plane.calls}
    assert len(threads) == 1  # the thread a restarted kube-apiserver dies with stays for the lab's life
    assert threading.get_ident() not in threads  # the loop (operator, forwarders) never blocks on it
    assert len(said) == 2


async def test_a_failed_start_leaves_it_stopped_with_no_process_behind() -> None:
    plane = FakePlane()
    switch = ApiServerSwitch(cast(ControlPlane, plane), lambda _message: None)
    try:
        await switch.handle("stop")
        plane.fail_start = True
        with pytest.raises(RuntimeError, match="the process exited"):
            await switch.handle("start")
        assert switch.state == "stopped"
        assert not switch.switching
    finally:
        switch.close()
    assert [name for name, _ in plane.calls] == ["stop", "start", "stop"]
