"""The UDP probe wire format: one fixed 32-byte datagram, the same layout for requests and replies.

Layout (network byte order)::

    offset size field
         0    4 magic       b"PTPR" (Patronus probe); anything else is not ours and is dropped
         4    1 version     1
         5    1 kind        1 = request, 2 = reply
         6    2 reserved    zero
         8    4 path hash   u32 CRC-32 of the path id (UTF-8), so a reply is matched to the right path
        12    4 sequence    u32, per prober, wraps at 2**32
        16    8 sent ns     u64, the sender's time.monotonic_ns() when it sent the request
        24    8 padding     zero; keeps the size fixed and leaves room for a later version

The responder echoes the request unchanged except ``kind``: it never needs to understand the timestamp,
which is only meaningful on the sender's clock, so the two sites need no clock synchronisation and a
reply is never larger than its request (the responder cannot be used as an amplifier).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"PTPR"
VERSION = 1
PROBE_SIZE = 32
"""Every probe datagram, request or reply, is exactly this many bytes."""

_HEADER = struct.Struct("!4sBBHIIQ")
_PADDING = bytes(PROBE_SIZE - _HEADER.size)
_U32 = 1 << 32
_U64 = 1 << 64


class Kind(IntEnum):
    """Whether a datagram asks for an echo or is one."""

    REQUEST = 1
    REPLY = 2


@dataclass(frozen=True)
class Probe:
    """One decoded probe datagram."""

    kind: Kind
    path_hash: int
    sequence: int
    sent_ns: int


def path_hash(path_id: str) -> int:
    """The u32 that identifies a path on the wire: CRC-32 of its id, stable across processes and hosts."""
    return zlib.crc32(path_id.encode()) & 0xFFFFFFFF


def _encode(kind: Kind, path_hash: int, sequence: int, sent_ns: int) -> bytes:
    if not 0 <= path_hash < _U32:
        raise ValueError(f"path hash {path_hash} is not a u32")
    if not 0 <= sequence < _U32:
        raise ValueError(f"sequence {sequence} is not a u32")
    if not 0 <= sent_ns < _U64:
        raise ValueError(f"timestamp {sent_ns} is not a u64")
    return _HEADER.pack(MAGIC, VERSION, kind, 0, path_hash, sequence, sent_ns) + _PADDING


def encode_request(path_hash: int, sequence: int, sent_ns: int) -> bytes:
    """A request datagram; ``sent_ns`` is the sender's ``time.monotonic_ns()`` at send time."""
    return _encode(Kind.REQUEST, path_hash, sequence, sent_ns)


def encode_reply(request: Probe) -> bytes:
    """The reply to ``request``: the same fields, kind flipped to reply."""
    return _encode(Kind.REPLY, request.path_hash, request.sequence, request.sent_ns)


def decode(data: bytes) -> Probe:
    """Parse a datagram; ``ValueError`` when it is not a well-formed probe of this version."""
    if len(data) != PROBE_SIZE:
        raise ValueError(f"probe must be {PROBE_SIZE} bytes, got {len(data)}")
    magic, version, kind, _reserved, hash_, sequence, sent_ns = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if version != VERSION:
        raise ValueError(f"unsupported probe version {version}")
    try:
        kind_ = Kind(kind)
    except ValueError:
        raise ValueError(f"unknown probe kind {kind}") from None
    return Probe(kind=kind_, path_hash=hash_, sequence=sequence, sent_ns=sent_ns)
