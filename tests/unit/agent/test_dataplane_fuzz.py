"""Fuzzing what reaches nft, ip, tc and wg: hostile input is refused with UnsafeValue (and nothing else),
valid input renders only the statements it asked for, and a refused change runs no command at all (the
kernel keeps the last good data plane)."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patronus.agent.dataplane import qos, validate
from patronus.agent.dataplane.commands import RecordingRunner, in_netns
from patronus.agent.dataplane.peers import PeerSpec, plan_peer_changes
from patronus.agent.dataplane.routing import PathRouting, ensure_path_route, render_nftables
from patronus.agent.dataplane.validate import UnsafeValue
from tests.support import nft_check
from tests.support import policy_fuzz as fuzz

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(max_examples=100, deadline=None)


TUNNEL_PORTS = (51821, 51820, 51821)


def render(table: fuzz.Table, *, by_port: bool = True, tunnel_ports: tuple[object, ...] = ()) -> str:
    return render_nftables(
        "patronus",
        table.policies,
        table.path_marks,
        priorities=table.priorities,
        ingress_exclude=table.ingress_exclude,
        by_port=by_port,
        tunnel_ports=tunnel_ports,  # type: ignore[arg-type]
    )


@FUZZ
@given(fuzz.tables())
def test_renderer_refuses_exactly_the_unsafe_tables_and_emits_only_what_was_asked(table: fuzz.Table) -> None:
    if not fuzz.is_valid(table):
        with pytest.raises(UnsafeValue):
            render(table)
        return
    plain = render(table, by_port=False)
    nft_check.check_script(plain, table)
    nft_check.check_dispatch(render(table), plain)
    untracked = render(table, by_port=False, tunnel_ports=TUNNEL_PORTS)
    nft_check.check_script(untracked, table, tunnel_ports=TUNNEL_PORTS)


@LIGHT
@given(st.lists(st.one_of(st.integers(-5, 70_000), st.text(max_size=12), st.none()), min_size=1, max_size=4))
def test_tunnel_ports_are_in_range_or_refused(ports: list[object]) -> None:
    table = fuzz.Table([], {}, {}, [])
    if all(isinstance(p, int) and 1 <= p <= 65535 for p in ports):
        nft_check.check_script(render(table, tunnel_ports=tuple(ports)), table, tunnel_ports=ports)  # type: ignore[arg-type]
    else:
        with pytest.raises(UnsafeValue):
            render(table, tunnel_ports=tuple(ports))


@FUZZ
@given(fuzz.tables())
def test_a_refused_table_runs_no_command(table: fuzz.Table) -> None:
    runner = RecordingRunner()
    try:
        routing = PathRouting("site", ingress_exclude=table.ingress_exclude, runner=runner)
        routing.apply(table.policies, table.path_marks, table.priorities)
    except UnsafeValue:
        assert runner.calls == []  # nothing sent: the kernel keeps the previous table
    else:
        assert fuzz.is_valid(table)
        assert [(call.args, call.netns, call.had_input) for call in runner.calls] == [
            (["nft", "-f", "-"], "site", True)
        ]


@pytest.mark.parametrize("name", fuzz.HOSTILE_TEXT)
def test_hostile_policy_names_never_reach_the_script(name: str) -> None:
    table = fuzz.Table([fuzz.RoutingPolicy(name, 1, fuzz.PolicyMatch(), None)], {}, {}, [])
    with pytest.raises(UnsafeValue):
        render(table)


@pytest.mark.parametrize("cidr", fuzz.HOSTILE_CIDRS)
def test_hostile_cidrs_never_reach_the_script(cidr: str) -> None:
    match = fuzz.PolicyMatch(dst_cidrs=(cidr,))
    with pytest.raises(UnsafeValue):
        render(fuzz.Table([fuzz.RoutingPolicy("p", 1, match, None)], {}, {}, []))


def test_overlapping_values_are_merged_not_refused_by_nft() -> None:
    match = fuzz.PolicyMatch(
        "tcp",
        dst_ports=((80, 90), (85, 100), (101, 101)),
        dst_cidrs=("10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/16"),
    )
    table = fuzz.Table([fuzz.RoutingPolicy("web", 1, match, None)], {}, {}, [])
    script = render(table, by_port=False)
    assert "ip daddr 10.0.0.0/8 th dport 80-101 goto policy_0" in script
    nft_check.check_script(script, table)


_SAFE_ARG = re.compile(r"[A-Za-z0-9_.:/,\[\]=+-]+")


def _assert_safe(argv: list[str]) -> None:
    for previous, arg in zip(["", *argv], argv, strict=False):
        assert _SAFE_ARG.fullmatch(arg) or (previous == "allowed-ips" and arg == ""), arg
        assert not arg.startswith("-") or arg in ("-4", "-6", "-j", "-f"), arg


@LIGHT
@given(
    st.lists(
        st.tuples(fuzz.names, st.sampled_from([*qos.CLASS_PRIORITY, "gold", None]), fuzz.rates), max_size=5
    ),
    fuzz.interfaces,
)
def test_htb_commands_are_whitelisted_or_refused(
    classes: list[tuple[object, object, object]], device: str
) -> None:
    try:
        commands = qos.render_htb(device, classes, 10**9)  # type: ignore[arg-type]
    except UnsafeValue:
        return
    assert fuzz.INTERFACE.fullmatch(device)
    for args in commands:
        _assert_safe(args)
    assert len(commands) == 2 + len({name for name, _, _ in classes})


_keys = st.one_of(
    st.binary(min_size=32, max_size=32).map(lambda b: __import__("base64").b64encode(b).decode()),
    st.sampled_from(["A" * 43 + "=", "B" * 43 + "=", "x", "AAAA", "-" + "A" * 43, "A" * 42 + "A= remove"]),
)
_endpoints = st.one_of(
    st.none(),
    st.tuples(st.ip_addresses(), st.integers(0, 70000)).map(
        lambda t: validate.format_endpoint(str(t[0]), t[1])
    ),
    st.tuples(fuzz.valid_names, st.integers(1, 65535)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.sampled_from(["1.2.3.4", "[1.2.3.4]:5", "::1:51820", "host name:1", "a:b", "1.2.3:51820", "x:+1"]),
)


@LIGHT
@given(
    st.lists(
        st.tuples(_keys, _endpoints, st.lists(fuzz.cidrs, max_size=3), st.integers(-1, 70000)), max_size=4
    )
)
def test_peer_settings_are_canonical_or_refused(raw: list[tuple[str, str | None, list[str], int]]) -> None:
    specs = []
    for key, endpoint, allowed, keepalive in raw:
        try:
            specs.append(PeerSpec.create(key, endpoint, allowed, keepalive))
        except UnsafeValue:
            continue
    for change in plan_peer_changes([], specs):
        _assert_safe(change)


@LIGHT
@given(fuzz.interfaces, st.lists(fuzz.cidrs, min_size=1, max_size=3), fuzz.marks)
def test_path_routes_are_whitelisted_or_refused(device: str, cidrs: list[str], mark: object) -> None:
    runner = RecordingRunner(lambda args: (0, "[]", ""))
    try:
        ensure_path_route("p", mark, 51001, device, cidrs, runner=runner)  # type: ignore[arg-type]
    except UnsafeValue:
        assert runner.calls == []
        return
    for call in runner.calls:
        _assert_safe(call.args)


@pytest.mark.parametrize("name", ["../etc", "-n", "a b", "x/y", ".."])
def test_namespace_names_cannot_be_paths_or_options(name: str) -> None:
    with pytest.raises(UnsafeValue):
        in_netns(["nft", "list", "ruleset"], name)
