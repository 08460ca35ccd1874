"""The lab's names and addresses, computed once and purely, so create, destroy and impair agree on them.

Layout for sites ``s_1 .. s_n`` (index ``i`` counts from 1, in the order given) and underlays
``u_0 .. u_k`` (index ``u`` counts from 0, default ``("fiber", "lte")``):

- Namespaces: ``<prefix>-<site>`` (the site: its agent runs here), ``<prefix>-<site>-h`` (a LAN host)
  and one ``<prefix>-wan`` shared by all sites. A separate LAN host namespace (rather than a second
  address on the site) is what makes LAN traffic *forwarded* by the site, as a branch's clients are, so
  the agent's policy routing, marks and QoS see it on the forward path, not as locally generated.
- LAN: ``lan0`` in the site with ``10.<i>.0.1/24``; ``eth0`` in the host with ``10.<i>.0.10/24`` and a
  default route via ``10.<i>.0.1``.
- Underlay ``u`` of site ``i``: a veth pair ``<underlay>0`` (site side, ``172.<16+u>.<i>.2/30``) and
  ``w<i>-<underlay>`` (WAN side, ``172.<16+u>.<i>.1/30``); the WAN namespace forwards between all of them.
  The site gets only the route ``172.<16+u>.0.0/16 via 172.<16+u>.<i>.1 dev <underlay>0``: every other
  site's address on the same underlay, over the matching interface, and nothing else. There is no default
  route, on purpose: LAN traffic leaves only through the agent's WireGuard tunnels, so a broken overlay
  shows as a failure instead of quietly leaking over the underlay.

Limits: 254 sites (the third octet) and 16 underlays (172.16/12).
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SITES = 254
MAX_UNDERLAYS = 16
IFNAMSIZ = 15
"""Linux interface names are at most 15 characters."""
MAX_NETNS_NAME = 48
"""Our own cap for namespace names: readable in ``ip netns list`` and far below NAME_MAX."""

LAN_INTERFACE = "lan0"
HOST_INTERFACE = "eth0"
RELAY_TUN = "imp0"
"""The TUN device in the WAN namespace that the delay relay reads and writes."""
RELAY_TABLE = 4242
"""The routing table (in the WAN namespace) whose default route leads into the relay's TUN."""
NFT_TABLE = "patronus-lab"
"""The nftables table (family ``inet``) in the WAN namespace that holds the loss and down rules."""
STATE_ROOT = "/run/patronus-lab"

_PREFIX = re.compile(r"[a-z][a-z0-9]{0,9}")
_SITE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
_UNDERLAY = re.compile(r"[a-z][a-z0-9]{0,9}")


@dataclass(frozen=True)
class SitePlan:
    """One site: its namespaces and LAN."""

    name: str
    index: int
    namespace: str
    host_namespace: str
    lan_subnet: str
    lan_address: str
    host_address: str
    lan_interface: str = LAN_INTERFACE
    host_interface: str = HOST_INTERFACE


@dataclass(frozen=True)
class LinkPlan:
    """One WAN access link: a site's underlay, a veth pair between the site and the WAN namespace."""

    site: str
    underlay: str
    site_index: int
    underlay_index: int
    site_interface: str
    wan_interface: str
    subnet: str
    site_address: str
    wan_address: str
    underlay_block: str

    @property
    def name(self) -> str:
        """``<site>/<underlay>``: how the CLI and the relay name this link (site names never hold "/")."""
        return f"{self.site}/{self.underlay}"

    @property
    def nft_chain(self) -> str:
        """The per-link nftables chain that the forward chain jumps to for this link's packets."""
        return f"l-{self.wan_interface}"


@dataclass(frozen=True)
class LabPlan:
    """Everything ``network.create`` builds and ``network.destroy`` removes."""

    prefix: str
    underlays: tuple[str, ...]
    wan_namespace: str
    sites: tuple[SitePlan, ...]
    links: tuple[LinkPlan, ...]

    @property
    def namespaces(self) -> tuple[str, ...]:
        """All namespaces, the WAN first (destroy removes them in reverse)."""
        names = [self.wan_namespace]
        for site in self.sites:
            names += [site.namespace, site.host_namespace]
        return tuple(names)

    @property
    def state_dir(self) -> str:
        """Where the impairment state and the relay's control socket live."""
        return f"{STATE_ROOT}/{self.prefix}"

    @property
    def relay_socket(self) -> str:
        return f"{self.state_dir}/relay.sock"

    def site(self, name: str) -> SitePlan:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(f"no site {name!r} in the lab (sites: {', '.join(s.name for s in self.sites)})")

    def link(self, site: str, underlay: str | None = None) -> LinkPlan:
        """The link of ``site`` on ``underlay``; or ``link("a/fiber")``."""
        if underlay is None:
            site, sep, underlay = site.partition("/")
            if not sep:
                raise KeyError(f"a link is named <site>/<underlay>, not {site!r}")
        for link in self.links:
            if link.site == site and link.underlay == underlay:
                return link
        raise KeyError(f"no link {site}/{underlay} in the lab (underlays: {', '.join(self.underlays)})")

    def endpoint(self, site: str, underlay: str, port: int) -> str:
        """``host:port`` where the other sites reach ``site`` over ``underlay`` (a Site CR endpoint)."""
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not 1-65535")
        return f"{self.link(site, underlay).site_address}:{port}"


def _short(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit``, else a cut with a hash suffix so different long names stay apart."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7]}-{digest}"


def plan_lab(
    sites: Sequence[str], underlays: Sequence[str] = ("fiber", "lte"), prefix: str = "pl"
) -> LabPlan:
    """Plan a lab; raises ``ValueError`` for names or sizes the layout cannot hold."""
    _check_names(sites, underlays, prefix)
    plan = LabPlan(
        prefix=prefix,
        underlays=tuple(underlays),
        wan_namespace=f"{prefix}-wan",
        sites=tuple(_site_plan(prefix, name, i) for i, name in enumerate(sites, start=1)),
        links=tuple(
            _link_plan(name, i, underlay, u)
            for i, name in enumerate(sites, start=1)
            for u, underlay in enumerate(underlays)
        ),
    )
    _check(plan)
    return plan


def _check_names(sites: Sequence[str], underlays: Sequence[str], prefix: str) -> None:
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix {prefix!r}: 1-10 characters, a lowercase letter then letters or digits")
    if not sites:
        raise ValueError("a lab needs at least one site")
    if len(sites) > MAX_SITES:
        raise ValueError(f"{len(sites)} sites: at most {MAX_SITES}")
    if not underlays or len(underlays) > MAX_UNDERLAYS:
        raise ValueError(f"{len(underlays)} underlays: 1-{MAX_UNDERLAYS}")
    for kind, names, pattern in (("site", sites, _SITE), ("underlay", underlays, _UNDERLAY)):
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate {kind} names in {list(names)}")
        for name in names:
            if not pattern.fullmatch(name):
                raise ValueError(f"{kind} name {name!r} is not valid here (pattern {pattern.pattern})")


def _site_plan(prefix: str, name: str, i: int) -> SitePlan:
    """Site ``i`` (from 1): its namespaces and LAN ``10.<i>.0.0/24``."""
    namespace = _short(f"{prefix}-{name}", MAX_NETNS_NAME - 2)
    return SitePlan(
        name=name,
        index=i,
        namespace=namespace,
        host_namespace=f"{namespace}-h",
        lan_subnet=f"10.{i}.0.0/24",
        lan_address=f"10.{i}.0.1",
        host_address=f"10.{i}.0.10",
    )


def _link_plan(site: str, i: int, underlay: str, u: int) -> LinkPlan:
    """Underlay ``u`` (from 0) of site ``i``: a /30 in ``172.<16+u>.0.0/16``."""
    wan_interface = f"w{i}-{underlay}"
    if len(wan_interface) > IFNAMSIZ:  # pragma: no cover - the patterns keep it within 15
        wan_interface = f"w{i}-u{u}"
    return LinkPlan(
        site=site,
        underlay=underlay,
        site_index=i,
        underlay_index=u,
        site_interface=f"{underlay}0",
        wan_interface=wan_interface,
        subnet=f"172.{16 + u}.{i}.0/30",
        site_address=f"172.{16 + u}.{i}.2",
        wan_address=f"172.{16 + u}.{i}.1",
        underlay_block=f"172.{16 + u}.0.0/16",
    )


def _check(plan: LabPlan) -> None:
    """Invariants the layout relies on; a violation is a bug or a pair of clashing site names."""
    namespaces = plan.namespaces
    if len(set(namespaces)) != len(namespaces):
        clashes = sorted({n for n in namespaces if namespaces.count(n) > 1})
        raise ValueError(f"site names give clashing namespaces {clashes} (a site 'wan', or 'x' and 'x-h'?)")
    wan_interfaces = [link.wan_interface for link in plan.links] + [RELAY_TUN]
    if len(set(wan_interfaces)) != len(wan_interfaces):
        raise ValueError(f"clashing WAN interface names {wan_interfaces}")
    for link in plan.links:
        for ifname in (link.site_interface, link.wan_interface):
            if len(ifname) > IFNAMSIZ:
                raise ValueError(f"interface name {ifname!r} is longer than {IFNAMSIZ}")
    subnets = [ipaddress.ip_network(link.subnet) for link in plan.links]
    subnets += [ipaddress.ip_network(site.lan_subnet) for site in plan.sites]
    subnets.sort(key=lambda net: int(net.network_address))
    for before, after in itertools.pairwise(subnets):
        if int(after.network_address) <= int(before.broadcast_address):
            raise ValueError(f"subnets {before} and {after} overlap")
