"""Blocks live in a file beside LevelDB, which keeps a pointer to each (ledger/blockfile.py).

What a node relies on: a block acknowledged is readable after any crash; a crash between the
block's record and the batch that names it (the two syncs of a commit) leaves the store at the
block before, as if the block had never been written; a torn or stray tail is cut off at open;
damage is refused, never served; an older store upgrades; a snapshot carries the blocks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import plyvel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.registry import default_registry
from ledger import blockfile
from ledger.blockfile import BLOCK_FILE_NAME, POINTER_BYTES, RECORD_HEAD_BYTES, BlockFile, BlockFileError
from ledger.executor import Executor
from ledger.sandbox import SANDBOX_CURRENCY as EUR
from ledger.sandbox import make_sandbox
from ledger.store import BLOCK_PREFIX, META_FORMAT, STATE_PREFIX, LedgerStore, StoreError

BOX = make_sandbox(3, label="blockfile")
BLOCKS = 6


class Crash(BaseException):
    """The process dying where the test says (BaseException, as an interrupt is)."""


def _batches() -> list[bytes]:
    a, b, c = BOX.holders
    mints = [BOX.call(BOX.agent, "cash", "mint", {"currency": EUR, "to": h.address, "amount": 10**6,
                                                  "deposit_ref": "d"}, nonce=i) for i, h in enumerate(BOX.holders)]
    out = [BOX.batch(mints)]
    for n in range(1, BLOCKS + 2):
        pays = [BOX.call(src, "cash", "transfer", {"currency": EUR, "to": dst.address, "amount": n + k},
                         nonce=100 * n + k)
                for k, (src, dst) in enumerate([(a, b), (b, c), (c, a)])]
        out.append(BOX.batch(pays, BOX.genesis.genesis_time_ms + n))
    return out


BATCHES = _batches()


def _open(path: Path) -> tuple[LedgerStore, Executor]:
    store = LedgerStore(path)
    executor = Executor(store, default_registry(), BOX.genesis, sync=True)
    executor.init_genesis()
    return store, executor


def _apply(executor: Executor, first: int, last: int) -> None:
    for raft_index in range(first, last + 1):
        executor.apply(BATCHES[raft_index - 1], raft_index, 1)


def _state(store: LedgerStore) -> dict[bytes, bytes]:
    with store.db.iterator(prefix=STATE_PREFIX) as it:
        return dict(it)


def _record_end(store: LedgerStore) -> int:
    """Where the last block's record ends in the file."""
    return store._last_block_end()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Block hashes and final state of an uncrashed run over every batch."""
    store, executor = _open(tmp_path_factory.mktemp("reference") / "ledger")
    try:
        _apply(executor, 1, len(BATCHES))
        return {"hashes": [store.block(h).hash() for h in range(store.position.height + 1)],
                "state": _state(store)}
    finally:
        store.close()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed store holding genesis and BLOCKS blocks."""
    path = tmp_path_factory.mktemp("base") / "ledger"
    store, executor = _open(path)
    _apply(executor, 1, BLOCKS)
    store.close()
    return path


def _copy(base: Path, into: Path) -> Path:
    shutil.copytree(base, into)
    return into


def _finish_and_compare(path: Path, reference: dict[str, object]) -> None:
    """Reopen, check every block, apply the rest, and end where the uncrashed run ended."""
    store, executor = _open(path)
    try:
        store.verify_blocks()
        _apply(executor, store.position.raft_index + 1, len(BATCHES))
        store.verify_blocks()
        assert [store.block(h).hash() for h in range(store.position.height + 1)] == reference["hashes"]
        assert _state(store) == reference["state"]
    finally:
        store.close()


def test_leveldb_holds_a_pointer_per_block_and_no_block(base: Path, tmp_path: Path) -> None:
    store = LedgerStore(_copy(base, tmp_path / "ledger"))
    try:
        with store.db.iterator(prefix=BLOCK_PREFIX) as it:
            values = [value for _, value in it]
        assert len(values) == BLOCKS + 1
        assert {len(v) for v in values} == {POINTER_BYTES}
        assert os.stat(tmp_path / "ledger" / BLOCK_FILE_NAME).st_mode & 0o777 == 0o600
    finally:
        store.close()


@pytest.mark.parametrize("reopen", [True, False], ids=["then-restart", "then-retry-in-process"])
def test_a_crash_after_the_record_is_synced_but_before_its_batch_leaves_the_block_before(
        base: Path, tmp_path: Path, reference: dict[str, object], reopen: bool) -> None:
    path = _copy(base, tmp_path / "ledger")
    store, executor = _open(path)
    before, state_before, end_before = store.position, _state(store), _record_end(store)
    append = store.blocks.append

    def append_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
        append(*args, **kwargs)  # the record is in the file, synced; its pointer never lands
        raise Crash

    store.blocks.append = append_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        _apply(executor, BLOCKS + 1, BLOCKS + 1)
    assert os.path.getsize(path / BLOCK_FILE_NAME) > end_before  # the unnamed record is there
    assert store.position == before and _state(store) == state_before
    assert store.block(BLOCKS + 1) is None
    store.blocks.append = append  # type: ignore[method-assign]
    if reopen:
        store.close()
        reopened = LedgerStore(path)
        assert reopened.position == before
        assert os.path.getsize(path / BLOCK_FILE_NAME) == end_before  # cut off at open
        reopened.close()
    else:  # the next block overwrites the unnamed record rather than following it
        _apply(executor, BLOCKS + 1, BLOCKS + 1)
        store.close()
    _finish_and_compare(path, reference)


class _NotingDB:
    """A LevelDB handle noting in `events` each synced write (a batch when it is written, a put),
    and optionally failing a batch after it was written, as an interrupt just after could."""

    def __init__(self, db: object, events: list[str], *, fail_after_batch: bool = False) -> None:
        self.inner, self._events, self.fail_after_batch = db, events, fail_after_batch

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def put(self, key: bytes, value: bytes, *, sync: bool = False) -> None:
        self.inner.put(key, value, sync=sync)
        self._events.append(f"put sync={sync}")

    def write_batch(self, **options: object):  # type: ignore[no-untyped-def]
        inner, events, outer = self.inner.write_batch(**options), self._events, self

        class Noting:
            def __enter__(self):  # type: ignore[no-untyped-def]
                return inner.__enter__()

            def __exit__(self, *exc: object) -> object:
                out = inner.__exit__(*exc)
                events.append(f"batch sync={options.get('sync')}")
                if outer.fail_after_batch and exc[0] is None:
                    raise Crash
                return out

        return Noting()


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Events list noting each data sync of a block file under tmp_path (not of any other file)."""
    events: list[str] = []
    real_sync = blockfile.sync_data

    def noting_sync(fd: int) -> None:
        real_sync(fd)
        synced_file = os.fstat(fd)
        if any(os.path.samestat(synced_file, os.stat(f)) for f in tmp_path.rglob(BLOCK_FILE_NAME)):
            events.append("records synced")

    monkeypatch.setattr(blockfile, "sync_data", noting_sync)
    return events


def test_a_blocks_record_is_synced_before_the_batch_that_names_it(base: Path, tmp_path: Path,
                                                                 synced: list[str]) -> None:
    """The order that makes a pointer on disk always name a whole record, after a power cut."""
    store, executor = _open(_copy(base, tmp_path / "ledger"))
    store.db = _NotingDB(store.db, synced)  # type: ignore[assignment]
    try:
        _apply(executor, BLOCKS + 1, BLOCKS + 1)
        assert synced == ["records synced", "batch sync=True"]
    finally:
        store.db = store.db.inner  # type: ignore[attr-defined]
        store.close()


def test_a_batch_that_landed_before_a_failure_keeps_its_record(base: Path, tmp_path: Path,
                                                               reference: dict[str, object]) -> None:
    """The end after a failed commit follows LevelDB: a record its batch named is not overwritten."""
    path = _copy(base, tmp_path / "ledger")
    store, executor = _open(path)
    store.db = _NotingDB(store.db, [], fail_after_batch=True)  # type: ignore[assignment]
    with pytest.raises(Crash):
        _apply(executor, BLOCKS + 1, BLOCKS + 1)
    store.db = store.db.inner  # type: ignore[attr-defined]
    assert store.blocks.end == _record_end(store) == os.path.getsize(path / BLOCK_FILE_NAME)
    assert store.block(BLOCKS + 1) is not None
    # The applied position follows LevelDB too: the same entry, retried in this process, is
    # skipped (a stale position applied it twice, as a second block at the same height).
    assert store.position.height == BLOCKS + 1 and store.position.raft_index == BLOCKS + 1
    assert executor.apply(BATCHES[BLOCKS], BLOCKS + 1, 1) is None
    store.close()
    _finish_and_compare(path, reference)


def test_a_failed_commit_whose_end_cannot_be_read_refuses_more_records(base: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store, executor = _open(_copy(base, tmp_path / "ledger"))
    try:
        store.db = _NotingDB(store.db, [], fail_after_batch=True)  # type: ignore[assignment]

        def unreadable() -> int:
            raise RuntimeError("LevelDB is gone")

        monkeypatch.setattr(store, "_last_block_end", unreadable)
        with pytest.raises(Crash):  # the commit's own failure, not the rewind's
            _apply(executor, BLOCKS + 1, BLOCKS + 1)
        with pytest.raises(BlockFileError, match="end is unknown"):
            store.blocks.append(BLOCKS + 2, b"x", sync=False)
    finally:
        store.db = store.db.inner  # type: ignore[attr-defined]
        store.close()


@pytest.fixture(scope="module")
def next_record(base: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes block BLOCKS + 1 appends to the file."""
    path = _copy(base, tmp_path_factory.mktemp("next") / "ledger")
    store, executor = _open(path)
    end = _record_end(store)
    _apply(executor, BLOCKS + 1, BLOCKS + 1)
    store.close()
    return (path / BLOCK_FILE_NAME).read_bytes()[end:]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(data=st.data())
def test_a_torn_or_stray_tail_is_cut_off_and_the_ledger_goes_on(base: Path, next_record: bytes,
                                                                  reference: dict[str, object], data) -> None:
    """A power cut can leave any prefix of the next record, or garbage, after the last named one."""
    record = next_record
    tail = data.draw(st.one_of(
        st.integers(1, len(record) - 1).map(lambda n: record[:n]),
        st.binary(min_size=1, max_size=2 * RECORD_HEAD_BYTES),
        st.just(record),  # whole, but its batch never landed
    ), label="tail")
    with tempfile.TemporaryDirectory() as tmp:
        path = _copy(base, Path(tmp) / "ledger")
        with open(path / BLOCK_FILE_NAME, "ab") as f:
            f.write(tail)
        store = LedgerStore(path)
        end = _record_end(store)
        store.close()
        assert os.path.getsize(path / BLOCK_FILE_NAME) == end
        _finish_and_compare(path, reference)


def test_a_damaged_record_is_refused_at_the_check_and_at_a_read(base: Path, tmp_path: Path) -> None:
    path = _copy(base, tmp_path / "ledger")
    store = LedgerStore(path)
    pointer = store.db.get(BLOCK_PREFIX + (3).to_bytes(8, "big"))
    offset = int.from_bytes(pointer[:8], "big")
    store.close()
    with open(path / BLOCK_FILE_NAME, "r+b") as f:
        f.seek(offset + RECORD_HEAD_BYTES + 5)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    store = LedgerStore(path)  # the tail is whole: opening does not read every record
    try:
        with pytest.raises(StoreError, match="damaged"):
            store.verify_blocks()
        with pytest.raises(StoreError, match="block 3"):
            store.block(3)
        assert store.block(2) is not None
        with pytest.raises(StoreError, match="block 4"):  # a pointer to another height's record
            store._block_at(4, store.db.get(BLOCK_PREFIX + (2).to_bytes(8, "big")))
    finally:
        store.close()


@pytest.mark.parametrize("cut", ["shorter", "deleted"])
def test_a_block_file_missing_acknowledged_blocks_is_refused_at_open(base: Path, tmp_path: Path, cut: str) -> None:
    path = _copy(base, tmp_path / "ledger")
    if cut == "deleted":
        (path / BLOCK_FILE_NAME).unlink()
    else:
        os.truncate(path / BLOCK_FILE_NAME, os.path.getsize(path / BLOCK_FILE_NAME) - 1)
    with pytest.raises(StoreError, match="blocks"):
        LedgerStore(path)
    assert (cut == "deleted") != (path / BLOCK_FILE_NAME).exists()  # refused as found, not repaired


def _as_format_1(path: Path) -> list[bytes]:
    """Rewrite a store into format 1's layout (each block whole under its height key, no file),
    returning the blocks' bytes."""
    store = LedgerStore(path)
    heights = range(store.position.height + 1)
    blocks = [store.block_bytes(h) for h in heights]
    with store.db.write_batch() as batch:
        for h, raw in zip(heights, blocks, strict=True):
            batch.put(BLOCK_PREFIX + h.to_bytes(8, "big"), raw)
        batch.put(META_FORMAT, b"1")
    store.close()
    (path / BLOCK_FILE_NAME).unlink()
    return blocks


@pytest.mark.parametrize("interrupted", [False, True], ids=["fresh", "after-an-interrupted-upgrade"])
def test_a_format_1_store_is_upgraded_when_it_opens(base: Path, tmp_path: Path, reference: dict[str, object],
                                                    interrupted: bool) -> None:
    path = _copy(base, tmp_path / "ledger")
    blocks = _as_format_1(path)
    if interrupted:  # records an earlier upgrade appended before it died, with no pointer yet
        (path / BLOCK_FILE_NAME).write_bytes(b"\x00\x00\x01\x00" + os.urandom(300))
    store = LedgerStore(path)
    try:
        assert store.db.get(META_FORMAT) == b"2"
        assert [store.block_bytes(h) for h in range(len(blocks))] == blocks
        store.verify_blocks()
    finally:
        store.close()
    _finish_and_compare(path, reference)


def test_an_upgrade_that_fails_half_way_is_started_over(base: Path, tmp_path: Path,
                                                         reference: dict[str, object],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = _copy(base, tmp_path / "ledger")
    blocks = _as_format_1(path)
    real_append = BlockFile.append
    calls = []

    def append_until_the_third(self, height, block, *, sync):  # type: ignore[no-untyped-def]
        calls.append(height)
        if len(calls) == 3:
            raise Crash  # as a full disk or a kill would, after two records went in
        return real_append(self, height, block, sync=sync)

    monkeypatch.setattr(BlockFile, "append", append_until_the_third)
    with pytest.raises(Crash):
        LedgerStore(path)
    monkeypatch.setattr(BlockFile, "append", real_append)
    raw = plyvel.DB(str(path))
    try:
        assert raw.get(META_FORMAT) == b"1"  # nothing of the upgrade's batch landed
        assert [raw.get(BLOCK_PREFIX + h.to_bytes(8, "big")) for h in range(len(blocks))] == blocks
    finally:
        raw.close()
    store = LedgerStore(path)
    try:
        assert [store.block_bytes(h) for h in range(len(blocks))] == blocks
        store.verify_blocks()
    finally:
        store.close()
    _finish_and_compare(path, reference)


def test_an_upgrade_syncs_the_records_before_the_batch_that_names_them(base: Path, tmp_path: Path,
                                                                        synced: list[str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = _copy(base, tmp_path / "ledger")
    _as_format_1(path)
    real_db = plyvel.DB
    monkeypatch.setattr("ledger.store.plyvel.DB", lambda *a, **k: _NotingDB(real_db(*a, **k), synced))
    LedgerStore(path).close()
    assert synced == ["records synced", "batch sync=True"]


def test_a_snapshot_load_syncs_the_records_before_its_last_write(base: Path, tmp_path: Path,
                                                                synced: list[str]) -> None:
    source = LedgerStore(_copy(base, tmp_path / "source"))
    target = LedgerStore(tmp_path / "target")
    target.db = _NotingDB(target.db, synced)  # type: ignore[assignment]
    try:
        target.load_snapshot_records(source.snapshot()[1])
        target.finish_snapshot_load()
        assert synced == ["batch sync=None", "records synced", "put sync=True"]
    finally:
        target.db = target.db.inner  # type: ignore[attr-defined]
        target.close()
        source.close()


def test_a_snapshot_carries_no_store_format_and_ignores_a_senders(base: Path, tmp_path: Path) -> None:
    """A format 1 sender streams its "1": taken, it would make the new store upgrade its pointers."""
    source = LedgerStore(_copy(base, tmp_path / "source"))
    try:
        records = list(source.snapshot()[1])
        assert META_FORMAT not in dict(records)
        target = LedgerStore(tmp_path / "target")
        target.load_snapshot_records(iter([(META_FORMAT, b"1"), *records]))
        target.finish_snapshot_load()
        target.close()
        target = LedgerStore(tmp_path / "target")
        try:
            assert target.db.get(META_FORMAT) == b"2"
            assert [target.block_bytes(h) for h in range(BLOCKS + 1)] == \
                [source.block_bytes(h) for h in range(BLOCKS + 1)]
        finally:
            target.close()
    finally:
        source.close()


def test_a_snapshot_carries_whole_blocks_and_loads_them_in_order(base: Path, tmp_path: Path) -> None:
    source = LedgerStore(_copy(base, tmp_path / "source"))
    try:
        _, records = source.snapshot()
        records = list(records)
        blocks = {k: v for k, v in records if k.startswith(BLOCK_PREFIX)}
        assert [blocks[BLOCK_PREFIX + h.to_bytes(8, "big")] for h in range(BLOCKS + 1)] == \
            [source.block_bytes(h) for h in range(BLOCKS + 1)]
        target = LedgerStore(tmp_path / "target")
        target.load_snapshot_records(iter(records))
        target.finish_snapshot_load()
        target.close()
        target = LedgerStore(tmp_path / "target")
        target.verify_blocks()
        assert target.position == source.position
        assert [target.block_bytes(h) for h in range(BLOCKS + 1)] == [source.block_bytes(h) for h in range(BLOCKS + 1)]
        target.close()
        shuffled = LedgerStore(tmp_path / "shuffled")
        try:
            block_records = [r for r in records if r[0].startswith(BLOCK_PREFIX)]
            with pytest.raises(StoreError, match="out of order"):
                shuffled.load_snapshot_records(iter([block_records[1], block_records[0]]))
        finally:
            shuffled.close()
    finally:
        source.close()
