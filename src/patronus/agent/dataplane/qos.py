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

Interface names, rates and class ids are checked by :mod:`patronus.agent.dataplane.validate` as the
commands are built; an unknown QoS class is refused rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from patronus.agent.dataplane import validate
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
_HANDLE = re.compile(r"[0-9a-f]{1,4}:[0-9a-f]{1,4}")
"""A class id as tc prints it; anything else read back is not passed to ``tc class del``."""
_MTU_BYTES = 1514
_MAX_QUANTUM = 200_000

QosEntry = tuple[str, str, int]
"""(policy name, QoS class, rate in bits per second)."""


def class_minors(policy_names: Iterable[str]) -> dict[str, int]:
    """The htb class minor of each shaped policy, by sorted name, from ``FIRST_POLICY_MINOR``."""
    names = sorted(set(policy_names))
    if FIRST_POLICY_MINOR + len(names) - 1 > validate.MAX_CLASS_MINOR:
        raise validate.UnsafeValue(f"too many shaped policies for one htb qdisc: {len(names)}")
    return {name: FIRST_POLICY_MINOR + i for i, name in enumerate(names)}


def classid(minor: int) -> str:
    """``1:<minor>`` in tc's hexadecimal notation (nft's ``meta priority`` uses the same)."""
    return f"1:{validate.class_minor(minor):x}"


def _class_priority(qos_class: str | None) -> int:
    if qos_class is None:
        return CLASS_PRIORITY["default"]
    if not isinstance(qos_class, str) or qos_class not in CLASS_PRIORITY:
        raise validate.UnsafeValue(f"unknown QoS class {qos_class!r}")
    return CLASS_PRIORITY[qos_class]


def _quantum(rate_bps: int) -> int:
    """htb's quantum (bytes a class sends per round): rate/10 like r2q, kept in [MTU, 200000] to avoid
    the kernel's "quantum is small/big" warnings at very low or very high rates."""
    return max(_MTU_BYTES, min(rate_bps // 8 // 10, _MAX_QUANTUM))


def _class(interface: str, minor: int, rate_bps: int, prio: int) -> list[str]:
    rate = f"{validate.rate_bps(rate_bps)}bit"
    return [
        "class", "replace", "dev", interface, "parent", HANDLE, "classid", classid(minor),
        "htb", "rate", rate, "ceil", rate, "prio", str(prio), "quantum", str(_quantum(rate_bps)),
    ]  # fmt: skip


def render_htb(interface: str, classes: Sequence[QosEntry], default_rate_bps: int) -> list[list[str]]:
    """``tc`` argument lists (without ``tc``): the htb root, its default class, one class per policy."""
    interface = validate.interface(interface)
    for entry in classes:
        if not isinstance(entry, tuple | list) or len(entry) != 3:
            raise validate.UnsafeValue("a QoS entry is (policy, class, rate)")
        validate.policy_name(entry[0])
    if len({entry[0] for entry in classes}) != len(classes):
        raise validate.UnsafeValue("two QoS entries name the same policy")
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
    for name, qos_class, rate_bps in sorted(classes, key=lambda entry: entry[0]):
        prio = _class_priority(qos_class)
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
    interface = validate.interface(interface)
    for args in commands:
        runner(["tc", *args], netns=netns)
    wanted = {args[7] for args in commands[1:]}
    shown = runner(["tc", "class", "show", "dev", interface], netns=netns).stdout
    for handle in parse_class_handles(shown):
        if handle not in wanted and _HANDLE.fullmatch(handle):
            runner(["tc", "class", "del", "dev", interface, "classid", handle], netns=netns, check=False)


def parse_class_handles(text: str) -> list[str]:
    """The htb class ids in ``tc class show`` output (iproute2 6.1 prints no JSON for htb classes)."""
    return [line.split()[2] for line in text.splitlines() if line.startswith("class htb ")]


_NOTHING_TO_DELETE = ("Cannot delete qdisc with handle of zero", "No such file", "Cannot find device")


def clear(interface: str, netns: str | None = None, runner: Runner = run) -> None:
    """Remove the root qdisc (back to the device default); a no-op when there is none or no device."""
    interface = validate.interface(interface)
    result = runner(["tc", "qdisc", "del", "dev", interface, "root"], netns=netns, check=False)
    if result.returncode != 0 and not any(text in result.stderr for text in _NOTHING_TO_DELETE):
        raise CommandError(
            ["tc", "qdisc", "del", "dev", interface, "root"], result.returncode, result.stderr, result.stdout
        )
