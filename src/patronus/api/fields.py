"""Field types shared by the four kinds: each carries its Python check and its admission rule together."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, TypeVar

from pydantic import AfterValidator, Field

from patronus.api import parsers
from patronus.api.markers import CEL, ListType

T = TypeVar("T")


def _matching(pattern: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} must be {what}")
        return value

    return check


def unique(values: list[T]) -> list[T]:
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ValueError(f"duplicate entries: {', '.join(duplicates)}")
    return values


_OBJECT_NAME = "a Kubernetes object name: lower-case letters, digits, '-' and '.'"
_SHORT_NAME = "a DNS label of at most 15 characters: lower-case letters, digits and '-'"

# Object names: what Kubernetes accepts for metadata.name (RFC 1123 subdomain).
ObjectName = Annotated[
    str,
    Field(min_length=1, max_length=253),
    CEL(f"self.matches(r'{parsers.DNS_SUBDOMAIN_PATTERN}')", f"must be {_OBJECT_NAME}"),
    AfterValidator(_matching(parsers.DNS_SUBDOMAIN_PATTERN, _OBJECT_NAME)),
]

# Namespace names: RFC 1123 labels.
LabelName = Annotated[
    str,
    Field(min_length=1, max_length=63),
    CEL(
        f"self.matches(r'{parsers.DNS_LABEL_PATTERN}')",
        "must be a DNS label: lower-case letters, digits, '-'",
    ),
    AfterValidator(_matching(parsers.DNS_LABEL_PATTERN, "a DNS label: lower-case letters, digits and '-'")),
]

# Short names that also become parts of interface and object names.
ShortName = Annotated[
    str,
    Field(min_length=1, max_length=15),
    CEL(f"self.matches(r'{parsers.DNS_LABEL_PATTERN}')", f"must be {_SHORT_NAME}"),
    AfterValidator(_matching(parsers.DNS_LABEL_PATTERN, _SHORT_NAME)),
]


def _wireguard_key(value: str) -> str:
    parsers.parse_wireguard_key(value)
    return value


WireGuardKey = Annotated[
    str,
    Field(min_length=44, max_length=44),
    CEL(
        f"self.matches(r'{parsers.WIREGUARD_KEY_PATTERN}')",
        "must be a WireGuard key: 32 bytes of base64, 44 characters ending in '=' (as printed by wg pubkey)",
    ),
    AfterValidator(_wireguard_key),
]

Port = Annotated[int, Field(ge=1, le=parsers.MAX_PORT)]


def _endpoint(value: str) -> str:
    parsers.parse_endpoint(value)
    return value


Endpoint = Annotated[
    str,
    Field(min_length=3, max_length=261),
    CEL(
        f"self.matches(r'{parsers.ENDPOINT_PATTERN}') && int(self.substring(self.lastIndexOf(':') + 1)) >= 1 "
        f"&& int(self.substring(self.lastIndexOf(':') + 1)) <= {parsers.MAX_PORT}",
        "must be host:port with a port of 1-65535, for example 203.0.113.1:51820 or [2001:db8::1]:51820",
    ),
    AfterValidator(_endpoint),
]

Quantity = Annotated[
    str,
    Field(min_length=1, max_length=64),
    CEL(
        "isQuantity(self) && !quantity(self).isLessThan(quantity('0'))",
        "must be a non-negative Kubernetes quantity, for example 500m, 2 or 4Gi",
    ),
    AfterValidator(parsers.validate_quantity),
]


def _duration(value: str) -> str:
    parsers.parse_duration(value)
    return value


Duration = Annotated[
    str,
    Field(min_length=2, max_length=32),
    CEL(
        f"self.matches(r'{parsers.DURATION_PATTERN}')",
        "must be a duration such as 30s, 1m30s or 200ms",
    ),
    AfterValidator(_duration),
]

_PORT_RANGE_RULE = (
    f"self.matches(r'{parsers.PORT_RANGES_PATTERN}') && self.split(',').all(r, "
    f"r.split('-').all(p, int(p) >= 1 && int(p) <= {parsers.MAX_PORT}) && "
    "(r.split('-').size() == 1 || int(r.split('-')[0]) <= int(r.split('-')[1])))"
)


def _port_ranges(value: str) -> str:
    parsers.parse_port_ranges(value)
    return value


PortRanges = Annotated[
    str,
    Field(min_length=1, max_length=128),
    CEL(
        _PORT_RANGE_RULE,
        "must be ports of 1-65535 as a list (80,443) or ranges (3478-3497), no range reversed",
    ),
    AfterValidator(_port_ranges),
]


def _bandwidth(value: str) -> str:
    parsers.parse_bandwidth(value)
    return value


Bandwidth = Annotated[
    str,
    Field(min_length=4, max_length=32),
    CEL(
        f"self.matches(r'{parsers.BANDWIDTH_PATTERN}') && !self.matches(r'^[0.]+[a-zA-Z]+$')",
        "must be a bandwidth greater than zero such as 512Kbps, 10Mbps or 1Gbps",
    ),
    AfterValidator(_bandwidth),
]

Cidr = Annotated[
    str,
    Field(min_length=3, max_length=43),
    CEL(
        "isCIDR(self) && cidr(self) == cidr(self).masked()",
        "must be a CIDR prefix with no host bits set, for example 10.1.0.0/16",
    ),
    AfterValidator(parsers.validate_cidr),
]

Percent = Annotated[float, Field(ge=0, le=100)]

ObjectNameSet = Annotated[list[ObjectName], Field(max_length=256), ListType("set"), AfterValidator(unique)]
CidrList = Annotated[list[Cidr], Field(max_length=64), ListType("set"), AfterValidator(unique)]
