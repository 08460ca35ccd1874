"""The probe wire format: round trips, the fixed size, and rejection of anything that is not a probe."""

from __future__ import annotations

import struct

import pytest

from patronus.agent.probe_protocol import (
    MAGIC,
    PROBE_SIZE,
    Kind,
    Probe,
    decode,
    encode_reply,
    encode_request,
    path_hash,
)


def test_request_round_trip() -> None:
    data = encode_request(0xDEADBEEF, 42, 123_456_789_012)
    assert len(data) == PROBE_SIZE == 32
    assert decode(data) == Probe(Kind.REQUEST, 0xDEADBEEF, 42, 123_456_789_012)


def test_reply_differs_from_request_only_in_kind() -> None:
    request = encode_request(7, 2**32 - 1, 2**64 - 1)
    reply = encode_reply(decode(request))
    assert decode(reply) == Probe(Kind.REPLY, 7, 2**32 - 1, 2**64 - 1)
    differing = [i for i, (a, b) in enumerate(zip(request, reply, strict=True)) if a != b]
    assert differing == [5]


def test_layout_is_documented_one() -> None:
    data = encode_request(1, 2, 3)
    assert data[:4] == MAGIC
    assert struct.unpack("!BBHIIQ", data[4:24]) == (1, 1, 0, 1, 2, 3)
    assert data[24:] == bytes(8)


def test_path_hash_is_stable_u32() -> None:
    assert path_hash("nyc-to-sf") == path_hash("nyc-to-sf")
    assert path_hash("nyc-to-sf") != path_hash("nyc-to-sea")
    assert 0 <= path_hash("x" * 300) < 2**32


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"PTPR",
        encode_request(1, 2, 3)[:31],
        encode_request(1, 2, 3) + b"\0",
        b"XXXX" + encode_request(1, 2, 3)[4:],
        encode_request(1, 2, 3)[:4] + b"\x02" + encode_request(1, 2, 3)[5:],  # version 2
        encode_request(1, 2, 3)[:5] + b"\x03" + encode_request(1, 2, 3)[6:],  # kind 3
        bytes(32),
    ],
)
def test_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any rejection will do
        decode(data)


@pytest.mark.parametrize(("hash_", "seq", "ts"), [(-1, 0, 0), (2**32, 0, 0), (0, 2**32, 0), (0, 0, 2**64)])
def test_encode_rejects_out_of_range(hash_: int, seq: int, ts: int) -> None:
    with pytest.raises(ValueError, match="is not a u"):
        encode_request(hash_, seq, ts)
