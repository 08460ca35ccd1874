"""WireGuard keys: the same text form and the same public keys as `wg genkey` / `wg pubkey`."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from patronus.api.parsers import WIREGUARD_KEY_PATTERN
from patronus.wireguard.keys import generate_private_key, keys_match, public_key_for

# RFC 7748 section 6.1: Alice's private and public key.
RFC7748_PRIVATE = base64.b64encode(
    bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
).decode()
RFC7748_PUBLIC = base64.b64encode(
    bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
).decode()

WG = "/usr/bin/wg"


def _wg(*args: str, stdin: str = "") -> str:
    return subprocess.run([WG, *args], input=stdin, capture_output=True, text=True, check=True).stdout.strip()


def _require_wg() -> None:
    if shutil.which(WG) is None:
        reason = f"{WG} is not installed; cannot compare with the reference implementation"
        print(reason)
        pytest.skip(reason)


def test_generated_key_looks_like_wg_genkey() -> None:
    key = generate_private_key()
    assert re.fullmatch(WIREGUARD_KEY_PATTERN, key)
    raw = base64.b64decode(key)
    assert len(raw) == 32
    assert raw[0] & 7 == 0, "low three bits cleared, as wg genkey clamps"
    assert raw[31] & 0x80 == 0
    assert raw[31] & 0x40 == 0x40


def test_generated_keys_differ() -> None:
    assert len({generate_private_key() for _ in range(32)}) == 32


def test_rfc7748_vector() -> None:
    assert public_key_for(RFC7748_PRIVATE) == RFC7748_PUBLIC


def test_public_key_matches_cryptography() -> None:
    private = generate_private_key()
    expected = X25519PrivateKey.from_private_bytes(base64.b64decode(private)).public_key().public_bytes_raw()
    assert public_key_for(private) == base64.b64encode(expected).decode()


def test_public_key_matches_wg_pubkey() -> None:
    _require_wg()
    private = generate_private_key()
    assert public_key_for(private) == _wg("pubkey", stdin=private + "\n")
    assert _wg("pubkey", stdin=RFC7748_PRIVATE + "\n") == RFC7748_PUBLIC


def test_wg_genkey_keys_are_accepted() -> None:
    _require_wg()
    private = _wg("genkey")
    assert public_key_for(private) == _wg("pubkey", stdin=private + "\n")


def test_surrounding_whitespace_is_ignored() -> None:
    assert public_key_for(f"  {RFC7748_PRIVATE}\n") == RFC7748_PUBLIC


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not base64 at all!",
        RFC7748_PRIVATE[:-4],  # too short
        base64.b64encode(bytes(33)).decode(),  # 33 bytes
        RFC7748_PRIVATE[:-2] + "B=",  # non-canonical padding bits
    ],
    ids=["empty", "garbage", "short", "long", "non-canonical"],
)
def test_bad_private_key_error_never_shows_the_key(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid WireGuard private key") as info:
        public_key_for(bad)
    message = str(info.value)
    if bad:
        assert bad not in message
        assert bad.strip()[:8] not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_keys_match() -> None:
    private = generate_private_key()
    assert keys_match(private, public_key_for(private))
    assert keys_match(RFC7748_PRIVATE, RFC7748_PUBLIC + "\n")
    assert not keys_match(private, RFC7748_PUBLIC)
    assert not keys_match("garbage", RFC7748_PUBLIC)
    assert not keys_match(RFC7748_PRIVATE, "garbage")
