"""The running lab's control channel: other processes ask its supervisor to act on what it owns.

``patronus lab apiserver stop|start|status`` must reach the kube-apiserver that the supervisor started
(it owns the :class:`~patronus.controlplane.launcher.ControlPlane`, and its watchdog must know an
outage is on purpose). The supervisor listens on a Unix socket in the lab's directory, inside a
directory only its owner may enter; each connection carries one request and one reply, a line of JSON
each way::

    -> {"command": "apiserver", "action": "stop"}
    <- {"ok": true, "state": "stopped", "seconds": 0.4}
    <- {"ok": false, "error": "..."}

The reply comes once the action is done: a stopped API server's process is gone, a started one answers
``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from patronus.controlplane.launcher import ControlPlane

Handler = Callable[[str], Awaitable[dict[str, Any]]]
"""Called with the request's action; returns the reply's fields (``ok`` is added)."""

MAX_LINE = 4096
READ_TIMEOUT = 5.0


class ControlError(Exception):
    """A request the supervisor refused or could not carry out; the message says why."""


# -- the wire (pure) ----------------------------------------------------------------------------------


def encode_request(command: str, action: str) -> bytes:
    return json.dumps({"command": command, "action": action}).encode() + b"\n"


def parse_request(line: bytes) -> tuple[str, str]:
    """``(command, action)`` of a request line; :class:`ControlError` for anything else."""
    try:
        request = json.loads(line)
    except ValueError as error:
        raise ControlError("a request is one line of JSON") from error
    if not isinstance(request, dict) or set(request) != {"command", "action"}:
        raise ControlError('a request is {"command": ..., "action": ...}')
    command, action = request["command"], request["action"]
    if not isinstance(command, str) or not isinstance(action, str):
        raise ControlError("command and action are strings")
    return command, action


def encode_reply(fields: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(fields)).encode() + b"\n"


def parse_reply(line: bytes) -> dict[str, Any]:
    """The reply's fields; :class:`ControlError` with the supervisor's message when it failed."""
    try:
        reply = json.loads(line)
    except ValueError as error:
        raise ControlError(f"the supervisor sent no valid reply: {line[:200]!r}") from error
    if not isinstance(reply, dict):
        raise ControlError(f"the supervisor sent no valid reply: {line[:200]!r}")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error") or "the supervisor refused the request"))
    return reply


# -- the supervisor's side ----------------------------------------------------------------------------


async def serve(path: Path, handlers: Mapping[str, Handler]) -> asyncio.Server:
    """Listen on ``path`` (its directory made owner-only first); the caller closes the server."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)  # whoever can connect can stop the API server
    path.unlink(missing_ok=True)  # a socket left by a lab that was killed

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), READ_TIMEOUT)
            reply = await _dispatch(line, handlers)
            writer.write(encode_reply(reply))
            await writer.drain()
        except (OSError, TimeoutError, ValueError):
            pass  # the client went away or sent too much: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_unix_server(on_connection, path, limit=MAX_LINE)


async def _dispatch(line: bytes, handlers: Mapping[str, Handler]) -> dict[str, Any]:
    try:
        command, action = parse_request(line)
        handler = handlers.get(command)
        if handler is None:
            raise ControlError(f"unknown command {command!r}; known: {', '.join(sorted(handlers))}")
        return {"ok": True, **await handler(action)}
    except ControlError as error:
        return {"ok": False, "error": str(error)}
    except Exception as error:  # the action failed: the client is told why, the supervisor goes on
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}


class ApiServerSwitch:
    """Stops and starts the lab's kube-apiserver alone: etcd keeps the data, and every client (the
    operator in the supervisor, the agents through their forwarders) must ride out the outage.

    kube-apiserver is tied to the thread that starts it (``PR_SET_PDEATHSIG`` fires when that thread
    ends), and starting waits for ``/readyz``, which must not block the supervisor's event loop (the
    operator and the forwarders run on it). So restarts happen on one thread kept for the lab's
    lifetime; :meth:`close` ends it and must run after the control plane stopped.
    """

    ACTIONS = ("stop", "start", "status")

    def __init__(self, plane: ControlPlane, say: Callable[[str], None]) -> None:
        self._plane = plane
        self._say = say
        self._lock = asyncio.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apiserver")
        self._stopped = False

    @property
    def switching(self) -> bool:
        """A stop or start is under way: its process may be dead without the lab being broken."""
        return self._lock.locked()

    @property
    def state(self) -> str:
        return "stopped" if self._stopped else "running"

    async def handle(self, action: str) -> dict[str, Any]:
        if action not in self.ACTIONS:
            raise ControlError(f"unknown action {action!r} for apiserver; known: {', '.join(self.ACTIONS)}")
        async with self._lock:
            started = time.monotonic()
            if action == "stop" and not self._stopped:
                await self._run(self._plane.stop_apiserver)
                self._stopped = True
                self._say(f"kube-apiserver stopped on request in {time.monotonic() - started:.1f}s")
            elif action == "start" and self._stopped:
                await self._start()
                self._say(f"kube-apiserver ready again in {time.monotonic() - started:.1f}s")
            return {"state": self.state, "seconds": round(time.monotonic() - started, 2)}

    async def _start(self) -> None:
        try:
            await self._run(self._plane.start_apiserver)
        except Exception:
            await self._run(self._plane.stop_apiserver)  # no half-started process for the watchdog
            raise
        self._stopped = False

    async def _run(self, call: Callable[[], None]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def close(self) -> None:
        self._thread.shutdown(wait=True)


# -- the client's side --------------------------------------------------------------------------------


def request(path: Path, command: str, action: str, *, timeout: float) -> dict[str, Any]:
    """Send one request and wait up to ``timeout`` seconds for its reply.

    ``FileNotFoundError`` or ``ConnectionRefusedError`` when no supervisor listens on ``path``;
    :class:`ControlError` when it refused or failed.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(encode_request(command, action))
        received = b""
        while not received.endswith(b"\n"):
            chunk = sock.recv(MAX_LINE)
            if not chunk:
                break
            received += chunk
    return parse_reply(received)
