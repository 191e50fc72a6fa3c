"""Raft's wire and record types: entries, hard state, snapshot metadata, peer messages.
Frozen dataclasses with one msgpack encode()/decode() pair; decoding a peer's bytes is bounded and typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # a frame larger than this is refused before unpacking
MAX_ENTRIES_PER_MESSAGE = 65_536
MAX_NODE_ID_BYTES = 128
MAX_MEMBERS = 64
MAX_CONTEXT_BYTES = 256

_KIND_MESSAGE = 1
_KIND_CHUNK = 2


class MessageType(IntEnum):
    APPEND = 1
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    TIMEOUT_NOW = 10
    READ_INDEX = 11
    READ_INDEX_RESP = 12


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeType(IntEnum):
    ADD_NODE = 0  # add a voter, or promote an existing learner
    ADD_LEARNER = 1
    REMOVE_NODE = 2


class DecodeErrorCode(IntEnum):
    TOO_LARGE = 1
    MALFORMED = 2
    BAD_VERSION = 3
    BAD_FIELD = 4


class MessageDecodeError(Exception):
    """A peer sent bytes that are not a valid Raft message; the core never sees them."""

    def __init__(self, code: DecodeErrorCode, detail: str) -> None:
        super().__init__(f"{code.name}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def size_bytes(self) -> int:
        return len(self.data) + 16


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()

    def members(self) -> tuple[str, ...]:
        return self.voters + self.learners


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: str

    def encode(self) -> bytes:
        return packb([int(self.type), self.node_id])

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        raw = _unpack(data)
        if not isinstance(raw, list) or len(raw) != 2:
            raise MessageDecodeError(DecodeErrorCode.MALFORMED, "conf change shape")
        return ConfChange(_enum(ConfChangeType, raw[0]), _node_id(raw[1], allow_empty=False))


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    vote: str = ""  # "" means no vote in this term
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    conf: ConfState


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: str
    frm: str
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None

    def encode(self) -> bytes:
        snap = None
        if self.snapshot is not None:
            s = self.snapshot
            snap = [s.index, s.term, list(s.conf.voters), list(s.conf.learners)]
        ents = [[e.term, e.index, int(e.type), e.data] for e in self.entries]
        return packb([
            _KIND_MESSAGE, WIRE_VERSION, int(self.type), self.to, self.frm, self.term,
            self.log_term, self.index, ents, self.commit, self.reject, self.reject_hint,
            self.context, snap,
        ])


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """One piece of an application snapshot streamed by the driver ahead of its SNAPSHOT message."""

    frm: str
    to: str
    term: int
    index: int  # the snapshot's log index: identifies the transfer
    seq: int
    data: bytes = field(repr=False)
    last: bool

    def encode(self) -> bytes:
        return packb([
            _KIND_CHUNK, WIRE_VERSION, self.frm, self.to, self.term, self.index, self.seq,
            self.data, self.last,
        ])


def decode(data: bytes) -> Message | SnapshotChunk:
    """Decode one frame from a peer; raises MessageDecodeError, never anything else."""
    raw = _unpack(data)
    try:
        if not isinstance(raw, list) or len(raw) < 2:
            raise MessageDecodeError(DecodeErrorCode.MALFORMED, "frame is not a list")
        if raw[1] != WIRE_VERSION:
            raise MessageDecodeError(DecodeErrorCode.BAD_VERSION, f"version {raw[1]!r}")
        if raw[0] == _KIND_MESSAGE:
            return _decode_message(raw)
        if raw[0] == _KIND_CHUNK:
            return _decode_chunk(raw)
        raise MessageDecodeError(DecodeErrorCode.MALFORMED, f"kind {raw[0]!r}")
    except (TypeError, ValueError, IndexError) as exc:  # shape errors we did not foresee
        raise MessageDecodeError(DecodeErrorCode.MALFORMED, repr(exc)) from None


# msgpack.packb builds a Packer, with a 256 KiB buffer, per call; on this glibc freeing that
# buffer returned it to the kernel (an munmap and a cross-core TLB flush), several times a block
# on every node. One packer is kept instead: pack() runs in C under the GIL and calls no Python
# code, so threads may share it, and it resets after every call. An object that grew its buffer
# (a long APPEND, a snapshot chunk) gets the packer replaced, so no large buffer is held for good.
PACKER_KEEPS_BYTES = 192 * 1024  # below msgpack's initial buffer: a kept packer never grows
_packer = msgpack.Packer()


def packb(obj: Any) -> bytes:
    """msgpack.packb(obj), through the kept packer."""
    global _packer
    out: bytes = _packer.pack(obj)
    if len(out) > PACKER_KEEPS_BYTES:
        _packer = msgpack.Packer()
    return out


def _unpack(data: bytes) -> Any:
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageDecodeError(DecodeErrorCode.TOO_LARGE, f"{len(data)} bytes")
    try:
        return msgpack.unpackb(
            data, raw=False, strict_map_key=True, use_list=True,
            max_bin_len=MAX_MESSAGE_BYTES, max_str_len=MAX_NODE_ID_BYTES,
            max_array_len=MAX_ENTRIES_PER_MESSAGE, max_map_len=0, max_ext_len=0,
        )
    except Exception as exc:  # noqa: BLE001 -- msgpack raises many types for garbage input
        raise MessageDecodeError(DecodeErrorCode.MALFORMED, type(exc).__name__) from None


def _decode_message(raw: list[Any]) -> Message:
    if len(raw) != 14:
        raise MessageDecodeError(DecodeErrorCode.MALFORMED, "message field count")
    _, _, mtype, to, frm, term, log_term, index, ents, commit, reject, hint, ctx, snap = raw
    if not isinstance(ents, list) or not isinstance(reject, bool):
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "entries/reject")
    if not isinstance(ctx, bytes) or len(ctx) > MAX_CONTEXT_BYTES:
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "context")
    msg = Message(
        type=_enum(MessageType, mtype), to=_node_id(to), frm=_node_id(frm, allow_empty=False),
        term=_uint(term), log_term=_uint(log_term), index=_uint(index),
        entries=tuple(_decode_entry(e) for e in ents), commit=_uint(commit), reject=reject,
        reject_hint=_uint(hint), context=ctx,
        snapshot=None if snap is None else _decode_snapshot(snap),
    )
    _check_shape(msg)
    return msg


def _check_shape(m: Message) -> None:
    """Refuse shapes no correct peer sends, before they reach the core's invariants."""
    if m.type == MessageType.APPEND:
        for offset, e in enumerate(m.entries):
            if e.index != m.index + 1 + offset or e.term > m.term:
                raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "append entries shape")
        if m.log_term > m.term:
            raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "append log_term")
    elif m.entries:
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "entries on a non-append")
    if (m.type == MessageType.SNAPSHOT) != (m.snapshot is not None):
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "snapshot field")


def _decode_chunk(raw: list[Any]) -> SnapshotChunk:
    if len(raw) != 9:
        raise MessageDecodeError(DecodeErrorCode.MALFORMED, "chunk field count")
    _, _, frm, to, term, index, seq, data, last = raw
    if not isinstance(data, bytes) or not isinstance(last, bool):
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "chunk data/last")
    return SnapshotChunk(_node_id(frm, allow_empty=False), _node_id(to), _uint(term),
                         _uint(index), _uint(seq), data, last)


def _decode_entry(raw: Any) -> Entry:
    if not isinstance(raw, list) or len(raw) != 4 or not isinstance(raw[3], bytes):
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "entry")
    return Entry(_uint(raw[0]), _uint(raw[1]), _enum(EntryType, raw[2]), raw[3])


def _decode_snapshot(raw: Any) -> SnapshotMeta:
    if not isinstance(raw, list) or len(raw) != 4:
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "snapshot")
    voters, learners = raw[2], raw[3]
    if not isinstance(voters, list) or not isinstance(learners, list):
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "snapshot conf")
    if len(voters) + len(learners) > MAX_MEMBERS:
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "too many members")
    conf = ConfState(tuple(_node_id(v, allow_empty=False) for v in voters),
                     tuple(_node_id(v, allow_empty=False) for v in learners))
    return SnapshotMeta(_uint(raw[0]), _uint(raw[1]), conf)


def _uint(value: Any) -> int:
    if type(value) is not int or value < 0 or value >= 2**63:
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, f"not a u63: {value!r}")
    return value


def _node_id(value: Any, allow_empty: bool = True) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, "node id")
    return value


def _enum(kind: type[IntEnum], value: Any) -> Any:
    try:
        return kind(_uint(value))
    except ValueError:
        raise MessageDecodeError(DecodeErrorCode.BAD_FIELD, f"{kind.__name__} {value!r}") from None
