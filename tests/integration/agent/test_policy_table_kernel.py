"""The rendered policy table against the kernel, in a throwaway namespace: every sampled well-formed table
passes ``nft -c``, loads, and reads back (``nft -j list table``) with exactly the chains, rules, counters
and map elements the script says; a refused (hostile) table leaves the loaded one untouched."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from patronus.agent.dataplane.commands import run
from patronus.agent.dataplane.routing import PathRouting, render_nftables
from patronus.agent.dataplane.validate import UnsafeValue
from tests.support import nft_check
from tests.support import policy_fuzz as fuzz

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a network namespace")


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    name = f"ptk-{uuid.uuid4().hex[:8]}"
    run(["ip", "netns", "add", name])
    try:
        yield name
    finally:
        run(["ip", "netns", "del", name], check=False)


TUNNEL_PORTS = (51820, 51821)


def render(table: fuzz.Table, *, by_port: bool = True) -> str:
    return render_nftables(
        "patronus", table.policies, table.path_marks, priorities=table.priorities,
        ingress_exclude=table.ingress_exclude, by_port=by_port, tunnel_ports=TUNNEL_PORTS,
    )  # fmt: skip


def loaded(netns: str) -> dict[str, Any]:
    document = json.loads(run(["nft", "-j", "list", "table", "inet", "patronus"], netns=netns).stdout)
    items = document["nftables"]
    rules: dict[str, list[list[dict[str, Any]]]] = {}
    for item in items:
        if "chain" in item:
            rules.setdefault(item["chain"]["name"], [])
        if "rule" in item:
            rules[item["rule"]["chain"]].append(item["rule"]["expr"])
    counters = sorted(item["counter"]["name"] for item in items if "counter" in item)
    maps = [item["map"] for item in items if "map" in item]
    return {"rules": rules, "counters": counters, "elements": maps[0].get("elem", []) if maps else []}


def _targets(rules: list[list[dict[str, Any]]]) -> list[str | None]:
    """The chain each rule jumps or goes to (None for other verdicts)."""
    found = []
    for expressions in rules:
        verdict = next((e for e in expressions if "goto" in e or "jump" in e), None)
        found.append(None if verdict is None else (verdict.get("goto") or verdict["jump"])["target"])
    return found


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz.valid_tables)
def test_every_sampled_table_loads_as_rendered(netns: str, table: fuzz.Table) -> None:
    script, plain = render(table), render(table, by_port=False)
    nft_check.check_script(plain, table, tunnel_ports=TUNNEL_PORTS)
    nft_check.check_dispatch(script, plain)
    run(["nft", "-c", "-f", "-"], netns=netns, input=script)  # the kernel's own check first
    run(["nft", "-f", "-"], netns=netns, input=script)
    kernel = loaded(netns)
    chains = nft_check.blocks(script)[1]
    rule_lines = {name: [r for r in lines if not r.startswith("type ")] for name, lines in chains.items()}
    assert {name: len(rules) for name, rules in kernel["rules"].items()} == {
        name: len(lines) for name, lines in rule_lines.items()
    }
    for name in ("candidates", "prerouting", "output", "untracked_in", "untracked_out"):
        expected = [line.split()[-1] if line.split()[-2] in ("goto", "jump") else None
                    for line in rule_lines[name]]  # fmt: skip
        assert _targets(kernel["rules"][name]) == expected
    names = [line.split()[1] for line in script.splitlines() if line.startswith("\tcounter ")]
    assert kernel["counters"] == sorted(names)
    assert len(kernel["elements"]) == sum(p.path in table.path_marks for p in table.policies)


def test_a_refused_table_leaves_the_loaded_one_alone(netns: str) -> None:
    good = fuzz.Table(
        [fuzz.RoutingPolicy("voice", 10, fuzz.PolicyMatch("udp", dst_ports=((5060, 5061),)), "fiber")],
        {"fiber": 0x50A70001},
        {"voice": 0x10},
        ["wg-fiber"],
    )
    routing = PathRouting(netns)
    routing.apply(good.policies, good.path_marks, good.priorities)
    before = loaded(netns)
    hostile = fuzz.RoutingPolicy('x"; flush ruleset; "', 1, fuzz.PolicyMatch(), "fiber")
    with pytest.raises(UnsafeValue):
        routing.apply([*good.policies, hostile], good.path_marks, good.priorities)
    with pytest.raises(UnsafeValue):
        routing.apply(good.policies, {"fiber": -1}, good.priorities)
    assert loaded(netns) == before
    routing.switch("voice", "fiber")  # and it still works
