"""ReadCache keeps the keys every block reads across a turnover, and never serves a stale value."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.state import MemoryState, ReadCache


class CountingState(MemoryState):
    def __init__(self, items: dict[bytes, bytes]) -> None:
        super().__init__(items)
        self.reads: dict[bytes, int] = {}

    def get(self, key: bytes) -> bytes | None:
        self.reads[key] = self.reads.get(key, 0) + 1
        return super().get(key)


def test_a_key_read_in_every_block_survives_the_turnovers() -> None:
    store = CountingState({b"currency": b"MXN", **{b"k%d" % i: b"v" for i in range(1000)}})
    cache = ReadCache(store, max_entries=20)
    for i in range(1000):
        assert cache.get(b"currency") == b"MXN"
        assert cache.get(b"k%d" % i) == b"v"
    assert store.reads[b"currency"] == 1
    assert len(cache) <= 20


KEYS = st.binary(min_size=1, max_size=2)
# A store's starting items, then reads and commits (a write set each, None deleting), and a bound.
HISTORIES = (st.dictionaries(KEYS, st.binary(max_size=3)),
             st.lists(st.one_of(st.tuples(st.just("read"), KEYS),
                                st.tuples(st.just("commit"), st.dictionaries(KEYS, st.none() | st.binary(max_size=3),
                                                                             max_size=4))), max_size=40),
             st.integers(min_value=1, max_value=6))


def _commit(store: MemoryState, cache: ReadCache, writes: dict[bytes, bytes | None]) -> None:
    """What the executor does: the store takes the write set, then the cache hears of it."""
    for key, value in writes.items():
        if value is None:
            store.items.pop(key, None)
        else:
            store.items[key] = value
    cache.committed(dict(writes))


@settings(max_examples=200, deadline=None)
@given(*HISTORIES)
def test_reads_always_equal_the_store(base, steps, max_entries):
    store = MemoryState(base)
    cache = ReadCache(store, max_entries=max_entries)
    for kind, arg in steps:
        if kind == "read":
            assert cache.get(arg) == store.get(arg)
            continue
        _commit(store, cache, arg)
        assert len(cache) <= 2 * max(1, max_entries // 2) + max(0, len(arg))
    assert all(cache.get(k) == store.get(k) for k in set(base) | set(store.items))


@settings(max_examples=200, deadline=None)
@given(*HISTORIES)
def test_what_it_knows_of_a_keys_presence_is_what_the_store_holds(base, steps, max_entries):
    """The store leaves out a deletion the cache says is of an absent key: a wrong "absent" would
    leave a deleted value in the store."""
    store = MemoryState(base)
    cache = ReadCache(store, max_entries=max_entries)
    seen: set[bytes] = set(base)
    for kind, arg in steps:
        if kind == "read":
            cache.get(arg)
            seen.add(arg)
        else:
            _commit(store, cache, arg)
            seen.update(arg)
        for key in seen:
            known = cache.presence(key)
            if known is not None:
                assert known == (store.get(key) is not None)
    absent_read = b"\xff\xff\xff"  # longer than any generated key: never in the store
    assert cache.presence(absent_read) is None
    cache.get(absent_read)
    assert cache.presence(absent_read) is False
