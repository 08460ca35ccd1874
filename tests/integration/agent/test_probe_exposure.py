"""The probe responder answers on the tunnel only: probes to a site's underlay address get no answer, and
with the tunnel devices pinned neither do probes to its overlay address that arrive over the underlay.

Site b runs the real ProbeResponder (in a process inside its namespace) behind a real wireguard-go tunnel
from site a; site a sends probes three ways and reports which were answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from patronus.agent.responder import ProbeResponder
from tests.support.netns import A_IP, A_OVERLAY, B_IP, B_OVERLAY, Pair, peer, ping, sh, wg_pair

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: creates network namespaces, veth pairs and TUN devices"
)

PROBE_PORT = 51900
UNDERLAY_MARK = 77  # site a routes packets with this mark to b's overlay address over the bare underlay

_RESPONDER = """
import asyncio, json, sys
from patronus.agent.responder import ProbeResponder

async def main():
    responder = ProbeResponder(json.loads(sys.argv[1]), int(sys.argv[2]), devices=json.loads(sys.argv[3]))
    await responder.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""

_PROBE = """
import json, socket, sys, time
from patronus.agent import probe_protocol as wire
answered = {}
for name, address, mark in json.loads(sys.argv[1]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if mark:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    s.settimeout(0.3)
    answered[name] = False
    for seq in range(5):
        request = wire.encode_request(wire.path_hash(name), seq, time.monotonic_ns())
        s.sendto(request, (address, int(sys.argv[2])))
        try:
            answered[name] = wire.decode(s.recv(100)).kind is wire.Kind.REPLY
            break
        except (socket.timeout, ConnectionRefusedError, ValueError):
            continue
print(json.dumps(answered))
"""

PROBES = [
    ("overlay through the tunnel", B_OVERLAY, 0),
    ("underlay address", B_IP, 0),
    ("overlay address over the underlay", B_OVERLAY, UNDERLAY_MARK),
]


@contextmanager
def responder_in(netns: str, addresses: list[str], devices: list[str]) -> Iterator[None]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _RESPONDER, json.dumps(addresses),
         str(PROBE_PORT), json.dumps(devices)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield
    finally:
        process.kill()
        process.wait()


def probe_all(pair: Pair) -> dict[str, bool]:
    out = sh(pair.a, sys.executable, "-c", _PROBE, json.dumps(PROBES), str(PROBE_PORT))
    return dict(json.loads(out))


def tunnel(pair: Pair) -> str:
    """A real tunnel a <-> b, and in a a marked route to b's overlay address over the bare underlay."""
    wa, wb, pub_a, pub_b = wg_pair(pair)
    wa.sync_peers([peer(pub_b, B_IP, B_OVERLAY)])
    wb.sync_peers([peer(pub_a, A_IP, A_OVERLAY)])
    ping(pair.a, B_OVERLAY)
    sh(pair.a, "ip", "route", "add", f"{B_OVERLAY}/32", "via", B_IP, "dev", "u0", "table", "77")
    sh(pair.a, "ip", "rule", "add", "fwmark", str(UNDERLAY_MARK), "lookup", "77")
    return wb.name


def test_only_the_tunnel_gets_answers(pair: Pair) -> None:
    device = tunnel(pair)
    with responder_in(pair.b, [B_OVERLAY], [device]):
        assert probe_all(pair) == {
            "overlay through the tunnel": True,
            "underlay address": False,
            "overlay address over the underlay": False,
        }
    # Control: bound to the overlay address on any device, the third probe does arrive and is answered
    # (so the pinned run above was silent because of the pinning, not because the probe was lost).
    with responder_in(pair.b, [B_OVERLAY], []):
        answers = probe_all(pair)
    assert answers == {
        "overlay through the tunnel": True,
        "underlay address": False,
        "overlay address over the underlay": True,
    }


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::", ""])
async def test_a_wildcard_is_refused(wildcard: str) -> None:
    with pytest.raises(ValueError, match="tunnel addresses only"):
        await ProbeResponder(wildcard, 0).start()


async def test_listen_on_moves_the_responder_and_keeps_its_port() -> None:
    responder = ProbeResponder("127.0.0.1", 0)
    port = await responder.start()
    try:
        await responder.listen_on(["127.0.0.2", "127.0.0.3"])
        assert responder.bindings == [("127.0.0.2", None), ("127.0.0.3", None)]
        assert responder.port == port
    finally:
        responder.stop()
    assert responder.bindings == []
