"""What the fifth session's shortcuts in the executor's skeleton must keep true.

Overlays file their staged keys by scan family and find the keys staged since the last scan
from the tail of their write dict; integer arguments are checked against bounds inline; a
block's history keys are built from per-block parts. None of that may change an answer: a scan
sees every staged key under its prefix however writes, scans and merges interleave, an integer
out of bounds is refused, and every history key is history_key's.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.base import AMOUNT, INT, NAME, UINT, MethodTable
from ledger.reasons import ContractError, Reason
from ledger.state import MemoryState, Overlay, ReadCache, scan_family
from ledger.store import HISTORY_PREFIX, HISTORY_TX, HistoryEntry, history_key, index_transactions
from tests.test_ledger_state import expected_view

# ---------------------------------------------------------------- scans by family

# Keys of one, two and three parts in two families under "a" and one under "b", so that scans
# of two-part prefixes (one family), one-part prefixes (several) and bare bytes all occur.
KEYS = st.sampled_from([b"a", b"a\x1f1", b"a\x1f1\x1fx", b"a\x1f1\x1fy", b"a\x1f1\x1fy\x1fz", b"a\x1f2\x1fx",
                        b"a\x1f2x", b"a\x1f2\x1f", b"b\x1f1\x1fx", b"b\x1f1"])
PREFIXES = st.sampled_from([b"", b"a", b"a\x1f", b"a\x1f1\x1f", b"a\x1f1\x1fy", b"a\x1f1\x1fy\x1f", b"a\x1f2\x1f",
                            b"b\x1f1\x1f", b"a\x1f1"])
STARTS = st.none() | st.sampled_from([b"a\x1f1\x1fy", b"a\x1f1\x1fx\x00", b"a\x1f2", b"b"])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 1), KEYS, st.binary(min_size=1, max_size=2)),
        st.tuples(st.just("delete"), st.integers(0, 1), KEYS),
        st.tuples(st.just("scan"), st.integers(0, 1), PREFIXES, STARTS),
        st.tuples(st.just("merge"),),
    ),
    max_size=30,
)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(KEYS, st.binary(min_size=1, max_size=2)), STEPS)
def test_scans_between_writes_and_merges_see_exactly_the_model(base, steps) -> None:
    block = Overlay(ReadCache(MemoryState(base)))
    levels = [block, block.child()]
    staged: list[dict[bytes, bytes | None]] = [{}, {}]
    for step in steps:
        if step[0] == "merge":  # the transaction's overlay into the block's, a new one on top
            levels[1].merge_into(levels[0])
            staged[0].update(staged[1])
            levels[1], staged[1] = levels[0].child(), {}
        elif step[0] == "put":
            levels[step[1]].put(step[2], step[3])
            staged[step[1]][step[2]] = step[3]
        elif step[0] == "delete":
            levels[step[1]].delete(step[2])
            staged[step[1]][step[2]] = None
        else:
            _, level, prefix, start = step
            view = expected_view(base, staged, level)
            expected = sorted((k, v) for k, v in view.items() if k.startswith(prefix) and (start is None or k >= start))
            assert list(levels[level].iter_prefix(prefix, start)) == expected


@given(st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"\x1f")), st.binary(max_size=6))
def test_every_key_under_a_prefix_of_two_parts_is_of_the_prefix_family(prefix: bytes, rest: bytes) -> None:
    if prefix.count(b"\x1f") >= 2:
        assert scan_family(prefix + rest) == scan_family(prefix)


# ---------------------------------------------------------------- integer arguments


def _method(**params: Any) -> Any:
    table = MethodTable()

    @table.method(**params)
    def call(ctx: Any, **_: Any) -> None:
        return None

    return table.methods["call"]


@given(st.integers(-(2**64), 2**64) | st.booleans())
def test_an_integer_argument_passes_exactly_when_its_type_check_does(value: int) -> None:
    for arg_type in (UINT, AMOUNT, INT):
        method = _method(n=arg_type)
        if arg_type.check(value):
            method.check_args({"n": value})
        else:
            with pytest.raises(ContractError) as refused:
                method.check_args({"n": value})
            assert refused.value.reason is Reason.BAD_ARGUMENTS


def _reference_refusal(params: dict[str, Any], optional: set[str], args: dict[str, Any]) -> str | None:
    """The declaration-order walk check_args has always done: the detail of its refusal, or None."""
    unknown = sorted(set(args) - set(params))
    if unknown:
        return f"unknown argument(s) {unknown}"
    for name, arg_type in params.items():
        if name not in args:
            if name in optional:
                continue
            return f"missing argument {name!r}"
        if not arg_type.check(args[name]):
            return f"argument {name!r} must be {arg_type.name}"
    return None


ARG_VALUES = st.one_of(st.integers(-3, 3), st.sampled_from(["", "ok", "x" * 70, "a b"]), st.booleans(), st.none())


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "zz"]), ARG_VALUES, max_size=5))
def test_check_args_refuses_exactly_as_the_declaration_order_walk_names_it(args: dict[str, Any]) -> None:
    params = {"d": UINT, "a": NAME, "c": AMOUNT, "b": NAME}
    table = MethodTable()

    @table.method(optional=("b", "c"), **params)
    def call(ctx: Any, **_: Any) -> None:
        return None

    expected = _reference_refusal(params, {"b", "c"}, args)
    for _ in range(2):  # the second time, remembered texts take the fast path
        if expected is None:
            table.methods["call"].check_args(args)
        else:
            with pytest.raises(ContractError) as refused:
                table.methods["call"].check_args(args)
            assert (refused.value.reason, refused.value.detail) == (Reason.BAD_ARGUMENTS, expected)


# ---------------------------------------------------------------- history keys


@settings(max_examples=50)
@given(st.integers(0, 2**64 - 1), st.lists(st.lists(st.sampled_from(["a", "bb", "EUR", "é"]), max_size=3),
                                          max_size=12))
def test_a_blocks_history_keys_are_history_key_of_each_subject(height: int, subjects: list[list[str]]) -> None:
    index: dict[bytes, bytes] = {}
    ids = [position.to_bytes(32, "big") for position in range(len(subjects))]
    index_transactions(index, height, ids, subjects)
    expected = {history_key(subject, HistoryEntry(height, HISTORY_TX, position))
                for position, tx_subjects in enumerate(subjects) for subject in tx_subjects}
    assert {key for key in index if key.startswith(HISTORY_PREFIX)} == expected
