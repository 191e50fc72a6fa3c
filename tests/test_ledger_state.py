"""State views: stacked overlays and the read cache behave exactly like one plain dictionary."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.query import ReadOnlyState
from ledger.reasons import InvariantViolation
from ledger.state import MemoryState, Overlay, ReadCache, prefix_of, state_key

KEYS = st.sampled_from([b"a", b"a\x1f1", b"a\x1f2", b"ab", b"b", b"b\x1f1", b"c"])
VALUES = st.binary(min_size=1, max_size=3)
PREFIXES = st.sampled_from([b"", b"a", b"a\x1f", b"b", b"c", b"z"])
# one step: write or delete a key at some overlay level, or commit the top overlay into its parent
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 2), KEYS, VALUES),
        st.tuples(st.just("delete"), st.integers(0, 2), KEYS),
        st.tuples(st.just("merge"), st.integers(1, 2)),
    ),
    max_size=40,
)


def expected_view(base: dict[bytes, bytes], staged: list[dict[bytes, bytes | None]], level: int) -> dict:
    view = dict(base)
    for writes in staged[:level + 1]:
        for key, value in writes.items():
            if value is None:
                view.pop(key, None)
            else:
                view[key] = value
    return view


@settings(max_examples=200)
@given(st.dictionaries(KEYS, VALUES), STEPS, PREFIXES)
def test_three_stacked_overlays_read_like_the_dictionary_they_stand_for(base, steps, prefix):
    bottom = MemoryState(base)
    levels = [Overlay(bottom)]
    levels.append(Overlay(levels[0]))
    levels.append(Overlay(levels[1]))
    staged: list[dict[bytes, bytes | None]] = [{}, {}, {}]  # the test's own record of each level
    for step in steps:
        if step[0] == "merge":
            level = step[1]
            levels[level].merge_into(levels[level - 1])
            staged[level - 1].update(staged[level])
            for upper in range(level, 3):  # the merged level and those above start afresh
                levels[upper] = Overlay(levels[upper - 1])
                staged[upper] = {}
        elif step[0] == "put":
            levels[step[1]].put(step[2], step[3])
            staged[step[1]][step[2]] = step[3]
        else:
            levels[step[1]].delete(step[2])
            staged[step[1]][step[2]] = None
    all_keys = set(base) | {key for writes in staged for key in writes}
    for number, level in enumerate(levels):
        view = expected_view(base, staged, number)
        assert {k: level.get(k) for k in all_keys} == {k: view.get(k) for k in all_keys}
        assert list(level.iter_prefix(prefix)) == sorted((k, v) for k, v in view.items() if k.startswith(prefix))
    assert bottom.items == base  # nothing leaks into the reader underneath


@settings(max_examples=100)
@given(st.dictionaries(KEYS, VALUES), st.lists(st.tuples(KEYS, st.none() | VALUES), max_size=20))
def test_the_read_cache_stays_equal_to_what_it_caches(base, writes):
    store = MemoryState(base)
    cache = ReadCache(store, max_entries=3)  # tiny, so it overflows and clears
    for key, value in writes:
        assert cache.get(key) == store.get(key)
        committed = {key: value}
        if value is None:
            store.items.pop(key, None)
        else:
            store.items[key] = value
        cache.committed(committed)
        assert cache.get(key) == store.get(key)
    assert all(cache.get(k) == store.get(k) for k in base)


def test_keys_compose_sort_and_refuse_what_would_be_ambiguous():
    assert state_key("bal", "EUR", "kx1") == b"bal\x1fEUR\x1fkx1"
    assert state_key("h", 1) < state_key("h", 2) < state_key("h", 256)
    assert state_key("a", b"\x00\x01") == b"a\x1f\x00\x01"
    assert prefix_of("bal", "EUR") == b"bal\x1fEUR\x1f"
    assert state_key("a", bytearray(b"x")) == b"a\x1fx"
    with pytest.raises(ValueError):
        state_key("a\x1fb")
    with pytest.raises(ValueError):
        state_key("x" * 129)
    with pytest.raises(TypeError):
        state_key(True)
    with pytest.raises(OverflowError):
        state_key(-1)


def test_merging_into_a_read_only_overlay_still_refuses_the_writes():
    child = Overlay(ReadOnlyState(MemoryState({})))
    child.put(b"k", b"v")
    with pytest.raises(InvariantViolation):
        child.merge_into(child.parent)  # type: ignore[arg-type]
