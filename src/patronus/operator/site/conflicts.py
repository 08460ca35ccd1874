"""Claims Sites make that other Sites can contest: a WireGuard public key, and LAN prefixes to route.

WireGuard knows a peer by its public key, and routes a prefix to one peer only: two sites with one key,
or a prefix two sites claim, would have every peer send one site's traffic to the other. So a contested
claim goes to the site that made it first (oldest ``creationTimestamp``, then name); the other site is
told, by a condition naming the site it conflicts with, and its claim is left out of every peer's
configuration (a key: the whole site; a prefix: that prefix). A prefix that holds a site's endpoint is
never routed: peers would send the tunnel's own packets into the tunnel. (Prefixes in the overlay pool or
other special ranges are refused at admission.)

Lookups go through indexes of the Sites cache (exact prefixes, the prefixes that hold a site's prefixes,
the prefixes that hold its endpoints), so a check costs one lookup per prefix length, not a walk of the
namespace. Endpoints given as host names are not resolved here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from patronus.api.addresses import parse_endpoint
from patronus.kube.resource import SECRET
from patronus.operator.context import Caches
from patronus.operator.indexes import (
    BY_ENDPOINT_ANCESTOR,
    BY_PUBLIC_KEY,
    BY_SUBNET,
    BY_SUBNET_ANCESTOR,
    ref,
)
from patronus.operator.reconcile.conditions import Cond
from patronus.runtime.cache import Object
from patronus.topology.addressing import IPNetwork

_SHOWN = 3


def seniority(obj: Mapping[str, Any]) -> tuple[str, str]:
    """What decides a contested claim: the older object, then the smaller name."""
    meta = obj.get("metadata") or {}
    return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")


def _site_owner(caches: Caches, secret: Object) -> Object | None:
    namespace = secret["metadata"].get("namespace") or ""
    for owner in secret["metadata"].get("ownerReferences") or []:
        site = caches.sites.get(namespace, owner.get("name", "")) if owner.get("kind") == "Site" else None
        if site is not None and site["metadata"].get("uid") == owner.get("uid"):
            return site
    return None


def key_claimants(caches: Caches, namespace: str, public_key: str) -> list[Object]:
    """Every site that claims ``public_key``: in its spec, or in the key Secret the operator made it."""
    value = ref(namespace, public_key)
    claimants = {s["metadata"]["name"]: s for s in caches.sites.by_index(BY_PUBLIC_KEY, value)}
    for secret in caches.child(SECRET).by_index(BY_PUBLIC_KEY, value):
        owner = _site_owner(caches, secret)
        if owner is not None:
            claimants[owner["metadata"]["name"]] = owner
    return list(claimants.values())


def key_rival(caches: Caches, site_obj: Object, public_key: str | None) -> str | None:
    """The site that claimed ``public_key`` before ``site_obj`` did, if any."""
    if not public_key:
        return None
    namespace, mine = site_obj["metadata"].get("namespace") or "", seniority(site_obj)
    older = [s for s in key_claimants(caches, namespace, public_key) if seniority(s) < mine]
    return min(older, key=seniority)["metadata"]["name"] if older else None


def duplicate_key_condition(rival: str) -> Cond:
    message = (
        f"wireguard.publicKey is also Site {rival}'s, which had it first: peers are configured with {rival} "
        "only; give this site its own key"
    )
    return Cond("KeysReady", "False", "DuplicatePublicKey", message)


# -- prefixes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Routes:
    """The LAN prefixes a site may route, and why the others may not."""

    usable: tuple[str, ...]
    problems: list[str] = field(default_factory=list)

    def condition(self) -> Cond:
        if not self.problems:
            return Cond("SubnetsAccepted", "True", "NoConflict")
        shown = "; ".join(self.problems[:_SHOWN])
        more = f"; and {len(self.problems) - _SHOWN} more" if len(self.problems) > _SHOWN else ""
        message = f"not routed to this site: {shown}{more}"
        return Cond("SubnetsAccepted", "False", "SubnetConflict", message)


def network_key(namespace: str, network: IPNetwork) -> str:
    return ref(namespace, str(network))


def supernets(network: IPNetwork, *, inclusive: bool) -> Iterable[IPNetwork]:
    """Every prefix that holds ``network``, shortest first; itself too when ``inclusive``."""
    last = network.prefixlen + (1 if inclusive else 0)
    return (network.supernet(new_prefix=length) for length in range(last))


def endpoint_address(endpoint: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP literal of a ``host:port`` endpoint; None for a host name (or what is not an endpoint)."""
    try:
        return parse_endpoint(endpoint).address()
    except ValueError:
        return None


def _names(objects: Iterable[Object], but: str) -> list[str]:
    return sorted({o["metadata"]["name"] for o in objects} - {but})


def _overlap_rivals(caches: Caches, namespace: str, network: IPNetwork, name: str) -> list[Object]:
    """The other sites with a prefix that holds, equals or lies inside ``network``."""
    found = [
        site
        for outer in supernets(network, inclusive=True)
        for site in caches.sites.by_index(BY_SUBNET, network_key(namespace, outer))
    ]
    found += caches.sites.by_index(BY_SUBNET_ANCESTOR, network_key(namespace, network))
    return [site for site in found if site["metadata"]["name"] != name]


def _problems(caches: Caches, site_obj: Object, network: IPNetwork) -> list[str]:
    namespace, name = site_obj["metadata"].get("namespace") or "", site_obj["metadata"]["name"]
    holders = caches.sites.by_index(BY_ENDPOINT_ANCESTOR, network_key(namespace, network))
    if holders:
        which = ", ".join(f"Site {n}" for n in sorted({h["metadata"]["name"] for h in holders}))
        return [f"{network} holds the endpoint of {which}"]
    mine = seniority(site_obj)
    older = [s for s in _overlap_rivals(caches, namespace, network, name) if seniority(s) < mine]
    if older:
        first = min(older, key=seniority)["metadata"]["name"]
        return [f"{network} overlaps a subnet of Site {first}, which had it first"]
    return []


def routes(caches: Caches, site_obj: Object, subnets: Iterable[str]) -> Routes:
    """Which of ``subnets`` (the site's spec) the site may route."""
    usable, problems = [], []
    for subnet in sorted(subnets):
        network = ipaddress.ip_network(subnet, strict=False)
        found = _problems(caches, site_obj, network)
        problems += found
        if not found:
            usable.append(subnet)
    return Routes(tuple(usable), problems)


def contested_with(
    caches: Caches, site_obj: Object, subnets: Iterable[str], endpoints: Iterable[str]
) -> list[str]:
    """The other sites whose claims a change to this site's prefixes or endpoints may decide."""
    namespace, name = site_obj["metadata"].get("namespace") or "", site_obj["metadata"]["name"]
    found: list[Object] = []
    for subnet in subnets:
        found += _overlap_rivals(caches, namespace, ipaddress.ip_network(subnet, strict=False), name)
    for endpoint in endpoints:
        address = endpoint_address(endpoint)
        if address is not None:
            host = ipaddress.ip_network(address)
            for outer in supernets(host, inclusive=True):
                found += caches.sites.by_index(BY_SUBNET, network_key(namespace, outer))
    return _names(found, name)
