from __future__ import annotations

import base64
import os
import re

import pytest

from patronus.api import parsers
from patronus.api.parsers import Endpoint, PortRange


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


@pytest.mark.parametrize("seconds", [30.0, 0.2, 0.1, 90.0, 1.0])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parsers.parse_duration(parsers.format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "bps"),
    [("10Mbps", 10_000_000), ("512Kbps", 512_000), ("1Gbps", 10**9), ("1.5Mbps", 1_500_000), ("800bps", 800)],
)
def test_parse_bandwidth(text: str, bps: int) -> None:
    assert parsers.parse_bandwidth(text) == bps


@pytest.mark.parametrize("text", ["10", "10 Mbps", "10MB", "0Mbps", "fast"])
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
    assert parsers.parse_endpoint(text) == endpoint
    assert str(endpoint) == text


@pytest.mark.parametrize(
    "text", ["203.0.113.1", "host:0", "host:65536", "2001:db8::1:51820", "[zz::1]:1", ":80"]
)
def test_parse_endpoint_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|outside|IPv6"):
        parsers.parse_endpoint(text)


@pytest.mark.parametrize("text", ["2", "500m", "4Gi", "1.5", "1e3", "10Mi"])
def test_quantity(text: str) -> None:
    assert parsers.validate_quantity(text) == text


@pytest.mark.parametrize("text", ["two", "4GB", "-1", "", "1.2.3"])
def test_quantity_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parsers.validate_quantity(text)


def test_cidr() -> None:
    assert parsers.validate_cidr("10.1.0.0/16") == "10.1.0.0/16"
    assert parsers.validate_cidr("fd00::/64") == "fd00::/64"
    with pytest.raises(ValueError, match="CIDR"):
        parsers.validate_cidr("10.1.2.3/16")


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
    ],
)
def test_canonical_quantity(written: str, stored: str) -> None:
    # The same spellings, and more, are checked against the real API server in the integration tests.
    assert parsers.canonical_quantity(written) == stored


def test_canonical_quantity_refuses_what_is_not_a_quantity() -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parsers.canonical_quantity("two cores")
