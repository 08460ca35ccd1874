"""Overlay addresses: one stable address per site inside the WireGuard overlay.

The preferred address comes from a hash of the site's key, not from a counter, so it does not depend on
which other sites exist or in which order the controller met them: two operators (or one operator after a
restart with an empty cache) pick the same address. Collisions are settled by linear probing. The caller
persists the result where only it writes (the operator: an annotation on the site's ConfigMap, never a
status an agent may write) and treats it as taken for every other site, so an address never changes once
given, even if the pool later fills up around it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Collection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_OVERLAY_POOL = ipaddress.ip_network("100.96.0.0/16")
"""Carrier-grade NAT space (RFC 6598): unlikely to clash with the LANs behind the sites."""


class AddressPoolExhausted(Exception):
    """Every usable address of the overlay pool is taken."""

    def __init__(self, pool: IPNetwork, usable: int) -> None:
        super().__init__(
            f"overlay address pool {pool} is exhausted: all {usable} usable addresses are taken; "
            "use a larger pool"
        )
        self.pool = pool


def _usable_range(pool: IPNetwork) -> tuple[int, int]:
    """First usable address (as an int) and how many there are.

    IPv4 skips the network and broadcast addresses, except in /31 and /32 where every address is a host
    (RFC 3021). IPv6 skips the all-zeros Subnet-Router anycast address, as ``hosts()`` does.
    """
    first = int(pool.network_address)
    size = pool.num_addresses
    if pool.version == 4:
        if pool.prefixlen <= 30:  # /31 and /32 have no network or broadcast address
            return first + 1, size - 2
        return first, size
    if pool.prefixlen <= 126:  # /127 and /128 are point-to-point (RFC 6164)
        return first + 1, size - 1
    return first, size


def preferred_offset(site_key: str, usable: int) -> int:
    """Where probing starts for ``site_key``: a SHA-256 of the key, reduced to the usable range."""
    digest = hashlib.sha256(site_key.encode()).digest()
    return int.from_bytes(digest[:16], "big") % usable


def allocate_overlay_address(site_key: str, pool: IPNetwork, taken: Collection[IPAddress | str]) -> IPAddress:
    """An address of ``pool`` for ``site_key`` that is not in ``taken``.

    ``site_key`` should identify the site cluster-wide, for example ``namespace/name``. The result depends
    only on the arguments. Entries of ``taken`` outside the pool (or of the other IP version) are ignored.
    Raises :class:`AddressPoolExhausted` when no usable address is free.
    """
    first, usable = _usable_range(pool)
    taken_offsets = set()
    for entry in taken:
        address = ipaddress.ip_address(entry) if isinstance(entry, str) else entry
        offset = int(address) - first
        if address.version == pool.version and 0 <= offset < usable:
            taken_offsets.add(offset)
    if len(taken_offsets) >= usable:
        raise AddressPoolExhausted(pool, usable)
    start = preferred_offset(site_key, usable)
    # At most len(taken_offsets) + 1 steps: cheap even for an IPv6 /64.
    for step in range(usable):
        offset = (start + step) % usable
        if offset not in taken_offsets:
            return type(pool.network_address)(first + offset)
    raise AddressPoolExhausted(pool, usable)  # pragma: no cover - ruled out by the count above


def probe_overlay_address(site_key: str, pool: IPNetwork, is_taken: Callable[[IPAddress], bool]) -> IPAddress:
    """:func:`allocate_overlay_address` for a caller that can answer "is this one taken?" (an index
    lookup) faster than it can list every taken address: the same probe order, so the same address for
    the same taken set, in steps proportional to the collisions rather than to the number of sites.
    """
    first, usable = _usable_range(pool)
    start = preferred_offset(site_key, usable)
    make = type(pool.network_address)
    for step in range(usable):
        candidate = make(first + (start + step) % usable)
        if not is_taken(candidate):
            return candidate
    raise AddressPoolExhausted(pool, usable)
