"""QoS: an htb root qdisc on a path's egress interface, one class per policy with a bandwidth or a class.

Classification needs no tc filters: the ``postrouting`` chain of the nftables table sets
``meta priority`` to the policy's class id ``1:<minor>`` (see :mod:`patronus.agent.dataplane.routing`),
and htb puts a packet whose skb->priority names one of its classes straight into that class. This keeps
the policy match in one place (nftables, which knows protocol, ports, DSCP and CIDRs) and works the same
for forwarded and local traffic. Unclassified traffic goes to the default class ``1:1``.

Every class is a direct child of the root with ``ceil = rate``, so a policy never borrows beyond its
bandwidth; the QoS class only sets htb's ``prio`` (realtime dequeued before bulk when the link is the
bottleneck). The class minors come from :func:`class_minors` and must be the ones given to
:func:`~patronus.agent.dataplane.routing.render_nftables` as ``priorities``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from patronus.agent.dataplane.commands import CommandError, Runner, run

HANDLE = "1:"
DEFAULT_MINOR = 0x1
FIRST_POLICY_MINOR = 0x10
CLASS_PRIORITY = {
    "realtime": 0,
    "interactive": 1,
    "business-critical": 2,
    "default": 3,
    "bulk": 5,
    "scavenger": 6,
}
"""htb prio per QoS class: lower is served first."""
_MTU_BYTES = 1514
_MAX_QUANTUM = 200_000

QosEntry = tuple[str, str, int]
"""(policy name, QoS class, rate in bits per second)."""


def class_minors(policy_names: Iterable[str]) -> dict[str, int]:
    """The htb class minor of each shaped policy, by sorted name, from ``FIRST_POLICY_MINOR``."""
    return {name: FIRST_POLICY_MINOR + i for i, name in enumerate(sorted(set(policy_names)))}


def classid(minor: int) -> str:
    """``1:<minor>`` in tc's hexadecimal notation (nft's ``meta priority`` uses the same)."""
    return f"1:{minor:x}"


def _quantum(rate_bps: int) -> int:
    """htb's quantum (bytes a class sends per round): rate/10 like r2q, kept in [MTU, 200000] to avoid
    the kernel's "quantum is small/big" warnings at very low or very high rates."""
    return max(_MTU_BYTES, min(rate_bps // 8 // 10, _MAX_QUANTUM))


def _class(interface: str, minor: int, rate_bps: int, prio: int) -> list[str]:
    rate = f"{rate_bps}bit"
    return [
        "class", "replace", "dev", interface, "parent", HANDLE, "classid", classid(minor),
        "htb", "rate", rate, "ceil", rate, "prio", str(prio), "quantum", str(_quantum(rate_bps)),
    ]  # fmt: skip


def render_htb(interface: str, classes: Sequence[QosEntry], default_rate_bps: int) -> list[list[str]]:
    """``tc`` argument lists (without ``tc``): the htb root, its default class, one class per policy."""
    minors = class_minors(name for name, _, _ in classes)
    commands = [
        [
            "qdisc",
            "replace",
            "dev",
            interface,
            "root",
            "handle",
            HANDLE,
            "htb",
            "default",
            f"{DEFAULT_MINOR:x}",
        ],
        _class(interface, DEFAULT_MINOR, default_rate_bps, CLASS_PRIORITY["default"]),
    ]
    for name, qos_class, rate_bps in sorted(classes):
        prio = CLASS_PRIORITY.get(qos_class, CLASS_PRIORITY["default"])
        commands.append(_class(interface, minors[name], rate_bps, prio))
    return commands


def apply_htb(
    interface: str,
    classes: Sequence[QosEntry],
    default_rate_bps: int,
    netns: str | None = None,
    runner: Runner = run,
) -> None:
    """Apply :func:`render_htb` (``replace``, so unchanged classes keep their queues) and delete classes
    no longer wanted."""
    commands = render_htb(interface, classes, default_rate_bps)
    for args in commands:
        runner(["tc", *args], netns=netns)
    wanted = {args[7] for args in commands[1:]}
    shown = runner(["tc", "class", "show", "dev", interface], netns=netns).stdout
    for handle in parse_class_handles(shown):
        if handle not in wanted:
            runner(["tc", "class", "del", "dev", interface, "classid", handle], netns=netns, check=False)


def parse_class_handles(text: str) -> list[str]:
    """The htb class ids in ``tc class show`` output (iproute2 6.1 prints no JSON for htb classes)."""
    return [line.split()[2] for line in text.splitlines() if line.startswith("class htb ")]


_NOTHING_TO_DELETE = ("Cannot delete qdisc with handle of zero", "No such file", "Cannot find device")


def clear(interface: str, netns: str | None = None, runner: Runner = run) -> None:
    """Remove the root qdisc (back to the device default); a no-op when there is none or no device."""
    result = runner(["tc", "qdisc", "del", "dev", interface, "root"], netns=netns, check=False)
    if result.returncode != 0 and not any(text in result.stderr for text in _NOTHING_TO_DELETE):
        raise CommandError(["tc", "qdisc", "del", "dev", interface, "root"], result.returncode, result.stderr)
