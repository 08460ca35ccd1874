"""The probes of one site: a :class:`~patronus.agent.prober.PathProber` per configured Path, and the
responder that answers the peers' probes.

The responder listens on the site's overlay address only (the address of its tunnels), never on the
underlays or the LAN. Probers are changed only where their spec changed, so a configuration change
elsewhere does not restart a path's measurements; a prober whose schedule died is started again at the
next :meth:`ProbeSet.sync`.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence

from patronus.agent.desired import ProberSpec
from patronus.agent.detection import StallGuard
from patronus.agent.prober import OnCheck, PathProber, ProbeResponder
from patronus.runtime.clock import Clock
from patronus.runtime.logs import get_logger

log = get_logger(__name__)

PROBE_PORT = 51900


class ProbeSet:
    """Keeps one prober per wanted path, and the responder bound to the overlay address."""

    def __init__(self, *, port: int, clock: Clock, on_check: OnCheck) -> None:
        self.port = port
        self._clock = clock
        self._on_check = on_check
        self._probers: dict[str, tuple[ProberSpec, PathProber]] = {}
        self._guard = StallGuard()  # the host's stalls, learnt and obeyed by every prober
        self._responder: ProbeResponder | None = None
        self._tunnels: tuple[str, ...] = ()
        self._source: str | None = None

    @property
    def paths(self) -> list[str]:
        return list(self._probers)

    def alive(self) -> bool:
        """Every prober's schedule is running."""
        return all(prober.running for _, prober in self._probers.values())

    async def sync(self, wanted: Mapping[str, ProberSpec], source: str, tunnels: Sequence[str] = ()) -> None:
        """Probe exactly ``wanted`` from ``source`` (the overlay address), answering probes there too, and
        only when they arrive through one of ``tunnels`` (an overlay address reached over an underlay
        gets no answer)."""
        await self._sync_responder(source, present(tunnels))
        for name in list(self._probers):
            spec, prober = self._probers[name]
            if wanted.get(name) != spec or source != self._source or not prober.running:
                await prober.stop()
                del self._probers[name]
        self._source = source
        for name, spec in wanted.items():
            if name in self._probers:
                continue
            prober = PathProber(
                name,
                spec.target,
                self.port,
                interval=spec.interval,
                probes_per_check=spec.probes,
                on_check=self._on_check,
                clock=self._clock,
                source_host=source,
                mark=spec.mark,
                guard=self._guard,
            )
            await prober.start()
            self._probers[name] = (spec, prober)

    async def _sync_responder(self, host: str, tunnels: tuple[str, ...]) -> None:
        if self._responder is not None and (self._responder.bind_host, self._tunnels) == (host, tunnels):
            return
        self._tunnels = tunnels
        if self._responder is not None:
            await self._responder.listen_on(host, tunnels)
        else:
            responder = ProbeResponder(host, self.port, devices=tunnels)
            await responder.start()
            self._responder = responder
        log.info("answering probes", host=host, port=self.port, tunnels=list(tunnels))

    async def stop(self) -> None:
        for _, prober in self._probers.values():
            await prober.stop()
        self._probers.clear()
        if self._responder is not None:
            self._responder.stop()
            self._responder = None


def present(interfaces: Sequence[str]) -> tuple[str, ...]:
    """The interfaces that exist here now. The applier creates the tunnels before probes are synced, so
    in an agent this is all of them; a missing one is left out (and said) rather than failing the bind."""
    found = []
    for name in interfaces:
        try:
            socket.if_nametoindex(name)
        except OSError:
            log.warning("tunnel missing: probes through it cannot be answered", interface=name)
            continue
        found.append(name)
    return tuple(found)
