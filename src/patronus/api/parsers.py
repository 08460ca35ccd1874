"""Parsers for the string formats the CRDs share.

Each parser is a pure function that returns a typed value or raises ``ValueError`` with a message a
user can act on. The CRD schema enforces the same rules at admission (patterns and CEL beside each field
type in ``patronus.api.fields``); these functions are what the operator and the agent use once an object
is in, and they agree with the API server to the value: durations are read as Go's
``time.ParseDuration`` reads them (which is what CEL's ``duration()`` calls), bandwidths with exact
decimal arithmetic. Addresses, prefixes and endpoints are in ``patronus.api.addresses``.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from fractions import Fraction

MAX_PORT = 65535

# Go's time.ParseDuration units (CEL's duration() calls it), in nanoseconds. Only the micro sign
# U+00B5 is taken for micro; Go also reads U+03BC, which the pattern below leaves out.
_DURATION_UNITS_NS = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
_DURATION_PART = re.compile(r"([0-9]+)(?:\.([0-9]+))?(ns|us|µs|ms|s|m|h)")
_GO_DURATION_LIMIT = 1 << 63

# Bandwidth as network engineers write it: decimal (SI) units of bits per second. Whole bits only, so
# each unit takes as many decimals as it has powers of ten (none for bps, 3 for Kbps, ..., 12 for Tbps).
_BANDWIDTH_EXPONENTS = {"bps": 0, "kbps": 3, "Kbps": 3, "Mbps": 6, "Gbps": 9, "Tbps": 12}
BANDWIDTH_PATTERN = (
    r"^(0|[1-9][0-9]*)"
    r"(bps|(\.[0-9]{1,3})?[kK]bps|(\.[0-9]{1,6})?Mbps|(\.[0-9]{1,9})?Gbps|(\.[0-9]{1,12})?Tbps)$"
)
_BANDWIDTH_PARTS = re.compile(r"([0-9.]+)([kKMGT]?bps)")
MIN_BANDWIDTH_BPS = 1
MAX_BANDWIDTH_BPS = 10**12
"""1 Tbit/s: more than any link, and what tc's 64-bit rates still express exactly."""

PORT_RANGES_PATTERN = r"^[0-9]{1,5}(-[0-9]{1,5})?(,[0-9]{1,5}(-[0-9]{1,5})?)*$"

WIREGUARD_KEY_PATTERN = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw480]=$"
WIREGUARD_KEY_BYTES = 32

# RFC 1123 DNS label or name: what Kubernetes accepts as an object name.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Kubernetes resource.Quantity as apimachinery's regexp spells it, with a number before any suffix (the API
# server also takes a bare "Gi" as zero) and an exponent of at most two digits: comparing 1e9999999999
# with CEL's quantity library stalls the API server's request, so the CRD refuses it by pattern first.
QUANTITY_PATTERN = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]{1,2})?$"
_QUANTITY = re.compile(QUANTITY_PATTERN)


def check_pattern(text: str, pattern: str, what: str) -> str:
    """``text`` when it matches ``pattern`` whole, else ``ValueError`` saying it must be ``what``."""
    if not re.fullmatch(pattern, text):
        raise ValueError(f"{text!r} must be {what}")
    return text


def parse_duration_ns(text: str) -> int:
    """Nanoseconds of a Go-style duration (``30s``, ``1m30s``, ``200ms``), as ``time.ParseDuration``
    computes them: fractions through float64 and truncated, overflow past 2^63-1 ns refused."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 30s, 1m30s or 200ms")
    total = 0
    for whole, fraction, unit_name in _DURATION_PART.findall(text):
        unit = _DURATION_UNITS_NS[unit_name]
        value = int(whole)
        if value > _GO_DURATION_LIMIT // unit:
            raise ValueError(f"{text!r} is too long a duration")
        value *= unit
        digits, scale = _go_leading_fraction(fraction)
        if digits:
            value += int(float(digits) * (float(unit) / scale))
        total += value
        if value > _GO_DURATION_LIMIT or total > _GO_DURATION_LIMIT:
            raise ValueError(f"{text!r} is too long a duration")
    if total >= _GO_DURATION_LIMIT:
        raise ValueError(f"{text!r} is too long a duration")
    return total


def _go_leading_fraction(digits: str) -> tuple[int, float]:
    """Go's leadingFraction: the digits it keeps before they would overflow, and 10 to their count."""
    value, scale = 0, 1.0
    for digit in digits:
        following = value * 10 + int(digit)
        if value > (_GO_DURATION_LIMIT - 1) // 10 or following > _GO_DURATION_LIMIT:
            break  # Go stops accumulating here and ignores the remaining digits
        value, scale = following, scale * 10
    return value, scale


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``30s``, ``1m30s``, ``200ms``) into seconds."""
    return parse_duration_ns(text) / 1e9


def format_duration(seconds: float) -> str:
    """The shortest duration string for ``seconds`` that parse_duration reads back exactly."""
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    millis = seconds * 1000
    if float(millis).is_integer():
        return f"{int(millis)}ms"
    return f"{seconds:g}s"


def parse_bandwidth(text: str) -> int:
    """Parse ``10Mbps`` and friends into bits per second (SI units: 1 Mbps = 1,000,000 bit/s).

    Whole bits per second from 1 bps to 1 Tbps; ``0.5bps`` and ``1.0005Kbps`` are refused, not rounded.
    """
    if not re.fullmatch(BANDWIDTH_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a bandwidth in whole bits per second such as 800bps, 512Kbps or 1.5Mbps"
        )
    match = _BANDWIDTH_PARTS.fullmatch(text)
    assert match is not None
    bps = Fraction(match.group(1)) * 10 ** _BANDWIDTH_EXPONENTS[match.group(2)]
    assert bps.denominator == 1, "the pattern admits whole bits only"
    if not MIN_BANDWIDTH_BPS <= bps <= MAX_BANDWIDTH_BPS:
        raise ValueError(f"{text!r}: a bandwidth must be from 1bps to 1Tbps")
    return int(bps)


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


def validate_quantity(text: str) -> str:
    """Check a non-negative Kubernetes quantity (``2``, ``500m``, ``4Gi``, ``1e3``); return it unchanged."""
    if not _QUANTITY.fullmatch(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity such as 500m, 2 or 4Gi")
    return text


_BINARY_SUFFIXES = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIXES = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX_OF = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()} | {-6: "u", -9: "n"}


def _quantity_suffix(text: str) -> str:
    match = _QUANTITY.fullmatch(validate_quantity(text))
    assert match is not None
    return match.group(3) or ""


def quantity_value(text: str) -> Fraction:
    """The exact value of a quantity: ``1.5Gi`` is 1610612736, ``500m`` is 1/2."""
    match = _QUANTITY.fullmatch(validate_quantity(text))
    assert match is not None
    number, suffix = match.group(1), match.group(3) or ""
    value = Fraction(number)
    if suffix in _BINARY_SUFFIXES:
        return value * Fraction(1024) ** _BINARY_SUFFIXES[suffix]
    if suffix in _DECIMAL_SUFFIXES:  # before the exponent: a lone E is exa
        return value * Fraction(10) ** _DECIMAL_SUFFIXES[suffix]
    return value * Fraction(10) ** int(suffix[1:])


def canonical_quantity(text: str) -> str:
    """A quantity as the API server stores it (apimachinery's ``Quantity.String()``): ``1000m`` is
    ``1``, ``2048Mi`` is ``2Gi``, ``0.5`` is ``500m``, ``1500`` stays ``1500``.

    Applying the spelling a user wrote would make every stored object differ from the desired one, so
    each reconcile would write it again. The suffix family is kept (binary stays binary unless the value
    is below 1024 or not a whole number, as upstream does); decimal forms use an exponent that is a
    multiple of 3 with an integer mantissa. Values apimachinery would round (below 1n) are returned as
    given.
    """
    value = quantity_value(text)
    suffix = _quantity_suffix(text)
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
    if suffix[:1] in ("e", "E") and suffix not in _DECIMAL_SUFFIXES:  # keeps the letter's case, as upstream
        return f"{mantissa}{suffix[0]}{exponent}" if exponent else str(mantissa)
    if exponent not in _DECIMAL_SUFFIX_OF:
        return f"{mantissa}e{exponent}"
    return f"{mantissa}{_DECIMAL_SUFFIX_OF[exponent]}"
