"""The durable Raft log on LevelDB: what a node reloads after a crash is what it persisted,
a conflicting suffix is replaced, compaction and interrupted snapshot installs recover.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.messages import ConfState, Entry, HardState, SnapshotMeta
from consensus.storage import LevelDBLogStore, MemoryLogStore

CONF = ConfState(("a", "b", "c"))


def ents(first: int, terms: list[int]) -> list[Entry]:
    return [Entry(t, first + i, data=b"%d/%d" % (first + i, t)) for i, t in enumerate(terms)]


def reopen(path: Path) -> tuple:
    store = LevelDBLogStore(path)
    try:
        return store.load(CONF)
    finally:
        store.close()


def test_fresh_store_loads_the_bootstrap_membership(tmp_path: Path) -> None:
    state, pending = reopen(tmp_path / "log")
    assert state.snapshot == SnapshotMeta(0, 0, CONF) and state.entries == () and pending is None


def test_saved_state_survives_reopen_and_suffix_is_replaced(tmp_path: Path) -> None:
    store = LevelDBLogStore(tmp_path / "log")
    store.load(CONF)
    store.save(HardState(2, "a", 3), ents(1, [1, 1, 2, 2, 2]), None)
    store.save(HardState(3, "b", 3), ents(4, [3]), None)  # conflict at 4: 5 must go
    store.close()
    state, _ = reopen(tmp_path / "log")
    assert state.hard_state == HardState(3, "b", 3)
    assert [(e.index, e.term) for e in state.entries] == [(1, 1), (2, 1), (3, 2), (4, 3)]


def test_compaction_and_snapshot_install_reset_the_log_start(tmp_path: Path) -> None:
    store = LevelDBLogStore(tmp_path / "log")
    store.load(CONF)
    store.save(HardState(1, "a", 4), ents(1, [1, 1, 1, 1]), None)
    store.compact(SnapshotMeta(2, 1, CONF))
    store.close()
    state, _ = reopen(tmp_path / "log")
    assert state.snapshot.index == 2 and [e.index for e in state.entries] == [3, 4]
    store = LevelDBLogStore(tmp_path / "log")
    store.load(CONF)
    store.save(HardState(5, "", 10), ents(11, [5]), SnapshotMeta(10, 4, CONF))
    store.close()
    state, _ = reopen(tmp_path / "log")
    assert state.snapshot.index == 10 and [e.index for e in state.entries] == [11]


def test_an_interrupted_snapshot_install_is_reported_at_load(tmp_path: Path) -> None:
    store = LevelDBLogStore(tmp_path / "log")
    store.load(CONF)
    meta = SnapshotMeta(7, 2, CONF)
    store.mark_snapshot_pending(meta)
    store.close()
    _, pending = reopen(tmp_path / "log")
    assert pending == meta


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.lists(st.integers(1, 3), min_size=1,
                                                       max_size=4)), max_size=8))
def test_leveldb_store_matches_the_in_memory_model(tmp_path_factory, ops) -> None:
    path = tmp_path_factory.mktemp("log")
    disk, model = LevelDBLogStore(path), MemoryLogStore()
    disk.load(CONF)
    last, term = 0, 1
    for back, terms in ops:
        first = max(1, last + 1 - back)
        term = max(term, *terms)
        batch = ents(first, sorted(terms))
        disk.save(HardState(term, "", 0), batch, None)
        model.save(HardState(term, "", 0), batch, None)
        last = batch[-1].index
    disk.close()
    got, _ = reopen(path)
    want, _ = model.load(CONF)
    assert got == want
