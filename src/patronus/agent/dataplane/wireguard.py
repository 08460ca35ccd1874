"""One WireGuard interface per underlay: create it, key it, and keep its peers in sync incrementally.

The kernel module is used when ``ip link add type wireguard`` works; otherwise ``wireguard-go`` (userspace,
over TUN). wireguard-go daemonizes and exits by itself when its interface is deleted, so :meth:`remove` is
``ip link del`` plus a bounded wait for its control socket to go away.

wireguard-go keeps its control socket in ``/var/run/wireguard/<name>.sock``, which every network namespace
shares unless the agent runs in its own mount namespace: two namespaces on one host cannot both run a
userspace interface of the same name. In a pod (own mount namespace) that never matters; tests on one host
use distinct names.

Peers are synced by diffing ``wg show <if> dump`` with the desired peers (:func:`plan_peer_changes`):
a peer whose settings are unchanged is not touched, so its session and handshake survive a config change
elsewhere. The private key goes to ``wg`` on stdin only; it is never an argument, a log field or part of an
exception, and the dump's private-key column is dropped as soon as it is read.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from patronus.agent.dataplane.commands import CommandError, Runner, run
from patronus.wireguard.keys import public_key_for

WIREGUARD_FWMARK = 0x51820
"""Mark on the encrypted (outer) packets: policy routing skips them, so a tunnel never loops into itself."""

USERSPACE_SOCKET_DIR = Path("/var/run/wireguard")
_STOP_TIMEOUT_SECONDS = 5.0


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
        return cls(
            public_key=public_key,
            endpoint=_normalize_endpoint(endpoint) if endpoint else None,
            allowed_ips=tuple(sorted({str(ipaddress.ip_network(ip, strict=False)) for ip in allowed_ips})),
            persistent_keepalive=persistent_keepalive or 0,
        )

    @classmethod
    def from_config(cls, peer: Mapping[str, Any]) -> PeerSpec:
        """From one ``interfaces[].peers[]`` entry of the agent configuration."""
        return cls.create(
            public_key=str(peer["publicKey"]),
            endpoint=peer.get("endpoint"),
            allowed_ips=peer.get("allowedIPs") or (),
            persistent_keepalive=peer.get("persistentKeepalive"),
        )


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


def _normalize_endpoint(endpoint: str) -> str:
    """``host:port`` with IPv6 hosts bracketed and IP literals in canonical form; hostnames kept as is."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"{host}:{port}"
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _is_ip_endpoint(endpoint: str) -> bool:
    try:
        ipaddress.ip_address(endpoint.rpartition(":")[0].strip("[]"))
    except ValueError:
        return False
    return True


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


def _endpoint_changed(current: str | None, desired: str | None) -> bool:
    """Whether to set the endpoint: never to clear it (wg cannot), and a hostname only if the port moved.

    ``wg`` shows endpoints resolved, so a configured hostname never equals what the dump says; re-resolving
    DNS is a separate, periodic job, not a reason to touch a working peer on every sync.
    """
    if desired is None:
        return False
    if current is None:
        return True
    if _is_ip_endpoint(desired):
        return current != desired
    return current.rpartition(":")[2] != desired.rpartition(":")[2]


def plan_peer_changes(
    current: Sequence[PeerState | PeerSpec], desired: Iterable[PeerSpec]
) -> list[list[str]]:
    """``wg set <if>`` argument lists (without ``wg set <if>``) turning ``current`` peers into ``desired``.

    New peers get every setting; changed peers only the settings that differ; unchanged peers nothing;
    peers no longer desired are removed. Removals come first, then changes in public-key order, so the plan
    is deterministic.
    """
    now = {p.spec.public_key if isinstance(p, PeerState) else p.public_key: p for p in current}
    have = {key: (p.spec if isinstance(p, PeerState) else p) for key, p in now.items()}
    want = {p.public_key: p for p in desired}
    plans: list[list[str]] = [["peer", key, "remove"] for key in sorted(have.keys() - want.keys())]
    for key in sorted(want):
        target, old = want[key], have.get(key)
        args: list[str] = []
        if _endpoint_changed(old.endpoint if old else None, target.endpoint):
            args += ["endpoint", str(target.endpoint)]
        if old is None or old.persistent_keepalive != target.persistent_keepalive:
            args += ["persistent-keepalive", str(target.persistent_keepalive or "off")]
        if old is None or old.allowed_ips != target.allowed_ips:
            args += ["allowed-ips", ",".join(target.allowed_ips)]
        if args:
            plans.append(["peer", key, *args])
    return plans


class _SecretKey:
    """Holds a private key so that no repr, str or traceback local can show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.strip()

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__


class WireGuardInterface:
    """A WireGuard interface in ``netns``, keyed from ``private_key`` or ``private_key_path``."""

    def __init__(
        self,
        name: str,
        *,
        listen_port: int,
        address: str | None = None,
        private_key: str | None = None,
        private_key_path: str | os.PathLike[str] | None = None,
        netns: str | None = None,
        fwmark: int = WIREGUARD_FWMARK,
        runner: Runner = run,
    ) -> None:
        if (private_key is None) == (private_key_path is None):
            raise ValueError("give exactly one of private_key and private_key_path")
        if len(name) > 15:
            raise ValueError(f"interface name {name!r} is longer than 15 characters")
        self.name = name
        self.listen_port = listen_port
        self.address = address
        self.netns = netns
        self.fwmark = fwmark
        self._key = _SecretKey(private_key) if private_key is not None else None
        self._key_path = Path(private_key_path) if private_key_path is not None else None
        self._run = runner
        self.userspace: bool | None = None
        """True when wireguard-go runs the interface; None until :meth:`ensure` created it."""

    def __repr__(self) -> str:
        return f"WireGuardInterface(name={self.name!r}, netns={self.netns!r}, port={self.listen_port})"

    def _wg(self, *args: str, input: str | None = None, check: bool = True) -> str:
        return self._run(["wg", *args], netns=self.netns, input=input, check=check).stdout

    def exists(self) -> bool:
        return (
            self._run(["ip", "link", "show", "dev", self.name], netns=self.netns, check=False).returncode == 0
        )

    def _create(self) -> None:
        added = self._run(
            ["ip", "link", "add", "dev", self.name, "type", "wireguard"], netns=self.netns, check=False
        )
        if added.returncode == 0:
            self.userspace = False
            return
        # No kernel module: wireguard-go creates the TUN device and its socket before it daemonizes, so the
        # interface is ready when this returns. Without LOG_LEVEL the daemon's stdio is /dev/null, so it holds
        # none of our pipes open.
        self._run(
            ["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", "wireguard-go", self.name],
            netns=self.netns,
        )
        self.userspace = True

    def _private_key_text(self) -> str:
        if self._key is not None:
            return self._key.reveal()
        assert self._key_path is not None
        return self._key_path.read_text().strip()

    def state(self) -> InterfaceState:
        return parse_dump(self._wg("show", self.name, "dump"))

    def ensure(self) -> None:
        """Create the interface if missing, then set key, port, fwmark, address and up (only what differs).

        wireguard-go rebinds its socket whenever the listen port or fwmark is set, even to the same value,
        so those are set only when they differ; setting the same private key again is a no-op in both
        implementations but is skipped too.
        """
        if not self.exists():
            self._create()
        elif self.userspace is None:
            self.userspace = (USERSPACE_SOCKET_DIR / f"{self.name}.sock").exists()
        current = self.state()
        key_text = self._private_key_text()
        if current.public_key != public_key_for(key_text):
            if self._key_path is not None:
                self._wg("set", self.name, "private-key", str(self._key_path))
            else:
                self._wg("set", self.name, "private-key", "/dev/stdin", input=key_text + "\n")
        args: list[str] = []
        if current.listen_port != self.listen_port:
            args += ["listen-port", str(self.listen_port)]
        if current.fwmark != self.fwmark:
            args += ["fwmark", str(self.fwmark) if self.fwmark else "off"]
        if args:
            self._wg("set", self.name, *args)
        if self.address is not None:
            self._run(["ip", "address", "replace", self.address, "dev", self.name], netns=self.netns)
        self._run(["ip", "link", "set", "dev", self.name, "up"], netns=self.netns)

    def sync_peers(self, peers: Iterable[PeerSpec]) -> list[list[str]]:
        """Apply the incremental peer changes in one ``wg set`` and return the plan that was applied."""
        plan = plan_peer_changes(self.state().peers, peers)
        if plan:
            self._wg("set", self.name, *(arg for change in plan for arg in change))
        return plan

    def counters(self) -> dict[str, PeerCounters]:
        """Per peer public key: received and sent bytes and the latest handshake (Unix time, 0 = never)."""
        return {
            p.spec.public_key: PeerCounters(p.rx_bytes, p.tx_bytes, p.latest_handshake)
            for p in self.state().peers
        }

    def remove(self) -> None:
        """Delete the interface (a no-op when it is gone); wireguard-go then exits, which we wait for."""
        remove_interface(self.name, netns=self.netns, runner=self._run)


def remove_interface(name: str, *, netns: str | None = None, runner: Runner = run) -> None:
    """Delete ``name`` if present and wait (bounded) until a wireguard-go serving it has exited.

    wireguard-go exits when its TUN device disappears and removes its socket on the way out. If the
    socket outlives the deadline (a stuck daemon), the error says so instead of leaving it silently.
    """
    deleted = runner(["ip", "link", "del", "dev", name], netns=netns, check=False)
    if (
        deleted.returncode != 0
        and "Cannot find device" not in deleted.stderr
        and runner(["ip", "link", "show", "dev", name], netns=netns, check=False).returncode == 0
    ):
        raise CommandError(["ip", "link", "del", "dev", name], deleted.returncode, deleted.stderr)
    socket = USERSPACE_SOCKET_DIR / f"{name}.sock"
    if deleted.returncode != 0:
        return
    deadline = time.monotonic() + _STOP_TIMEOUT_SECONDS
    while socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if socket.exists():
        raise CommandError(
            ["wireguard-go", name], -1, f"{socket} still exists after its interface was deleted"
        )
