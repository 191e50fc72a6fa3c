"""The p2p frame decoder against hostile bytes: only FrameError, bounded memory, exact frames."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.frame import (
    LENGTH_PREFIX_BYTES,
    MAX_CHANNEL_BYTES,
    Frame,
    FrameDecoder,
    FrameError,
    FrameErrorCode,
    encode_frame,
)

SMALL_MAX_FRAME_BYTES = 512

channels = st.text(min_size=1, max_size=MAX_CHANNEL_BYTES // 4).filter(str.isprintable)
frames = st.builds(Frame, channels, st.binary(max_size=300))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points + [len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


def _prefixed(body: bytes) -> bytes:
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


@settings(max_examples=150, deadline=None)
@given(st.lists(frames, max_size=8), st.lists(st.integers(min_value=0), max_size=10))
def test_frames_survive_any_chunking(sent: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(frame, SMALL_MAX_FRAME_BYTES) for frame in sent)
    decoder = FrameDecoder(SMALL_MAX_FRAME_BYTES)
    received = [frame for piece in _split(stream, cuts) for frame in decoder.feed(piece)]
    assert received == sent
    assert decoder.buffered_bytes == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_raise_only_frame_error(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(SMALL_MAX_FRAME_BYTES)
    for chunk in chunks:
        try:
            decoded = decoder.feed(chunk)
        except FrameError:
            # A failed decoder stays failed: framing cannot be recovered on a byte stream.
            with pytest.raises(FrameError):
                decoder.feed(b"\x00")
            return
        assert all(isinstance(frame, Frame) for frame in decoded)
        assert decoder.buffered_bytes < LENGTH_PREFIX_BYTES + SMALL_MAX_FRAME_BYTES


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=SMALL_MAX_FRAME_BYTES).filter(lambda body: len(body) >= 3))
def test_arbitrary_bodies_raise_only_frame_error(body: bytes) -> None:
    decoder = FrameDecoder(SMALL_MAX_FRAME_BYTES)
    try:
        decoded = decoder.feed(_prefixed(body))
    except FrameError:
        return
    assert len(decoded) == 1


@settings(deadline=None)  # timing under a loaded CI box is not the property
@given(st.integers(min_value=SMALL_MAX_FRAME_BYTES + 1, max_value=2**32 - 1))
def test_oversize_length_is_refused_before_its_body_is_buffered(length: int) -> None:
    decoder = FrameDecoder(SMALL_MAX_FRAME_BYTES)
    assert decoder.feed(encode_frame(Frame("raft", b"ok"))[:2]) == []  # partial prefix: wait
    assert decoder.feed(b"") == []
    with pytest.raises(FrameError) as refused:
        decoder.feed(
            encode_frame(Frame("raft", b"ok"))[2:]
            + length.to_bytes(LENGTH_PREFIX_BYTES, "big")
            + b"\x00" * 16
        )
    assert refused.value.code is FrameErrorCode.OVERSIZE
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"\x00", FrameErrorCode.TOO_SHORT),
        (msgpack.packb(["raft", b"x", b"y"]), FrameErrorCode.MALFORMED),  # array too long
        (msgpack.packb(["raft", "text"]), FrameErrorCode.BAD_SHAPE),  # payload must be bin
        (msgpack.packb([7, b"x"]), FrameErrorCode.BAD_SHAPE),
        (msgpack.packb({"raft": b"x"}), FrameErrorCode.MALFORMED),
        (msgpack.packb(["", b"x"]), FrameErrorCode.BAD_CHANNEL),
        (msgpack.packb(["raft", b"x"]) + b"\x00", FrameErrorCode.MALFORMED),  # trailing byte
        (b"\x92\xa2\xff\xfe\xc4\x00", FrameErrorCode.MALFORMED),  # channel not UTF-8
    ],
)
def test_malformed_bodies_have_stable_codes(body: bytes, code: FrameErrorCode) -> None:
    with pytest.raises(FrameError) as refused:
        FrameDecoder(SMALL_MAX_FRAME_BYTES).feed(_prefixed(body))
    assert refused.value.code is code


def test_encoder_refuses_what_the_decoder_would_refuse() -> None:
    with pytest.raises(FrameError) as refused:
        encode_frame(Frame("raft", bytes(SMALL_MAX_FRAME_BYTES)), SMALL_MAX_FRAME_BYTES)
    assert refused.value.code is FrameErrorCode.OVERSIZE
    with pytest.raises(FrameError):
        encode_frame(Frame("x" * (MAX_CHANNEL_BYTES + 1), b""))
