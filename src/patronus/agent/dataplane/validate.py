"""Whitelists for every value the data plane hands to ``nft``, ``ip``, ``tc`` and ``wg``.

The agent's configuration is validated when it is parsed (:mod:`patronus.api.agentconfig`), but the data
plane does not rely on that: each renderer checks the values it emits, right where it emits them, so a
bug or a new caller upstream cannot turn a name into nft syntax or an option of ``ip``. Every check
returns the value in the one canonical spelling the tools get (so equal inputs render equal text) or
raises :class:`UnsafeValue`, never anything else, whatever the input's type.

Nothing here is quoted or escaped: a value is either inside a small alphabet that no tool reads as syntax
(names, numbers, canonical addresses) or refused.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from patronus.api import parsers

MAX_MARK = 0xFFFFFFFF
MAX_PORT = parsers.MAX_PORT
MAX_DSCP = 63
MAX_RATE_BPS = 10**12
"""1 Tbit/s, as the configuration model allows; tc's 64-bit rates express it exactly."""
MAX_CLASS_MINOR = 0xFFFF
MAX_ROUTE_TABLE = 0xFFFFFFFF
RESERVED_ROUTE_TABLES = frozenset({0, 253, 254, 255})
"""unspec, default, main, local: never ours to fill or flush."""
PROTOCOLS = frozenset({"tcp", "udp", "icmp", "any"})

# Linux accepts almost any byte in an interface name; we accept what no tool reads as syntax.
_INTERFACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
# `ip netns` names are file names in /run/netns.
_NETNS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# nft table names: an identifier nft's scanner reads as one word.
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")
_POLICY = re.compile(parsers.DNS_SUBDOMAIN_PATTERN.strip("^$"))
_MAX_POLICY_NAME = 253
_HOSTNAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*")
_MAX_HOSTNAME = 253


class UnsafeValue(ValueError):
    """A value that would reach ``nft``/``ip``/``tc``/``wg`` is outside what the data plane emits."""


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise UnsafeValue(f"{what} must be text, not {type(value).__name__}")
    return value


def _matching(pattern: re.Pattern[str], value: Any, what: str) -> str:
    text = _text(value, what)
    if not pattern.fullmatch(text):
        raise UnsafeValue(f"{what} {text!r} is not allowed (expected {pattern.pattern})")
    return text


def interface(value: Any) -> str:
    """A Linux interface name: letters, digits, ``_.-``, at most 15 characters, not ``.`` or ``..``."""
    return _matching(_INTERFACE, value, "interface name")


def netns(value: Any) -> str:
    """A network namespace name as ``ip netns`` takes it (a plain file name)."""
    return _matching(_NETNS, value, "network namespace name")


def table(value: Any) -> str:
    """An nftables table name."""
    return _matching(_TABLE, value, "nftables table name")


def policy_name(value: Any) -> str:
    """A Policy's name (a Kubernetes object name): it becomes part of nft counter names."""
    text = _matching(_POLICY, value, "policy name")
    if len(text) > _MAX_POLICY_NAME:
        raise UnsafeValue(f"policy name is longer than {_MAX_POLICY_NAME} characters")
    return text


def integer(value: Any, low: int, high: int, what: str) -> int:
    """An ``int`` (not a bool, float or string) in ``[low, high]``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise UnsafeValue(f"{what} must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise UnsafeValue(f"{what} {value} is outside {low}-{high}")
    return value


def mark(value: Any) -> int:
    """A 32-bit packet or conntrack mark."""
    return integer(value, 0, MAX_MARK, "mark")


def dscp(value: Any) -> int:
    return integer(value, 0, MAX_DSCP, "DSCP")


def port(value: Any) -> int:
    return integer(value, 1, MAX_PORT, "port")


def port_range(value: Any) -> tuple[int, int]:
    """An inclusive ``(first, last)`` port range with ``first <= last``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise UnsafeValue("a port range must be a (first, last) pair")
    first, last = port(value[0]), port(value[1])
    if last < first:
        raise UnsafeValue(f"port range {first}-{last} is reversed")
    return first, last


def port_ranges(values: Any) -> tuple[tuple[int, int], ...]:
    """Port ranges sorted, with overlapping and adjacent ones merged (nft refuses overlapping intervals
    in one set; the merged set matches exactly the same ports)."""
    if not isinstance(values, tuple | list):
        raise UnsafeValue("port ranges must be a sequence")
    merged: list[tuple[int, int]] = []
    for first, last in sorted(port_range(value) for value in values):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def rate_bps(value: Any) -> int:
    """A bandwidth in bits per second, 1 bit/s to 1 Tbit/s."""
    return integer(value, 1, MAX_RATE_BPS, "rate (bit/s)")


def class_minor(value: Any) -> int:
    """An htb class minor (the ``x`` of ``1:x``); 0 is the qdisc itself."""
    return integer(value, 1, MAX_CLASS_MINOR, "htb class minor")


def route_table(value: Any) -> int:
    """A routing table id that is not one of the kernel's own."""
    table_id = integer(value, 1, MAX_ROUTE_TABLE, "route table")
    if table_id in RESERVED_ROUTE_TABLES:
        raise UnsafeValue(f"route table {table_id} is reserved")
    return table_id


def protocol(value: Any) -> str:
    text = _text(value, "protocol")
    if text not in PROTOCOLS:
        raise UnsafeValue(f"protocol {text!r} is not one of {', '.join(sorted(PROTOCOLS))}")
    return text


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = _text(value, "CIDR")
    # Python accepts IPv6 scope ids ("fe80::%eth0/64") and keeps them in str(): no tool wants them.
    if "%" in text or not text.isascii() or text != text.strip():
        raise UnsafeValue(f"CIDR {text!r} is not allowed")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as error:
        raise UnsafeValue(f"{text!r} is not an IP prefix: {error}") from None


def cidr(value: Any) -> str:
    """An IPv4 or IPv6 prefix in canonical form (host bits cleared: ``10.1.2.3/16`` is ``10.1.0.0/16``)."""
    return str(_network(value))


def cidrs(values: Any) -> tuple[str, ...]:
    """Prefixes canonical, IPv4 before IPv6, with covered and adjacent ones collapsed (the same
    addresses; nft refuses overlapping intervals in one set)."""
    if not isinstance(values, tuple | list):
        raise UnsafeValue("CIDRs must be a sequence")
    networks = [_network(value) for value in values]
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    collapsed = [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]
    return tuple(str(network) for network in collapsed)


def cidr_version(value: Any) -> int:
    """4 or 6."""
    return _network(value).version


def address(value: Any) -> str:
    """One IP address in canonical form."""
    text = _text(value, "address")
    if "%" in text or not text.isascii() or text != text.strip():
        raise UnsafeValue(f"address {text!r} is not allowed")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UnsafeValue(f"{text!r} is not an IP address") from None


def interface_address(value: Any) -> str:
    """``address/prefix`` for ``ip address replace`` (host bits kept: it is an address, not a route)."""
    text = _text(value, "interface address")
    host, slash, length = text.partition("/")
    canonical = address(host)
    if not slash:
        return canonical
    bits = 32 if ":" not in canonical else 128
    if not length.isdigit() or not 0 <= int(length) <= bits or not length.isascii():
        raise UnsafeValue(f"interface address {text!r} has an invalid prefix length")
    return f"{canonical}/{int(length)}"


def hostname(value: Any) -> str:
    """A DNS name (RFC 1123), as an endpoint's host."""
    text = _matching(_HOSTNAME, value, "host name")
    if len(text) > _MAX_HOSTNAME:
        raise UnsafeValue(f"host name is longer than {_MAX_HOSTNAME} characters")
    if text.rsplit(".", 1)[-1].isdigit():
        # "1.2.3" or "10": resolvers read these as (legacy) IPv4 numbers, not names.
        raise UnsafeValue(f"host name {text!r} looks like a number")
    return text


def split_endpoint(value: Any) -> tuple[str, int, bool]:
    """``(host, port, is_ip)`` of ``host:port``/``[v6]:port``; an IP host comes back canonical."""
    text = _text(value, "endpoint")
    host, colon, port_text = text.rpartition(":")
    if not colon or not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
        raise UnsafeValue(f"endpoint {text!r} is not host:port")
    number = port(int(port_text))
    if host.startswith("[") and host.endswith("]"):
        canonical = address(host[1:-1])
        if ":" not in canonical:
            raise UnsafeValue(f"endpoint {text!r}: brackets are for IPv6 addresses only")
        return canonical, number, True
    if ":" in host:
        raise UnsafeValue(f"endpoint {text!r}: write an IPv6 host in brackets")
    try:
        return address(host), number, True
    except UnsafeValue:
        return hostname(host), number, False


def format_endpoint(host: str, port_number: int) -> str:
    """``host:port`` with an IPv6 host in brackets."""
    return f"[{host}]:{port_number}" if ":" in host else f"{host}:{port_number}"


def endpoint(value: Any) -> str:
    """``host:port`` in canonical form: IP hosts canonical (IPv6 bracketed), host names as given."""
    host, number, _ = split_endpoint(value)
    return format_endpoint(host, number)


def wireguard_key(value: Any) -> str:
    """A WireGuard public key: canonical base64 of 32 bytes."""
    text = _text(value, "WireGuard key")
    try:
        parsers.parse_wireguard_key(text)
    except ValueError as error:
        raise UnsafeValue(str(error)) from None
    return text
