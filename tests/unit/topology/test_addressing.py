"""Overlay address allocation: stable per site, never colliding, clean when the pool is full."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Callable
from typing import Any

import pytest

from patronus.topology.addressing import (
    DEFAULT_OVERLAY_POOL,
    AddressPoolExhausted,
    IPAddress,
    allocate_overlay_address,
    probe_overlay_address,
)


def test_default_pool() -> None:
    assert ipaddress.ip_network("100.96.0.0/16") == DEFAULT_OVERLAY_POOL


def test_same_inputs_same_address() -> None:
    first = allocate_overlay_address("patronus-system/branch-nyc", DEFAULT_OVERLAY_POOL, [])
    assert allocate_overlay_address("patronus-system/branch-nyc", DEFAULT_OVERLAY_POOL, []) == first
    assert first in DEFAULT_OVERLAY_POOL
    assert allocate_overlay_address("patronus-system/branch-sf", DEFAULT_OVERLAY_POOL, []) != first


def test_address_does_not_depend_on_unrelated_sites() -> None:
    pool = DEFAULT_OVERLAY_POOL
    key = "ns/target"
    alone = allocate_overlay_address(key, pool, [])
    others = [allocate_overlay_address(f"ns/other-{i}", pool, []) for i in range(200)]
    unrelated = [address for address in others if address != alone]
    # Adding sites, in any order, or removing them again does not move the target.
    assert allocate_overlay_address(key, pool, unrelated) == alone
    assert allocate_overlay_address(key, pool, list(reversed(unrelated))) == alone
    assert allocate_overlay_address(key, pool, unrelated[:50]) == alone


def test_collision_probes_to_the_next_free_address() -> None:
    pool = DEFAULT_OVERLAY_POOL
    preferred = allocate_overlay_address("ns/a", pool, [])
    second = allocate_overlay_address("ns/a", pool, [preferred])
    assert second != preferred
    assert second in pool


def test_probing_wraps_around_and_skips_network_and_broadcast() -> None:
    pool = ipaddress.IPv4Network("10.0.0.0/29")  # usable .1 - .6
    hosts: list[IPAddress] = list(pool.hosts())
    for key in (f"site-{i}" for i in range(50)):
        preferred = allocate_overlay_address(key, pool, [])
        assert preferred in hosts
        # Take everything from the preferred address to the end: the next pick wraps to the start.
        tail = hosts[hosts.index(preferred) :]
        rest = [h for h in hosts if h not in tail]
        if rest:
            assert allocate_overlay_address(key, pool, tail) == rest[0]


def test_thousands_of_sites_in_a_16_never_collide() -> None:
    pool = DEFAULT_OVERLAY_POOL
    taken: set[IPAddress] = set()
    probed = 0
    for i in range(2500):
        key = f"ns/site-{i}"
        address = allocate_overlay_address(key, pool, taken)
        assert address not in taken
        assert address not in (pool.network_address, pool.broadcast_address)
        probed += address != allocate_overlay_address(key, pool, [])
        taken.add(address)
    assert len(taken) == 2500
    assert probed > 0  # the birthday paradox guarantees some hash collisions were settled


def test_exhausts_a_30_cleanly() -> None:
    pool = ipaddress.ip_network("192.0.2.0/30")
    taken: list[IPAddress] = []
    for i in range(2):
        taken.append(allocate_overlay_address(f"s{i}", pool, taken))
    assert sorted(taken) == list(pool.hosts())
    with pytest.raises(AddressPoolExhausted, match=r"192\.0\.2\.0/30") as caught:
        allocate_overlay_address("s2", pool, taken)
    assert caught.value.pool == pool


def test_point_to_point_pools_use_every_address() -> None:
    pool = ipaddress.ip_network("192.0.2.0/31")
    first = allocate_overlay_address("a", pool, [])
    second = allocate_overlay_address("b", pool, [first])
    assert {first, second} == set(pool)


def test_taken_accepts_strings_and_ignores_foreign_addresses() -> None:
    pool = ipaddress.ip_network("10.0.0.0/30")
    only = ipaddress.ip_address("10.0.0.2")
    assert allocate_overlay_address("x", pool, ["10.0.0.1", "192.168.0.1", "fd00::1"]) == only


def test_ipv6_pool() -> None:
    pool = ipaddress.ip_network("fd00:5eed::/64")
    taken: list[IPAddress] = []
    for i in range(500):
        address = allocate_overlay_address(f"ns/s{i}", pool, taken)
        assert isinstance(address, ipaddress.IPv6Address)
        assert address in pool
        assert address != pool.network_address
        taken.append(address)
    assert len(set(taken)) == 500
    assert allocate_overlay_address("ns/s0", pool, []) == taken[0]


def test_small_ipv6_pool_stays_ipv6_and_exhausts() -> None:
    pool = ipaddress.ip_network("::/126")  # small integers: must not turn into IPv4 addresses
    taken: list[IPAddress] = []
    for i in range(3):
        taken.append(allocate_overlay_address(f"s{i}", pool, taken))
    assert all(isinstance(address, ipaddress.IPv6Address) for address in taken)
    assert ipaddress.IPv6Address("::") not in taken
    with pytest.raises(AddressPoolExhausted, match="::/126"):
        allocate_overlay_address("s3", pool, taken)


def _recording(taken: set[Any], asked: list[IPAddress]) -> Callable[[IPAddress], bool]:
    def is_taken(candidate: IPAddress) -> bool:
        asked.append(candidate)
        return candidate in taken

    return is_taken


@pytest.mark.parametrize("pool_text", ["100.96.0.0/16", "10.0.0.0/29", "fd00:96::/64", "192.0.2.0/31"])
def test_probing_gives_the_address_allocation_gives(pool_text: str) -> None:
    pool = ipaddress.ip_network(pool_text)
    rng = random.Random(pool_text)
    hosts = list(itertools.islice(pool.hosts(), 200))
    for trial in range(50):
        taken = set(rng.sample(hosts, rng.randint(0, len(hosts) - 1)))
        key = f"ns/site-{trial}"
        expected = allocate_overlay_address(key, pool, taken)
        asked: list[IPAddress] = []
        answer = _recording(taken, asked)
        assert probe_overlay_address(key, pool, answer) == expected
        assert len(asked) <= len(taken) + 1, "one question per collision, plus the answer"


def test_probing_a_full_pool_says_so() -> None:
    pool = ipaddress.ip_network("10.0.0.0/30")
    with pytest.raises(AddressPoolExhausted, match="exhausted"):
        probe_overlay_address("ns/a", pool, lambda _: True)
