"""One WireGuard interface per underlay: create it, key it, and keep its peers in sync incrementally.

The kernel module is used when ``ip link add type wireguard`` works; otherwise wireguard-go (userspace,
over TUN), the build :mod:`patronus.agent.dataplane.userspace` picks. wireguard-go daemonizes and exits by
itself when its interface is deleted, so :meth:`remove` is ``ip link del`` plus a bounded wait for its
control socket to go away.

wireguard-go keeps its control socket in ``/var/run/wireguard/<name>.sock``, which every network namespace
shares unless the agent runs in its own mount namespace: two namespaces on one host cannot both run a
userspace interface of the same name. In a pod (own mount namespace) that never matters; tests on one host
use distinct names.

Peers are synced by diffing ``wg show <if> dump`` with the desired peers
(:func:`~patronus.agent.dataplane.peers.plan_peer_changes`) and applying each peer's change on its own
(:mod:`patronus.agent.dataplane.peersync`): a peer whose settings are unchanged is not touched, so its
session and handshake survive a config change elsewhere, and a peer that fails does not stop the others.
The private key goes to ``wg`` on stdin only; it is never an argument, a log field or part of an
exception, and the dump's private-key column is dropped as soon as it is read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from patronus.agent.dataplane import validate
from patronus.agent.dataplane.commands import CommandError, Runner, run
from patronus.agent.dataplane.peers import (
    InterfaceState,
    PeerCounters,
    PeerSpec,
    PeerState,
    desired_peers,
    parse_dump,
    plan_peer_changes,
)
from patronus.agent.dataplane.peersync import (
    Backoff,
    PeerFailure,
    PeerSync,
    PeerSyncResult,
    Resolver,
    resolve,
)
from patronus.agent.dataplane.policytable import WIREGUARD_FWMARK
from patronus.agent.dataplane.userspace import wireguard_go_binary
from patronus.runtime.clock import Clock
from patronus.wireguard.keys import public_key_for

__all__ = [
    "USERSPACE_SOCKET_DIR",
    "WIREGUARD_FWMARK",
    "InterfaceState",
    "PeerCounters",
    "PeerFailure",
    "PeerSpec",
    "PeerState",
    "PeerSyncResult",
    "WireGuardInterface",
    "desired_peers",
    "parse_dump",
    "plan_peer_changes",
    "remove_interface",
]

USERSPACE_SOCKET_DIR = Path("/var/run/wireguard")
_STOP_TIMEOUT_SECONDS = 5.0


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
        userspace_binary: str | None = None,
        clock: Clock | None = None,
        resolver: Resolver = resolve,
        backoff: Backoff | None = None,
    ) -> None:
        """``userspace_binary``: the wireguard-go to start when there is no kernel module (default:
        :func:`~patronus.agent.dataplane.userspace.wireguard_go_binary`). ``clock``, ``resolver`` and
        ``backoff`` pace the per-peer retries and re-resolution (:class:`PeerSync`)."""
        if (private_key is None) == (private_key_path is None):
            raise ValueError("give exactly one of private_key and private_key_path")
        self.name = validate.interface(name)
        self.listen_port = validate.integer(listen_port, 0, validate.MAX_PORT, "listen port")
        self.address = validate.interface_address(address) if address is not None else None
        self.netns = validate.netns(netns) if netns is not None else None
        self.fwmark = validate.mark(fwmark)
        self._key = _SecretKey(private_key) if private_key is not None else None
        self._key_path = Path(private_key_path) if private_key_path is not None else None
        if self._key_path is not None and not self._key_path.is_absolute():
            raise validate.UnsafeValue("the private key path must be absolute")
        self._run = runner
        self._binary = userspace_binary
        self.userspace: bool | None = None
        """True when wireguard-go runs the interface; None until :meth:`ensure` created it."""
        self._peers = PeerSync(self._set_peer, clock=clock, resolver=resolver, backoff=backoff)
        self._desired: tuple[PeerSpec, ...] = ()

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
        binary = self._binary or wireguard_go_binary()
        self._run(
            ["env", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", binary, self.name], netns=self.netns
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
        # Checked again here, where they are used: callers may change them after construction.
        address = validate.interface_address(self.address) if self.address is not None else None
        listen_port = validate.integer(self.listen_port, 0, validate.MAX_PORT, "listen port")
        fwmark = validate.mark(self.fwmark)
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
        if current.listen_port != listen_port:
            args += ["listen-port", str(listen_port)]
        if current.fwmark != fwmark:
            args += ["fwmark", str(fwmark) if fwmark else "off"]
        if args:
            self._wg("set", self.name, *args)
        if address is not None:
            self._run(["ip", "address", "replace", address, "dev", self.name], netns=self.netns)
        self._run(["ip", "link", "set", "dev", self.name, "up"], netns=self.netns)

    def _set_peer(self, args: list[str]) -> None:
        self._wg("set", self.name, *args)

    def sync_peers(self, peers: Iterable[PeerSpec]) -> PeerSyncResult:
        """Apply the incremental peer changes, one ``wg set`` per peer (see :class:`PeerSync`).

        Never raises for one peer's failure: the result lists the failed peers and when to call
        :meth:`resync` again (``next_due``, monotonic). Raises :class:`CommandError` only when the
        interface itself cannot be read.
        """
        self._desired = tuple(peers)
        return self._peers.sync(self.state().peers, self._desired)

    def resync(self) -> PeerSyncResult:
        """:meth:`sync_peers` with the last desired peers: retries failed peers whose backoff is over and
        re-resolves host name endpoints that are due."""
        return self._peers.sync(self.state().peers, self._desired)

    def peer_failures(self) -> dict[str, PeerFailure]:
        """The peers that could not be applied and when each is tried again, by public key."""
        return self._peers.failures()

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
    name = validate.interface(name)
    deleted = runner(["ip", "link", "del", "dev", name], netns=netns, check=False)
    if (
        deleted.returncode != 0
        and "Cannot find device" not in deleted.stderr
        and runner(["ip", "link", "show", "dev", name], netns=netns, check=False).returncode == 0
    ):
        raise CommandError(
            ["ip", "link", "del", "dev", name], deleted.returncode, deleted.stderr, deleted.stdout
        )
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
