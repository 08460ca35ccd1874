"""A TCP forwarder the other way round: Prometheus in the root namespace reaches each agent's ``/metrics``.

Every agent serves its metrics on ``127.0.0.1:<port>`` (or all addresses) of its own site namespace, which
the root namespace cannot reach. For each site this listens on a free port of the root namespace's
loopback and, per accepted connection, opens a socket *inside* the site's namespace (see
:func:`~patronus.lab.network.netns_socket`) to the agent's port and copies bytes both ways. Nothing gets
an address outside loopback; the sites keep having no route out but their underlays.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections.abc import Mapping

from patronus.lab.forwarder import Connections, close_writer, pipe
from patronus.lab.network import netns_socket

LISTEN_HOST = "127.0.0.1"
_CONNECT_TIMEOUT = 5.0


async def _connect_in(namespace: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = await asyncio.to_thread(netns_socket, namespace, socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


class MetricsForwarder:
    """One loopback listener per site, each leading to ``127.0.0.1:<target_port>`` in that site."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.ports: dict[str, int] = {}
        self._servers: list[asyncio.Server] = []
        self._connections = Connections()

    async def start(self, namespaces: Mapping[str, str]) -> dict[str, int]:
        """Listen for every ``{site: namespace}``; returns ``{site: port on 127.0.0.1}``."""
        try:
            for site, namespace in namespaces.items():
                server = await asyncio.start_server(
                    functools.partial(self._accepted, namespace), LISTEN_HOST, 0
                )
                self._servers.append(server)
                self.ports[site] = int(server.sockets[0].getsockname()[1])
        except BaseException:
            await self.close()
            raise
        return dict(self.ports)

    async def close(self) -> None:
        """Stop listening and end open connections; safe to call twice."""
        servers, self._servers = self._servers, []
        await self._connections.close(servers)

    async def _accepted(
        self, namespace: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with self._connections.tracking():
            try:
                await self._proxy(namespace, reader, writer)
            finally:
                await close_writer(writer)

    async def _proxy(
        self, namespace: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                _connect_in(namespace, self.target_port), _CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError):
            return  # the agent is not listening (yet): the scrape fails, as it should
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            await close_writer(up_writer)
