"""Overlay addresses: one per site, allocated by the operator and kept where only it writes.

The allocation is an annotation on the site's agent ConfigMap (``sdwan.patronus.dev/overlay-address``),
an object the agent may read but not write, and the ConfigMap cache is indexed by it, so a new site's
candidates are checked against the others' in one lookup each. It is never read back from the Site's
status: an agent may write that, and an agent that claimed another site's address there would get that
site's traffic. The status shows the address for people; nothing reads it.

The preferred address is a hash of the site's name (``topology.addressing``), so it does not depend on
the order sites were met; collisions probe onwards. Addresses handed out by this process but not yet in
the cache are held per namespace, under a lock, so two new sites never get the same one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from patronus.operator.indexes import BY_OVERLAY_ADDRESS, ref
from patronus.operator.reconcile.conditions import Cond
from patronus.operator.site.children.data import CONFIG_KEY
from patronus.operator.site.children.names import OVERLAY_ADDRESS_ANNOTATION, child_names
from patronus.runtime.sources import KindCache
from patronus.topology import DEFAULT_OVERLAY_POOL, AddressPoolExhausted, probe_overlay_address
from patronus.topology.addressing import IPAddress, IPNetwork

ADDRESS_ASSIGNED = "AddressAssigned"


@dataclass(frozen=True, slots=True)
class Assignment:
    address: str | None
    condition: Cond


def _in_pool(text: object, pool: IPNetwork) -> str | None:
    try:
        address = ipaddress.ip_address(str(text))
    except ValueError:
        return None
    return str(address) if address.version == pool.version and address in pool else None


def stored_address(
    config_map: Mapping[str, Any] | None, pool: IPNetwork = DEFAULT_OVERLAY_POOL
) -> str | None:
    """The address a site's ConfigMap records, if it is a valid address of ``pool``.

    A ConfigMap written before the annotation existed records it only in its configuration text
    (``overlayAddress``), which the operator wrote too: read once, so an upgrade keeps every address.
    """
    if config_map is None:
        return None
    annotations = (config_map.get("metadata") or {}).get("annotations") or {}
    if OVERLAY_ADDRESS_ANNOTATION in annotations:
        return _in_pool(annotations[OVERLAY_ADDRESS_ANNOTATION], pool)
    text = (config_map.get("data") or {}).get(CONFIG_KEY)
    try:
        return _in_pool(json.loads(text).get("overlayAddress"), pool) if text else None
    except (ValueError, AttributeError):
        return None


class OverlayAddresses:
    """Allocates and remembers the sites' overlay addresses (one instance per operator process)."""

    def __init__(self, config_maps: KindCache, pool: IPNetwork = DEFAULT_OVERLAY_POOL) -> None:
        self.config_maps = config_maps
        self.pool = pool
        self._reserved: dict[str, dict[str, str]] = defaultdict(dict)  # namespace -> site -> address
        self._holders: dict[str, dict[str, str]] = defaultdict(dict)  # namespace -> address -> site
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def current(self, namespace: str, name: str) -> str | None:
        """The site's address, as stored or as handed out by this process; None if it has none yet."""
        stored = stored_address(self.config_maps.get(namespace, child_names(name).config_map), self.pool)
        return stored or self._reserved[namespace].get(name)

    async def assign(self, namespace: str, name: str) -> Assignment:
        """The site's address: the one it has, or a new one."""
        current = stored_address(self.config_maps.get(namespace, child_names(name).config_map), self.pool)
        if current:
            if self._reserved[namespace].get(name) != current:
                self._reserve(namespace, name, current)
            return Assignment(current, Cond(ADDRESS_ASSIGNED, "True", "Assigned"))
        async with self._locks[namespace]:
            reserved = self._reserved[namespace].get(name)
            if reserved is not None:
                return Assignment(reserved, Cond(ADDRESS_ASSIGNED, "True", "Assigned"))
            try:
                address = str(probe_overlay_address(name, self.pool, self._taken_check(namespace, name)))
            except AddressPoolExhausted as error:
                return Assignment(None, Cond(ADDRESS_ASSIGNED, "False", "PoolExhausted", str(error)))
            self._reserve(namespace, name, address)
            return Assignment(address, Cond(ADDRESS_ASSIGNED, "True", "Assigned"))

    def release(self, namespace: str, name: str) -> None:
        """The site is gone: its address may go to another site."""
        address = self._reserved[namespace].pop(name, None)
        if address is not None and self._holders[namespace].get(address) == name:
            del self._holders[namespace][address]

    def _reserve(self, namespace: str, name: str, address: str) -> None:
        self.release(namespace, name)
        self._reserved[namespace][name] = address
        self._holders[namespace][address] = name

    def _taken_check(self, namespace: str, name: str) -> Callable[[IPAddress], bool]:
        holders = self._holders[namespace]
        own_config_map = child_names(name).config_map

        def is_taken(candidate: IPAddress) -> bool:
            # An index lookup per candidate: listing every site's address made each new site O(N).
            address = str(candidate)
            if holders.get(address, name) != name:
                return True
            found = self.config_maps.by_index(BY_OVERLAY_ADDRESS, ref(namespace, address))
            return any(other["metadata"]["name"] != own_config_map for other in found)

        return is_taken
