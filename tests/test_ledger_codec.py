"""Canonical encoding: one value, one byte form; anything else is refused with CodecError."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec

LIMIT = 1 << 20

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=codec.MIN_INT, max_value=codec.MAX_INT),
    st.text(max_size=40),
    st.binary(max_size=40),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.text(max_size=12), inner, max_size=6),
    ),
    max_leaves=40,
)


@given(values)
def test_round_trip_gives_back_the_value_and_the_same_bytes(value):
    encoded = codec.encode(value)
    decoded = codec.decode(encoded, max_bytes=LIMIT)
    assert decoded == value
    assert codec.encode(decoded) == encoded


@given(st.dictionaries(st.text(max_size=8), st.integers(0, 9), min_size=2, max_size=8))
def test_map_key_order_does_not_change_the_bytes(mapping):
    reversed_order = dict(reversed(list(mapping.items())))
    assert codec.encode(reversed_order) == codec.encode(mapping)


@given(st.lists(st.integers(0, 2**32), max_size=5))
def test_tuples_encode_as_arrays(items):
    assert codec.encode(tuple(items)) == codec.encode(items)


def _raw_map(pairs: list[tuple[str, int]]) -> bytes:
    """A msgpack map with pairs in exactly the given order (msgpack keeps insertion order)."""
    return msgpack.packb(dict(pairs), use_bin_type=True)


@pytest.mark.parametrize(
    "data, kind",
    [
        (_raw_map([("b", 1), ("a", 2)]), codec.NonCanonical),  # unsorted map
        (b"\x92" + _raw_map([("b", 1), ("a", 2)]) + b"\x01", codec.NonCanonical),  # ...nested
        (b"\xcc\x05", codec.NonCanonical),  # 5 as uint8 instead of a positive fixint
        (b"\xcd\x00\x10", codec.NonCanonical),  # 16 as uint16
        (b"\xd0\x7f", codec.NonCanonical),  # 127 as int8
        (b"\xd9\x01a", codec.NonCanonical),  # "a" as str8 instead of fixstr
        (b"\xdc\x00\x01\x01", codec.NonCanonical),  # [1] as array16
        (b"\xca\x3f\x80\x00\x00", codec.CodecError),  # float32 1.0
        (b"\xcb" + bytes(8), codec.CodecError),  # float64 0.0
        (b"\x91\xcb" + bytes(8), codec.CodecError),  # a float inside an array
        (b"\xcb" + struct.pack(">d", 1e300), codec.CodecError),  # a float too wide for float32
        (b"\x81\xa1a\xcb" + struct.pack(">d", -1e300), codec.CodecError),  # ...inside a map
        (b"\xd4\x01\x00", codec.CodecError),  # fixext1
        (b"\xc7\x01\x05\x00", codec.CodecError),  # ext8
        (b"\x01\x02", codec.CodecError),  # trailing bytes
        (b"\x92\x01", codec.CodecError),  # truncated array
        (b"\xc1", codec.CodecError),  # reserved byte
        (b"", codec.CodecError),  # nothing
        (b"\x81\x01\x02", codec.CodecError),  # integer map key
        (b"\x81\xc4\x01a\x02", codec.CodecError),  # binary map key
        (b"\x82\xa1a\x01\xa1a\x02", codec.NonCanonical),  # repeated key
    ],
)
def test_non_canonical_and_disallowed_bytes_are_refused(data, kind):
    with pytest.raises(kind):
        codec.decode(data, max_bytes=LIMIT)


def test_every_refusal_is_a_codec_error_a_caller_can_catch_as_value_error():
    assert issubclass(codec.NonCanonical, codec.CodecError)
    assert issubclass(codec.CodecError, ValueError)


@pytest.mark.parametrize(
    "value",
    [1.5, float("nan"), {1: "int key"}, {b"k": 1}, {"a", "set"}, object(),
     codec.MAX_INT + 1, codec.MIN_INT - 1, [0.0], {"a": [1, {"b": 2.0}]}, bytearray(b"x")],
)
def test_values_outside_the_model_cannot_be_encoded(value):
    with pytest.raises(codec.CodecError):
        codec.encode(value)


def _nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_nesting_is_bounded():
    assert codec.decode(codec.encode(_nested(codec.MAX_DEPTH)), max_bytes=LIMIT) == _nested(codec.MAX_DEPTH)
    with pytest.raises(codec.CodecError):
        codec.encode(_nested(codec.MAX_DEPTH + 1))
    too_deep = b"\x91" * codec.MAX_DEPTH + b"\x90"
    with pytest.raises(codec.CodecError):
        codec.decode(too_deep, max_bytes=LIMIT)


def test_size_limits_are_enforced_before_decoding():
    with pytest.raises(codec.CodecError):
        codec.decode(codec.encode(b"x" * 100), max_bytes=50)
    with pytest.raises(codec.CodecError):
        codec.encode(list(range(codec.MAX_CONTAINER_ITEMS + 1)))
    with pytest.raises(codec.CodecError):
        codec.decode(msgpack.packb(list(range(codec.MAX_CONTAINER_ITEMS + 1))), max_bytes=LIMIT)


def test_integers_use_the_smallest_form_and_bytes_and_text_stay_apart():
    assert codec.encode(0) == b"\x00"
    assert codec.encode(-1) == b"\xff"
    assert codec.encode(128) == b"\xcc\x80"
    assert codec.encode(codec.MAX_INT) == b"\xcf" + b"\xff" * 8
    assert codec.encode("a") == b"\xa1a"
    assert codec.encode(b"a") == b"\xc4\x01a"
    assert codec.decode(b"\xc4\x01a", max_bytes=8) == b"a"


@settings(max_examples=50)
@given(st.lists(values, min_size=1, max_size=4))
def test_encode_array_of_encoded_items_equals_encoding_the_list(items):
    assert codec.encode_array([codec.encode(v) for v in items]) == codec.encode(items)


def test_an_extension_object_is_never_written_as_an_extension():
    # ExtType is a named tuple: like any tuple it becomes a plain array, never ext bytes.
    assert codec.encode(msgpack.ExtType(1, b"x")) == codec.encode([1, b"x"])


any_msgpack = st.recursive(
    scalars | st.floats() | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6) | st.integers(-9, 9), inner,
                                                                max_size=6),
    max_leaves=30,
)


@settings(max_examples=300)
@given(any_msgpack)
def test_any_msgpack_either_decodes_to_its_canonical_self_or_is_a_codec_error(value):
    data = msgpack.packb(value, use_bin_type=True)
    try:
        decoded = codec.decode(data, max_bytes=LIMIT)
    except codec.CodecError:
        return
    assert codec.encode(decoded) == data
