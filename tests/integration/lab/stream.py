"""A steady UDP stream between two lab hosts, and where it lost packets.

Sender and receiver are child processes (fork), so neither waits on the test's GIL while the test runs
``nft``, ``kubectl`` or the lab's commands. Each packet carries its sequence number and its send time
(CLOCK_REALTIME, the clock the agents stamp their reports with). Gaps are measured on the sender's
clock between packets that arrived, around a run of lost ones: a sender the machine held back sends
late but loses nothing, so only the network's losses count as an outage.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from patronus.lab import network

PACKET = struct.Struct("!QQ")  # sequence number, send time (ns)
PAYLOAD_BYTES = 64
SO_RCVBUFFORCE = 33  # Linux; root may exceed rmem_max, so a receiver the machine holds back drops nothing


def _send(origin: tuple[str, str], target: tuple[str, int], rate: int, stop: Any, sent: Any) -> None:
    """From (namespace, address): ``rate`` packets/s on an absolute schedule until ``stop``."""
    sock = network.netns_socket(origin[0])
    sock.bind((origin[1], 0))
    period_ns = 1_000_000_000 // rate
    padding = b"\0" * (PAYLOAD_BYTES - PACKET.size)
    start = time.monotonic_ns()
    seq = 0
    while not stop.is_set():
        delay = start + seq * period_ns - time.monotonic_ns()
        if delay > 0:
            time.sleep(delay / 1e9)
        with contextlib.suppress(OSError):  # no route for a moment is loss, not an error
            sock.sendto(PACKET.pack(seq, time.time_ns()) + padding, target)
        seq += 1
        sent.value = seq
    sock.close()


def _receive(namespace: str, address: tuple[str, int], stop: Any, latest: Any, out: Any) -> None:
    """Record (sequence, send time) of every packet; hand the list over on ``stop``."""
    sock = network.netns_socket(namespace)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    sock.bind(address)
    sock.settimeout(0.05)
    out.send("ready")
    arrivals: list[tuple[int, int]] = []
    while not stop.is_set():
        try:
            data = sock.recv(2048)
        except TimeoutError:
            continue
        if len(data) >= PACKET.size:
            seq, sent_ns = PACKET.unpack_from(data)
            arrivals.append((seq, sent_ns))
            latest.value = max(latest.value, sent_ns)
    sock.close()
    out.send(arrivals)


class Stream:
    """``rate`` packets/s from ``source`` (namespace, address) to ``target`` (namespace, address, port)."""

    def __init__(self, source: tuple[str, str], target: tuple[str, str, int], rate: int) -> None:
        context = multiprocessing.get_context("fork")
        self._stop_sending = context.Event()
        self._stop_receiving = context.Event()
        self._sent = context.Value("q", 0)
        self._latest = context.Value("q", 0)
        self._results, child_end = context.Pipe(duplex=False)
        namespace, address, port = target
        self._receiver = context.Process(
            target=_receive,
            args=(namespace, (address, port), self._stop_receiving, self._latest, child_end),
            daemon=True,
        )
        self._sender = context.Process(
            target=_send, args=(source, (address, port), rate, self._stop_sending, self._sent), daemon=True
        )
        self.arrivals: list[tuple[int, int]] = []
        self.sent = 0

    def start(self) -> None:
        self._receiver.start()
        if not self._results.poll(20) or self._results.recv() != "ready":
            self.stop()
            raise AssertionError("the stream's receiver did not start")
        self._sender.start()

    def flows_after(self, moment_ns: int) -> bool:
        """A packet sent after ``moment_ns`` (CLOCK_REALTIME) has arrived."""
        return int(self._latest.value) > moment_ns

    def stop(self) -> None:
        """Stop sending, let what is in flight arrive, collect; no child is left running."""
        self._stop_sending.set()
        if self._sender.pid is not None:
            self._sender.join(10)
        time.sleep(0.5)
        self._stop_receiving.set()
        if self._receiver.pid is not None and self._results.poll(30):
            self.arrivals = self._results.recv()
        for process in (self._sender, self._receiver):
            if process.pid is None:
                continue
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
        self.sent = int(self._sent.value)


@dataclass(frozen=True)
class Run:
    """Packets lost in a row: ``lost`` of them, between the sending of the two that arrived around them
    (``seconds`` apart, the later one sent at ``until_ns``)."""

    until_ns: int
    lost: int
    seconds: float


@dataclass(frozen=True)
class Losses:
    sent: int
    received: int
    gap: Run
    """The longest run: an outage."""
    elsewhere: list[Run]
    """The other runs, longest first."""

    @property
    def lost_elsewhere(self) -> int:
        return sum(run.lost for run in self.elsewhere)


def losses(arrivals: list[tuple[int, int]], between_ns: tuple[int, int]) -> Losses:
    """Where the stream lost packets sent within ``between_ns`` (from the first to the last of them that
    arrived); pure."""
    sent_at = {seq: sent for seq, sent in arrivals if between_ns[0] <= sent <= between_ns[1]}
    seqs = sorted(sent_at)  # a duplicate counts once
    runs = sorted(
        (
            Run(sent_at[b], b - a - 1, (sent_at[b] - sent_at[a]) / 1e9)
            for a, b in itertools.pairwise(seqs)
            if b - a > 1
        ),
        key=lambda run: run.seconds,
        reverse=True,
    )
    sent = seqs[-1] - seqs[0] + 1 if seqs else 0
    gap = runs[0] if runs else Run(between_ns[0], 0, 0.0)
    return Losses(sent, len(seqs), gap, runs[1:])
