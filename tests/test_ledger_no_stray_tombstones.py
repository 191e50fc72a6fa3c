"""A block's deletion of a key the store does not hold writes no tombstone to LevelDB.

An order that rests and fills within one block is put and deleted in the block's overlay, so the
block's write set holds a deletion of a key that never reached the store. Written as a LevelDB
delete, it would leave a tombstone that every scan near it steps over until compaction removes
it (docs/STORAGE.md; what that cost the venue's per-block scans: docs/PERFORMANCE.md, seventh
session). These tests check that exactly the deletions of held keys reach LevelDB, that the
executor's read cache spares the lookups it can, and that the store's contents are the same as
with every deletion written.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import market_bench, orderbook
from contracts.registry import default_registry
from ledger.executor import Executor
from ledger.state import ReadCache
from ledger.store import EMPTY_POSITION, STATE_PREFIX, LedgerStore

ALL_KEYS = [b"freeze\x1fa\x1f*", b"auth\x1facct\x1fa", b"part\x1fa", b"bal\x1fEUR\x1fa", b"bal\x1fEUR\x1fb",
            b"mkt\x1ford\x1f\x00\x01", b"mkt\x1ford\x1f\x00\x02"]
KEYS = st.sampled_from(ALL_KEYS)
BLOCKS = st.lists(st.tuples(st.dictionaries(KEYS, st.none() | st.binary(max_size=4), max_size=6),
                            st.sets(KEYS)), max_size=10)


class _RecordingBatch:
    def __init__(self, inner: Any, deleted: list[bytes]) -> None:
        self._inner = inner
        self._deleted = deleted

    def __enter__(self) -> _RecordingBatch:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self._inner.__exit__(*exc)

    def put(self, key: bytes, value: bytes) -> None:
        self._inner.put(key, value)

    def delete(self, key: bytes) -> None:
        self._deleted.append(key)
        self._inner.delete(key)


class _RecordingDB:
    """The store's LevelDB handle, noting every delete its write batches carry."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.deleted: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    def write_batch(self, **options: Any) -> _RecordingBatch:
        return _RecordingBatch(self._db.write_batch(**options), self.deleted)


def _state(store: LedgerStore) -> dict[bytes, bytes]:
    return dict(store.state.iter_prefix(b""))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BLOCKS)
def test_only_deletions_of_held_keys_reach_leveldb_and_the_state_is_the_same(blocks):
    """Whatever the caller claims to know of some keys (true claims, as the read cache's are)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = LedgerStore(Path(tmp))
        recorder = _RecordingDB(store.db)
        store.db = recorder
        model: dict[bytes, bytes] = {}
        try:
            for writes, claimed in blocks:
                known = {key: key in model for key in claimed}
                recorder.deleted.clear()
                store.commit(writes, None, {}, EMPTY_POSITION, sync=False, presence=known.get)
                held_before = set(model)
                for key, value in writes.items():
                    if value is None:
                        model.pop(key, None)
                    else:
                        model[key] = value
                expected = sorted(STATE_PREFIX + key for key, value in writes.items()
                                  if value is None and key in held_before)
                assert sorted(recorder.deleted) == expected
                assert _state(store) == model
                for key in ALL_KEYS:
                    assert store.state.get(key) == model.get(key)
        finally:
            store.close()


def _venue(path: Path, **executor_options: Any) -> tuple[Executor, LedgerStore, Any, Any, str, int]:
    net = market_bench._network()
    sign = market_bench._Signer(net.sandbox)
    store = LedgerStore(path)
    executor = Executor(store, default_registry(), net.sandbox.genesis, verify_signatures=False, sync=False,
                        **executor_options)
    executor.init_genesis()
    isin, raft_index = market_bench._setup(executor, net, sign)
    return executor, store, net, sign, isin, raft_index


def test_an_order_that_rests_and_fills_in_one_block_leaves_no_tombstone(tmp_path: Path):
    executor, store, net, sign, isin, raft_index = _venue(tmp_path)
    recorder = _RecordingDB(store.db)
    store.db = recorder
    maker, taker = net.makers[0], net.takers[0]

    def block(*orders: tuple[Any, str]) -> list[bytes]:
        nonlocal raft_index
        raft_index += 1
        recorder.deleted.clear()
        txs = [market_bench._order(sign, isin, who, side, 1000) for who, side in orders]
        applied = executor.apply(net.sandbox.batch(txs), raft_index, 1)
        assert applied is not None and all(receipt.valid for receipt in applied.block.receipts)
        return [key for key in recorder.deleted if key.startswith(STATE_PREFIX + orderbook.ORDER_PREFIX)]

    try:
        # A sell rests and a buy fills it in the same block: its order record never reaches the store.
        assert block((maker, "sell"), (taker, "buy")) == []
        # A sell rests in one block and is filled in the next: its stored record is deleted.
        assert block((maker, "sell")) == []
        resting = [key for key in _state(store) if key.startswith(orderbook.ORDER_PREFIX)]
        assert len(resting) == 1
        assert block((taker, "buy")) == [STATE_PREFIX + resting[0]]
        assert not any(key.startswith(orderbook.ORDER_PREFIX) for key in _state(store))
    finally:
        store.close()


def test_the_state_equals_a_store_that_writes_every_deletion(tmp_path: Path):
    """The venue's bench flow (orders rest, fill, empty levels, in and across blocks) replayed
    through a read cache of four entries, which turns over all the time and forgets most keys,
    against a twin store that writes every deletion as before: the same state after each block."""
    skipping, store, net, sign, isin, raft_index = _venue(tmp_path / "skipping")
    skipping._reads = ReadCache(store.state, max_entries=4)
    writing, twin, *_ = _venue(tmp_path / "writing")
    twin_commit = twin.commit
    twin.commit = lambda *args, presence=None, **options: twin_commit(*args, **options)  # every deletion written
    held_deleted = 0
    try:
        txs = market_bench.resting_orders(sign, isin, net, 60) + market_bench.flow(sign, isin, net, 240)
        for start in range(0, len(txs), 7):  # 7: orders rest in one block and fill in another
            raft_index += 1
            batch = net.sandbox.batch(txs[start:start + 7])
            before = _state(store)
            for executor in (skipping, writing):
                applied = executor.apply(batch, raft_index, 1)
                assert applied is not None and all(receipt.valid for receipt in applied.block.receipts)
            after = _state(store)
            assert after == _state(twin)
            held_deleted += len(set(before) - set(after))
        assert held_deleted > 0  # the flow did delete stored keys, not only ones born in their block
    finally:
        store.close()
        twin.close()


def test_the_executor_asks_its_read_cache_before_looking_a_deletion_up(tmp_path: Path):
    executor, store, net, sign, isin, raft_index = _venue(tmp_path)
    looked_up: list[bytes] = []
    committing = False
    read = store.state.get

    def get(key: bytes) -> bytes | None:
        if committing:
            looked_up.append(key)
        return read(key)

    store.state.get = get  # type: ignore[method-assign]
    store_commit = store.commit

    def commit(*args: Any, **options: Any) -> None:
        nonlocal committing
        assert options.get("presence") is not None
        committing = True
        try:
            store_commit(*args, **options)
        finally:
            committing = False

    store.commit = commit  # type: ignore[method-assign]
    try:
        maker, taker = net.makers[0], net.takers[0]
        sell = market_bench._order(sign, isin, maker, "sell", 1000)
        raft_index += 1
        assert executor.apply(net.sandbox.batch([sell]), raft_index, 1) is not None
        executor._reads.clear()  # as if the sell had rested long ago: the cache knows none of its keys
        looked_up.clear()
        # The fill reads the resting order, its level and the best price, so the cache knows
        # those deletions are of held keys; it deletes the owner's index entry, which nothing
        # read: the one lookup.
        buy = market_bench._order(sign, isin, taker, "buy", 1000)
        raft_index += 1
        assert executor.apply(net.sandbox.batch([buy]), raft_index, 1) is not None
        assert len(looked_up) == 1 and looked_up[0].startswith(orderbook.account_prefix(maker.address))
        assert not any(key.startswith(orderbook.account_prefix(maker.address)) for key in _state(store))
    finally:
        store.close()


def test_a_replaced_store_gets_a_cache_that_knows_nothing_of_it(tmp_path: Path):
    executor, store, *_ = _venue(tmp_path / "a")
    key = orderbook.SEQUENCE_KEY
    executor._reads.get(key)
    assert executor._reads.presence(key) is not None
    other = LedgerStore(tmp_path / "b")
    try:
        executor.replace_store(other)
        assert executor._reads.presence(key) is None
    finally:
        store.close()
        other.close()


def test_an_interrupt_after_the_commit_leaves_no_stale_cache(tmp_path: Path):
    """The commit trusts the cache's "absent": an exception between the store's write and the
    cache hearing of it must drop the cache, not leave it describing the store before the block."""
    executor, store, net, sign, isin, raft_index = _venue(tmp_path)
    maker = net.makers[0]
    heard = executor._reads.committed

    def interrupted(writes: dict[bytes, bytes | None]) -> None:
        raise KeyboardInterrupt

    executor._reads.committed = interrupted  # type: ignore[method-assign]
    try:
        executor._reads.get(orderbook.SEQUENCE_KEY)
        sell = market_bench._order(sign, isin, maker, "sell", 1000)
        with pytest.raises(KeyboardInterrupt):
            executor.apply(net.sandbox.batch([sell]), raft_index + 1, 1)
        assert store.position.raft_index == raft_index + 1  # the block is on disk
        assert len(executor._reads) == 0
    finally:
        executor._reads.committed = heard  # type: ignore[method-assign]
        store.close()
