"""The base chains of the policy table: which packets reach the policy scans, and which skip conntrack.

- ``prerouting`` (forwarded traffic) skips packets for this host first (``fib daddr type local``:
  delivered packets are never routed down a path; most of them are the tunnels' own encrypted packets,
  one per MTU, and a route lookup is cheaper for them than a candidate-set lookup), then goes through
  ``candidates``.
- ``output`` (local traffic) is a ``route`` chain, so a new mark re-routes the packet; it goes through
  the same candidate sets. Where a scan has port verdict maps, the candidate test on ports is those
  maps (a packet is looked up once, not in a candidate set and then in a map: in the benchmark these
  lookups were the largest part of the table's cost, more than conntrack, until single ports moved into
  a hash map, :mod:`patronus.agent.dataplane.dispatch`).
- ``postrouting`` repeats the candidate test in front of ``shaping`` (``meta priority`` for htb).
- Packets carrying the WireGuard fwmark (the tunnels' own encrypted packets) are never classified, so a
  policy broad enough to match them cannot loop a tunnel into itself.
- ``untracked_in`` / ``untracked_out`` (at ``raw`` priority, before conntrack) exempt the tunnels' own
  encrypted packets from conntrack: those with the WireGuard fwmark going out, and UDP arriving for this
  host on a WireGuard listen port. The table's ``ct`` matches (``matchedFlows``) turn conntrack on for
  the whole namespace, and the encrypted packets would otherwise each cost a lookup (and a table entry
  per peer) that nothing reads: the flows the policies count are the tunnels' inner packets, which stay
  tracked. ``fib daddr type local`` keeps a packet forwarded to another host's port (a port forward to a
  LAN host, say) tracked, so NAT of such traffic keeps working. A host firewall must accept the listen
  ports by port, not by ``ct state established`` (the encrypted packets have ``ct state untracked``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from patronus.agent.dataplane import validate
from patronus.agent.dataplane.prefilter import Prefilter

_HOOK = "type filter hook {} priority {}; policy accept;"


def _chain(name: str, rules: Sequence[str], hook: str | None = None) -> list[str]:
    head = [f"\t\t{hook}"] if hook else []
    return [f"\tchain {name} {{", *head, *(f"\t\t{rule}" for rule in rules), "\t}"]


def _set(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def render(
    candidates: Prefilter,
    *,
    shaping: bool,
    bypass_mark: int,
    excluded: Sequence[str],
    tunnel_ports: Sequence[int],
    port_maps: Mapping[str, Sequence[str]] | None = None,
) -> list[str]:
    """The base chains (and the chains only they reach) as nft lines; values are validated here.
    ``port_maps`` names the port verdict maps of a scan (``classify``, ``shaping``) that has them: the
    candidate test uses them directly (:meth:`Prefilter.candidate_rules`)."""
    port_maps = port_maps or {}
    bypass = f"0x{validate.mark(bypass_mark):08x}"
    names = [f'"{validate.interface(name)}"' for name in excluded]
    ports = sorted({validate.port(port) for port in tunnel_ports})
    skip = [f"meta mark {bypass} return"]  # the tunnels' own packets: never classified
    lines = _chain(
        "candidates", [*skip, *candidates.candidate_rules("classify", port_maps.get("classify", ()))]
    )
    prerouting = ['iifname "lo" return']
    if names:
        prerouting.append(f"iifname {_set(names)} return")
    prerouting += ["fib daddr type local return", "jump candidates"]
    lines += _chain("prerouting", prerouting, _HOOK.format("prerouting", "mangle"))
    lines += _chain("output", ["jump candidates"], "type route hook output priority mangle; policy accept;")
    postrouting = (
        [*skip, *candidates.candidate_rules("shaping", port_maps.get("shaping", ()))] if shaping else []
    )
    lines += _chain(
        "postrouting", postrouting, "type filter hook postrouting priority mangle; policy accept;"
    )
    if ports:
        listen = _set([str(port) for port in ports])
        untracked_in = [f"udp dport {listen} fib daddr type local notrack"]
        lines += _chain(
            "untracked_in", untracked_in, "type filter hook prerouting priority raw; policy accept;"
        )
        lines += _chain("untracked_out", [f"meta mark {bypass} notrack"],
                        "type filter hook output priority raw; policy accept;")  # fmt: skip
    return lines
