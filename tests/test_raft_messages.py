"""Raft wire format: every message survives encode/decode, and no byte string a peer can send
makes decode raise anything but MessageDecodeError (the core never sees a malformed message).
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.messages import (
    MAX_MESSAGE_BYTES,
    ConfChange,
    ConfChangeType,
    ConfState,
    DecodeErrorCode,
    Entry,
    EntryType,
    Message,
    MessageDecodeError,
    MessageType,
    SnapshotChunk,
    SnapshotMeta,
    decode,
)

u63 = st.integers(min_value=0, max_value=2**63 - 1)
node_ids = st.text(min_size=1, max_size=12)
snapshots = st.builds(SnapshotMeta, u63, u63, st.builds(
    ConfState, st.lists(node_ids, max_size=5).map(tuple), st.lists(node_ids, max_size=3).map(tuple)))


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """Messages a correct peer could send: the shape decode() accepts."""
    mtype = draw(st.sampled_from(MessageType))
    term = draw(st.integers(0, 2**40))
    index = draw(st.integers(0, 2**40))
    log_term = draw(st.integers(0, term))
    entries: tuple[Entry, ...] = ()
    if mtype == MessageType.APPEND:
        n = draw(st.integers(0, 5))
        entries = tuple(Entry(draw(st.integers(0, term)), index + 1 + i,
                              draw(st.sampled_from(EntryType)), draw(st.binary(max_size=64)))
                        for i in range(n))
    snapshot = draw(snapshots) if mtype == MessageType.SNAPSHOT else None
    return Message(mtype, draw(node_ids), draw(node_ids), term, log_term, index, entries,
                   draw(u63), draw(st.booleans()), draw(u63), draw(st.binary(max_size=32)),
                   snapshot)


@given(messages())
def test_every_message_round_trips(m: Message) -> None:
    assert decode(m.encode()) == m


@given(node_ids, node_ids, u63, u63, u63, st.binary(max_size=300), st.booleans())
def test_snapshot_chunks_round_trip(frm, to, term, index, seq, data, last) -> None:
    c = SnapshotChunk(frm, to, term, index, seq, data, last)
    assert decode(c.encode()) == c


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_garbage_bytes_raise_only_the_typed_error(data: bytes) -> None:
    try:
        decode(data)
    except MessageDecodeError:
        pass


@settings(max_examples=150)
@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.binary(max_size=8)
                    | st.text(max_size=8), lambda inner: st.lists(inner, max_size=14),
                    max_leaves=40))
def test_wrong_shapes_raise_only_the_typed_error(obj: object) -> None:
    for prefix in ([1, 1], [2, 1], []):
        payload = msgpack.packb(prefix + obj if isinstance(obj, list) else obj)
        try:
            decode(payload)
        except MessageDecodeError:
            pass


def test_oversized_frames_are_refused_before_unpacking() -> None:
    with pytest.raises(MessageDecodeError) as info:
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert info.value.code == DecodeErrorCode.TOO_LARGE


def test_negative_or_unknown_fields_are_refused() -> None:
    good = Message(MessageType.APPEND, "a", "b", 1).encode()
    raw = msgpack.unpackb(good)
    raw[5] = -1
    with pytest.raises(MessageDecodeError) as info:
        decode(msgpack.packb(raw))
    assert info.value.code == DecodeErrorCode.BAD_FIELD
    raw[5], raw[2] = 1, 99
    with pytest.raises(MessageDecodeError):
        decode(msgpack.packb(raw))


def test_shapes_no_correct_peer_sends_are_refused() -> None:
    gap = Message(MessageType.APPEND, "a", "b", 3, 1, 5, (Entry(3, 7),))
    future_term = Message(MessageType.APPEND, "a", "b", 3, 1, 5, (Entry(4, 6),))
    stray = Message(MessageType.HEARTBEAT, "a", "b", 3, entries=(Entry(3, 1),))
    bare_snapshot = Message(MessageType.SNAPSHOT, "a", "b", 3)
    for bad in (gap, future_term, stray, bare_snapshot):
        with pytest.raises(MessageDecodeError) as info:
            decode(bad.encode())
        assert info.value.code == DecodeErrorCode.BAD_FIELD


def test_conf_change_round_trips() -> None:
    cc = ConfChange(ConfChangeType.ADD_LEARNER, "n4")
    assert ConfChange.decode(cc.encode()) == cc
