"""The probe responder: echoes path probes, on the site's tunnel addresses only.

Every site answers its peers' probes (:mod:`patronus.agent.prober`) so they can measure the paths to it.
It must not answer anyone else: bound to a wildcard address it would be a UDP reflector on the WAN and
would tell a scanner that a Patronus agent runs there.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable
from typing import Any, cast

from patronus.agent import probe_protocol as wire
from patronus.agent.dataplane import validate
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

WILDCARDS = frozenset({"0.0.0.0", "::", ""})


class ProbeResponder:
    """Echoes every valid probe request back to its sender as a reply, on the tunnel addresses only.

    It listens on the site's overlay address(es), never on a wildcard: a probe sent to an underlay
    address gets no answer, so the agent is not a reflector on the WAN. With ``devices`` (the WireGuard
    interfaces), each address is bound once per device (``SO_BINDTODEVICE``), so even a probe addressed
    to the overlay address but arriving over the underlay (Linux accepts any local address on any
    interface) gets no answer. Addresses are bound with ``IP_FREEBIND``: the responder can start before
    the tunnel's address exists, and survives the interface being recreated. :meth:`listen_on` changes
    the addresses and devices when the configuration does, keeping the port.
    """

    def __init__(
        self, bind_host: str | Iterable[str] = (), port: int = 0, *, devices: Iterable[str] = ()
    ) -> None:
        self.bind_host = bind_host if isinstance(bind_host, str) else ",".join(bind_host)
        """The addresses as given (one address, or several joined by commas)."""
        self.requested_port = port
        self.replies = 0
        self.dropped = 0
        self._wanted = _bindings(bind_host, devices)
        self._endpoints: dict[tuple[str, str | None], _Echo] = {}
        self._port = port
        self._started = False

    async def start(self) -> int:
        """Bind and start answering; returns the bound port (useful with ``port=0``)."""
        if self._started:
            raise RuntimeError("responder already started")
        self._started = True
        await self._bind(self._wanted)
        return self.port

    async def listen_on(self, addresses: str | Iterable[str], devices: Iterable[str] = ()) -> None:
        """Answer on exactly these addresses (on each of ``devices``, if given) from now on."""
        wanted = _bindings(addresses, devices)
        self.bind_host = addresses if isinstance(addresses, str) else ",".join(addresses)
        for binding in set(self._endpoints) - set(wanted):
            self._endpoints.pop(binding).close()
        self._wanted = wanted
        if self._started:
            await self._bind(wanted)

    @property
    def bindings(self) -> list[tuple[str, str | None]]:
        """The (address, device) pairs answering now."""
        return sorted(self._endpoints, key=lambda b: (b[0], b[1] or ""))

    @property
    def port(self) -> int:
        if not self._started:
            raise RuntimeError("responder not started")
        return self._port

    def stop(self) -> None:
        """Close every socket; probes sent afterwards go unanswered."""
        for endpoint in self._endpoints.values():
            endpoint.close()
        self._endpoints.clear()
        self._started = False

    async def _bind(self, wanted: list[tuple[str, str | None]]) -> None:
        loop = asyncio.get_running_loop()
        for address, device in wanted:
            if (address, device) in self._endpoints:
                continue
            sock = _socket(address, device, self._port)
            self._port = int(sock.getsockname()[1])  # the first bind picks it when port 0 was asked
            echo = _Echo(self)
            await loop.create_datagram_endpoint(lambda echo=echo: echo, sock=sock)  # type: ignore[misc]
            self._endpoints[(address, device)] = echo

    def answer(self, data: bytes, addr: tuple[str | Any, int], transport: asyncio.DatagramTransport) -> None:
        try:
            probe = wire.decode(data)
        except ValueError:
            self.dropped += 1
            return
        if probe.kind is not wire.Kind.REQUEST:
            self.dropped += 1
            return
        transport.sendto(wire.encode_reply(probe), addr)
        self.replies += 1


def _bindings(addresses: str | Iterable[str], devices: Iterable[str]) -> list[tuple[str, str | None]]:
    """(address, device) pairs; refuses wildcards and anything that is not one IP address."""
    hosts = [addresses] if isinstance(addresses, str) else list(addresses)
    found: list[tuple[str, str | None]] = []
    for host in hosts:
        if host in WILDCARDS:
            raise ValueError("the probe responder answers on tunnel addresses only, not on a wildcard")
        address = validate.address(host)
        found += [(address, validate.interface(d)) for d in devices] or [(address, None)]
    return sorted(set(found), key=lambda b: (b[0], b[1] or ""))


def _socket(address: str, device: str | None, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if device is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, device.encode())
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        sock.setblocking(False)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


_IP_FREEBIND = 15  # Linux <linux/in.h>; the socket module does not name it
_IPV6_FREEBIND = 78  # Linux <linux/in6.h>


class _Echo(asyncio.DatagramProtocol):
    """One bound socket of a :class:`ProbeResponder`."""

    def __init__(self, owner: ProbeResponder) -> None:
        self._owner = owner
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport, but is one.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._transport is not None:
            self._owner.answer(data, addr, self._transport)

    def error_received(self, exc: Exception) -> None:
        log.debug("probe responder socket error", error=str(exc))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
