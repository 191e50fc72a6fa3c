"""Wire framing of p2p links: a 4-byte big-endian length, then msgpack [channel, payload].

Sans-IO: FrameDecoder turns received bytes into Frames and knows nothing of sockets, so the
hostile-input tests fuzz it without an event loop. Link feeds it what the TLS stream yields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

LENGTH_PREFIX_BYTES = 4
MAX_FRAME_BYTES = 16 * 1024 * 1024  # body bytes, prefix excluded; a Raft snapshot chunk fits
MAX_CHANNEL_BYTES = 32
MIN_FRAME_BODY_BYTES = 3  # fixarray(2) + fixstr("") + bin8(b"") is the smallest well-formed body
# Frames up to this payload are packed by one kept packer rather than a new one per frame, whose
# 256 KiB buffer cost an munmap when freed (consensus/messages.py says why); larger
# ones (snapshot chunks) by a new packer, so the kept one never grows its buffer.
SHARED_PACKER_MAX_PAYLOAD = 192 * 1024
_frame_packer = msgpack.Packer(use_bin_type=True)


class FrameErrorCode(enum.Enum):
    """Why a peer's bytes were refused; stable values for logs and counters."""

    OVERSIZE = "frame_oversize"
    TOO_SHORT = "frame_too_short"
    MALFORMED = "frame_malformed"
    BAD_SHAPE = "frame_bad_shape"
    BAD_CHANNEL = "frame_bad_channel"


class FrameError(Exception):
    """Bytes from a peer that are not a valid frame. The link that carried them is closed."""

    def __init__(self, code: FrameErrorCode, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code


@dataclass(frozen=True)
class Frame:
    channel: str
    payload: bytes


def encode_frame(frame: Frame, max_frame_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """Prefix and body of one frame; raises FrameError if the receiver would refuse it."""
    check_channel(frame.channel)
    pair = [frame.channel, frame.payload]
    if len(frame.payload) <= SHARED_PACKER_MAX_PAYLOAD:
        body: bytes = _frame_packer.pack(pair)
    else:
        body = msgpack.packb(pair, use_bin_type=True)
    if len(body) > max_frame_bytes:
        raise FrameError(FrameErrorCode.OVERSIZE, f"{len(body)} > {max_frame_bytes} bytes")
    return len(body).to_bytes(LENGTH_PREFIX_BYTES, "big") + body


def check_channel(channel: str) -> None:
    size = len(channel.encode("utf-8", errors="replace"))
    if not 0 < size <= MAX_CHANNEL_BYTES or not channel.isprintable():
        raise FrameError(FrameErrorCode.BAD_CHANNEL, f"channel of {size} bytes")


def decode_body(body: bytes, max_frame_bytes: int) -> Frame:
    """Strictly decode one frame body: exactly a 2-array of (str, bin), nothing after it."""
    try:
        value = msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_CHANNEL_BYTES,
            max_bin_len=max_frame_bytes,
            max_array_len=2,
            max_map_len=0,
            max_ext_len=0,
        )
    # msgpack signals bad input with several exception types (ValueError subclasses, its own
    # FormatError/StackError, TypeError for unhashable keys); a peer's bytes must only ever
    # produce our one typed error, so every one of them is translated here.
    except Exception as exc:  # noqa: BLE001
        raise FrameError(FrameErrorCode.MALFORMED, type(exc).__name__) from None
    if not (isinstance(value, list) and len(value) == 2):
        raise FrameError(FrameErrorCode.BAD_SHAPE, "body is not a 2-element array")
    channel, payload = value
    if not isinstance(channel, str) or not isinstance(payload, bytes):
        raise FrameError(FrameErrorCode.BAD_SHAPE, "body is not [str, bin]")
    check_channel(channel)
    return Frame(channel, payload)


class FrameDecoder:
    """Bytes in, frames out. Between calls it holds at most one partial frame
    (< prefix + max_frame_bytes).

    A length prefix is checked as soon as its 4 bytes are present, so an oversize frame is
    refused before its body is read from the socket. After the first error the decoder stays
    failed: a stream that lost framing cannot be resynchronised, and the link must close.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < MIN_FRAME_BODY_BYTES:
            raise ValueError(f"max_frame_bytes must be >= {MIN_FRAME_BODY_BYTES}")
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._error: FrameError | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        if self._error is not None:
            raise self._error
        self._buffer += data
        try:
            frames, consumed = self._parse()
        except FrameError as exc:
            self._error = exc
            self._buffer.clear()
            raise
        del self._buffer[:consumed]
        return frames

    def _parse(self) -> tuple[list[Frame], int]:
        """Every complete frame in the buffer, and how many bytes they took."""
        frames: list[Frame] = []
        buffer, pos = self._buffer, 0
        while len(buffer) - pos >= LENGTH_PREFIX_BYTES:
            length = self._check_length(
                int.from_bytes(buffer[pos : pos + LENGTH_PREFIX_BYTES], "big")
            )
            end = pos + LENGTH_PREFIX_BYTES + length
            if len(buffer) < end:
                break
            body = bytes(buffer[pos + LENGTH_PREFIX_BYTES : end])
            frames.append(decode_body(body, self.max_frame_bytes))
            pos = end
        return frames, pos

    def _check_length(self, length: int) -> int:
        if length > self.max_frame_bytes:
            raise FrameError(FrameErrorCode.OVERSIZE, f"{length} > {self.max_frame_bytes} bytes")
        if length < MIN_FRAME_BODY_BYTES:
            raise FrameError(FrameErrorCode.TOO_SHORT, f"{length} bytes")
        return length
