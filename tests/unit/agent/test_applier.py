"""The applier against an in-memory kernel: what it runs, what it leaves alone, what it reports as true."""

from __future__ import annotations

import pytest

from patronus.agent.applier import DataPlane
from patronus.agent.dataplane.commands import CommandError
from patronus.agent.dataplane.routing import PolicyCounters
from patronus.agent.desired import plan_dataplane
from patronus.agent.steering import RouteChange
from patronus.runtime.clock import FakeClock
from tests.unit.agent.fakes import FIBER, LTE, PRIVATE_KEY, FakeKernel, config


@pytest.fixture
def kernel() -> FakeKernel:
    return FakeKernel()


async def applied(kernel: FakeKernel) -> DataPlane:
    dataplane = DataPlane(runner=kernel)
    await dataplane.apply(plan_dataplane(config()), PRIVATE_KEY, {"voice": FIBER})
    return dataplane


async def test_apply_builds_tunnels_routes_policy_table_and_qos(kernel: FakeKernel) -> None:
    dataplane = await applied(kernel)
    assert set(kernel.links) == {"wg-fiber", "wg-lte"}
    assert all(PRIVATE_KEY not in " ".join(call.args) for call in kernel.calls)  # the key only on stdin
    assert {"patronus", "patronus_replies"} <= kernel.tables
    assert ["ip", "route", "replace", "10.2.0.0/24", "dev", "wg-fiber"] in kernel.commands("ip", "route")
    assert kernel.commands("tc", "qdisc", "replace")  # voice has a bandwidth: htb on both tunnels
    assert dataplane.kernel_paths == {"voice": FIBER}
    assert dataplane.plan is not None


async def test_applying_the_same_plan_again_keeps_the_policy_table_and_queues(kernel: FakeKernel) -> None:
    dataplane = await applied(kernel)
    before = len(kernel.calls)
    await dataplane.apply(plan_dataplane(config()), PRIVATE_KEY, {"voice": FIBER})
    again = [call.args for call in kernel.calls[before:]]
    assert not any(args[:2] == ["tc", "qdisc"] for args in again)
    scripts = [call.input or "" for call in kernel.calls[before:] if call.args == ["nft", "-f", "-"]]
    assert [s.split("\n")[0] for s in scripts] == ["table inet patronus_replies"]  # no policy table again:
    # its counters survive


async def test_the_policy_table_exempts_every_tunnels_encrypted_packets_from_conntrack(
    kernel: FakeKernel,
) -> None:
    await applied(kernel)
    table = next(s for s in kernel.scripts() if s.startswith("table inet patronus\n"))
    assert "\t\tudp dport { 51820, 51821 } fib daddr type local notrack\n" in table  # fiber's and lte's
    assert "\t\tmeta mark 0x00051820 notrack\n" in table


async def test_a_missing_policy_table_is_rendered_again(kernel: FakeKernel) -> None:
    dataplane = await applied(kernel)
    kernel.tables.discard("patronus")  # someone flushed the ruleset
    await dataplane.apply(plan_dataplane(config()), PRIVATE_KEY, {"voice": LTE})
    assert "patronus" in kernel.tables
    assert dataplane.kernel_paths == {"voice": LTE}


async def test_switch_is_one_map_update_and_a_refused_one_changes_nothing(kernel: FakeKernel) -> None:
    dataplane = await applied(kernel)
    await dataplane.switch("voice", LTE)
    assert dataplane.kernel_paths == {"voice": LTE}
    assert len(kernel.switches()) == 1
    kernel.fail_switch = True
    with pytest.raises(CommandError, match="No buffer space"):
        await dataplane.switch("voice", FIBER)
    assert dataplane.kernel_paths == {"voice": LTE}


async def test_unmatched_routes_are_moved_and_kept_across_a_resync(kernel: FakeKernel) -> None:
    dataplane = await applied(kernel)
    await dataplane.route_unmatched(RouteChange("b", LTE, "wg-lte", ("10.2.0.0/24",)))
    assert kernel.commands("ip", "route", "replace")[-1] == [
        "ip",
        "route",
        "replace",
        "10.2.0.0/24",
        "dev",
        "wg-lte",
    ]
    await dataplane.apply(plan_dataplane(config()), PRIVATE_KEY, {"voice": FIBER}, {"10.2.0.0/24": "wg-lte"})
    main = [c for c in kernel.commands("ip", "route", "replace") if "table" not in c][-2:]
    assert ["ip", "route", "replace", "10.2.0.0/24", "dev", "wg-lte"] in main
    assert ["ip", "route", "replace", "100.96.0.2/32", "dev", "wg-fiber"] in main


async def test_counters_come_from_nft_and_wg(kernel: FakeKernel) -> None:
    dataplane = await applied(kernel)
    kernel.counters["voice"] = PolicyCounters(10, 1500, 2)
    sample = await dataplane.counters()
    assert sample.policies == {"voice": PolicyCounters(10, 1500, 2)}
    assert sample.peers == {}  # the fake kernel's tunnels have no peers to show


async def test_teardown_removes_ours_and_what_a_previous_run_left(kernel: FakeKernel) -> None:
    kernel.links["wg-old"] = {"port": 1, "fwmark": 0, "public": None}
    dataplane = await applied(kernel)
    ours = sorted(dataplane.interfaces)
    assert ours
    assert await dataplane.teardown(["wg-old"]) == sorted([*ours, "wg-old"])
    assert kernel.links == {}
    assert "patronus" not in kernel.tables
    assert "patronus_replies" not in kernel.tables
    assert dataplane.kernel_paths == {}
    assert dataplane.plan is None


async def test_a_peer_whose_host_name_does_not_resolve_is_retried_on_its_own(kernel: FakeKernel) -> None:
    clock = FakeClock()
    resolvable: set[str] = set()

    def resolver(host: str, port: int) -> str:
        if host not in resolvable:
            raise OSError(f"{host}: name does not resolve")
        return "192.0.2.2"

    base = config()
    interfaces = [
        iface.model_copy(
            update={"peers": [p.model_copy(update={"endpoint": "b.example.net:51820"}) for p in iface.peers]}
        )
        for iface in base.interfaces
    ]
    dataplane = DataPlane(runner=kernel, clock=clock, resolver=resolver)
    await dataplane.apply(
        plan_dataplane(base.model_copy(update={"interfaces": interfaces})), PRIVATE_KEY, {"voice": FIBER}
    )
    assert dataplane.peer_failures  # reported, not raised: the rest of the data plane is applied
    assert dataplane.kernel_paths == {"voice": FIBER}
    due = dataplane.peers_due
    assert due is not None
    assert due > clock.monotonic()
    resolvable.add("b.example.net")
    clock.advance(due - clock.monotonic())
    await dataplane.resync_peers()
    assert dataplane.peer_failures == {}
    assert any("192.0.2.2:51820" in call.args for call in kernel.calls if call.args[:2] == ["wg", "set"])
