"""Chunked snapshot transfer between drivers: the receiving side spools chunks to a file.
Bounded memory: one chunk is held at a time on either side; the core sees only the metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from consensus.log import check
from consensus.messages import SnapshotChunk

SNAPSHOT_CHUNK_BYTES = 256 * 1024
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024 * 1024  # refuse a stream larger than this
_RECEIVING = "receiving.part"
_COMPLETE = "complete.snap"
_INSTALLING = "installing.snap"
_LEGACY = "incoming.snap"  # the single spool file before 2026-11-27


class SnapshotSpool:
    """Receives one snapshot stream at a time from a leader, in order, into a file.

    Three files, so that no stream can touch the bytes an install is reading:
    - `receiving.part`: the stream in progress; a new stream (seq 0) restarts only this file;
    - `complete.snap`: the last stream received whole (fsynced, then renamed into place);
    - `installing.snap`: the snapshot an install reads, moved there by `take()` on the event
      loop when the core decides to install it; nothing else writes or removes it until the
      install calls `finish_install()`.
    Until 2026-11-27 one file served all three, and a stream started during an install (a leader
    may restream while the follower installs) truncated the file under the install.
    At most three snapshots of MAX_SNAPSHOT_BYTES each are on disk.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key: tuple[str, int] | None = None  # (leader, snapshot index) being received
        self._next_seq = 0
        self._size_bytes = 0
        self._complete: tuple[str, int, int] | None = None  # (leader, index, size_bytes)
        for name in (_RECEIVING, _COMPLETE, _INSTALLING, _LEGACY):
            (self.directory / name).unlink(missing_ok=True)  # a crash's leftovers

    def accept(self, chunk: SnapshotChunk) -> None:
        """Take a chunk; out-of-order or oversized streams are restarted or dropped."""
        key = (chunk.frm, chunk.index)
        receiving = self.directory / _RECEIVING
        if chunk.seq == 0:
            self._key, self._next_seq, self._size_bytes = key, 0, 0
            receiving.write_bytes(b"")
        if key != self._key or chunk.seq != self._next_seq:
            return  # a gap: the leader will stream again after its retry
        self._size_bytes += len(chunk.data)
        if self._size_bytes > MAX_SNAPSHOT_BYTES:
            self._key = None
            receiving.unlink(missing_ok=True)
            return
        with open(receiving, "ab") as f:
            f.write(chunk.data)
            if chunk.last:
                f.flush()
                os.fsync(f.fileno())
        self._next_seq += 1
        if chunk.last:
            os.replace(receiving, self.directory / _COMPLETE)
            self._complete = (chunk.frm, chunk.index, self._size_bytes)
            self._key = None

    def is_complete(self, leader: str, index: int) -> bool:
        return self._complete is not None and self._complete[:2] == (leader, index)

    def take(self, index: int) -> SpooledSnapshot:
        """Move the complete snapshot at index aside for an install; later streams cannot
        touch it. The driver steps a SNAPSHOT message into the core only while its stream is
        complete here, and calls this before yielding to the event loop, so it is there."""
        complete = self._complete
        check(complete is not None and complete[1] == index,
              f"no complete snapshot at {index} to install (spool holds {complete})")
        assert complete is not None
        installing = self.directory / _INSTALLING
        os.replace(self.directory / _COMPLETE, installing)
        self._complete = None
        size_bytes = installing.stat().st_size
        check(size_bytes == complete[2],
              f"spooled snapshot {index} has {size_bytes} bytes, its stream had {complete[2]}")
        return SpooledSnapshot(installing, index, size_bytes)

    def finish_install(self, snap: SpooledSnapshot) -> None:
        snap.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class SpooledSnapshot:
    """A complete received snapshot, set aside for one install."""

    path: Path
    index: int
    size_bytes: int

    def chunks(self) -> Iterator[bytes]:
        """The snapshot's bytes, in blocks; raises if the file is not exactly what was received
        (a bug of ours: nothing may write it during the install)."""
        read_bytes = 0
        with open(self.path, "rb") as f:
            while block := f.read(SNAPSHOT_CHUNK_BYTES):
                read_bytes += len(block)
                yield block
        check(read_bytes == self.size_bytes,
              f"snapshot {self.index}: read {read_bytes} bytes of {self.size_bytes}")


def chunk_stream(frm: str, to: str, term: int, index: int,
                 chunks: Iterator[bytes]) -> Iterator[SnapshotChunk]:
    """Wrap an application's chunk iterator as wire chunks, re-split to SNAPSHOT_CHUNK_BYTES."""
    seq = 0
    pending = b""
    for block in chunks:
        pending += block
        while len(pending) > SNAPSHOT_CHUNK_BYTES:
            yield SnapshotChunk(frm, to, term, index, seq, pending[:SNAPSHOT_CHUNK_BYTES], False)
            pending = pending[SNAPSHOT_CHUNK_BYTES:]
            seq += 1
    yield SnapshotChunk(frm, to, term, index, seq, pending, True)
