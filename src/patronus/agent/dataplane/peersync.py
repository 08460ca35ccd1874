"""Keep one interface's WireGuard peers in sync, one peer at a time, with a backoff per peer.

One ``wg set`` per peer: a peer that cannot be applied (its endpoint's host name does not resolve, or
``wg`` refuses it) fails alone, and the others are configured. A failed peer is retried after a backoff
of its own (1 s, doubling, at most 5 min) rather than on every sync; changing its desired settings
retries it at once. A new peer whose host name does not resolve is still added without an endpoint, so
the other site can reach it (WireGuard learns the endpoint from the first authenticated packet).

Host names are resolved here, not by ``wg``: ``wg`` retries a failing lookup for up to about a minute
while it holds the command (and would hold the agent's thread with it), and the resolver can be replaced
in tests. As wg-quick's ``reresolve-dns.sh`` does, a host name is looked up again when the peer's latest
handshake is older than :data:`STALE_HANDSHAKE_SECONDS` (a peer that moved to a new address stops
answering), at most every ``reresolve_interval`` seconds; a peer whose session is alive is never touched,
so roaming still works. :class:`PeerSyncResult` says which peers failed and when the next retry or
re-resolution is due, so the caller knows when to call again.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from patronus.agent.dataplane import validate
from patronus.agent.dataplane.commands import CommandError
from patronus.agent.dataplane.peers import PeerSpec, PeerState, plan_peer_changes
from patronus.runtime.clock import Clock, SystemClock

STALE_HANDSHAKE_SECONDS = 135.0
"""wg-quick's reresolve-dns.sh threshold: REJECT_AFTER_TIME (180 s) less a margin; a live session renews
its handshake every 2 minutes."""
RERESOLVE_INTERVAL_SECONDS = 30.0

Resolver = Callable[[str, int], str]
"""``(host, port) -> address``: an IP address for a host name; raises ``OSError`` when there is none."""
Apply = Callable[[list[str]], None]
"""Runs ``wg set <interface> <args...>``; raises :class:`CommandError` when ``wg`` refuses."""


def resolve(host: str, port: int) -> str:
    """The first address ``getaddrinfo`` gives for ``host`` (as ``wg`` itself would pick)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"{host} has no address")
    return validate.address(str(infos[0][4][0]))


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt ``n + 1`` after ``n`` failures: ``initial * factor**(n - 1)``, capped."""

    initial: float = 1.0
    factor: float = 2.0
    maximum: float = 300.0

    def delay(self, failures: int) -> float:
        exponent = min(max(failures - 1, 0), 64)
        return float(min(self.maximum, self.initial * self.factor**exponent))


@dataclass(frozen=True)
class PeerFailure:
    """A peer that could not be (fully) applied: why, how often in a row, and when it is tried again
    (``retry_at`` on the monotonic clock)."""

    public_key: str
    error: str
    attempts: int
    retry_at: float


@dataclass(frozen=True)
class PeerSyncResult:
    """What one sync did: the ``wg set`` argument lists applied (without ``wg set <if>``), the peers that
    failed (now or earlier and still waiting), and when to sync again (monotonic; None: only on change)."""

    applied: list[list[str]] = field(default_factory=list)
    failed: dict[str, PeerFailure] = field(default_factory=dict)
    next_due: float | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass
class _Failure:
    spec: PeerSpec | None
    """The desired settings that failed (None: a removal); other settings are tried at once."""
    failure: PeerFailure


class PeerSync:
    """Per-peer application with backoff and re-resolution; one instance per interface."""

    def __init__(
        self,
        apply: Apply,
        *,
        clock: Clock | None = None,
        resolver: Resolver = resolve,
        backoff: Backoff | None = None,
        reresolve_interval: float = RERESOLVE_INTERVAL_SECONDS,
    ) -> None:
        self._apply = apply
        self._clock: Clock = clock or SystemClock()
        self._resolve = resolver
        self._backoff = backoff or Backoff()
        self._reresolve_interval = reresolve_interval
        self._failures: dict[str, _Failure] = {}
        self._resolved_at: dict[str, float] = {}

    def sync(self, current: Sequence[PeerState], desired: Sequence[PeerSpec]) -> PeerSyncResult:
        """Apply what differs between ``current`` (the dump) and ``desired``, peer by peer."""
        now = self._clock.monotonic()
        want = {spec.public_key: spec for spec in desired}
        for key in set(self._failures) - set(want) - {p.spec.public_key for p in current}:
            del self._failures[key]  # gone from both sides: nothing left to retry
        for key in set(self._resolved_at) - set(want):
            del self._resolved_at[key]
        applied: list[list[str]] = []
        endpoint_done: set[str] = set()
        for change in plan_peer_changes(current, desired):
            key = change[1]
            spec = want.get(key)
            if self._waiting(key, spec, now):
                continue
            if "endpoint" in change:
                endpoint_done.add(key)
            self._attempt(key, spec, change, now, applied)
        by_key = {p.spec.public_key: p for p in current}
        for key, spec in sorted(want.items()):
            if key not in endpoint_done and key in by_key and not self._waiting(key, spec, now):
                self._reresolve(spec, by_key[key], now, applied)
        return PeerSyncResult(applied, self.failures(), self._next_due(want))

    def failures(self) -> dict[str, PeerFailure]:
        """The peers waiting for a retry, by public key."""
        return {key: entry.failure for key, entry in sorted(self._failures.items())}

    # -- one peer ---------------------------------------------------------------------------------------

    def _waiting(self, key: str, spec: PeerSpec | None, now: float) -> bool:
        entry = self._failures.get(key)
        return entry is not None and entry.spec == spec and entry.failure.retry_at > now

    def _attempt(
        self, key: str, spec: PeerSpec | None, change: list[str], now: float, applied: list[list[str]]
    ) -> None:
        args, error = self._resolved(change, now)
        if len(args) > 2:  # something left to set (or "remove")
            try:
                self._apply(args)
                applied.append(args)
            except CommandError as failure:
                error = str(failure)
        if error is None:
            self._failures.pop(key, None)
        else:
            self._fail(key, spec, error, now)

    def _resolved(self, change: list[str], now: float) -> tuple[list[str], str | None]:
        """``change`` with a host name endpoint replaced by its address, or without the endpoint (and
        the reason) when it does not resolve."""
        if "endpoint" not in change:
            return change, None
        at = change.index("endpoint")
        host, port, is_ip = validate.split_endpoint(change[at + 1])
        if is_ip:
            return change, None
        self._resolved_at[change[1]] = now
        try:
            address = self._resolve(host, port)
            resolved = validate.format_endpoint(address, port)
            return [*change[:at], "endpoint", resolved, *change[at + 2 :]], None
        except (OSError, validate.UnsafeValue) as error:
            return [*change[:at], *change[at + 2 :]], f"cannot resolve {host}: {error}"

    def _reresolve(self, spec: PeerSpec, state: PeerState, now: float, applied: list[list[str]]) -> None:
        if not spec.hostname_endpoint or spec.endpoint is None:
            return
        stale = self._clock.now().timestamp() - state.latest_handshake >= STALE_HANDSHAKE_SECONDS
        due = now - self._resolved_at.get(spec.public_key, -math.inf) >= self._reresolve_interval
        if not (stale and due):
            return
        change, error = self._resolved(["peer", spec.public_key, "endpoint", spec.endpoint], now)
        if error is None and change[3] != state.spec.endpoint:
            self._attempt(spec.public_key, spec, change, now, applied)
        elif error is None:
            self._failures.pop(spec.public_key, None)
        else:
            self._fail(spec.public_key, spec, error, now)

    def _fail(self, key: str, spec: PeerSpec | None, error: str, now: float) -> None:
        previous = self._failures.get(key)
        attempts = previous.failure.attempts + 1 if previous is not None and previous.spec == spec else 1
        retry_at = now + self._backoff.delay(attempts)
        self._failures[key] = _Failure(spec, PeerFailure(key, error, attempts, retry_at))

    def _next_due(self, want: Mapping[str, PeerSpec]) -> float | None:
        times = [entry.failure.retry_at for entry in self._failures.values()]
        times += [
            self._resolved_at.get(key, self._clock.monotonic()) + self._reresolve_interval
            for key, spec in want.items()
            if spec.hostname_endpoint
        ]
        return min(times) if times else None
