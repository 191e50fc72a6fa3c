"""Canonical msgpack encoding: the one byte form of every record the ledger hashes or signs.

Part of ledger/. Records are msgpack arrays in a fixed field order; maps (contract arguments)
have string keys in sorted order. Decoding rejects anything that does not re-encode to the
same bytes, so one value has exactly one encoding and one hash.
"""

from __future__ import annotations

from typing import Any

import msgpack

MAX_DEPTH = 16
MAX_CONTAINER_ITEMS = 10_000
MAX_INT = 2**64 - 1
MIN_INT = -(2**63)


class CodecError(ValueError):
    """Bytes that are not a canonical encoding of an allowed value."""


def _canonical(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise CodecError("nested too deeply")
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise CodecError("integer out of range")
        return value
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_CONTAINER_ITEMS:
            raise CodecError("too many items")
        return [_canonical(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if len(value) > MAX_CONTAINER_ITEMS:
            raise CodecError("too many items")
        for key in value:
            if not isinstance(key, str):
                raise CodecError("map keys must be strings")
        return {key: _canonical(value[key], depth + 1) for key in sorted(value)}
    raise CodecError(f"type {type(value).__name__} cannot be encoded (no floats, no extensions)")


def encode(value: Any) -> bytes:
    """The canonical bytes of a value built from None, bool, int, str, bytes, list and dict."""
    return msgpack.packb(_canonical(value, 0), use_bin_type=True)


def _reject_ext(code: int, data: bytes) -> Any:
    raise CodecError("msgpack extension types are not allowed")


def decode(data: bytes, *, max_bytes: int) -> Any:
    """Decode canonical bytes; raises CodecError for anything that is not exactly canonical."""
    if len(data) > max_bytes:
        raise CodecError(f"encoding is {len(data)} bytes, limit {max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_reject_ext,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=MAX_CONTAINER_ITEMS,
            max_map_len=MAX_CONTAINER_ITEMS,
        )
    except CodecError:
        raise
    except msgpack.ExtraData as exc:
        raise CodecError("trailing bytes after the value") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CodecError(f"not valid msgpack: {exc}") from exc
    if encode(value) != data:
        raise CodecError("not the canonical encoding")
    return value
