"""WireGuard key pairs in the text form ``wg`` uses: 32-byte X25519 keys as 44 characters of base64.

``generate_private_key`` behaves like ``wg genkey`` and ``public_key_for`` like ``wg pubkey``, so keys made
here and keys made by ``wg`` are interchangeable.

Private keys are secrets. Never log one, never put one in an exception message, a status field, an Event
or a ConfigMap: errors here describe what is wrong with a key, never its value, and chain no cause that
might quote it.
"""

from __future__ import annotations

import base64
import hmac
import secrets

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from patronus.api.parsers import WIREGUARD_KEY_BYTES, parse_wireguard_key


def _clamp(raw: bytes) -> bytes:
    """Clamp a Curve25519 scalar the way ``wg genkey`` does, so our keys look exactly like its keys.

    X25519 clamps internally anyway (the public key is the same either way); clamping up front only makes
    the stored private key byte-for-byte what ``wg`` would have produced.
    """
    key = bytearray(raw)
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def _encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def generate_private_key() -> str:
    """A fresh private key as base64, like ``wg genkey`` (random 32 bytes from the OS, clamped)."""
    return _encode(_clamp(secrets.token_bytes(WIREGUARD_KEY_BYTES)))


def _decode_private(private_key_b64: str) -> bytes:
    """Decode a private key; the error names the problem only, and drops the cause that could quote it."""
    try:
        return parse_wireguard_key(private_key_b64.strip())
    except ValueError:
        raise ValueError(
            "invalid WireGuard private key: must be 32 bytes of canonical base64 (as printed by `wg genkey`)"
        ) from None


def public_key_for(private_key_b64: str) -> str:
    """The public key of ``private_key_b64``, like ``wg pubkey``.

    Surrounding whitespace is ignored (a key file written by ``wg genkey > key`` ends in a newline).
    Raises ``ValueError`` for a malformed key; the message never contains the key.
    """
    raw = _decode_private(private_key_b64)
    public = X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()
    return _encode(public)


def keys_match(private_b64: str, public_b64: str) -> bool:
    """Whether ``public_b64`` is the public key of ``private_b64``; False when either is malformed.

    Used to check a user's ``publicKey`` against the private key in their Secret before peers are told it.
    """
    try:
        expected = parse_wireguard_key(public_key_for(private_b64))
        given = parse_wireguard_key(public_b64.strip())
    except ValueError:
        return False
    return hmac.compare_digest(expected, given)
