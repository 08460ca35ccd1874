"""A TCP forwarder that lets processes inside the lab's site namespaces reach the API server.

The control plane listens on 127.0.0.1 of the *root* network namespace, which a site namespace cannot
reach (its loopback is its own, and on purpose it has no route out but the underlays). Each site gets a
listening socket created *inside* its namespace on ``127.0.0.1:6443`` (a socket stays in the namespace it
was created in, so one asyncio loop in the root namespace serves them all); every accepted connection
is copied byte for byte to the API server. TLS passes through untouched, and because the API server's
certificate names 127.0.0.1, the agents verify it with the cluster CA as if they were on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterable, Iterator

from patronus.lab.network import netns_socket

LISTEN_HOST = "127.0.0.1"
LISTEN_PORT = 6443
_CHUNK = 64 * 1024
"""Bytes read per copy step; with the drain after each write, at most about this much is in flight."""
_CONNECT_TIMEOUT = 10.0
_BACKLOG = 64


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF, then half-close, so the other direction can finish its reply."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()  # bounded buffering: a slow reader pauses the copy
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


class Connections:
    """The open connections of some listeners, so closing them ends each one rather than leaving it to the
    loop's shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Track the current task (one connection's handler) while inside."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def close(self, servers: Iterable[asyncio.Server]) -> None:
        """Stop ``servers`` listening, end every tracked connection, then wait for the servers to close."""
        servers = list(servers)
        for server in servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)


class Forwarder:
    """Listens in each given namespace and proxies every connection to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int, *, listen_port: int = LISTEN_PORT) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_port = listen_port
        self._servers: dict[str, asyncio.Server] = {}
        self._connections = Connections()

    @property
    def namespaces(self) -> list[str]:
        return sorted(self._servers)

    async def add(self, namespace: str) -> None:
        """Start listening on ``127.0.0.1:<listen_port>`` inside ``namespace``."""
        if namespace in self._servers:
            return
        sock = netns_socket(namespace, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LISTEN_HOST, self.listen_port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
            server = await asyncio.start_server(self._accepted, sock=sock)
        except BaseException:
            sock.close()
            raise
        self._servers[namespace] = server

    async def start(self, namespaces: Iterable[str]) -> None:
        """Listen in every namespace; on a failure close the ones already open and re-raise."""
        try:
            for namespace in namespaces:
                await self.add(namespace)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop listening everywhere and end every open connection; safe to call twice."""
        servers, self._servers = list(self._servers.values()), {}
        await self._connections.close(servers)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client: tracked, so :meth:`close` can end it rather than leave it to the loop's shutdown."""
        with self._connections.tracking():
            await self._proxy(reader, writer)

    async def _proxy(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port, limit=_CHUNK), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            await close_writer(client_writer)
            return
        try:
            await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
        finally:
            await close_writer(upstream_writer)
            await close_writer(client_writer)
