"""The data-plane plan computed from a typed configuration (no I/O)."""

from __future__ import annotations

import pytest

from patronus.agent.dataplane import qos
from patronus.agent.dataplane.routing import PATH_MARK_BASE, PolicyMatch
from patronus.agent.desired import NotReady, plan_dataplane, qos_minors, routing_policies
from tests.unit.agent.fakes import FIBER, LTE, config

FIBER_MARK, LTE_MARK = PATH_MARK_BASE + 1, PATH_MARK_BASE + 2


def test_one_interface_and_mark_per_underlay_and_a_mark_per_path() -> None:
    plan = plan_dataplane(config(monitoring=True))
    assert [(i.name, i.underlay, i.listen_port, i.mark) for i in plan.interfaces] == [
        ("wg-fiber", "fiber", 51820, FIBER_MARK),
        ("wg-lte", "lte", 51821, LTE_MARK),
    ]
    assert plan.interfaces[0].destinations == ("10.2.0.0/24", "100.96.0.2/32")
    assert plan.main_routes == ("10.2.0.0/24", "100.96.0.2/32")
    assert plan.primary_interface == "wg-fiber"
    assert dict(plan.path_marks) == {FIBER: FIBER_MARK, LTE: LTE_MARK}
    assert {name: (p.target, p.mark, p.interval, p.probes) for name, p in plan.probers.items()} == {
        FIBER: ("100.96.0.2", FIBER_MARK, 1.0, 5),
        LTE: ("100.96.0.2", LTE_MARK, 1.0, 5),
    }


def test_paths_with_monitoring_off_are_not_probed() -> None:
    assert plan_dataplane(config(monitoring=False)).probers == {}


def test_no_overlay_address_is_not_ready() -> None:
    with pytest.raises(NotReady, match="overlay"):
        plan_dataplane(config(overlay=None))


def test_routing_policies_take_the_wanted_path_or_none_when_it_has_no_tunnel() -> None:
    plan = plan_dataplane(config())
    (voice,) = routing_policies(plan, {"voice": LTE})
    assert (voice.name, voice.priority, voice.path, voice.qos_class, voice.bandwidth_bps) == (
        "voice", 100, LTE, "realtime", 1_000_000,
    )  # fmt: skip
    assert voice.match == PolicyMatch(protocol="udp", dst_ports=((5060, 5061),))
    assert routing_policies(plan, {})[0].path == FIBER  # default: the primary
    assert routing_policies(plan, {"voice": "elsewhere"})[0].path is None


def test_qos_minors_match_the_htb_classes_even_with_unshaped_policies() -> None:
    policies = [
        {"name": "aaa", "priority": 5},  # no bandwidth: no htb class
        {"name": "bulk", "priority": 1, "qos": {"class": "bulk", "bandwidthBps": 10_000_000}},
    ]
    plan = plan_dataplane(config(policies=policies))
    assert plan.shaped == (("bulk", "bulk", 10_000_000),)
    commands = qos.render_htb("wg-fiber", plan.shaped, 10**10)
    htb_classes = {args[7] for args in commands[2:]}
    assert {qos.classid(minor) for minor in qos_minors(plan).values()} == htb_classes


def test_reply_marking_names_every_tunnel_and_its_mark() -> None:
    script = plan_dataplane(config()).reply_script
    assert script.startswith("table inet patronus_replies\ndelete table inet patronus_replies\n")
    assert f'iifname "wg-lte" ct mark set {hex(LTE_MARK)}' in script
    assert 'iifname != { "wg-fiber", "wg-lte" }' in script
