"""Canonical msgpack encoding: the one byte form of every record the ledger hashes or signs.

Part of ledger/. Records are msgpack arrays in a fixed field order; maps (contract arguments)
have string keys in sorted order. Decoding rejects anything that does not re-encode to the
same bytes, so one value has exactly one encoding and one hash. docs/PROTOCOL.md specifies it.
"""

from __future__ import annotations

from typing import Any

import msgpack

MAX_DEPTH = 16  # arrays and maps nest at most this many levels (the outermost is level 1)
MAX_CONTAINER_ITEMS = 10_000
MAX_INT = 2**64 - 1
MIN_INT = -(2**63)

# Exact types msgpack packs canonically as they are (ints are range-checked by the packer).
LEAF_TYPES = frozenset({type(None), bool, int, str, bytes})
# One packer for the process: msgpack.packb builds a new one per call, which costs more than
# packing a small record. Sharing is safe: pack() runs in C under the GIL and calls no Python
# code (no `default` hook), and it resets its buffer after every call, even a failed one.
_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True)
# Packs every float as float32 where _PACKER uses float64: a value holding a float of either
# width re-encodes differently under one of the two, which finds floats without a Python walk.
_FLOAT32_PACKER = msgpack.Packer(use_bin_type=True, autoreset=True, use_single_float=True)


class CodecError(ValueError):
    """Bytes that are not a canonical encoding of an allowed value (or a value we cannot encode)."""


class OutOfRange(CodecError):
    """A value of an allowed type past the encoding's bounds: an integer beyond 64 bits, a
    container of too many items. What values a contract's arithmetic or inputs reach, not what
    types its code builds (a float, a set: a bug of ours, which stays a plain CodecError)."""


class NonCanonical(CodecError):
    """Valid msgpack of allowed values, but not in its one canonical byte form."""


def _canonical(value: Any, depth: int) -> Any:
    """A copy of value with every map rebuilt in sorted key order (the slow, general path)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise OutOfRange("integer out of range")
        return value
    if isinstance(value, (list, tuple, dict)) and depth >= MAX_DEPTH:
        raise CodecError("nested too deeply")
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_CONTAINER_ITEMS:
            raise OutOfRange("too many items")
        leaves = LEAF_TYPES
        return [item if type(item) in leaves else _canonical(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if len(value) > MAX_CONTAINER_ITEMS:
            raise OutOfRange("too many items")
        for key in value:
            if not isinstance(key, str):
                raise CodecError("map keys must be strings")
        return {key: _canonical(value[key], depth + 1) for key in sorted(value)}  # sorted: canonical
    raise CodecError(f"type {type(value).__name__} cannot be encoded (no floats, no extensions)")


def _normal(value: Any, depth: int) -> Any:
    """value itself if msgpack may pack it as it is, else a copy with its maps sorted.

    Raises CodecError for anything that can never be encoded. This is the hot path of every
    state write and receipt, so it checks exact types first and copies only lists that must
    change (and every map: see below).
    """
    kind = type(value)
    if kind in LEAF_TYPES:
        return value
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise CodecError("nested too deeply")
        if len(value) > MAX_CONTAINER_ITEMS:
            raise OutOfRange("too many items")
        copy = None
        for index, item in enumerate(value):
            if type(item) in LEAF_TYPES:
                continue
            normal = _normal(item, depth + 1)
            if normal is not item:
                if copy is None:
                    copy = list(value)
                copy[index] = normal
        return value if copy is None else copy
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise CodecError("nested too deeply")
        if len(value) > MAX_CONTAINER_ITEMS:
            raise OutOfRange("too many items")
        try:
            ordered = sorted(value)
        except TypeError:  # keys that do not compare with each other: not all strings
            raise CodecError("map keys must be strings") from None
        leaves = LEAF_TYPES
        # One pass builds the sorted copy (cheaper than proving the map needs none); leaves are
        # their own normal form, so it recurses only into containers (most values are leaves).
        copy = {}
        for key in ordered:
            if type(key) is not str:
                raise CodecError("map keys must be strings")
            item = value[key]
            copy[key] = item if type(item) in leaves else _normal(item, depth + 1)
        return copy
    return _canonical(value, depth)  # subclasses (StrEnum, OrderedDict) or a refused type


def encode(value: Any) -> bytes:
    """The canonical bytes of a value built from None, bool, int, str, bytes, list and dict."""
    value = _normal(value, 0)
    try:
        return _PACKER.pack(value)
    except OverflowError as exc:
        raise OutOfRange("integer out of range") from exc


def encode_leaves(items: list[Any]) -> bytes:
    """encode(items) for an array of leaves (a state-hash pair, a balance): no normal-form walk.

    Any item that is not a leaf of an exact type takes the general path, so this is never wrong,
    only faster for what the hot paths encode: two ints, two byte strings.
    """
    if len(items) > MAX_CONTAINER_ITEMS:
        return encode(items)  # refuses it
    for item in items:
        if type(item) not in LEAF_TYPES:
            return encode(items)
    try:
        return _PACKER.pack(items)
    except OverflowError as exc:
        raise OutOfRange("integer out of range") from exc


def leaf_map_normal(value: dict[Any, Any]) -> dict[str, Any] | None:
    """_normal's sorted copy of a map whose keys are strings and values leaves of exact types
    (an event's attributes, most of the time); None for any other map: take the general path."""
    if len(value) > MAX_CONTAINER_ITEMS:
        return None
    leaves = LEAF_TYPES
    copy = {}
    try:
        ordered = sorted(value)
    except TypeError:  # keys that do not compare: not all strings
        return None
    for key in ordered:
        item = value[key]
        if type(key) is not str or type(item) not in leaves:
            return None
        copy[key] = item
    return copy


def is_leaf_map_sorted(value: dict[Any, Any]) -> bool:
    """Whether a map is already in _normal's form as it stands: text keys in strictly increasing
    order and leaf values of exact types. Then it packs as it is, without leaf_map_normal's
    sorted copy (sorting costs more than this one pass; an event whose attributes are written
    in key order, such as a transfer's, needs no copy). False for the empty key too, which
    then takes leaf_map_normal's path."""
    if len(value) > MAX_CONTAINER_ITEMS:
        return False
    leaves = LEAF_TYPES
    previous = ""
    for key, item in value.items():
        if type(key) is not str or key <= previous or type(item) not in leaves:
            return False
        previous = key
    return True


def pack_normal(value: Any) -> bytes | None:
    """The bytes of a value already in the form _normal returns (exact leaf types, maps sorted,
    within the depth and size bounds): encode(value) without the walk. None if an integer is out
    of range, so that the caller's general path names the error."""
    try:
        return _PACKER.pack(value)
    except OverflowError:
        return None


def encode_document(value: Any, depth: int = 0) -> bytes:
    """The canonical bytes of a value whose arrays may hold more than MAX_CONTAINER_ITEMS items.

    For documents the ledger hashes but never decodes with `decode` (a genesis naming more
    participants than one decoded array may hold); equal to encode(value) whenever that succeeds.
    Maps stay bounded: they are records and arguments, never lists of members.
    """
    kind = type(value)
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise CodecError("nested too deeply")
        return _PACKER.pack_array_header(len(value)) + b"".join(encode_document(v, depth + 1) for v in value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            raise CodecError("nested too deeply")
        if len(value) > MAX_CONTAINER_ITEMS:
            raise CodecError("too many items")
        if any(type(key) is not str for key in value):
            raise CodecError("map keys must be strings")
        parts = [_PACKER.pack_map_header(len(value))]
        for key in sorted(value):  # sorted: canonical
            parts.append(encode(key))
            parts.append(encode_document(value[key], depth + 1))
        return b"".join(parts)
    return encode(value)


def encode_array(encoded_items: list[bytes]) -> bytes:
    """The canonical array of items already encoded: equal to encode(list of the items)."""
    if len(encoded_items) > MAX_CONTAINER_ITEMS:
        raise CodecError("too many items")
    return _PACKER.pack_array_header(len(encoded_items)) + b"".join(encoded_items)


def _reject_ext(code: int, data: bytes) -> Any:
    raise CodecError("msgpack extension types are not allowed")


def _sorted_map(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    """Decoding hook for every map: text keys in strictly increasing order (so none twice)."""
    previous = None
    for key, _ in pairs:
        if type(key) is not str:
            raise CodecError("map keys must be strings")
        if previous is not None and key <= previous:
            raise NonCanonical("not the canonical encoding (map keys unsorted or repeated)")
        previous = key
    return dict(pairs)


def decode(data: bytes, *, max_bytes: int) -> Any:
    """Decode canonical bytes; raises CodecError for anything that is not exactly canonical."""
    if len(data) > max_bytes:
        raise CodecError(f"encoding is {len(data)} bytes, limit {max_bytes}")
    # Defaults: str as str, arrays as lists, every length limited by len(data) (already
    # <= max_bytes); maps are checked as they are built.
    value = _unpack(data, object_pairs_hook=_sorted_map)
    if not encodes_to(value, data):
        _normal(value, 0)  # names a float or a too-deep value, if that is what it is
        raise NonCanonical("not the canonical encoding")
    kind = type(value)
    if (kind is list or kind is dict) and len(data) > MAX_DEPTH:
        _check_limits(value, 0)  # fewer bytes than MAX_DEPTH cannot nest too deeply
    return value


def unpack_unordered(data: bytes) -> Any:
    """msgpack's value of data, for a caller that proves the canonical form itself.

    A fast path for a record whose schema fixes most of its shape (decode_signed): unlike
    `decode`, this leaves to the caller the checks that need a walk of the value, namely that
    every map's keys are strings in increasing order and that nesting stays within MAX_DEPTH,
    and then `encodes_to`. Extension types are refused and container sizes bounded here, in C.
    """
    try:  # _unpack's body with its options written out: one call less per transaction
        return msgpack.unpackb(data, ext_hook=_reject_ext, max_array_len=MAX_CONTAINER_ITEMS,
                               max_map_len=MAX_CONTAINER_ITEMS)
    except CodecError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _unpack_error(exc) from exc


def _unpack(data: bytes, **options: Any) -> Any:
    """msgpack.unpackb with extension types refused and every failure a CodecError."""
    try:
        return msgpack.unpackb(data, ext_hook=_reject_ext, **options)
    except CodecError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise _unpack_error(exc) from exc


def _unpack_error(exc: Exception) -> CodecError:
    if isinstance(exc, msgpack.ExtraData):
        return CodecError("trailing bytes after the value")
    return CodecError(f"not valid msgpack: {exc}")


def encodes_to(value: Any, data: bytes) -> bool:
    """Whether data is the canonical encoding of a value msgpack decoded from it.

    `decode` calls it after checking maps as they were built; `unpack_unordered`'s callers after
    finding the maps sorted and the depth bounded themselves.
    """
    try:
        # A float64 in the value puts its type byte 0xcb in the data: without that byte the
        # float32 re-encoding cannot differ, so it is skipped (most transactions and records).
        return _PACKER.pack(value) == data and (b"\xcb" not in data or _FLOAT32_PACKER.pack(value) == data)
    except (OverflowError, ValueError):  # a float beyond float32's range; a value nested too deeply
        return False


def _check_limits(container: list[Any] | dict[str, Any], depth: int) -> None:
    """Nesting depth and items per container of a decoded value (its leaves are known good)."""
    if depth >= MAX_DEPTH:
        raise CodecError("nested too deeply")
    items = container.values() if type(container) is dict else container
    if len(items) > MAX_CONTAINER_ITEMS:
        raise CodecError("too many items")
    for item in items:
        kind = type(item)
        if kind is list or kind is dict:
            _check_limits(item, depth + 1)  # type: ignore[arg-type]
