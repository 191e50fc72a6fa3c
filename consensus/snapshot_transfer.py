"""Chunked snapshot transfer between drivers: the receiving side spools chunks to a file.
Bounded memory: one chunk is held at a time on either side; the core sees only the metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from consensus.messages import SnapshotChunk

SNAPSHOT_CHUNK_BYTES = 256 * 1024
MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024 * 1024  # refuse a stream larger than this


class SnapshotSpool:
    """Receives one snapshot stream at a time from a leader, in order, into a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key: tuple[str, int] | None = None  # (leader, snapshot index) being received
        self._next_seq = 0
        self._size_bytes = 0
        self._complete: tuple[str, int] | None = None

    def _path(self) -> Path:
        return self.directory / "incoming.snap"

    def accept(self, chunk: SnapshotChunk) -> None:
        """Take a chunk; out-of-order or oversized streams are restarted or dropped."""
        key = (chunk.frm, chunk.index)
        if chunk.seq == 0:
            self._key, self._next_seq, self._size_bytes = key, 0, 0
            self._complete = None
            self._path().write_bytes(b"")
        if key != self._key or chunk.seq != self._next_seq:
            return  # a gap: the leader will stream again after its retry
        self._size_bytes += len(chunk.data)
        if self._size_bytes > MAX_SNAPSHOT_BYTES:
            self._key = None
            return
        with open(self._path(), "ab") as f:
            f.write(chunk.data)
            if chunk.last:
                f.flush()
                os.fsync(f.fileno())
        self._next_seq += 1
        if chunk.last:
            self._complete = key

    def is_complete(self, leader: str, index: int) -> bool:
        return self._complete == (leader, index)

    def has_complete_index(self, index: int) -> bool:
        return self._complete is not None and self._complete[1] == index

    def chunks(self) -> Iterator[bytes]:
        with open(self._path(), "rb") as f:
            while block := f.read(SNAPSHOT_CHUNK_BYTES):
                yield block

    def discard(self) -> None:
        self._key = self._complete = None
        self._path().unlink(missing_ok=True)


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
