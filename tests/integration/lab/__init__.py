"""Shared pieces of the lab tests: a root check, a lab that is always destroyed, and a UDP echo.

The echo is synchronous and single-threaded: the client socket (in one site) sends, the server socket (in
another site) receives and answers, the client receives. Both sockets belong to the test process (see
``netns_socket``), so there is no child process to start or to leak, and the RTT has no thread hand-off.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from patronus.lab import network
from patronus.lab.plan import LabPlan, plan_lab


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, veth, nftables, TUN)")
    for tool in ("ip", "nft", "sysctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"the lab needs {tool!r} on PATH")


def unique_prefix() -> str:
    return f"lt{secrets.token_hex(2)}"


@contextlib.contextmanager
def lab(sites: tuple[str, ...] = ("a", "b", "c")) -> Iterator[LabPlan]:
    """A created lab with a fresh prefix, destroyed afterwards whatever happens."""
    require_root()
    plan = plan_lab(sites, prefix=unique_prefix())
    try:
        network.create(plan)
        yield plan
    finally:
        network.destroy(plan)


@dataclass
class Echo:
    """A client socket in one site and a server socket in another, bound to the given addresses."""

    client: socket.socket
    server: socket.socket

    def rtt(self, payload: bytes = b"x" * 64, timeout: float = 1.0) -> float | None:
        """One round trip in milliseconds, or None when the request or the reply was lost."""
        self.client.settimeout(timeout)
        self.server.settimeout(timeout)
        start = time.perf_counter()
        self.client.sendto(payload, self.server.getsockname())
        try:
            data, peer = self.server.recvfrom(2048)
            self.server.sendto(data, peer)
            self.client.recv(2048)
        except TimeoutError:
            self.drain()
            return None
        return (time.perf_counter() - start) * 1000.0

    def rtts(self, count: int) -> list[float]:
        """``count`` round trips that all came back (a lost one fails the test)."""
        samples = [self.rtt() for _ in range(count)]
        assert None not in samples, f"{samples.count(None)} of {count} echoes were lost"
        return [s for s in samples if s is not None]

    def median_rtt(self, count: int) -> float:
        """The median of ``count`` round trips: one scheduling hiccup of a busy machine (tens of ms)
        would move a mean of 20 by more than a millisecond."""
        return statistics.median(self.rtts(count))

    def drain(self) -> None:
        """Throw away late datagrams so the next round trip pairs its own request and reply."""
        for sock in (self.client, self.server):
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recv(2048)
            sock.setblocking(True)

    def close(self) -> None:
        self.client.close()
        self.server.close()


@contextlib.contextmanager
def echo(plan: LabPlan, source: str, target: str, underlay: str, port: int = 7777) -> Iterator[Echo]:
    """An :class:`Echo` from ``source``'s to ``target``'s address on ``underlay``."""
    client = network.netns_socket(plan.site(source).namespace)
    server = network.netns_socket(plan.site(target).namespace)
    pair = Echo(client, server)
    try:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        client.bind((plan.link(source, underlay).site_address, 0))
        server.bind((plan.link(target, underlay).site_address, port))
        yield pair
    finally:
        pair.close()
