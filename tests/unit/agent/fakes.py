"""A small in-memory kernel for the agent's unit tests, and the configuration they share.

:class:`FakeKernel` is a :class:`~patronus.agent.dataplane.commands.Runner`: it records every command
(with its stdin, which the dataplane's RecordingRunner does not keep) and answers the reads the agent
makes (``ip link show``, ``wg show dump``, ``nft list``, ``ip -j ... show``) from what it was told so far.
``fail_switch`` makes nft refuse the one-element map update a failover is.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from patronus.agent.dataplane.routing import PolicyCounters
from patronus.api.agentconfig import AgentConfig
from patronus.wireguard.keys import generate_private_key, public_key_for

PRIVATE_KEY = generate_private_key()
PEER_KEYS = {site: public_key_for(generate_private_key()) for site in ("b", "c")}
FIBER, LTE = "m-a-b-fiber", "m-a-b-lte"


@dataclass
class Call:
    args: list[str]
    input: str | None


@dataclass
class FakeKernel:
    links: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: set[str] = field(default_factory=set)
    counters: dict[str, PolicyCounters] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    fail_switch: bool = False

    def __call__(
        self,
        args: Sequence[str],
        *,
        netns: str | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        self.calls.append(Call(argv, input))
        code, out, err = self._answer(argv, input or "")
        if check and code != 0:
            from patronus.agent.dataplane.commands import CommandError  # noqa: PLC0415

            raise CommandError(argv, code, err)
        return subprocess.CompletedProcess(argv, code, out, err)

    def _answer(self, argv: list[str], stdin: str) -> tuple[int, str, str]:
        match argv:
            case ["ip", "link", "show", "dev", name]:
                return (0, "", "") if name in self.links else (1, "", "Cannot find device")
            case ["ip", "link", "add", "dev", name, *_]:
                self.links[name] = {"port": 0, "fwmark": 0, "public": None}
                return 0, "", ""
            case ["ip", "link", "del", "dev", name]:
                return (
                    (0, "", "") if self.links.pop(name, None) is not None else (1, "", "Cannot find device")
                )
            case ["wg", "show", name, "dump"]:
                link = self.links[name]
                return (
                    0,
                    f"(hidden)\t{link['public'] or '(none)'}\t{link['port']}\t{link['fwmark'] or 'off'}\n",
                    "",
                )
            case ["wg", "set", name, *rest]:
                return self._wg_set(name, rest, stdin)
            case ["nft", "-f", "-"]:
                return self._nft(stdin)
            case ["nft", "list", "tables"]:
                return 0, "".join(f"table inet {t}\n" for t in sorted(self.tables)), ""
            case ["nft", "delete", "table", "inet", table]:
                self.tables.discard(table)
                return 0, "", ""
            case ["nft", "-j", "list", "counters", *_]:
                return 0, json.dumps(self._counters_json()), ""
            case ["ip", "-j", *_]:
                return 0, "[]", ""
        return 0, "", ""

    def _wg_set(self, name: str, rest: list[str], stdin: str) -> tuple[int, str, str]:
        link = self.links[name]
        if rest[:2] == ["private-key", "/dev/stdin"]:
            link["public"] = public_key_for(stdin.strip())
        for option, value in itertools.pairwise(rest):
            if option == "listen-port":
                link["port"] = int(value)
            elif option == "fwmark" and value != "off":
                link["fwmark"] = int(value, 0)
        return 0, "", ""

    def _nft(self, script: str) -> tuple[int, str, str]:
        if (
            "add element" in script
            and "policy_path" in script
            and "table inet" not in script.split("\n", maxsplit=1)[0]
        ):
            if self.fail_switch:
                return 1, "", "Error: Could not process rule: No buffer space available"
            return 0, "", ""
        for line in script.splitlines():
            if line.startswith("table inet ") and line.endswith("{"):
                self.tables.add(line.split()[2])
        return 0, "", ""

    def _counters_json(self) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        for name, c in self.counters.items():
            items.append({"counter": {"name": f"pol_{name}", "packets": c.packets, "bytes": c.bytes}})
            items.append({"counter": {"name": f"new_{name}", "packets": c.new_flows, "bytes": 0}})
        return {"nftables": items}

    def commands(self, *prefix: str) -> list[list[str]]:
        return [c.args for c in self.calls if c.args[: len(prefix)] == list(prefix)]

    def scripts(self) -> list[str]:
        return [c.input or "" for c in self.calls if c.args == ["nft", "-f", "-"]]

    def switches(self) -> list[str]:
        return [s for s in self.scripts() if "add element" in s and not s.startswith("table")]


def config(
    *,
    policies: list[dict[str, Any]] | None = None,
    monitoring: bool = False,
    overlay: str | None = "100.96.0.1",
) -> AgentConfig:
    """Site a with fiber and lte to site b: Paths a->b on both, voice on fiber with lte as backup."""
    peers = [
        {"site": "b", "publicKey": PEER_KEYS["b"], "endpoint": "192.0.2.2:51820",
         "allowedIPs": ["100.96.0.2/32", "10.2.0.0/24"], "persistentKeepalive": 25},
    ]  # fmt: skip
    interfaces = [
        {
            "underlay": u,
            "name": f"wg-{u}",
            "listenPort": port,
            "endpoint": f"192.0.2.1:{port}",
            "peers": peers,
        }
        for u, port in (("fiber", 51820), ("lte", 51821))
    ]
    paths = [
        {"name": name, "destination": "b", "destinationAddress": "100.96.0.2", "underlay": u,
         "interface": f"wg-{u}",
         "monitoring": {"enabled": monitoring, "intervalSeconds": 1, "probesPerCheck": 5}}
        for name, u in ((FIBER, "fiber"), (LTE, "lte"))
    ]  # fmt: skip
    if policies is None:
        policies = [
            {"name": "voice", "priority": 100, "match": {"protocol": "udp", "dstPorts": [[5060, 5061]]},
             "action": {"primaryPath": FIBER, "backupPath": LTE},
             "qos": {"class": "realtime", "bandwidthBps": 1_000_000},
             "failover": {"threshold": 70, "cooldownSeconds": 10}},
        ]  # fmt: skip
    return AgentConfig.model_validate(
        {
            "schemaVersion": 2,
            "site": "a",
            "namespace": "ns",
            "overlayAddress": overlay,
            "interfaces": interfaces,
            "paths": paths,
            "policies": policies,
        }
    )


def secret(name: str = "a-wireguard") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "ns"},
        "data": {"privateKey": base64.b64encode(PRIVATE_KEY.encode()).decode()},
    }
