"""The Raft log's byte bound: what the node relies on to keep its memory bounded whatever the
size of its entries. Byte accounting survives appends, conflicting suffixes, compaction and
snapshot restores; the compaction target keeps a tail within both bounds; compacted entries
really leave memory (tracemalloc) and leave the LevelDB log store.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.driver import DriverConfig
from consensus.log import RaftLog
from consensus.messages import ConfState, Entry, HardState, SnapshotMeta
from consensus.storage import LevelDBLogStore
from keiretsu_node.config import ConfigError, parse_network

CONF = ConfState(("a",))
MIB = 1024 * 1024


def fresh_log() -> RaftLog:
    return RaftLog(SnapshotMeta(0, 0, CONF), [], 0, 0)


def held_bytes(log: RaftLog) -> int:
    return sum(e.size_bytes() for e in log.entries)


ops = st.lists(st.one_of(
    st.tuples(st.just("append"), st.lists(st.integers(0, 300), min_size=1, max_size=5)),
    st.tuples(st.just("conflict"), st.integers(0, 10), st.integers(0, 300)),
    st.tuples(st.just("compact"), st.integers(0, 20), st.integers(0, 2_000)),
    st.just(("restore",)),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_byte_accounting_matches_the_entries_held_after_any_history(history) -> None:
    log, term = fresh_log(), 1
    for op in history:
        if op[0] == "append":
            first = log.last_index() + 1
            log.append([Entry(term, first + i, data=b"x" * n) for i, n in enumerate(op[1])])
        elif op[0] == "conflict" and log.last_index() > log.committed:
            at = max(log.committed + 1, log.last_index() - op[1])
            term += 1
            log.append([Entry(term, at, data=b"y" * op[2])])
        elif op[0] == "compact":
            log.commit_to(log.last_index())
            log.applied_to(log.committed)
            log.stable_to(log.last_index(), log.last_term())
            target = log.compaction_target(log.applied, op[1], op[2])
            tail = log.entries[target - log.snapshot.index:log.applied - log.snapshot.index]
            assert len(tail) <= op[1] and sum(e.size_bytes() for e in tail) <= op[2]
            if target > log.snapshot.index:  # maximal: one entry more would break a bound
                wider = log.entries[target - log.snapshot.index - 1:]
                assert len(wider) > op[1] or sum(e.size_bytes() for e in wider) > op[2]
                log.compact(target, CONF)
        elif op[0] == "restore":
            log.restore(SnapshotMeta(log.last_index() + 3, term, CONF))
            log.snapshot_installed(log.snapshot)
        assert log.size_bytes() == held_bytes(log)
        for index in range(log.snapshot.index, log.last_index() + 1):
            assert log.bytes_through(index) == held_bytes(log) - sum(
                e.size_bytes() for e in log.entries[index - log.snapshot.index:])


def test_compacted_entries_leave_memory() -> None:
    """64 entries of 256 KiB (as seeding's admit batches): compacting all but a 1 MiB tail frees
    about 15 MiB, measured, not assumed (nothing else keeps the entries alive)."""
    tracemalloc.start()
    try:
        log = fresh_log()
        log.append([Entry(1, i, data=bytes([i % 251]) * (256 * 1024)) for i in range(1, 65)])
        log.commit_to(64)
        log.applied_to(64)
        log.stable_to(64, 1)
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        target = log.compaction_target(64, keep_entries=1_000, keep_bytes=MIB)
        log.compact(target, CONF)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert log.size_bytes() <= MIB and len(log.entries) == 3
    assert before - after >= 15 * MIB


def test_the_leveldb_log_store_forgets_compacted_entries(tmp_path: Path) -> None:
    store = LevelDBLogStore(tmp_path / "log")
    store.load(CONF)
    store.save(HardState(1, "a", 40), [Entry(1, i, data=b"z" * 1000) for i in range(1, 41)], None)
    store.compact(SnapshotMeta(37, 1, CONF))
    store.close()
    store = LevelDBLogStore(tmp_path / "log")
    try:
        state, _ = store.load(CONF)
    finally:
        store.close()
    assert state.snapshot.index == 37 and [e.index for e in state.entries] == [38, 39, 40]


def test_byte_bounds_are_checked_at_the_door(tmp_path: Path) -> None:
    """A tail as large as the trigger would make every round try to compact and find nothing:
    the node's TOML and the driver's config both refuse it, naming the field."""
    raw = {"chain_id": "c", "nodes": [{"name": "n1", "host": "127.0.0.1", "p2p_port": 1, "api_port": 2}]}
    assert parse_network(raw).consensus.compact_after_bytes == 16 * MIB
    bad = {**raw, "consensus": {"compact_after_bytes": MIB, "compact_keep_bytes": MIB}}
    with pytest.raises(ConfigError, match="compact_keep_bytes"):
        parse_network(bad)
    with pytest.raises(ValueError, match="compact_keep_bytes"):
        DriverConfig("a", ("a",), tmp_path, compact_after_bytes=MIB, compact_keep_bytes=2 * MIB)
