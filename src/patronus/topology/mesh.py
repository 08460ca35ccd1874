"""The mesh graph: which ordered site pairs a topology joins, and the Paths that realise them.

Everything here is a pure function of names, so the Mesh controller (which creates and prunes Paths)
and the Site controller (which configures WireGuard peers) derive the same graph from the same spec.
Path names are deterministic, so a reconcile that sees the same mesh produces the same objects, and
distinct for distinct (mesh, source, destination, underlay), so two Paths never claim one name.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from patronus.api.mesh import Mesh, Topology
from patronus.api.site import DEFAULT_UNDERLAY

MAX_NAME_LENGTH = 63
"""Kubernetes label values and many object names are DNS-1123 labels: at most 63 characters."""

_HASH_LENGTH = 20
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_LABEL_CHAR = re.compile(r"[^a-z0-9-]")


def _unique(names: Sequence[str]) -> list[str]:
    """Names once each, first occurrence kept (the first site may be the default hub)."""
    return list(dict.fromkeys(names))


def site_pairs(
    sites: Sequence[str], topology: Topology, hubs: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """The ordered (source, destination) pairs a topology joins, sorted.

    full-mesh joins every ordered pair of distinct sites: n*(n-1) pairs. hub-spoke joins each hub with
    each spoke in both directions, and the hubs with one another (so traffic between spokes attached to
    different hubs has a way across). Hubs default to the first site; hubs not in ``sites`` are ignored,
    and if none is left there are no pairs, because promoting some other site to hub would only create
    Paths that get pruned again when the real hub appears.
    """
    members = _unique(sites)
    if topology == "full-mesh":
        pairs = {(a, b) for a in members for b in members if a != b}
    elif topology == "hub-spoke":
        wanted = members[:1] if hubs is None else hubs
        hub_set = {hub for hub in wanted if hub in members}
        pairs = set()
        for hub in hub_set:
            for other in members:
                if other != hub:
                    # Spokes pair with every hub; hubs pair with one another.
                    pairs.add((hub, other))
                    pairs.add((other, hub))
    else:  # pragma: no cover - the Literal type and the CRD enum rule this out
        raise ValueError(f"unknown topology {topology!r}: expected full-mesh or hub-spoke")
    return sorted(pairs)


def mesh_hubs(mesh: Mesh) -> list[str]:
    """The hubs a Mesh means: spec.hubs, else its first listed site; none for full-mesh.

    Pass this (not None) to :func:`plan_paths`, whose mapping holds only the sites that exist: if the
    first listed site is missing, the default must not silently fall to the next one.
    """
    if mesh.spec.topology != "hub-spoke":
        return []
    return list(mesh.spec.hubs) if mesh.spec.hubs else mesh.spec.sites[:1]


@dataclass(frozen=True)
class PathPlan:
    """One Path a Mesh wants: one direction of one underlay between two sites."""

    name: str
    mesh: str
    source: str
    destination: str
    underlay: str


def _pair_underlays(source: Sequence[str], destination: Sequence[str]) -> list[str]:
    """Underlays both ends have, in the source's order; else the source's primary underlay.

    Sites with no shared underlay name still get one path, so a mesh never silently drops a pair.
    """
    source_underlays = _unique(source) or [DEFAULT_UNDERLAY]
    shared = [name for name in source_underlays if name in set(destination)]
    return shared or source_underlays[:1]


def plan_paths(
    mesh: str,
    sites: Mapping[str, Sequence[str]],
    topology: Topology,
    hubs: Sequence[str] | None = None,
) -> list[PathPlan]:
    """The Paths a mesh implies over the sites that exist.

    ``sites`` maps each existing site to its underlay names, primary first (``SiteSpec.underlay_names``);
    listed sites that do not exist are simply absent (the caller reports them). The result is sorted by
    source, destination, then the source's underlay order.
    """
    plans = []
    for source, destination in site_pairs(list(sites), topology, hubs):
        for underlay in _pair_underlays(sites[source], sites[destination]):
            plans.append(
                PathPlan(
                    name=path_name(mesh, source, destination, underlay),
                    mesh=mesh,
                    source=source,
                    destination=destination,
                    underlay=underlay,
                )
            )
    return plans


def path_name(mesh: str, source: str, destination: str, underlay: str) -> str:
    """A Path name (a DNS-1123 subdomain of at most 63 characters) that no other tuple can have.

    Readable, ``{mesh}.{source}.{destination}.{underlay}``, when no part contains a dot and it fits: the
    parts are DNS labels then, so the name splits back into exactly the four parts it was made of (two
    tuples never share it). Otherwise a sanitised prefix, ``--`` and 20 base32 characters (100 bits) of
    the SHA-256 of the whole tuple: such a name has no dot, so it is never a readable one, and two tuples
    sharing one would need a SHA-256 collision. (No scheme can be injective for every tuple: three names
    of up to 253 characters do not fit in 63.)
    """
    parts = (mesh, source, destination, underlay)
    readable = ".".join(parts)
    if len(readable) <= MAX_NAME_LENGTH and all(_DNS_LABEL.fullmatch(part) for part in parts):
        return readable
    digest = base64.b32encode(hashlib.sha256("\0".join(parts).encode()).digest()).decode().lower()
    prefix = _NOT_LABEL_CHAR.sub("-", "-".join(parts).lower())[: MAX_NAME_LENGTH - _HASH_LENGTH - 2]
    prefix = prefix.strip("-")
    suffix = digest[:_HASH_LENGTH]
    return f"{prefix}--{suffix}" if prefix else suffix
