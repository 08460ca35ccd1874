from __future__ import annotations

import base64
import os
import re
from fractions import Fraction

import pytest

from patronus.api import addresses, parsers
from patronus.api.addresses import Endpoint
from patronus.api.parsers import PortRange


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("1m30s", 90.0), ("200ms", 0.2), ("1h", 3600.0), ("1.5s", 1.5), ("100us", 1e-4)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parsers.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "30 s", "-5s", "1d", "30seconds"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parsers.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("0.04999999999999999999s", 50_000_000),  # float64 rounds the fraction up, as Go does
        ("0.3333333333h", 1_199_999_999_880),  # and truncates after multiplying
        ("1.000000000001s", 1_000_000_000),
        ("2562047h", 9_223_369_200_000_000_000),
    ],
)
def test_parse_duration_reads_as_go_does(text: str, nanoseconds: int) -> None:
    assert parsers.parse_duration_ns(text) == nanoseconds


@pytest.mark.parametrize("text", ["2562048h", "9223372036854775808ns", "99999999999999999999s", "2562047h1h"])
def test_parse_duration_refuses_what_overflows_go(text: str) -> None:
    with pytest.raises(ValueError, match="too long"):
        parsers.parse_duration_ns(text)


@pytest.mark.parametrize("seconds", [30.0, 0.2, 0.1, 90.0, 1.0])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parsers.parse_duration(parsers.format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("10Mbps", 10_000_000),
        ("512Kbps", 512_000),
        ("1Gbps", 10**9),
        ("1.5Mbps", 1_500_000),
        ("800bps", 800),
        ("0.001Kbps", 1),
        ("0.000001Mbps", 1),  # exact: float would make it 0.999...
        ("1Tbps", 10**12),
        ("0.999999999999Tbps", 10**12 - 1),
    ],
)
def test_parse_bandwidth(text: str, bps: int) -> None:
    assert parsers.parse_bandwidth(text) == bps


@pytest.mark.parametrize(
    "text",
    [
        "10",
        "10 Mbps",
        "10MB",
        "0Mbps",
        "fast",
        "0.5bps",
        "1.0005Kbps",
        "2Tbps",
        "1e40bps",
        "1000000000001bps",
    ],
)
def test_parse_bandwidth_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="bandwidth"):
        parsers.parse_bandwidth(text)


def test_parse_port_ranges() -> None:
    assert parsers.parse_port_ranges("80,443") == (PortRange(80, 80), PortRange(443, 443))
    assert parsers.parse_port_ranges("3478-3497") == (PortRange(3478, 3497),)
    assert parsers.parse_port_ranges("22,8000-8080") == (PortRange(22, 22), PortRange(8000, 8080))
    assert str(PortRange(3478, 3497)) == "3478-3497"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("3497-3478", "reversed"),
        ("0", "outside"),
        ("65536", "outside"),
        ("80,", "port list"),
        ("a-b", "port list"),
    ],
)
def test_parse_port_ranges_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parsers.parse_port_ranges(text)


def test_parse_wireguard_key() -> None:
    assert len(parsers.parse_wireguard_key("u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2ic=")) == 32


@pytest.mark.parametrize(
    "text",
    [
        "base64-encoded-key",
        "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2g==",  # 31 bytes
        "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2iz=",  # stray padding bits
        "",
    ],
)
def test_parse_wireguard_key_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="WireGuard key"):
        parsers.parse_wireguard_key(text)


def test_key_pattern_agrees_with_parser() -> None:
    """Every 32-byte key matches the admission pattern, and nothing else of that length does."""
    for _ in range(200):
        key = base64.b64encode(os.urandom(32)).decode()
        assert re.fullmatch(parsers.WIREGUARD_KEY_PATTERN, key)
    assert not re.fullmatch(parsers.WIREGUARD_KEY_PATTERN, "u3TIrcxVqJhNxDXYP5Ujt9xZ7kNOnkshoeMcIvJx2iz=")


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("203.0.113.1:51820", Endpoint("203.0.113.1", 51820)),
        ("vpn.example.com:443", Endpoint("vpn.example.com", 443)),
        ("[2001:db8::1]:51820", Endpoint("2001:db8::1", 51820)),
    ],
)
def test_parse_endpoint(text: str, endpoint: Endpoint) -> None:
    assert addresses.parse_endpoint(text) == endpoint
    assert str(endpoint) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("203.0.113.1", "host:port"),
        ("host:0", "host:port"),
        ("host:65536", "host:port"),
        ("2001:db8::1:51820", "host:port"),
        ("[zz::1]:1", "host:port"),
        (":80", "host:port"),
        ("[1.2.3.4]:51820", "IPv6"),
        ("1.2.3.256:51820", "IPv4"),
        ("127.0.0.1:51820", "loopback"),
        ("100.96.0.1:51820", "overlay pool"),
        ("[ff02::1]:51820", "multicast"),
    ],
)
def test_parse_endpoint_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        addresses.parse_endpoint(text)


def test_endpoint_address() -> None:
    assert str(addresses.parse_endpoint("[2001:db8::1]:1").address()) == "2001:db8::1"
    assert addresses.parse_endpoint("vpn.example.com:1").address() is None


@pytest.mark.parametrize("text", ["2", "500m", "4Gi", "1.5", "1e3", "10Mi"])
def test_quantity(text: str) -> None:
    assert parsers.validate_quantity(text) == text


@pytest.mark.parametrize("text", ["two", "4GB", "-1", "", "1.2.3", "Gi", "1e100"])
def test_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parsers.validate_quantity(text)


def test_cidr() -> None:
    assert str(addresses.parse_cidr("10.1.0.0/16")) == "10.1.0.0/16"
    assert str(addresses.parse_cidr("fd00::/64")) == "fd00::/64"


@pytest.mark.parametrize(
    "text",
    # Each of these Python's ipaddress takes and Kubernetes' CEL cidr() refuses (or has host bits set).
    ["10.1.2.3/16", "10.0.0.0/08", "10.0.0.0/255.0.0.0", "::ffff:10.0.0.0/104", "fe80::%eth0/64", "10.0.0.0"],
)
def test_cidr_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"CIDR|host bits|IPv4-mapped|zone"):
        addresses.parse_cidr(text)


@pytest.mark.parametrize("text", ["::ffff:1.2.3.4", "fe80::1%eth0", "01.2.3.4", "1.2.3", ""])
def test_ip_rejects_what_cel_ip_refuses(text: str) -> None:
    assert not addresses.is_ip(text)


def test_special_ranges() -> None:
    assert addresses.special_range_of(addresses.parse_cidr("100.64.0.0/10")) == addresses.SPECIAL_RANGES[0]
    assert addresses.special_range_of(addresses.parse_cidr("10.0.0.0/8")) is None
    assert str(addresses.SPECIAL_RANGES[2]) == "loopback (127.0.0.0/8, ::1/128)"


def test_overlay_pool_is_the_operators() -> None:
    from patronus.topology import DEFAULT_OVERLAY_POOL  # noqa: PLC0415

    assert str(DEFAULT_OVERLAY_POOL) == addresses.OVERLAY_POOL


def test_bandwidth_limit_is_the_agents() -> None:
    from patronus.api.agentconfig import MAX_BANDWIDTH_BPS  # noqa: PLC0415

    assert parsers.MAX_BANDWIDTH_BPS == MAX_BANDWIDTH_BPS


@pytest.mark.parametrize(
    ("text", "value"), [("1.5Gi", 1610612736), ("500m", Fraction(1, 2)), ("1e3", 1000), ("2E", 2 * 10**18)]
)
def test_quantity_value(text: str, value: Fraction) -> None:
    assert parsers.quantity_value(text) == value


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("1000m", "1"),
        ("2048Mi", "2Gi"),
        ("0.5", "500m"),
        ("1500", "1500"),
        ("2000", "2k"),
        ("1536Mi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("1023", "1023"),
        ("1.5e3", "1500"),
        ("1E6", "1E6"),
        ("0", "0"),
        ("10E", "10E"),
        ("1E", "1E"),
    ],
)
def test_canonical_quantity(written: str, stored: str) -> None:
    # The same spellings, and more, are checked against the real API server in the integration tests.
    assert parsers.canonical_quantity(written) == stored


def test_canonical_quantity_refuses_what_is_not_a_quantity() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parsers.canonical_quantity("two cores")
