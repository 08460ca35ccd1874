"""Build and tear down a :class:`~patronus.lab.plan.LabPlan` with ``ip``, ``sysctl`` and ``nft``.

The command lists are computed by pure functions (:func:`create_commands`), so tests can read them and a
failure names the exact command. Every veth is created directly inside its namespaces (never in the
root namespace), so destroying the namespaces removes every interface, route, rule and nftables table the
lab made: :func:`destroy` only has to stop what still runs inside them and delete the namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from patronus.lab.plan import NFT_TABLE, RELAY_TUN, LabPlan

_CLONE_NEWNET = 0x40000000
_COMMAND_TIMEOUT = 20.0


class LabError(RuntimeError):
    """A lab command failed; the message holds the command and its stderr."""


def run(args: Sequence[str], *, input_text: str | None = None, check: bool = True) -> str:
    """Run one command and return its stdout; raise :class:`LabError` naming it when it fails."""
    result = subprocess.run(
        list(args),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(args)}: exit {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def exec_in(ns: str, args: Sequence[str], *, input_text: str | None = None, check: bool = True) -> str:
    """Run ``args`` inside network namespace ``ns`` (``ip netns exec``) and return its stdout."""
    return run(["ip", "netns", "exec", ns, *args], input_text=input_text, check=check)


def namespaces_present(prefix: str) -> list[str]:
    """The namespaces that exist now and belong to a lab with this prefix (for leak checks)."""
    output = run(["ip", "netns", "list"])
    names = [line.split()[0] for line in output.splitlines() if line.strip()]
    return sorted(name for name in names if name.startswith(f"{prefix}-"))


def nft_base_script(plan: LabPlan) -> str:
    """The WAN namespace's nftables table: a forward chain that jumps to one (empty) chain per link.

    Packets are matched by interface *name*: ``iifname`` (from the site) enters the link's chain, where
    loss applies; ``oifname`` (toward it) enters ``<chain>-in``, used only when the link is down. Also when
    the packet makes a second pass through the relay's TUN device (that pass has the TUN as the other side).
    """
    lines = [
        f"table inet {NFT_TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
    ]
    for link in plan.links:
        lines.append(f'    iifname "{link.wan_interface}" jump {link.nft_chain}')
        lines.append(f'    oifname "{link.wan_interface}" jump {link.nft_chain}-in')
    lines.append("  }")
    lines += [f"  chain {link.nft_chain} {{ }}" for link in plan.links]
    lines += [f"  chain {link.nft_chain}-in {{ }}" for link in plan.links]
    lines.append("}")
    return "\n".join(lines) + "\n"


def create_commands(plan: LabPlan) -> list[list[str]]:
    """Every command :func:`create` runs, in order (pure)."""
    wan = plan.wan_namespace
    hosts = {site.host_namespace for site in plan.sites}
    cmds: list[list[str]] = [["ip", "netns", "add", ns] for ns in plan.namespaces]
    for ns in plan.namespaces:
        cmds.append(["ip", "-n", ns, "link", "set", "lo", "up"])
        # No IPv6: the lab's underlays are IPv4, and router solicitations would only be noise (also in
        # the relay's TUN device, which must see only what it is asked to delay).
        sysctls = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
        if ns != wan and ns not in hosts:
            sysctls.append("net.ipv4.ip_forward=1")  # a site forwards its LAN into the tunnels
        cmds.append(["ip", "netns", "exec", ns, "sysctl", "-qw", *sysctls])
    # The WAN forwards; packets the relay writes back come in on its TUN device with a site's source
    # address, which a reverse-path filter would drop.
    cmds.append(
        [
            "ip", "netns", "exec", wan, "sysctl", "-qw", "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
        ]
    )  # fmt: skip
    for site in plan.sites:
        ns, host = site.namespace, site.host_namespace
        cmds += [
            ["ip", "-n", ns, "link", "add", site.lan_interface, "type", "veth",
             "peer", "name", site.host_interface, "netns", host],
            ["ip", "-n", ns, "addr", "add", f"{site.lan_address}/24", "dev", site.lan_interface],
            ["ip", "-n", host, "addr", "add", f"{site.host_address}/24", "dev", site.host_interface],
            ["ip", "-n", ns, "link", "set", site.lan_interface, "up"],
            ["ip", "-n", host, "link", "set", site.host_interface, "up"],
            ["ip", "-n", host, "route", "add", "default", "via", site.lan_address],
        ]  # fmt: skip
    for link in plan.links:
        ns = plan.site(link.site).namespace
        cmds += [
            ["ip", "-n", ns, "link", "add", link.site_interface, "type", "veth",
             "peer", "name", link.wan_interface, "netns", wan],
            ["ip", "-n", ns, "addr", "add", f"{link.site_address}/30", "dev", link.site_interface],
            ["ip", "-n", wan, "addr", "add", f"{link.wan_address}/30", "dev", link.wan_interface],
            ["ip", "-n", ns, "link", "set", link.site_interface, "up"],
            ["ip", "-n", wan, "link", "set", link.wan_interface, "up"],
            ["ip", "-n", ns, "route", "add", link.underlay_block, "via", link.wan_address,
             "dev", link.site_interface],
        ]  # fmt: skip
    # What the relay writes back into its TUN device is routed normally (the main table), never back
    # into the relay; the per-link rules that divert into the relay come later, from impair.
    cmds.append(["ip", "-n", wan, "rule", "add", "pref", "100", "iif", RELAY_TUN, "lookup", "main"])
    return cmds


def create(plan: LabPlan) -> None:
    """Build the lab; on any failure remove whatever was built and re-raise."""
    existing = set(namespaces_present(plan.prefix))
    clash = sorted(existing & set(plan.namespaces))
    if clash:
        raise LabError(f"namespaces {clash} already exist: destroy the old lab first")
    try:
        for cmd in create_commands(plan):
            run(cmd)
        exec_in(plan.wan_namespace, ["nft", "-f", "-"], input_text=nft_base_script(plan))
        Path(plan.state_dir).mkdir(parents=True, exist_ok=True)
    except BaseException:
        destroy(plan)
        raise


def destroy(plan: LabPlan) -> None:
    """Remove the whole lab; safe to call twice and after a partial :func:`create`.

    A namespace only disappears when the last process in it has gone, so whatever still runs inside a
    lab namespace (the relay, agents a crashed test left behind) is stopped first, by pid, SIGTERM
    then SIGKILL.
    """
    present = set(namespaces_present(plan.prefix))
    targets = [ns for ns in reversed(plan.namespaces) if ns in present]
    pids: set[int] = set()
    for ns in targets:
        output = run(["ip", "netns", "pids", ns], check=False)
        pids |= {int(word) for word in output.split() if word.isdigit()}
    _stop_pids(pids)
    for ns in targets:
        run(["ip", "netns", "del", ns], check=False)
    shutil.rmtree(plan.state_dir, ignore_errors=True)
    left = sorted(set(namespaces_present(plan.prefix)) & set(plan.namespaces))
    if left:
        raise LabError(f"namespaces {left} are still there after destroy")


def _stop_pids(pids: set[int], timeout: float = 3.0) -> None:
    pids.discard(os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = {pid for pid in pids if _alive(pid)}
        time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours would look alive forever: reap it if it is one.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return True


def netns_socket(ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket that lives in network namespace ``ns``, created without a child process.

    A socket stays in the namespace it was created in, so a short-lived thread enters ``ns`` (``setns``
    changes only the calling thread), creates the socket and ends. Tests use this for echoes and
    counters inside the sites.
    """
    result: list[socket.socket | BaseException] = []

    def enter_and_create() -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            with open(f"/run/netns/{ns}", "rb") as handle:
                if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into {ns}: {os.strerror(errno)}")
            result.append(socket.socket(family, kind))
        except BaseException as exc:  # handed to the caller's thread
            result.append(exc)

    thread = threading.Thread(target=enter_and_create, name=f"netns-{ns}")
    thread.start()
    thread.join()
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
