"""WireGuard peers as values: the desired peers, the kernel's view (``wg show <if> dump``), and the diff.

Pure: nothing here runs a command. :func:`plan_peer_changes` gives one ``wg set`` argument list per peer
that must change, so each peer can be applied (and fail) on its own
(:mod:`patronus.agent.dataplane.peersync`).

Every field is checked where it is built (:mod:`patronus.agent.dataplane.validate`): a public key is
canonical base64 of 32 bytes, an endpoint is ``host:port`` with an IP literal in canonical form or a DNS
name, allowed IPs are canonical prefixes, the keepalive is 0-65535. So a :class:`PeerSpec` cannot carry a
value ``wg`` would read as an option or a second setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from patronus.agent.dataplane import validate
from patronus.agent.dataplane.validate import UnsafeValue

if TYPE_CHECKING:
    from patronus.api.agentconfig import PeerConfig

MAX_KEEPALIVE = 65535


@dataclass(frozen=True)
class PeerSpec:
    """A desired peer, normalized so equal settings compare equal (allowed IPs sorted, 0 = no keepalive)."""

    public_key: str
    endpoint: str | None = None
    allowed_ips: tuple[str, ...] = ()
    persistent_keepalive: int = 0

    @classmethod
    def create(
        cls,
        public_key: str,
        endpoint: str | None = None,
        allowed_ips: Iterable[str] = (),
        persistent_keepalive: int | None = None,
    ) -> PeerSpec:
        """Validated and canonical; :class:`UnsafeValue` when a value could not be handed to ``wg``."""
        if isinstance(allowed_ips, str):
            raise UnsafeValue("allowed IPs must be a list of prefixes, not one string")
        return cls(
            public_key=validate.wireguard_key(public_key),
            endpoint=validate.endpoint(endpoint) if endpoint is not None else None,
            allowed_ips=tuple(sorted({validate.cidr(ip) for ip in allowed_ips})),
            persistent_keepalive=validate.integer(persistent_keepalive or 0, 0, MAX_KEEPALIVE, "keepalive"),
        )

    @classmethod
    def from_config(cls, peer: Mapping[str, Any]) -> PeerSpec:
        """From one ``interfaces[].peers[]`` entry of the agent configuration (its JSON form)."""
        return cls.create(
            public_key=peer["publicKey"],
            endpoint=peer.get("endpoint"),
            allowed_ips=peer.get("allowedIPs") or (),
            persistent_keepalive=peer.get("persistentKeepalive"),
        )

    @classmethod
    def from_model(cls, peer: PeerConfig) -> PeerSpec:
        """From the typed configuration model."""
        return cls.create(peer.public_key, peer.endpoint, peer.allowed_ips, peer.persistent_keepalive)

    @property
    def hostname_endpoint(self) -> bool:
        """Whether the endpoint names a host that must be resolved (and re-resolved) by the agent."""
        return self.endpoint is not None and not validate.split_endpoint(self.endpoint)[2]


def desired_peers(peers: Iterable[Mapping[str, Any]]) -> tuple[list[PeerSpec], dict[str, str]]:
    """The valid peers of a configuration, and why each invalid one (by its index) was left out.

    One malformed peer must not keep the others from being configured.
    """
    specs: list[PeerSpec] = []
    rejected: dict[str, str] = {}
    for index, peer in enumerate(peers):
        try:
            specs.append(PeerSpec.from_config(peer))
        except (UnsafeValue, KeyError, TypeError, AttributeError) as error:
            rejected[str(index)] = f"peer {index} is invalid: {error}"
    return specs, rejected


@dataclass(frozen=True)
class PeerState:
    """A peer as ``wg show <if> dump`` reports it (the preshared key column is ignored)."""

    spec: PeerSpec
    latest_handshake: int
    rx_bytes: int
    tx_bytes: int


class PeerCounters(NamedTuple):
    """Transfer counters of one peer; ``latest_handshake`` is a Unix time, 0 when never."""

    rx_bytes: int
    tx_bytes: int
    latest_handshake: int


@dataclass(frozen=True)
class InterfaceState:
    """The interface line of the dump, without its private key: only the public half is kept."""

    public_key: str | None
    listen_port: int
    fwmark: int
    peers: tuple[PeerState, ...]


def parse_dump(text: str) -> InterfaceState:
    """Parse ``wg show <if> dump``; the private key on the first line is discarded, never stored."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty `wg show dump` output")
    head = lines[0].split("\t")
    if len(head) < 4:
        raise ValueError("unexpected interface line in `wg show dump` output")
    public_key = head[1] if head[1] != "(none)" else None
    peers = []
    for line in lines[1:]:
        cols = line.split("\t")
        if len(cols) < 8:
            raise ValueError("unexpected peer line in `wg show dump` output")
        key, _psk, endpoint, allowed, handshake, rx, tx, keepalive = cols[:8]
        spec = PeerSpec.create(
            public_key=key,
            endpoint=None if endpoint == "(none)" else endpoint,
            allowed_ips=() if allowed == "(none)" else allowed.split(","),
            persistent_keepalive=0 if keepalive == "off" else int(keepalive),
        )
        peers.append(PeerState(spec, int(handshake), int(rx), int(tx)))
    fwmark = 0 if head[3] == "off" else int(head[3], 0)
    return InterfaceState(public_key, int(head[2]), fwmark, tuple(peers))


def endpoint_changed(current: str | None, desired: str | None) -> bool:
    """Whether to set the endpoint: never to clear it (wg cannot), and a hostname only if the port moved.

    ``wg`` shows endpoints resolved, so a configured hostname never equals what the dump says; re-resolving
    DNS is a separate, periodic job, not a reason to touch a working peer on every sync.
    """
    if desired is None:
        return False
    if current is None:
        return True
    if validate.split_endpoint(desired)[2]:
        return current != desired
    return current.rpartition(":")[2] != desired.rpartition(":")[2]


def plan_peer_changes(
    current: Sequence[PeerState | PeerSpec], desired: Iterable[PeerSpec]
) -> list[list[str]]:
    """``wg set <if>`` argument lists (without ``wg set <if>``) turning ``current`` peers into ``desired``,
    one per peer (``["peer", <key>, ...]``).

    New peers get every setting; changed peers only the settings that differ; unchanged peers nothing;
    peers no longer desired are removed. Removals come first, then changes in public-key order, so the plan
    is deterministic. A hostname endpoint is given as is: resolving it is the caller's job.
    """
    have = {(p.spec if isinstance(p, PeerState) else p).public_key: p for p in current}
    have_specs = {key: (p.spec if isinstance(p, PeerState) else p) for key, p in have.items()}
    want = {p.public_key: p for p in desired}
    plans: list[list[str]] = [["peer", key, "remove"] for key in sorted(have_specs.keys() - want.keys())]
    for key in sorted(want):
        target, old = want[key], have_specs.get(key)
        args: list[str] = []
        if endpoint_changed(old.endpoint if old else None, target.endpoint):
            args += ["endpoint", str(target.endpoint)]
        if old is None or old.persistent_keepalive != target.persistent_keepalive:
            args += ["persistent-keepalive", str(target.persistent_keepalive or "off")]
        if old is None or old.allowed_ips != target.allowed_ips:
            args += ["allowed-ips", ",".join(target.allowed_ips)]
        if args:
            plans.append(["peer", key, *args])
    return plans
