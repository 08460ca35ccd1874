"""Field types shared by the four kinds: each carries its admission rule and the same rule in Python.

A field's rule is written once, here: schema keywords (length, range, pattern) that both the API server
and pydantic enforce, and CEL rules (``markers.CEL``) whose Python twin sits in the same constructor.
What the API server admits the models accept, and what it refuses they refuse, with the same message;
``tests/support/field_examples.py`` feeds every example to both. Values that cannot work once admitted
(a bandwidth tc cannot express, a prefix that would swallow the overlay) are refused here rather than
by the operator later. Cross-object conflicts (two Sites with one key or overlapping subnets) are the
operator's to report: admission sees one object at a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field

from patronus.api import addresses, parsers
from patronus.api.addresses import SPECIAL_RANGES, SpecialRange
from patronus.api.markers import CEL, ListType

T = TypeVar("T")


def unique(values: list[T]) -> list[T]:
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate entries: {', '.join(duplicates)}")
    return values


def matches(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.search(value) is not None


def parses(parse: Callable[[str], object]) -> Callable[[str], bool]:
    """A check that holds when ``parse`` accepts the value."""

    def check(value: str) -> bool:
        try:
            parse(value)
        except ValueError:
            return False
        return True

    return check


def _matching(pattern: str, message: str) -> CEL:
    return CEL(f"self.matches(r'{pattern}')", message, matches(pattern))


# -- names -----------------------------------------------------------------------------------------------

# Object names: what Kubernetes accepts for metadata.name (RFC 1123 subdomain).
ObjectName = Annotated[
    str,
    Field(min_length=1, max_length=253),
    _matching(
        parsers.DNS_SUBDOMAIN_PATTERN,
        "must be a Kubernetes object name: lower-case letters, digits, '-' and '.'",
    ),
]

# Namespace names: RFC 1123 labels.
LabelName = Annotated[
    str,
    Field(min_length=1, max_length=63),
    _matching(parsers.DNS_LABEL_PATTERN, "must be a DNS label: lower-case letters, digits, '-'"),
]

# Short names that also become parts of interface and object names.
ShortName = Annotated[
    str,
    Field(min_length=1, max_length=15),
    _matching(
        parsers.DNS_LABEL_PATTERN,
        "must be a DNS label of at most 15 characters: lower-case letters, digits and '-'",
    ),
]

SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
SecretDataKey = Annotated[
    str,
    Field(min_length=1, max_length=253),
    _matching(SECRET_KEY_PATTERN, "must be a Secret key: letters, digits, '-', '_' and '.'"),
]

# -- keys, ports, endpoints ------------------------------------------------------------------------------

WireGuardKey = Annotated[
    str,
    Field(min_length=44, max_length=44),
    CEL(
        f"self.matches(r'{parsers.WIREGUARD_KEY_PATTERN}')",
        "must be a WireGuard key: 32 bytes of base64, 44 characters ending in '=' (as printed by wg pubkey)",
        parses(parsers.parse_wireguard_key),
    ),
]

Port = Annotated[int, Field(ge=1, le=parsers.MAX_PORT)]

_ENDPOINT_PORT = "int(self.substring(self.lastIndexOf(':') + 1))"
_ENDPOINT_HOST = (
    "(self.startsWith('[') ? self.substring(1, self.lastIndexOf(':') - 1) "
    ": self.substring(0, self.lastIndexOf(':')))"
)
_ENDPOINT_WELL_FORMED = f"self.matches(r'{addresses.ENDPOINT_PATTERN}')"


def _endpoint_not_in(special: SpecialRange) -> CEL:
    prefixes = ", ".join(f"'{prefix}'" for prefix in special.prefixes)
    return CEL(
        f"!{_ENDPOINT_WELL_FORMED} || !isIP({_ENDPOINT_HOST}) "
        f"|| ![{prefixes}].exists(p, cidr(p).containsIP({_ENDPOINT_HOST}))",
        f"must not be an address in {special}: peers cannot reach a site there",
        lambda text: _endpoint_range(text) != special,
    )


def _endpoint_range(text: str) -> SpecialRange | None:
    if not addresses.endpoint_syntax_ok(text) or not addresses.is_ip(host := addresses.endpoint_host(text)):
        return None
    return addresses.special_range_of(addresses.parse_ip(host))


Endpoint = Annotated[
    str,
    Field(min_length=3, max_length=261),
    CEL(
        f"{_ENDPOINT_WELL_FORMED} && {_ENDPOINT_PORT} <= {parsers.MAX_PORT} "
        f"&& self.lastIndexOf(':') <= {addresses.MAX_HOST_LENGTH}",
        "must be host:port with a port of 1-65535, for example 203.0.113.1:51820, vpn.example.com:51820 "
        "or [2001:db8::1]:51820",
        addresses.endpoint_syntax_ok,
    ),
    CEL(
        f"!{_ENDPOINT_WELL_FORMED} || !self.startsWith('[') "
        f"|| (isIP({_ENDPOINT_HOST}) && ip({_ENDPOINT_HOST}).family() == 6)",
        "brackets hold an IPv6 address only: write an IPv4 address without them (203.0.113.1:51820)",
        lambda text: not addresses.endpoint_syntax_ok(text) or addresses.brackets_hold_ipv6(text),
    ),
    CEL(
        f"!{_ENDPOINT_WELL_FORMED} || self.startsWith('[') "
        f"|| !{_ENDPOINT_HOST}.matches(r'{addresses.NUMERIC_HOST_PATTERN}') || isIP({_ENDPOINT_HOST})",
        "a host that ends in a number must be an IPv4 address such as 203.0.113.1",
        lambda text: not addresses.endpoint_syntax_ok(text) or addresses.numeric_host_is_ipv4(text),
    ),
    *(_endpoint_not_in(special) for special in SPECIAL_RANGES),
]

# -- quantities, durations, ports and bandwidths ----------------------------------------------------------

_QUANTITY_WELL_FORMED = f"self.matches(r'{parsers.QUANTITY_PATTERN}') && isQuantity(self)"
_QUANTITY_RULE = CEL(
    _QUANTITY_WELL_FORMED,
    "must be a non-negative Kubernetes quantity, for example 500m, 2 or 4Gi",
    parses(parsers.validate_quantity),
)

Quantity = Annotated[str, Field(min_length=1, max_length=64), _QUANTITY_RULE]

PositiveQuantity = Annotated[
    str,
    Field(min_length=1, max_length=64),
    _QUANTITY_RULE,
    CEL(
        f"!({_QUANTITY_WELL_FORMED}) || quantity(self).isGreaterThan(quantity('0'))",
        "must be greater than zero, for example 10Gi",
        lambda text: not parses(parsers.validate_quantity)(text) or parsers.quantity_value(text) > 0,
    ),
]


def _duration_within(low: str, high: str) -> CEL:
    low_ns, high_ns = parsers.parse_duration_ns(low), parsers.parse_duration_ns(high)

    def within(text: str) -> bool:
        try:
            return low_ns <= parsers.parse_duration_ns(text) <= high_ns
        except ValueError:
            return False

    return CEL(
        f"self.matches(r'{parsers.DURATION_PATTERN}') "
        f"&& duration(self) >= duration('{low}') && duration(self) <= duration('{high}')",
        f"must be a duration from {low} to {high}, such as 30s, 1m30s or 200ms",
        within,
    )


ProbeInterval = Annotated[str, Field(min_length=2, max_length=32), _duration_within("50ms", "1h")]
"""Time between probe checks: what the agent's prober accepts (agentconfig.MonitoringConfig)."""

Cooldown = Annotated[str, Field(min_length=2, max_length=32), _duration_within("0s", "24h")]
"""How long a primary path must stay healthy again: what the agent accepts (agentconfig.FailoverConfig)."""


_PORT_RANGE_RULE = (
    f"self.matches(r'{parsers.PORT_RANGES_PATTERN}') && self.split(',').all(r, "
    f"r.split('-').all(p, int(p) >= 1 && int(p) <= {parsers.MAX_PORT}) && "
    "(r.split('-').size() == 1 || int(r.split('-')[0]) <= int(r.split('-')[1])))"
)

PortRanges = Annotated[
    str,
    Field(min_length=1, max_length=128),
    CEL(
        _PORT_RANGE_RULE,
        "must be ports of 1-65535 as a list (80,443) or ranges (3478-3497), no range reversed",
        parses(parsers.parse_port_ranges),
    ),
]

# CEL has no decimal arithmetic, so the range check reads the bandwidth as a quantity: 1.5Mbps is 1.5M.
_BANDWIDTH_AS_QUANTITY = (
    "self.replace('Kbps', 'k').replace('kbps', 'k').replace('Mbps', 'M').replace('Gbps', 'G')"
    ".replace('Tbps', 'T').replace('bps', '')"
)

Bandwidth = Annotated[
    str,
    Field(min_length=4, max_length=32),
    CEL(
        f"self.matches(r'{parsers.BANDWIDTH_PATTERN}')",
        "must be a bandwidth in whole bits per second such as 800bps, 512Kbps, 1.5Mbps or 10Gbps "
        "(decimals: none for bps, up to 3 for Kbps, 6 for Mbps, 9 for Gbps, 12 for Tbps)",
        matches(parsers.BANDWIDTH_PATTERN),
    ),
    CEL(
        f"!self.matches(r'{parsers.BANDWIDTH_PATTERN}') "
        f"|| (quantity({_BANDWIDTH_AS_QUANTITY}).compareTo(quantity('1')) >= 0 "
        f"&& quantity({_BANDWIDTH_AS_QUANTITY}).compareTo(quantity('1T')) <= 0)",
        "must be from 1bps to 1Tbps",
        lambda text: not matches(parsers.BANDWIDTH_PATTERN)(text) or parses(parsers.parse_bandwidth)(text),
    ),
]

Percent = Annotated[float, Field(ge=0, le=100)]

# -- addresses and prefixes -------------------------------------------------------------------------------

IPAddress = Annotated[
    str,
    Field(min_length=2, max_length=45),
    CEL("isIP(self)", "must be an IP address such as 100.96.0.7 or fd00::7", addresses.is_ip),
]

_CIDR_RULE = CEL(
    "isCIDR(self) && cidr(self) == cidr(self).masked()",
    "must be a CIDR prefix with no host bits set, for example 10.1.0.0/16 or fd00:1::/64",
    parses(addresses.parse_cidr),
)

Cidr = Annotated[str, Field(min_length=3, max_length=43), _CIDR_RULE]
"""Any prefix, as a policy matches traffic by: 0.0.0.0/0 is all of IPv4."""


def _subnet_not_in(special: SpecialRange) -> CEL:
    prefixes = ", ".join(f"'{prefix}'" for prefix in special.prefixes)
    return CEL(
        f"!isCIDR(self) || ![{prefixes}].exists(p, cidr(p).containsCIDR(cidr(self).masked()) "
        "|| cidr(self).masked().containsCIDR(p))",
        f"must not overlap {special}",
        lambda text: _subnet_range(text) != special,
    )


def _subnet_range(text: str) -> SpecialRange | None:
    try:
        return addresses.special_range_of(addresses.parse_cidr(text))
    except ValueError:
        return None


def _long_enough(text: str) -> bool:
    try:
        network = addresses.parse_cidr(text)
    except ValueError:
        return True
    return network.prefixlen >= addresses.MIN_SUBNET_PREFIX[network.version]


_MIN_V4, _MIN_V6 = addresses.MIN_SUBNET_PREFIX[4], addresses.MIN_SUBNET_PREFIX[6]

SiteSubnet = Annotated[
    str,
    Field(min_length=3, max_length=43),
    _CIDR_RULE,
    CEL(
        "!isCIDR(self) "
        f"|| cidr(self).prefixLength() >= (cidr(self).ip().family() == 4 ? {_MIN_V4} : {_MIN_V6})",
        f"must be a /{_MIN_V4} or longer for IPv4 and a /{_MIN_V6} or longer for IPv6: a wider prefix "
        "such as 0.0.0.0/0 would pull other sites' traffic into this one",
        _long_enough,
    ),
    *(_subnet_not_in(special) for special in SPECIAL_RANGES),
]
"""A LAN prefix behind a site, which every peer routes into the tunnel to that site."""


def _disjoint(texts: list[str]) -> bool:
    networks = []
    for text in texts:
        try:
            networks.append(addresses.parse_cidr(text))
        except ValueError:
            return True  # the item's own rule refuses it
    return not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])


_SUBNETS_DISJOINT = CEL(
    "self.all(a, self.all(b, a == b || !isCIDR(a) || !isCIDR(b) "
    "|| (!cidr(a).masked().containsCIDR(cidr(b).masked()) "
    "&& !cidr(b).masked().containsCIDR(cidr(a).masked()))))",
    "must not overlap one another: route each address range once",
    _disjoint,
)

# -- lists -----------------------------------------------------------------------------------------------

ObjectNameSet = Annotated[list[ObjectName], Field(max_length=256), ListType("set"), AfterValidator(unique)]
CidrList = Annotated[list[Cidr], Field(max_length=64), ListType("set"), AfterValidator(unique)]
SubnetList = Annotated[
    list[SiteSubnet], Field(max_length=64), ListType("set"), AfterValidator(unique), _SUBNETS_DISJOINT
]
