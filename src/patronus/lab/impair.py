"""WAN impairment of one lab link (a site's underlay), applied in the WAN namespace.

Delay, jitter and loss act like ``tc netem`` on the site's WAN interface: on what the site sends over the
link. So 40 ms on a/fiber adds 40 ms to a round trip across it, and 5 % loss loses 5 % of the probes.

- **Loss**: a rule ``numgen random mod 10000 < N drop`` (N = percent x 100, so 0.01 % steps) in the link's
  nftables chain, which the forward chain enters for packets from the link (``iifname``).
- **Down**: a ``drop`` rule in that chain and in the link's inbound chain (``oifname``): a cut link
  carries nothing in either direction. Not ``ip link set down``: an interface going down removes
  its connected routes and changes what the kernel routes where, while a real WAN outage leaves the
  branch's link up and silently eats the packets; a drop rule is exactly that, it fails the path at
  once, and ``up`` (clearing the rule) restores it with no routing state to rebuild.
- **Delay and jitter**: the relay (:mod:`patronus.lab.relay`, one process for the lab, started with
  :func:`start_relay`), on the site's egress like ``tc netem delay``. Only links with a delay go through
  it: two
  ``ip rule``\\ s per link (``iif <wan veth>`` and ``to <link subnet>``, pref 1000, table 4242) send their
  packets into the relay's TUN device; links without a delay stay on the kernel's fast path.

The impairment each link has is kept in ``<state_dir>/impairments.json`` (under a lock), so separate CLI
invocations (``patronus lab impair``) see and change the same state, and a restarted relay gets its
delays back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from patronus.controlplane.processes import spawn, stop
from patronus.lab.network import LabError, exec_in, run
from patronus.lab.plan import NFT_TABLE, RELAY_TABLE, RELAY_TUN, LabPlan, LinkPlan

DIVERT_PREF = 1000
_STATE_FILE = "impairments.json"
_RELAY_TIMEOUT = 5.0


class RelayNotRunning(LabError):
    """A delay was asked for but the lab's relay does not answer on its control socket."""


@dataclass(frozen=True)
class Impairment:
    """What a link does to the packets its site sends (down: to both directions). Default: a clean link."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    down: bool = False
    preserve_order: bool = False

    def __post_init__(self) -> None:
        for name, value, top in (
            ("delay_ms", self.delay_ms, 60_000.0),
            ("jitter_ms", self.jitter_ms, 60_000.0),
            ("loss_pct", self.loss_pct, 100.0),
        ):
            if not (math.isfinite(value) and 0.0 <= value <= top):
                raise ValueError(f"{name}={value}: must be 0-{top:g}")

    @property
    def needs_relay(self) -> bool:
        return self.delay_ms > 0.0 or self.jitter_ms > 0.0

    @property
    def is_clean(self) -> bool:
        return self == Impairment()


def parse_duration_ms(text: str) -> float:
    """``"40ms"``, ``"1.5s"``, ``"250us"`` or a bare number of milliseconds, in milliseconds."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(us|ms|s)?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 40ms, 1.5s or 250us")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}[match.group(2)]
    return float(match.group(1)) * scale


def parse_percent(text: str) -> float:
    """``"5%"``, ``"0.5%"`` or a bare number, in percent."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a percentage such as 5% or 0.5%")
    return float(match.group(1))


def _resolve(plan: LabPlan, link: LinkPlan | str) -> LinkPlan:
    return plan.link(link) if isinstance(link, str) else link


def nft_link_script(plan: LabPlan, link: LinkPlan, impairment: Impairment) -> str:
    """The nft transaction that replaces the link's loss/down rules (pure)."""
    # Loss, like delay, is on the site's egress over the link (netem on its WAN interface); a link that is
    # down carries nothing in either direction.
    chain = f"inet {NFT_TABLE} {link.nft_chain}"
    inbound = f"{chain}-in"
    lines = [f"flush chain {chain}", f"flush chain {inbound}"]
    threshold = round(impairment.loss_pct * 100)
    if impairment.down:
        lines += [f"add rule {chain} counter drop", f"add rule {inbound} counter drop"]
    elif threshold >= 10000:
        lines.append(f"add rule {chain} counter drop")
    elif threshold > 0:
        lines.append(f"add rule {chain} numgen random mod 10000 < {threshold} counter drop")
    return "\n".join(lines) + "\n"


def divert_rules(link: LinkPlan) -> list[list[str]]:
    """The ``ip rule`` selectors that send a link's packets, both directions, into the relay (pure)."""
    tail = ["pref", str(DIVERT_PREF), "lookup", str(RELAY_TABLE)]
    return [["iif", link.wan_interface, *tail], ["to", link.subnet, *tail]]


def _divert(plan: LabPlan, link: LinkPlan, on: bool) -> None:
    wan = plan.wan_namespace
    for rule in divert_rules(link):
        for _ in range(16):  # delete every copy (idempotent), bounded
            result = subprocess.run(
                ["ip", "-n", wan, "rule", "del", *rule], capture_output=True, timeout=10, check=False
            )
            if result.returncode != 0:
                break
        if on:
            run(["ip", "-n", wan, "rule", "add", *rule])


def relay_request(plan: LabPlan, message: dict[str, Any], timeout: float = _RELAY_TIMEOUT) -> dict[str, Any]:
    """Send one control request to the lab's relay and return its reply."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(plan.relay_socket)
            sock.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise RelayNotRunning(f"the lab relay at {plan.relay_socket} does not answer ({exc})") from exc
    reply: dict[str, Any] = json.loads(data)
    if not reply.get("ok"):
        raise LabError(f"relay refused {message}: {reply.get('error')}")
    return reply


def relay_running(plan: LabPlan) -> bool:
    try:
        relay_request(plan, {"op": "ping"}, timeout=1.0)
    except RelayNotRunning:
        return False
    return True


def relay_stats(plan: LabPlan) -> dict[str, Any]:
    """The relay's counters: received, sent, delayed, drops, queued, and per delayed link."""
    stats: dict[str, Any] = relay_request(plan, {"op": "stats"})["stats"]
    return stats


def _relay_set(plan: LabPlan, link: LinkPlan, impairment: Impairment) -> None:
    relay_request(
        plan,
        {
            "op": "set",
            "link": link.name,
            "subnet": link.subnet,
            "delay_ms": impairment.delay_ms,
            "jitter_ms": impairment.jitter_ms,
            "preserve_order": impairment.preserve_order,
        },
    )


@contextlib.contextmanager
def _locked_state(plan: LabPlan) -> Iterator[dict[str, dict[str, Any]]]:
    """The state file's content, to read and change under an exclusive lock; written back on exit."""
    state_dir = Path(plan.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / _STATE_FILE
    with (state_dir / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state: dict[str, dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}
        before = json.dumps(state, sort_keys=True)
        yield state
        if json.dumps(state, sort_keys=True) != before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)


def set_impairment(
    plan: LabPlan, link: LinkPlan | str, impairment: Impairment, *, force_relay: bool = False
) -> None:
    """Give ``link`` exactly ``impairment`` (replacing what it had), at run time, with no restart.

    ``force_relay`` routes the link through the relay even with no delay (to measure the relay's cost).
    Raises :class:`RelayNotRunning` when a delay is asked for and the relay is not up; nothing changes then.
    """
    target = _resolve(plan, link)
    via_relay = impairment.needs_relay or force_relay
    with _locked_state(plan) as state:
        if via_relay:
            _relay_set(plan, target, impairment)  # parameters first, then the packets
            _divert(plan, target, on=True)
        else:
            _divert(plan, target, on=False)  # packets back on the fast path first, then forget
            with contextlib.suppress(RelayNotRunning):
                relay_request(plan, {"op": "clear", "link": target.name})
        exec_in(plan.wan_namespace, ["nft", "-f", "-"], input_text=nft_link_script(plan, target, impairment))
        if impairment.is_clean and not force_relay:
            state.pop(target.name, None)
        else:
            state[target.name] = {**asdict(impairment), "force_relay": force_relay}


def clear(plan: LabPlan, link: LinkPlan | str) -> None:
    """Make ``link`` clean again: no loss, delay or outage."""
    set_impairment(plan, link, Impairment())


def current(plan: LabPlan, link: LinkPlan | str) -> Impairment:
    """The impairment ``link`` has now (a clean one if none was set)."""
    target = _resolve(plan, link)
    with _locked_state(plan) as state:
        entry = dict(state.get(target.name, {}))
    entry.pop("force_relay", None)
    return Impairment(**entry)


def start_relay(plan: LabPlan, log: Path, *, python: str = sys.executable) -> subprocess.Popen[bytes]:
    """Start the lab's delay relay in the WAN namespace, tied to this process; return once it answers.

    The delays recorded in the state file are pushed to it, so a relay restarted under a running lab
    takes up where the old one left off. Stop it with :func:`patronus.controlplane.processes.stop`.
    """
    if relay_running(plan):
        raise LabError(f"a relay already answers at {plan.relay_socket}")
    args = [
        "ip", "netns", "exec", plan.wan_namespace, python, "-m", "patronus.lab.relay",
        "--tun", RELAY_TUN, "--table", str(RELAY_TABLE), "--control", plan.relay_socket,
    ]  # fmt: skip
    process = spawn(args, log)
    deadline = time.monotonic() + 10.0
    while not relay_running(plan):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise LabError(f"the relay did not come up (exit {process.returncode}); log {log}:\n{tail}")
        time.sleep(0.02)
    with _locked_state(plan) as state:
        for name, entry in state.items():
            if entry.get("force_relay") or entry.get("delay_ms") or entry.get("jitter_ms"):
                fields = {k: v for k, v in entry.items() if k != "force_relay"}
                _relay_set(plan, plan.link(name), Impairment(**fields))
    return process
