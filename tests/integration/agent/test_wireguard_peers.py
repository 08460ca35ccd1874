"""WireGuard peers against real wireguard-go in network namespaces: one peer whose host name does not
resolve (or that wg refuses) fails alone while the others get their tunnels, and a host name endpoint is
re-resolved once the peer's session is stale. Name resolution is injected (a table the test controls);
pacing runs on a fake clock, everything else is the real daemon."""

from __future__ import annotations

import os

import pytest

from patronus.agent.dataplane.peers import PeerSpec
from patronus.agent.dataplane.peersync import RERESOLVE_INTERVAL_SECONDS
from patronus.agent.dataplane.wireguard import WireGuardInterface
from patronus.runtime.clock import FakeClock
from patronus.wireguard.keys import generate_private_key, public_key_for
from tests.support.netns import (
    A_IP,
    A_OVERLAY,
    B_IP,
    B_OVERLAY,
    WG_PORT,
    Pair,
    answers_ping,
    peer,
    ping,
    wg_pair,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: creates network namespaces, veth pairs and TUN devices"
)


class Names:
    """A resolver from a table; unknown names fail as getaddrinfo does."""

    def __init__(self) -> None:
        self.table: dict[str, str] = {}

    def __call__(self, host: str, port: int) -> str:
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.table[host]


def peers_of(wg: WireGuardInterface) -> dict[str, PeerSpec]:
    return {state.spec.public_key: state.spec for state in wg.state().peers}


def test_one_unresolvable_peer_does_not_block_the_others(pair: Pair) -> None:
    names, clock = Names(), FakeClock()
    wa, wb, pub_a, pub_b = wg_pair(pair, resolver=names, clock=clock)
    pub_c = public_key_for(generate_private_key())
    pub_d = public_key_for(generate_private_key())
    wanted = [
        PeerSpec.create(pub_c, "site-c.unresolvable.test:51820", ["100.96.0.3/32"]),
        peer(pub_b, B_IP, B_OVERLAY),
        PeerSpec.create(pub_d, "192.168.77.4:51820", ["100.96.0.4/32"]),
    ]
    result = wa.sync_peers(wanted)
    wb.sync_peers([peer(pub_a, A_IP, A_OVERLAY)])
    assert list(result.failed) == [pub_c]
    assert "site-c.unresolvable.test" in result.failed[pub_c].error
    assert result.next_due == clock.monotonic() + 1.0
    kernel = peers_of(wa)
    assert kernel[pub_b].endpoint == f"{B_IP}:{WG_PORT}"
    assert kernel[pub_d].endpoint == "192.168.77.4:51820"
    assert kernel[pub_c] == PeerSpec.create(pub_c, None, ["100.96.0.3/32"])  # a peer, just no endpoint yet
    ping(pair.a, B_OVERLAY)  # B's tunnel works
    # A retry before the backoff is over does nothing; after it, the fixed name is applied.
    names.table["site-c.unresolvable.test"] = "192.168.77.3"
    assert wa.resync().failed
    clock.advance(1.0)
    assert wa.resync().ok
    assert peers_of(wa)[pub_c].endpoint == "192.168.77.3:51820"
    assert wa.peer_failures() == {}


def test_a_moved_host_is_found_again_once_its_session_is_stale(pair: Pair) -> None:
    names, clock = Names(), FakeClock()
    wa, wb, pub_a, pub_b = wg_pair(pair, resolver=names, clock=clock)
    names.table["site-b.test"] = "192.168.77.99"  # a stale DNS record: nobody is there
    assert wa.sync_peers([PeerSpec.create(pub_b, f"site-b.test:{WG_PORT}", [f"{B_OVERLAY}/32"])]).ok
    wb.sync_peers([PeerSpec.create(pub_a, None, [f"{A_OVERLAY}/32"])])  # B waits to be reached
    assert peers_of(wa)[pub_b].endpoint == f"192.168.77.99:{WG_PORT}"
    assert not answers_ping(pair.a, B_OVERLAY)
    names.table["site-b.test"] = B_IP  # the record is fixed
    assert wa.resync().applied == []  # not before the re-resolution interval
    clock.advance(RERESOLVE_INTERVAL_SECONDS)
    result = wa.resync()
    assert result.applied == [["peer", pub_b, "endpoint", f"{B_IP}:{WG_PORT}"]]
    ping(pair.a, B_OVERLAY)
    assert wa.counters()[pub_b].latest_handshake > 0
