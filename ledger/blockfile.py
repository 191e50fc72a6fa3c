"""The ledger's blocks, appended to one file beside LevelDB, which keeps a pointer to each.

Part of ledger/. docs/STORAGE.md ("The block file") says why: blocks were 86% of
the bytes LevelDB wrote and rewrote in compaction, though nothing but a height ever looks them
up. Here a block is written once, in height order, and read back by position.

A record is a 16-byte head, then the block's canonical bytes:

    u32be length ‖ u32be crc32(height ‖ block) ‖ u64be height ‖ block

The pointer LevelDB keeps (under the block's height key) is u64be offset ‖ u32be length.
LevelDB is the authority: a record no pointer names is not part of the ledger. LedgerStore
writes the record (and syncs the file) before the batch that holds its pointer, so a crash
leaves at most an unnamed tail here, which `repair_tail` cuts off at the next open.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from ledger.block import MAX_BLOCK_BYTES

BLOCK_FILE_NAME = "blocks.seg"  # LevelDB leaves alone the files whose names it does not own
RECORD_HEAD_BYTES = 16
POINTER_BYTES = 12
# The most a block may hold and still be decoded (ledger/block.py), so any block this build can
# read fits; a length past it in a head or a pointer is damage, not a block.
MAX_RECORD_BYTES = MAX_BLOCK_BYTES


class BlockFileError(RuntimeError):
    """The block file does not hold what the ledger says it holds."""


def encode_pointer(offset: int, length: int) -> bytes:
    return offset.to_bytes(8, "big") + length.to_bytes(4, "big")


def decode_pointer(pointer: bytes) -> tuple[int, int]:
    if len(pointer) != POINTER_BYTES:
        raise BlockFileError(f"a block pointer of {len(pointer)} bytes")
    return int.from_bytes(pointer[:8], "big"), int.from_bytes(pointer[8:], "big")


def _head(height: int, block: bytes) -> bytes:
    height_bytes = height.to_bytes(8, "big")
    crc = zlib.crc32(block, zlib.crc32(height_bytes))
    return len(block).to_bytes(4, "big") + crc.to_bytes(4, "big") + height_bytes


class BlockFile:
    """Append and read block records. One writer at a time (the executor's thread, or the format
    upgrade or a snapshot load before the store is in use); readers on any thread (positional
    reads share no file offset)."""

    def __init__(self, directory: Path, *, create: bool) -> None:
        """`create`: make the file if it is missing (a store that names no block yet); otherwise a
        missing file is an error, and the damaged directory is left as it was."""
        self.path = directory / BLOCK_FILE_NAME
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            self._fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError as exc:
            raise BlockFileError(f"{self.path} is missing") from exc
        # The file's name must survive a power cut as well as its bytes: synced at every open, so
        # a crash between creating it and this sync is made good by the next open.
        fsync_directory(directory)
        self._end = os.fstat(self._fd).st_size  # where the next record goes
        self._closed = False
        self._broken = ""  # why appends are refused, after a failure left the end unknown

    @property
    def end(self) -> int:
        return self._end

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            fd, self._fd = self._fd, -1  # a later read gets EBADF, not a number another open reuses
            os.close(fd)

    def append(self, height: int, block: bytes, *, sync: bool) -> bytes:
        """Write a record at the end, synced if asked; return its pointer for LevelDB. A failed
        write leaves the end where it was, so the next record overwrites what it left."""
        if self._closed or self._broken:
            raise BlockFileError(f"{self.path} takes no more records: {self._broken or 'closed'}")
        if len(block) > MAX_RECORD_BYTES:
            raise BlockFileError(f"block {height} is {len(block)} bytes, over {MAX_RECORD_BYTES}")
        record = _head(height, block) + block
        offset = self._end
        written = 0
        while written < len(record):  # a regular file writes all or raises, but say so
            written += os.pwrite(self._fd, memoryview(record)[written:], offset + written)
        if sync:
            sync_data(self._fd)
        self._end = offset + len(record)
        return encode_pointer(offset, len(block))

    def sync(self) -> None:
        sync_data(self._fd)

    def rewind(self, end: int) -> None:
        """Put the end back to where the last named record ends, after a batch that may not have
        landed: the next record then overwrites an unnamed one rather than following it."""
        self._end = end

    def refuse_appends(self, reason: str) -> None:
        """After a failure that left the end unknown: an append now could leave a gap."""
        self._broken = reason

    def read(self, height: int, pointer: bytes) -> bytes:
        """The block a pointer names, checked against its head."""
        if self._closed:
            raise BlockFileError(f"{self.path} is closed")
        offset, length = decode_pointer(pointer)
        if length > MAX_RECORD_BYTES or offset + RECORD_HEAD_BYTES + length > self._end:
            raise BlockFileError(f"{self.path}: block {height} has a pointer past the file's end")
        record = os.pread(self._fd, RECORD_HEAD_BYTES + length, offset)
        if len(record) != RECORD_HEAD_BYTES + length:
            raise BlockFileError(f"{self.path}: block {height} ends past the end of the file")
        block = record[RECORD_HEAD_BYTES:]
        if record[:RECORD_HEAD_BYTES] != _head(height, block):
            raise BlockFileError(f"{self.path}: block {height} at offset {offset} is damaged")
        return block

    def repair_tail(self, last_end: int) -> int:
        """Cut off what follows the last record LevelDB names (`last_end`: where it ends): a record
        written before a crash that came before its pointer was, or a torn write. Returns the
        bytes cut. A file shorter than `last_end` lost synced data: refused."""
        size = os.fstat(self._fd).st_size
        if size < last_end:
            raise BlockFileError(f"{self.path} is {size} bytes but the ledger's last block ends at {last_end}")
        if size > last_end:
            os.ftruncate(self._fd, last_end)
            os.fsync(self._fd)
        self._end = last_end
        return size - last_end

    def verify(self, heights: int) -> None:
        """Read every record once, checking its checksum and that they hold heights 0, 1, ...,
        heights - 1 in order, end to end. Run after repair_tail, at open."""
        offset, height = 0, 0
        while offset < self._end:
            head = os.pread(self._fd, RECORD_HEAD_BYTES, offset)
            length = int.from_bytes(head[:4], "big") if len(head) == RECORD_HEAD_BYTES else -1
            if length < 0 or length > MAX_RECORD_BYTES or offset + RECORD_HEAD_BYTES + length > self._end:
                raise BlockFileError(f"{self.path}: the record at offset {offset} has a damaged head")
            block = os.pread(self._fd, length, offset + RECORD_HEAD_BYTES)
            if head != _head(height, block):
                raise BlockFileError(f"{self.path}: the record at offset {offset} is damaged or not block {height}")
            offset += RECORD_HEAD_BYTES + length
            height += 1
        if height != heights:
            raise BlockFileError(f"{self.path} holds {height} blocks, the ledger {heights}")


def sync_data(fd: int) -> None:
    """A file's bytes and size on disk: fdatasync where the platform has it (not macOS), else
    fsync."""
    getattr(os, "fdatasync", os.fsync)(fd)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
