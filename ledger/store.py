"""The ledger's store: state, indexes and the applied consensus position in LevelDB, blocks in
a file beside it (ledger/blockfile.py) that LevelDB points into.

Part of ledger/. docs/STORAGE.md documents the layout. A block's record is synced to the block
file first, then everything else it changes, its pointer included, lands in one synced write
batch, so a crash leaves either all of a block or none of it (and at most an unnamed record at
the file's end, cut off at the next open).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import plyvel

from ledger import codec
from ledger.batch import MAX_BATCH_TXS
from ledger.block import GENESIS_PREV_HASH, Block, BlockHeader
from ledger.blockfile import RECORD_HEAD_BYTES, BlockFile, BlockFileError, decode_pointer

# 1: blocks inside LevelDB (sessions 1-7). 2: blocks in the block file; a format 1 store is
# upgraded when it opens.
STORE_FORMAT_VERSION = 2
STATE_PREFIX = b"s"
BLOCK_PREFIX = b"b"
TX_INDEX_PREFIX = b"t"
HISTORY_PREFIX = b"h"
META_APPLIED = b"m:applied"
META_FORMAT = b"m:format"
META_GENESIS = b"m:genesis"
META_SNAPSHOT_INSTALLED = b"m:snapshot-installed"
# Keys that describe this store's files rather than the ledger: never sent in a snapshot, and
# ignored if a sender sends them (a format 1 sender's "1" would make this store upgrade again).
LOCAL_META_KEYS = frozenset({META_FORMAT, META_SNAPSHOT_INSTALLED})
MAX_HISTORY_PAGE = 1000
HISTORY_TX = 0
HISTORY_SYSTEM = 1


# Most state reads of a transaction ask for keys that are absent (freeze flags, key re-bindings):
# without a filter LevelDB searches a table for each. Measured on 1M keys: 22.7 -> 6.0 us per
# absent get, 34 -> 15.5 us per present one. Tables written without filters still read fine.
BLOOM_FILTER_BITS_PER_KEY = 10
# LevelDB maps every open table file into memory for reads, and the pages random reads touch
# count in the node's RSS (the kernel maps 64 KiB around each page a read faults in): at
# 1,000,000 accounts 77-90 MiB after seeding with every table open, and growing with every
# read. So the tables kept open are bounded: 96 of 2 MiB (LevelDB keeps 10 handles for itself),
# 192 MiB mapped at most. A read of a table that is not open reopens it (openat, mmap, index
# and filter read and checksummed, munmap when evicted again): at 1M accounts, with 64 open,
# that was a third of the executor's CPU, and 96 hold most of the tables the per-account
# records live in (participants ~71, balances ~25 of 2 MiB). Measured in-process on a seeded 1M
# store: 64 -> 96 open, -22-25% executor CPU per transfer for +43 MiB of mapped pages; all open
# -37% for +150 MiB (docs/PERFORMANCE.md, fifth session). Uncompressed tables make reopened
# reads cheaper (Snappy measured 1.6x the CPU per transfer, compaction included), at twice the
# disk. A store of at most 96 tables (~190 MiB) keeps them all open and sees neither.
MAX_OPEN_FILES = 106
TABLE_COMPRESSION = None


class StoreError(RuntimeError):
    """The data directory cannot be used (wrong format, damaged, or for another chain)."""


@dataclass(frozen=True)
class AppliedPosition:
    """Where the ledger stands: the last consensus entry applied and the block it made."""

    raft_index: int
    raft_term: int
    height: int
    block_hash: bytes
    state_hash: bytes
    time_ms: int

    def encode(self) -> bytes:
        return codec.encode(
            [self.raft_index, self.raft_term, self.height, self.block_hash, self.state_hash, self.time_ms]
        )

    @classmethod
    def decode(cls, data: bytes) -> AppliedPosition:
        return cls(*codec.decode(data, max_bytes=1024))


EMPTY_POSITION = AppliedPosition(0, 0, -1, GENESIS_PREV_HASH, bytes(32), 0)


@dataclass(frozen=True)
class HistoryEntry:
    height: int
    kind: int  # HISTORY_TX or HISTORY_SYSTEM
    index: int  # position of the tx in the block, or of the system event


MAX_HEIGHT = 2**64 - 1  # height_key's 8 bytes
MAX_HISTORY_INDEX = 2**32 - 1  # history_key's 4 bytes for a position in a block


def height_key(height: int) -> bytes:
    return BLOCK_PREFIX + height.to_bytes(8, "big")


def key_height(key: bytes) -> int:
    """The height a block key (height_key's) names."""
    return int.from_bytes(key[len(BLOCK_PREFIX):], "big")


def history_prefix(subject: str) -> bytes:
    return HISTORY_PREFIX + subject.encode("utf-8") + b"\x00"


def history_key(subject: str, entry: HistoryEntry) -> bytes:
    return history_prefix(subject) + _entry_head(entry.height, entry.kind) + entry.index.to_bytes(4, "big")


def _entry_head(height: int, kind: int) -> bytes:
    return height.to_bytes(8, "big") + bytes([kind])


def history_suffixes(height: int, kind: int, count: int) -> list[bytes]:
    """The entry's part of history_key (after the subject's prefix) for indexes 0 .. count-1 of
    one height and kind: a block's, its height and kind packed once."""
    head = _entry_head(height, kind)
    return [head + index.to_bytes(4, "big") for index in range(count)]


def history_keys(subjects: list[str], height: int, kind: int, index: int) -> list[bytes]:
    """history_key(subject, HistoryEntry(height, kind, index)) of each subject, the entry's part
    built once (and no HistoryEntry)."""
    suffix = _entry_head(height, kind) + index.to_bytes(4, "big")
    return [_history_prefix(subject) + suffix for subject in subjects]


def index_transactions(index: dict[bytes, bytes], height: int, tx_ids: list[bytes],
                       subjects: Sequence[Sequence[str]]) -> None:
    """A block's tx index entries and history keys (HISTORY_TX) into `index`: the height's bytes
    built once per block, each key a concatenation of parts already built."""
    # The entry encode([height, position]) is the 2-array header, then each int's bytes: the
    # height's packed once per block, a position's kept (a msgpack call per entry cost ~3,200
    # instructions, a kept one a cache hit). A history key is history_key's two parts, the
    # subject's prefix (cached) and the position's suffix (built per block): no call per
    # transaction for its keys.
    entry_head = b"\x92" + codec.encode(height)
    suffixes = history_suffixes(height, HISTORY_TX, len(tx_ids))
    prefix_of = _history_prefix
    for position, (tx_id, tx_subjects) in enumerate(zip(tx_ids, subjects, strict=True)):
        index[TX_INDEX_PREFIX + tx_id] = entry_head + _packed_position(position)
        suffix = suffixes[position]
        for subject in tx_subjects:
            index[prefix_of(subject) + suffix] = b""


@functools.lru_cache(maxsize=MAX_BATCH_TXS)  # a block's positions: 0 .. MAX_BATCH_TXS - 1
def _packed_position(position: int) -> bytes:
    return codec.encode(position)


# Cached: a block lists the same accounts and assets under many of its transactions.
HISTORY_PREFIX_CACHE_ENTRIES = 8_192  # the active accounts and assets (see KEY_CACHE_ENTRIES)
_history_prefix = functools.lru_cache(maxsize=HISTORY_PREFIX_CACHE_ENTRIES)(history_prefix)


# Namespaces of the state that hold almost nothing, though every transfer asks about them: a
# freeze flag of each party (compliance.freeze_key) and a signer's key re-bindings
# (auth.key_binding_key, auth.account_key_key); participants.key_taken_key is read by every
# admission. At 1,000,000 accounts such reads miss every cache: 7.2 of a transfer's 9.9 LevelDB
# reads (in-process, 1M accounts), 2.3-3.4 us each against 0.3-0.4 answered from this index.
# Listed here, not imported, because ledger/ does not import contracts/; tests check them
# against the key builders.
SPARSE_STATE_PREFIXES: tuple[bytes, ...] = (b"freeze\x1f", b"auth\x1fkey\x1f", b"auth\x1facct\x1f", b"key_taken\x1f")
# Keys one namespace may hold and still be indexed in memory: 117 bytes each (tracemalloc, a
# freeze key), so at most ~1.8 MiB a namespace, ~7.3 MiB for the four. Past that, its reads go
# to LevelDB as before: the index only ever saves work, never decides a value.
MAX_SPARSE_KEYS = 16_384


class SparseKeys:
    """Which keys exist under the sparse namespaces, so that a read of an absent one needs no
    LevelDB lookup.

    Invariant: for an indexed namespace, the set holds every key present in the store (and
    perhaps a few more). A key outside the set is therefore absent; one inside is looked up.
    Commit keeps it: keys about to be written are added before the write batch, deleted ones
    discarded after it, so a reader on another thread never sees a present key as absent. Only
    LedgerStore.commit writes state; a store written another way (the snapshot writer, which
    never reads state) must be reopened, which rebuilds the index, before its state is read.
    """

    def __init__(self, db: Any, prefixes: tuple[bytes, ...] = SPARSE_STATE_PREFIXES,
                 max_keys: int = MAX_SPARSE_KEYS) -> None:
        self.max_keys = max_keys
        self._prefixes = prefixes
        indexed: dict[bytes, set[bytes]] = {}
        for prefix in prefixes:
            keys: set[bytes] = set()
            with db.iterator(prefix=prefix, include_value=False) as it:
                for key in it:
                    if len(keys) >= max_keys:
                        break
                    keys.add(key)
                else:
                    indexed[prefix] = keys
        # Replaced, never mutated in place: readers on other threads iterate it.
        self._indexed: tuple[tuple[bytes, set[bytes]], ...] = tuple(indexed.items())

    def known_absent(self, key: bytes) -> bool:
        if not key.startswith(self._prefixes):  # one C call for the common case
            return False
        for prefix, keys in self._indexed:
            if key.startswith(prefix):
                return key not in keys
        return False

    def will_write(self, writes: dict[bytes, bytes | None]) -> None:
        """Before the batch: add every key about to be put, give up namespaces grown too big."""
        overflowed = False
        for key, value in writes.items():
            if value is None or not key.startswith(self._prefixes):
                continue
            for prefix, keys in self._indexed:
                if key.startswith(prefix):
                    keys.add(key)
                    overflowed = overflowed or len(keys) > self.max_keys
        if overflowed:
            self._indexed = tuple((p, k) for p, k in self._indexed if len(k) <= self.max_keys)

    def written(self, writes: dict[bytes, bytes | None]) -> None:
        """After the batch: forget the keys it deleted."""
        for key, value in writes.items():
            if value is not None or not key.startswith(self._prefixes):
                continue
            for prefix, keys in self._indexed:
                if key.startswith(prefix):
                    keys.discard(key)

    def indexed_prefixes(self) -> tuple[bytes, ...]:
        return tuple(prefix for prefix, _ in self._indexed)


class StateOnDisk:
    """The committed state as a StateReader."""

    def __init__(self, db: Any) -> None:
        self._db = db.prefixed_db(STATE_PREFIX)
        self.sparse = SparseKeys(self._db)

    def get(self, key: bytes) -> bytes | None:
        if self.sparse.known_absent(key):
            return None
        return self._db.get(key)

    def iter_prefix(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        if start is None or start <= prefix:
            with self._db.iterator(prefix=prefix) as it:
                yield from it
            return
        # plyvel takes a prefix or a start, not both: seek to start, stop where the prefix ends.
        with self._db.iterator(start=start) as it:
            for key, value in it:
                if not key.startswith(prefix):
                    return
                yield key, value


class LedgerStore:
    """Owns the LevelDB handle; readers may query it while the executor commits."""

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.path = Path(path)
        try:
            self.db = plyvel.DB(str(self.path), create_if_missing=create, paranoid_checks=True,
                                bloom_filter_bits=BLOOM_FILTER_BITS_PER_KEY, max_open_files=MAX_OPEN_FILES,
                                compression=TABLE_COMPRESSION)
        except plyvel.Error as exc:
            raise StoreError(f"cannot open ledger store at {self.path}: {exc}") from exc
        try:
            self._open_rest()
        except BaseException as exc:
            self.close()
            if isinstance(exc, (BlockFileError, OSError, plyvel.Error)):
                raise StoreError(f"cannot open the ledger store at {self.path}: {exc}") from exc
            raise

    def _open_rest(self) -> None:
        """Everything after LevelDB's open: format, block file, position. LevelDB's last block is
        read first, so a store that names blocks does not get an empty file made for it."""
        fmt = self.db.get(META_FORMAT)
        if fmt is None:
            self.db.put(META_FORMAT, str(STORE_FORMAT_VERSION).encode(), sync=True)
        elif fmt not in (b"1", str(STORE_FORMAT_VERSION).encode()):
            raise StoreError(f"{self.path}: store format {fmt!r}, this build reads {STORE_FORMAT_VERSION}")
        self.blocks = BlockFile(self.path, create=fmt == b"1" or self._last_block() is None)
        if fmt == b"1":
            self._upgrade_from_format_1()
        self.blocks.repair_tail(self._last_block_end())
        self.state = StateOnDisk(self.db)
        self._position = self._read_position()
        self._loaded_blocks = 0  # blocks a snapshot load has written into this store

    def _last_block(self) -> tuple[int, bytes] | None:
        """The highest height with a block, and its pointer."""
        with self.db.iterator(prefix=BLOCK_PREFIX, reverse=True) as it:
            for key, pointer in it:
                return key_height(key), pointer
        return None

    def _last_block_end(self) -> int:
        last = self._last_block()
        if last is None:
            return 0
        offset, length = decode_pointer(last[1])
        return offset + RECORD_HEAD_BYTES + length

    def _upgrade_from_format_1(self) -> None:
        """Move the blocks of a format 1 store (whole, under their height keys) to the block
        file. The pointers and the new format land in one synced batch after the file is
        synced, so a crash before it leaves a format 1 store whose next open starts over."""
        self.blocks.repair_tail(0)  # what an interrupted upgrade wrote
        with self.db.write_batch(transaction=True, sync=True) as batch:
            # Checked as read: the copies are overwritten by the batch, so damage found later
            # could not be told from what the upgrade wrote.
            with self.db.iterator(prefix=BLOCK_PREFIX, verify_checksums=True) as it:
                for key, raw in it:
                    batch.put(key, self.blocks.append(key_height(key), raw, sync=False))
            self.blocks.sync()
            batch.put(META_FORMAT, str(STORE_FORMAT_VERSION).encode())

    def check_head(self) -> None:
        """The block the applied position names is there and is that block: a damaged or
        half-copied data directory, or an incomplete snapshot, is refused rather than served."""
        position = self.position
        if position.height < 0:
            return
        try:
            head = self.block(position.height)
        except Exception as exc:  # plyvel.CorruptionError or a decode error: the bytes are damaged
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"{self.path}: block {position.height} cannot be read: {first_line}") from exc
        if head is None or head.hash() != position.block_hash or head.header.state_hash != position.state_hash:
            raise StoreError(f"{self.path}: block {position.height} is missing or does not match the applied "
                             "position; the data directory is damaged")

    def verify_blocks(self) -> None:
        """Read every block record once with its checksum (the open-time check; LevelDB's own
        records are checked by reading them with verify_checksums)."""
        last = self._last_block()
        try:
            self.blocks.verify(0 if last is None else last[0] + 1)
        except (BlockFileError, OSError) as exc:
            raise StoreError(f"{self.path}: damaged: {exc}") from exc

    def _read_position(self) -> AppliedPosition:
        raw = self.db.get(META_APPLIED)
        if raw is None:
            return EMPTY_POSITION
        try:
            return AppliedPosition.decode(raw)
        except (codec.CodecError, TypeError) as exc:
            raise StoreError(f"{self.path}: applied position is damaged") from exc

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()
        if getattr(self, "blocks", None) is not None:  # a store refused at open may not have one
            self.blocks.close()

    @property
    def closed(self) -> bool:
        return bool(self.db.closed)

    @property
    def position(self) -> AppliedPosition:
        return self._position

    def genesis_hash(self) -> bytes | None:
        return self.db.get(META_GENESIS)

    def block(self, height: int) -> Block | None:
        raw = self.block_bytes(height)
        return Block.decode(raw) if raw is not None else None

    def block_header(self, height: int) -> BlockHeader | None:
        """The header alone, without decoding the block's transactions and receipts."""
        raw = self.block_bytes(height)
        if raw is None:
            return None
        unpacker = msgpack.Unpacker(max_buffer_size=len(raw))
        unpacker.feed(raw)
        if unpacker.read_array_header() != 4:
            raise StoreError(f"{self.path}: block {height} is damaged")
        return BlockHeader.from_wire(unpacker.unpack())

    def block_bytes(self, height: int) -> bytes | None:
        return self._block_at(height, self.db.get(height_key(height)))

    def _block_at(self, height: int, pointer: bytes | None) -> bytes | None:
        if pointer is None:
            return None
        try:
            return self.blocks.read(height, pointer)
        except (BlockFileError, OSError) as exc:
            raise StoreError(f"{self.path}: block {height} cannot be read: {exc}") from exc

    def tx_location(self, tx_id: bytes) -> tuple[int, int] | None:
        raw = self.db.get(TX_INDEX_PREFIX + tx_id)
        if raw is None:
            return None
        height, index = codec.decode(raw, max_bytes=64)
        return height, index

    def has_tx(self, tx_id: bytes) -> bool:
        return self.db.get(TX_INDEX_PREFIX + tx_id) is not None

    def history(self, subject: str, *, after: HistoryEntry | None = None, limit: int = 100) -> list[HistoryEntry]:
        """Entries touching an account or asset, oldest first, paged by the last entry seen."""
        limit = max(1, min(limit, MAX_HISTORY_PAGE))
        prefix = history_prefix(subject)
        start = history_key(subject, after) + b"\x00" if after else prefix
        out: list[HistoryEntry] = []
        with self.db.iterator(start=start, prefix=None) as it:
            for key, _ in it:
                if not key.startswith(prefix) or len(out) >= limit:
                    break
                rest = key[len(prefix):]
                out.append(HistoryEntry(int.from_bytes(rest[:8], "big"), rest[8], int.from_bytes(rest[9:13], "big")))
        return out

    def commit(self, writes: dict[bytes, bytes | None], block: Block | None, index_writes: dict[bytes, bytes],
               position: AppliedPosition, *, sync: bool = True,
               presence: Callable[[bytes], bool | None] | None = None) -> None:
        """Persist a block, its state changes, indexes and the new position: the block's record
        appended to the block file (synced when `sync`), then everything else, its pointer
        included, in ONE write batch.

        A deletion of a key the store does not hold (an order that rested and filled within the
        block) is left out of the batch: LevelDB would keep its tombstone until a compaction finds
        no deeper table whose range could hold the key, and a scan steps over every tombstone
        between its start and the next live key, even past the end of its range
        (docs/STORAGE.md).

        `presence(key)`: whether the store, as committed before this batch, holds the key, if the
        caller knows (True or False), else None, which costs a lookup. A False is trusted: a wrong
        one would leave the deleted value in the store, so a caller unsure answers None or True.
        """
        self.state.sparse.will_write(writes)
        try:
            self._write_batch(writes, block, index_writes, position, sync, presence)
        except BaseException as failure:
            # The batch may or may not have landed (an interrupt can come after the write): the
            # block file's end follows whatever pointer LevelDB now holds. If that cannot be
            # read, no more records: the next one could leave a gap or overwrite a named one.
            try:
                self.blocks.rewind(self._last_block_end())
                self._position = self._read_position()  # the batch's, if it landed: never stale
            except Exception as exc:
                self.blocks.refuse_appends(f"after a failed commit its end is unknown ({exc})")
            raise failure
        self.state.sparse.written(writes)
        self._position = position

    def _write_batch(self, writes: dict[bytes, bytes | None], block: Block | None, index_writes: dict[bytes, bytes],
                     position: AppliedPosition, sync: bool, presence: Callable[[bytes], bool | None] | None) -> None:
        stored = self.state.get
        with self.db.write_batch(transaction=True, sync=sync) as batch:
            put = batch.put  # bound once: ~6 writes per transaction go through here
            for key, value in writes.items():
                if value is not None:
                    put(STATE_PREFIX + key, value)
                    continue
                held = presence(key) if presence is not None else None
                if held is None:
                    held = stored(key) is not None
                if held:
                    batch.delete(STATE_PREFIX + key)
            if block is not None:
                # Synced before the batch: a pointer on disk always names a whole record.
                put(height_key(block.height), self.blocks.append(block.height, block.encode(), sync=sync))
            for key, value in index_writes.items():
                put(key, value)
            batch.put(META_APPLIED, position.encode())

    # ------------------------------------------------------------ snapshots

    def snapshot(self) -> tuple[AppliedPosition, Iterator[tuple[bytes, bytes]]]:
        """The whole ledger at one instant as (key, value) records in key order, each block's
        value its bytes (as format 1 kept them), so the stream does not depend on the layout,
        and without LOCAL_META_KEYS.
        Pointers read from the LevelDB snapshot stay valid while this store is open: the file
        is only cut at open, and only past its last named record."""
        snap = self.db.snapshot()
        raw = snap.get(META_APPLIED)
        position = AppliedPosition.decode(raw) if raw is not None else self.position

        def records() -> Iterator[tuple[bytes, bytes]]:
            try:
                with snap.iterator() as it:
                    for key, value in it:
                        if key in LOCAL_META_KEYS:
                            continue
                        if key.startswith(BLOCK_PREFIX):
                            block = self._block_at(key_height(key), value)
                            assert block is not None
                            value = block
                        yield key, value
            finally:
                snap.close()

        return position, records()

    def load_snapshot_records(self, records: Iterator[tuple[bytes, bytes]]) -> None:
        """Write records of another store's snapshot() into this fresh one (unsynced: call
        finish_snapshot_load at the end). Blocks must come in height order from 0."""
        with self.db.write_batch() as batch:
            for key, value in records:
                if key in LOCAL_META_KEYS:
                    continue  # a sender of another build may send its own: this store keeps its
                if not key.startswith(BLOCK_PREFIX):
                    batch.put(key, value)
                    continue
                height = key_height(key)
                if len(key) != len(BLOCK_PREFIX) + 8 or height != self._loaded_blocks:
                    raise StoreError(f"snapshot block key {key.hex()} out of order (expected height "
                                     f"{self._loaded_blocks})")
                try:
                    batch.put(key, self.blocks.append(height, value, sync=False))
                except BlockFileError as exc:
                    raise StoreError(str(exc)) from exc
                self._loaded_blocks += 1

    def finish_snapshot_load(self) -> None:
        """Sync the loaded blocks, then everything else with one synced write of a marker."""
        self.blocks.sync()
        self.db.put(META_SNAPSHOT_INSTALLED, b"1", sync=True)

    def set_genesis_hash(self, genesis_hash: bytes) -> None:
        self.db.put(META_GENESIS, genesis_hash, sync=True)
