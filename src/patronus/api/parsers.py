"""Parsers for the string formats the CRDs share.

Each parser is a pure function that returns a typed value or raises ``ValueError`` with a message a
user can act on. The CRD schema enforces the same rules at admission (patterns and CEL in
``patronus.api.rules``); these functions are what the operator and the agent use once an object is in.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_PORT = 65535

# Go's time.ParseDuration units, which is also what CEL's duration() accepts.
_DURATION_UNITS_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")

# Bandwidth as network engineers write it: decimal (SI) units of bits per second.
_BANDWIDTH_UNITS_BPS = {"bps": 1, "Kbps": 10**3, "kbps": 10**3, "Mbps": 10**6, "Gbps": 10**9, "Tbps": 10**12}
BANDWIDTH_PATTERN = r"^[0-9]+(\.[0-9]+)?(bps|kbps|Kbps|Mbps|Gbps|Tbps)$"
_BANDWIDTH = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(bps|kbps|Kbps|Mbps|Gbps|Tbps)$")

PORT_RANGES_PATTERN = r"^[0-9]{1,5}(-[0-9]{1,5})?(,[0-9]{1,5}(-[0-9]{1,5})?)*$"

WIREGUARD_KEY_PATTERN = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$"
WIREGUARD_KEY_BYTES = 32

# RFC 1123 DNS label or name: what Kubernetes accepts as an object name.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# host:port where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
ENDPOINT_PATTERN = (
    r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*)"
    r":[0-9]{1,5}$"
)
_ENDPOINT = re.compile(ENDPOINT_PATTERN)

# Kubernetes resource.Quantity, as apimachinery's regexp spells it.
QUANTITY_PATTERN = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)


def check_pattern(text: str, pattern: str, what: str) -> str:
    """``text`` when it matches ``pattern`` whole, else ``ValueError`` saying it must be ``what``."""
    if not re.fullmatch(pattern, text):
        raise ValueError(f"{text!r} must be {what}")
    return text


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``30s``, ``1m30s``, ``200ms``) into seconds."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 1m30s or 200ms")
    return sum(float(value) * _DURATION_UNITS_SECONDS[unit] for value, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest duration string for ``seconds`` that parse_duration reads back exactly."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    millis = seconds * 1000
    if float(millis).is_integer():
        return f"{int(millis)}ms"
    return f"{seconds:g}s"


def parse_bandwidth(text: str) -> int:
    """Parse ``10Mbps`` and friends into bits per second (SI units: 1 Mbps = 1,000,000 bit/s)."""
    match = _BANDWIDTH.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a bandwidth such as 512Kbps, 10Mbps or 1Gbps")
    bps = int(float(match.group(1)) * _BANDWIDTH_UNITS_BPS[match.group(2)])
    if bps <= 0:
        raise ValueError(f"{text!r}: bandwidth must be greater than zero")
    return bps


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive range of TCP/UDP ports; a single port has first == last."""

    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def parse_port_ranges(text: str) -> tuple[PortRange, ...]:
    """Parse ``80,443`` or ``3478-3497`` (or a mix) into port ranges.

    Ports are 1-65535; a range must not be reversed.
    """
    if not re.fullmatch(PORT_RANGES_PATTERN, text):
        raise ValueError(f"{text!r} is not a port list such as 80,443 or a range such as 3478-3497")
    ranges: list[PortRange] = []
    for part in text.split(","):
        first_text, _, last_text = part.partition("-")
        first = int(first_text)
        last = int(last_text) if last_text else first
        for port in (first, last):
            if not 1 <= port <= MAX_PORT:
                raise ValueError(f"{text!r}: port {port} is outside 1-{MAX_PORT}")
        if last < first:
            raise ValueError(f"{text!r}: range {part} is reversed (write {last}-{first})")
        ranges.append(PortRange(first, last))
    return tuple(ranges)


def parse_wireguard_key(text: str) -> bytes:
    """Decode a WireGuard key: standard base64 of exactly 32 bytes (44 characters)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a WireGuard key must be base64 (as printed by `wg pubkey`)") from exc
    if len(raw) != WIREGUARD_KEY_BYTES:
        raise ValueError(f"a WireGuard key must decode to {WIREGUARD_KEY_BYTES} bytes, not {len(raw)}")
    if base64.b64encode(raw).decode() != text:
        # Same bytes, but stray padding bits: not what `wg` prints, and the API server rejects it too.
        raise ValueError("a WireGuard key must be canonical base64 (as printed by `wg pubkey`)")
    return raw


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A UDP endpoint ``host:port``; IPv6 hosts are written in brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """Parse ``203.0.113.1:51820``, ``vpn.example.com:51820`` or ``[2001:db8::1]:51820``."""
    if not _ENDPOINT.fullmatch(text):
        raise ValueError(f"{text!r} is not host:port (IPv6 hosts in brackets: [2001:db8::1]:51820)")
    host, _, port_text = text.rpartition(":")
    port = int(port_text)
    if not 1 <= port <= MAX_PORT:
        raise ValueError(f"{text!r}: port {port} is outside 1-{MAX_PORT}")
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {host} is not an IPv6 address") from exc
    return Endpoint(host, port)


def validate_quantity(text: str) -> str:
    """Check a non-negative Kubernetes quantity (``2``, ``500m``, ``4Gi``, ``1e3``); return it unchanged."""
    if not _QUANTITY.fullmatch(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 500m, 2 or 4Gi")
    return text


_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIXES = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX_OF = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()} | {-6: "u", -9: "n"}


def canonical_quantity(text: str) -> str:
    """A quantity as the API server stores it (apimachinery's ``Quantity.String()``): ``1000m`` is
    ``1``, ``2048Mi`` is ``2Gi``, ``0.5`` is ``500m``, ``1500`` stays ``1500``.

    Applying the spelling a user wrote would make every stored object differ from the desired one, so
    each reconcile would write it again. The suffix family is kept (binary stays binary unless the value
    is below 1024 or not a whole number, as upstream does); decimal forms use an exponent that is a
    multiple of 3 with an integer mantissa. Values apimachinery would round (below 1n) are returned as
    given.
    """
    match = _QUANTITY.fullmatch(validate_quantity(text))
    assert match is not None
    number, suffix = match.group(1), match.group(3) or ""
    value = Fraction(number)
    if suffix in _BINARY_SUFFIXES:
        value *= 1024 ** _BINARY_SUFFIXES[suffix]
    elif suffix[:1] in ("e", "E"):
        value *= Fraction(10) ** int(suffix[1:])
    else:
        value *= Fraction(10) ** _DECIMAL_SUFFIXES[suffix]
    if value == 0:
        return "0"
    if suffix in _BINARY_SUFFIXES and value >= 1024 and value.denominator == 1:
        mantissa, power = int(value), 0
        while mantissa % 1024 == 0 and power < 6:
            mantissa, power = mantissa // 1024, power + 1
        return f"{mantissa}{next(s for s, p in _BINARY_SUFFIXES.items() if p == power) if power else ''}"
    # Decimal: mantissa x 10^exponent with no trailing zeros, then the exponent down to a multiple of 3.
    exponent = 0
    while value.denominator != 1:
        value, exponent = value * 10, exponent - 1
    mantissa = int(value)
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    shift = exponent % 3
    mantissa, exponent = mantissa * 10**shift, exponent - shift
    if exponent < -9:
        return text
    if suffix[:1] in ("e", "E"):  # the API server keeps the letter's case
        return f"{mantissa}{suffix[0]}{exponent}" if exponent else str(mantissa)
    if exponent not in _DECIMAL_SUFFIX_OF:
        return f"{mantissa}e{exponent}"
    return f"{mantissa}{_DECIMAL_SUFFIX_OF[exponent]}"


def validate_cidr(text: str) -> str:
    """Check an IPv4 or IPv6 prefix (host bits must be zero) and return it unchanged."""
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a CIDR prefix such as 10.1.0.0/16: {exc}") from exc
    return text
