"""Chunked snapshot transfer and its crash recovery: a stream re-splits to bounded chunks,
a receiver reassembles only an in-order, complete stream, and a driver that crashed during
an install finishes or abandons it at start according to what the app reached.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.driver import DriverConfig, RaftDriver
from consensus.messages import ConfState, HardState, SnapshotMeta
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
    assert b"".join(spool.chunks()) == b"".join(blocks)


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
