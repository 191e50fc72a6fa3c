"""Chunked snapshot transfer and its crash recovery: a stream re-splits to bounded chunks,
a receiver reassembles only an in-order, complete stream, and a driver that crashed during
an install finishes or abandons it at start according to what the app reached.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.driver import DriverConfig, RaftDriver
from consensus.messages import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    SnapshotChunk,
    SnapshotMeta,
)
from consensus.snapshot_transfer import SNAPSHOT_CHUNK_BYTES, SnapshotSpool, chunk_stream
from consensus.storage import LevelDBLogStore
from tests.test_raft_driver import MemoryApp

CONF = ConfState(("a", "b", "c"))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=3 * SNAPSHOT_CHUNK_BYTES // 2), max_size=5))
def test_stream_rechunks_and_spool_reassembles_exactly(tmp_path_factory, blocks) -> None:
    spool = SnapshotSpool(tmp_path_factory.mktemp("spool"))
    chunks = list(chunk_stream("a", "b", 3, 42, iter(blocks)))
    assert all(len(c.data) <= SNAPSHOT_CHUNK_BYTES for c in chunks)
    assert [c.seq for c in chunks] == list(range(len(chunks))) and chunks[-1].last
    for c in chunks:
        spool.accept(c)
    assert spool.is_complete("a", 42)
    assert b"".join(spool.take(42).chunks()) == b"".join(blocks)


def test_spool_ignores_a_stream_with_a_gap(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path)
    blob = b"x" * (2 * SNAPSHOT_CHUNK_BYTES + 10)
    chunks = list(chunk_stream("a", "b", 3, 7, iter([blob])))
    assert len(chunks) == 3
    spool.accept(chunks[0])
    spool.accept(chunks[2])  # chunk 1 was lost
    assert not spool.is_complete("a", 7)


class FakeTransport:
    def send(self, peer_id: str, channel: str, payload: bytes) -> bool:
        return True


def _store_with_pending(path: Path, meta: SnapshotMeta) -> None:
    store = LevelDBLogStore(path)
    store.load(CONF)
    store.save(HardState(1, "a", 0), [], None)
    store.mark_snapshot_pending(meta)
    store.close()


async def _start_and_stop(tmp_path: Path, app: MemoryApp) -> None:
    cfg = DriverConfig(node_id="a", voters=("a", "b", "c"), snapshot_dir=tmp_path / "snap")
    driver = RaftDriver(cfg, LevelDBLogStore(tmp_path / "log"), FakeTransport(), app)
    await driver.start()
    await driver.stop()


async def test_restart_finishes_an_install_the_app_completed(tmp_path: Path) -> None:
    meta = SnapshotMeta(10, 1, CONF)
    _store_with_pending(tmp_path / "log", meta)
    app = MemoryApp()
    app.applied = 10  # the app installed the snapshot, then the node crashed
    await _start_and_stop(tmp_path, app)
    store = LevelDBLogStore(tmp_path / "log")
    state, pending = store.load(CONF)
    store.close()
    assert state.snapshot == meta and pending is None


async def test_restart_abandons_an_install_the_app_never_reached(tmp_path: Path) -> None:
    _store_with_pending(tmp_path / "log", SnapshotMeta(10, 1, CONF))
    await _start_and_stop(tmp_path, MemoryApp())
    store = LevelDBLogStore(tmp_path / "log")
    state, pending = store.load(CONF)
    store.close()
    assert state.snapshot.index == 0 and pending is None


# ---- an install reads exactly the snapshot it was asked to install ---------------------------

def _snapshot_blob(fill: int, n_chunks: int) -> bytes:
    return b"".join(bytes([fill + i]) * SNAPSHOT_CHUNK_BYTES for i in range(n_chunks))


def _stream(driver: RaftDriver, index: int, blob: bytes, upto: int | None = None) -> None:
    """Deliver the leader "a"'s chunks of blob for snapshot index (the first `upto` only)."""
    chunks = list(chunk_stream("a", "b", 1, index, iter([blob])))
    for chunk in chunks[:upto]:
        driver.on_message("a", chunk.encode())


def _snapshot_msg(index: int) -> bytes:
    meta = SnapshotMeta(index, 1, CONF)
    return Message(MessageType.SNAPSHOT, "b", "a", 1, snapshot=meta).encode()


def test_spool_a_taken_snapshot_is_beyond_the_reach_of_later_streams(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path)
    first = b"1" * (SNAPSHOT_CHUNK_BYTES + 5)
    for c in chunk_stream("a", "b", 1, 10, iter([first])):
        spool.accept(c)
    taken = spool.take(10)
    reader = taken.chunks()
    head = next(reader)
    for c in chunk_stream("a", "b", 1, 20, iter([b"2" * 99])):
        spool.accept(c)  # a whole new stream while the install reads
    assert head + b"".join(reader) == first
    assert spool.is_complete("a", 20) and b"".join(spool.take(20).chunks()) == b"2" * 99


class BlockingInstallApp:
    """Records every install; the first blocks after its first block until released."""

    def __init__(self) -> None:
        self.applied = 0
        self.installs: list[tuple[int, bytes]] = []
        self.reading = threading.Event()
        self.release = threading.Event()

    def apply(self, entries: list[Entry]) -> None:
        self.applied = entries[-1].index

    def applied_index(self) -> int:
        return self.applied

    def snapshot(self) -> tuple[int, int, Iterator[bytes]]:
        raise AssertionError("a follower in these tests never sends a snapshot")

    def install_snapshot(self, index: int, term: int, chunks: Iterator[bytes]) -> None:
        got = bytearray()
        for n, block in enumerate(chunks):
            got += block
            if n == 0 and not self.installs:
                self.reading.set()
                assert self.release.wait(10), "test never released the install"
        self.installs.append((index, bytes(got)))
        self.applied = index


async def _follower(tmp_path: Path, app: BlockingInstallApp) -> RaftDriver:
    cfg = DriverConfig(node_id="b", voters=("a", "b", "c"), snapshot_dir=tmp_path / "snap",
                       tick_ms=1000, seed=1)  # slow ticks: b never campaigns during the test
    driver = RaftDriver(cfg, LevelDBLogStore(tmp_path / "log"), FakeTransport(), app)
    await driver.start()
    return driver


async def _wait(predicate, what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_stream_arriving_during_an_install_does_not_change_what_it_reads(
        tmp_path: Path) -> None:
    """A leader may stream again while its follower installs (a late heartbeat answer after
    report_snapshot, then a compaction). Its first chunk used to truncate the spool file the
    install was reading: install_snapshot(100) got 256 KiB of a 1 MiB snapshot."""
    app = BlockingInstallApp()
    driver = await _follower(tmp_path, app)
    try:
        snap = _snapshot_blob(ord("A"), 4)
        _stream(driver, 100, snap)
        driver.on_message("a", _snapshot_msg(100))
        await asyncio.get_running_loop().run_in_executor(None, app.reading.wait, 10)
        _stream(driver, 200, _snapshot_blob(ord("a"), 2), upto=1)  # a new stream begins ...
        driver.on_message("a", SnapshotChunk("a", "b", 1, 300, 0, b"z", True).encode())  # ... and another completes
        app.release.set()
        await _wait(lambda: driver.applied_index() == 100, "the install")
    finally:
        app.release.set()
        await driver.stop()
    assert app.installs == [(100, snap)]


async def test_a_snapshot_whose_stream_was_replaced_before_its_install_is_not_installed(
        tmp_path: Path) -> None:
    """The SNAPSHOT message waits in the inbox while a newer stream completes and replaces
    the spooled one: the core must not be told to install bytes that are gone. The newer
    snapshot installs when its own message comes."""
    app = BlockingInstallApp()
    app.release.set()
    driver = await _follower(tmp_path, app)
    try:
        old, new = _snapshot_blob(ord("A"), 2), _snapshot_blob(ord("a"), 3)
        _stream(driver, 100, old)
        driver.on_message("a", _snapshot_msg(100))
        _stream(driver, 200, new)  # before the loop ran: the SNAPSHOT for 100 is still queued
        await asyncio.sleep(0.05)
        assert app.installs == []
        driver.on_message("a", _snapshot_msg(200))
        await _wait(lambda: driver.applied_index() == 200, "the install of 200")
    finally:
        await driver.stop()
    assert app.installs == [(200, new)]
