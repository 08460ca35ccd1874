"""IP addresses, prefixes and endpoints, read exactly as the API server's CEL reads them.

The CRDs check these values with Kubernetes' CEL ``ip()``/``cidr()`` libraries, which parse with Go's
``net/netip`` and then refuse zones and IPv4-mapped IPv6 addresses. Python's ``ipaddress`` is more
lenient (it takes ``10.0.0.0/255.0.0.0``, ``/08``, ``fe80::1%eth0`` and ``::ffff:1.2.3.4``), so the
functions here narrow it to netip's grammar: a value admitted by the API server parses here, and a value
refused there is refused here (the admission tests feed the same examples to both).

``SPECIAL_RANGES`` are the prefixes no site may route or be reached at: sending a site's LAN or its
WireGuard endpoint into one of them breaks the host, every peer, or the overlay itself.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_PORT = 65535

OVERLAY_POOL = "100.96.0.0/16"
"""Where the operator takes each site's overlay address from (RFC 6598 space)."""


@dataclass(frozen=True, slots=True)
class SpecialRange:
    """Prefixes of one kind that a site's subnets must not overlap and its endpoints must not be in."""

    name: str
    prefixes: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(self.prefixes)})"


SPECIAL_RANGES: tuple[SpecialRange, ...] = (
    SpecialRange("the overlay pool", (OVERLAY_POOL,)),
    SpecialRange("this-host addresses", ("0.0.0.0/8", "::/128")),
    SpecialRange("loopback", ("127.0.0.0/8", "::1/128")),
    SpecialRange("link-local", ("169.254.0.0/16", "fe80::/10")),
    SpecialRange("multicast", ("224.0.0.0/4", "ff00::/8")),
    SpecialRange("broadcast", ("255.255.255.255/32",)),
)

MIN_SUBNET_PREFIX = {4: 8, 6: 16}
"""The shortest prefix a site may route: anything wider (0.0.0.0/0, 0.0.0.0/1 and the like) would pull
other sites' traffic, and the cluster's own, into one site."""

_PREFIX_LENGTH = re.compile(r"0|[1-9][0-9]{0,2}")

# host:port. The host is a DNS name (labels of at most 63 characters), an IPv4 address, or an IPv6
# address in brackets; the port has no leading zero.
_DNS_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
ENDPOINT_PATTERN = rf"^(\[[0-9A-Fa-f:.]+\]|{_DNS_LABEL}(\.{_DNS_LABEL})*):[1-9][0-9]{{0,4}}$"
NUMERIC_HOST_PATTERN = r"(^|\.)[0-9]+$"
"""A host whose last label is a number is an IPv4 address or nothing (no top-level domain is numeric)."""
MAX_HOST_LENGTH = 253


def parse_ip(text: str) -> IPAddress:
    """An IPv4 or IPv6 address as CEL's ``ip()`` takes it: no zone, no IPv4-mapped IPv6 form."""
    if "%" in text:
        raise ValueError(f"{text!r}: an address with a zone (%...) is not allowed")
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IP address") from exc
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError(f"{text!r}: write an IPv4 address as such, not IPv4-mapped IPv6")
    return address


def is_ip(text: str) -> bool:
    try:
        parse_ip(text)
    except ValueError:
        return False
    return True


def parse_cidr(text: str) -> IPNetwork:
    """A prefix such as ``10.1.0.0/16`` as CEL's ``cidr()`` takes it, with no host bits set."""
    address_text, slash, length_text = text.partition("/")
    if not slash or not _PREFIX_LENGTH.fullmatch(length_text):
        raise ValueError(f"{text!r} is not a CIDR prefix such as 10.1.0.0/16")
    address = parse_ip(address_text)
    if int(length_text) > address.max_prefixlen:
        raise ValueError(f"{text!r}: the prefix length is more than {address.max_prefixlen}")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} has host bits set after the prefix length") from exc


def special_range_of(network: IPNetwork | IPAddress) -> SpecialRange | None:
    """The special range ``network`` (or address) overlaps, if any."""
    if isinstance(network, ipaddress.IPv4Address | ipaddress.IPv6Address):
        network = ipaddress.ip_network(network)
    for special in SPECIAL_RANGES:
        for prefix in special.prefixes:
            if network.overlaps(ipaddress.ip_network(prefix)):  # False across families
                return special
    return None


def endpoint_syntax_ok(text: str) -> bool:
    """``host:port`` with a port of 1-65535 and a host of at most 253 characters."""
    return bool(re.fullmatch(ENDPOINT_PATTERN, text)) and (
        int(text.rpartition(":")[2]) <= MAX_PORT and len(text.rpartition(":")[0]) <= MAX_HOST_LENGTH
    )


def endpoint_host(text: str) -> str:
    """The host of a well-formed endpoint, without brackets."""
    host = text.rpartition(":")[0]
    return host[1:-1] if host.startswith("[") else host


def brackets_hold_ipv6(text: str) -> bool:
    """Brackets are for IPv6 addresses: ``[1.2.3.4]:51820`` is refused (peers would drop the site)."""
    return not text.startswith("[") or (is_ip(host := endpoint_host(text)) and parse_ip(host).version == 6)


def numeric_host_is_ipv4(text: str) -> bool:
    """``1.2.3.256:51820`` is neither an address nor a name any resolver knows."""
    host = endpoint_host(text)
    return text.startswith("[") or not re.search(NUMERIC_HOST_PATTERN, host) or is_ip(host)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A UDP endpoint ``host:port``; IPv6 hosts are written in brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def address(self) -> IPAddress | None:
        """The host as an IP address, or None for a DNS name."""
        return parse_ip(self.host) if is_ip(self.host) else None


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``203.0.113.1:51820``, ``vpn.example.com:51820`` or ``[2001:db8::1]:51820``.

    Brackets hold an IPv6 address and nothing else; a host ending in a number must be an IPv4 address;
    an address must be one peers can dial (in none of ``SPECIAL_RANGES``).
    """
    if not endpoint_syntax_ok(text):
        raise ValueError(f"{text!r} is not host:port with a port of 1-{MAX_PORT}")
    if not brackets_hold_ipv6(text):
        raise ValueError(f"{text!r}: brackets hold an IPv6 address only")
    if not numeric_host_is_ipv4(text):
        raise ValueError(f"{text!r}: a host ending in a number must be an IPv4 address")
    endpoint = Endpoint(endpoint_host(text), int(text.rpartition(":")[2]))
    address = endpoint.address()
    if address is not None and (special := special_range_of(address)) is not None:
        raise ValueError(f"{text!r}: peers cannot reach a site in {special}")
    return endpoint
