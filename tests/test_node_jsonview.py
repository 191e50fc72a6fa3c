"""jsonview.safe: its exact-type fast paths give what the plain isinstance walk gives."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from keiretsu_node.jsonview import safe


def reference_safe(value: Any) -> Any:
    """The walk as it was before the fast paths (keiretsu_node/jsonview.py at 6db145e)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): reference_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [reference_safe(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: reference_safe(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


class Side(enum.IntEnum):
    BUY = 1


class Label(enum.StrEnum):
    OPEN = "open"


@dataclass(frozen=True)
class Point:
    x: int
    tag: bytes


leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.binary(max_size=8),
                   st.floats(allow_nan=False), st.just(Side.BUY), st.just(Label.OPEN),
                   st.builds(Point, st.integers(), st.binary(max_size=4)))
keys = st.one_of(st.text(max_size=6), st.integers(), st.just(Label.OPEN))
values = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.lists(inner, max_size=4).map(tuple),
                                                      st.dictionaries(keys, inner, max_size=4)),
                      max_leaves=20)


@given(values)
def test_safe_matches_the_reference_walk(value: Any) -> None:
    out, expected = safe(value), reference_safe(value)
    assert out == expected
    if isinstance(expected, dict):  # keys are str either way, even from a str-valued enum
        assert [type(k) for k in out] == [type(k) for k in expected]
