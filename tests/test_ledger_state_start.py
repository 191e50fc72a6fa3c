"""Prefix scans from a start key: every state view (overlays over memory, the read cache, LevelDB)
yields exactly the dictionary model's keys under the prefix that are >= start, in order.

A distribution resumes its walk of the holders after the last one paid; these tests pin that a
resumed walk sees what a full walk would have seen from that point.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import balances, entitlements
from contracts.base import BlockContext, Context
from ledger.state import MemoryState, Overlay, ReadCache
from ledger.store import LedgerStore

KEYS = st.sampled_from([b"a", b"a\x1f1", b"a\x1f2", b"a\x1f2x", b"a\x1f3", b"ab", b"b", b"b\x1f1", b"c"])
VALUES = st.binary(min_size=1, max_size=3)
PREFIXES = st.sampled_from([b"", b"a", b"a\x1f", b"b", b"z"])
STARTS = st.none() | st.sampled_from([b"", b"a", b"a\x1f", b"a\x1f2", b"a\x1f2\x00", b"a\x1f9", b"b", b"zz"])
WRITES = st.dictionaries(KEYS, st.none() | VALUES)  # None: a deletion


def model_scan(view: dict[bytes, bytes], prefix: bytes, start: bytes | None) -> list[tuple[bytes, bytes]]:
    return sorted((k, v) for k, v in view.items() if k.startswith(prefix) and (start is None or k >= start))


def apply(view: dict[bytes, bytes], writes: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    out = dict(view)
    for key, value in writes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def stage(parent: object, writes: dict[bytes, bytes | None]) -> Overlay:
    overlay = Overlay(parent)  # type: ignore[arg-type]
    for key, value in writes.items():
        if value is None:
            overlay.delete(key)
        else:
            overlay.put(key, value)
    return overlay


@settings(max_examples=300)
@given(st.dictionaries(KEYS, VALUES), WRITES, WRITES, PREFIXES, STARTS)
def test_overlays_over_memory_and_cache_merge_from_a_start_key_like_the_model(base, lower, upper, prefix, start):
    block = stage(ReadCache(MemoryState(base)), lower)
    tx = stage(block, upper)
    assert list(block.iter_prefix(prefix, start)) == model_scan(apply(base, lower), prefix, start)
    assert list(tx.iter_prefix(prefix, start)) == model_scan(apply(apply(base, lower), upper), prefix, start)
    assert list(tx.iter_prefix(prefix)) == list(tx.iter_prefix(prefix, None))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(KEYS, VALUES), WRITES, PREFIXES, STARTS)
def test_the_store_on_disk_scans_from_a_start_key_like_the_model(tmp_path: Path, base, writes, prefix, start):
    store = LedgerStore(tmp_path / "data")
    try:
        with store.state._db.write_batch() as batch:  # the prefixed LevelDB view the store reads
            for key in [k for k, _ in store.state.iter_prefix(b"")]:
                batch.delete(key)
            for key, value in base.items():
                batch.put(key, value)
        assert list(store.state.iter_prefix(prefix, start)) == model_scan(base, prefix, start)
        overlay = stage(store.state, writes)
        assert list(overlay.iter_prefix(prefix, start)) == model_scan(apply(base, writes), prefix, start)
    finally:
        store.close()


def test_a_holder_walk_resumed_after_a_cursor_returns_the_next_chunk_only() -> None:
    base = MemoryState()
    ctx = Context(Overlay(base), BlockContext("c", 1, 1), None, ())
    accounts = [f"k{i:04d}" for i in range(50)]
    for account in accounts:
        ctx.put(balances.balance_key("EQ", account), [1, 0])
    walked: list[str] = []
    cursor = ""
    for _ in range(20):  # bounded: 50 holders in chunks of 7
        chunk = entitlements.holders_after(ctx, "EQ", cursor, 7)
        walked += [h.account for h in chunk]
        if len(chunk) < 7:
            break
        cursor = chunk[-1].account
    assert walked == accounts
