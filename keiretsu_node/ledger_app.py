"""The ledger as consensus sees it: apply committed entries in order, report, snapshot, install.

Part of keiretsu_node/. Consensus carries opaque batches; this adapter runs them through the
ledger executor in a worker thread (so the event loop keeps Raft's heartbeats on time) and
hands each applied block back to the node on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack

from consensus.messages import Entry
from keiretsu_node.blocktrace import TRACE
from ledger.block import MAX_BLOCK_BYTES
from ledger.blockfile import fsync_directory
from ledger.executor import AppliedBlock, Executor
from ledger.store import AppliedPosition, LedgerStore, StoreError
from ledger.tx import SignedTx

log = logging.getLogger("keiretsu.node")
SNAPSHOT_CHUNK_BYTES = 1024 * 1024
# A document holds [key, value] pairs up to SNAPSHOT_CHUNK_BYTES, or one larger record alone.
# The largest record is a block with its receipts, which the ledger stores up to MAX_BLOCK_BYTES
# (a batch is at most 8 MiB, but a transaction may emit 10,000 events): a follower must accept
# any block the ledger holds, or a snapshot carrying it could never be installed.
MAX_SNAPSHOT_DOCUMENT_BYTES = MAX_BLOCK_BYTES + 1024 * 1024
# snapshot_chunks counts at least 8 bytes a pair and closes a document past SNAPSHOT_CHUNK_BYTES.
MAX_PAIRS_PER_DOCUMENT = SNAPSHOT_CHUNK_BYTES // 8 + 1
# A record's key: a state key of a few parts of at most 128 characters (ledger/state.py), a
# block, index or history key; far below this.
MAX_SNAPSHOT_KEY_BYTES = 4096
SNAPSHOT_LOAD_BATCH_BYTES = 4 * 1024 * 1024  # received pairs written to the incoming store at once
LEDGER_DIR = "ledger"
INCOMING_DIR = "ledger.incoming"
OLD_DIR = "ledger.old"


class SnapshotError(RuntimeError):
    """A snapshot that cannot be installed (damaged, out of order)."""


def recover_dirs(data_dir: Path) -> None:
    """Finish or undo a snapshot install interrupted by a crash, before opening the store."""
    ledger, incoming, old = data_dir / LEDGER_DIR, data_dir / INCOMING_DIR, data_dir / OLD_DIR
    if not ledger.exists() and incoming.exists():
        incoming.rename(ledger)  # the crash came between the two renames: the new store is whole
        fsync_directory(data_dir)
    if incoming.exists():
        shutil.rmtree(incoming)  # an install that never completed
    if old.exists():
        shutil.rmtree(old)


def snapshot_chunks(store: LedgerStore) -> tuple[AppliedPosition, Iterator[bytes]]:
    """The whole ledger at one instant, as bounded msgpack chunks of [key, value] pairs."""
    position, records = store.snapshot()

    def chunks() -> Iterator[bytes]:
        pairs: list[list[bytes]] = []
        size = 0
        for key, value in records:
            pairs.append([key, value])
            size += len(key) + len(value) + 8
            if size >= SNAPSHOT_CHUNK_BYTES:
                yield msgpack.packb(pairs, use_bin_type=True)
                pairs, size = [], 0
        yield msgpack.packb(pairs, use_bin_type=True)

    return position, chunks()


class SnapshotWriter:
    """Receives snapshot bytes into a fresh database beside the live one.

    The bytes are a stream of msgpack documents (lists of [key, value] pairs, as
    snapshot_chunks() makes them), but the transport re-splits that stream at its own chunk
    size (consensus/snapshot_transfer.py): a chunk arriving here may end inside a document.
    The stream is therefore read header by header and byte string by byte string (a document's
    array header, each pair's, then its key and value), each checked before it is kept, and
    what arrives is written in batches: memory holds at most one byte string being decoded
    (bounded by max_buffer_size) and one batch, whatever a peer sends. (Decoding whole documents,
    or whole pairs, did not bound it: msgpack moves each finished element out of the buffer that
    max_buffer_size bounds, so one open document, or one pair of nested arrays, grew without limit.)
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / INCOMING_DIR
        if self.path.exists():
            shutil.rmtree(self.path)
        self.store = LedgerStore(self.path)
        # max_array_len=0: no array is ever built from a peer's bytes (read_array_header, which
        # this bound does not apply to, reads the document's and each pair's headers), so each
        # unpack() is one byte string (or a scalar or empty container, refused in _bytes).
        self._unpacker = msgpack.Unpacker(raw=True, max_buffer_size=MAX_SNAPSHOT_DOCUMENT_BYTES,
                                          max_bin_len=MAX_SNAPSHOT_DOCUMENT_BYTES, max_str_len=0,
                                          max_array_len=0, max_map_len=0, max_ext_len=0)
        self._fed_bytes = 0
        self._pairs_left: int | None = None  # of the document being read; None between documents
        self._key: bytes | None = None  # of the pair being read, once its key has arrived
        self._in_pair = False  # the pair's header has been read
        self._batch: list[tuple[bytes, bytes]] = []
        self._batch_bytes = 0

    def write(self, data: bytes) -> None:
        try:
            self._unpacker.feed(data)
            self._fed_bytes += len(data)
            self._read_pairs()
        except SnapshotError:
            raise
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise SnapshotError(f"damaged snapshot data: {exc}") from exc

    def _read_pairs(self) -> None:
        unpacker = self._unpacker
        while True:
            try:
                if self._pairs_left is None:
                    count = unpacker.read_array_header()  # max_array_len does not apply here
                    if count > MAX_PAIRS_PER_DOCUMENT:
                        raise SnapshotError(f"a snapshot document of {count} pairs (at most {MAX_PAIRS_PER_DOCUMENT})")
                    self._pairs_left = count
                while self._pairs_left:
                    if not self._in_pair:
                        if unpacker.read_array_header() != 2:
                            raise SnapshotError("a snapshot record is not a [key, value] pair")
                        self._in_pair = True
                    if self._key is None:
                        self._key = _bytes(unpacker.unpack())
                    self._keep(self._key, _bytes(unpacker.unpack()))
                    self._key, self._in_pair = None, False
                    self._pairs_left -= 1
                self._pairs_left = None
            except msgpack.OutOfData:
                break  # the rest of it comes with the next chunk
        self._flush()

    def _keep(self, key: bytes, value: bytes) -> None:
        if not 0 < len(key) <= MAX_SNAPSHOT_KEY_BYTES:
            raise SnapshotError(f"a snapshot key of {len(key)} bytes (1..{MAX_SNAPSHOT_KEY_BYTES})")
        self._batch.append((key, value))
        self._batch_bytes += len(key) + len(value)
        if self._batch_bytes >= SNAPSHOT_LOAD_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._batch:
            self.store.load_snapshot_records(iter(self._batch))
            self._batch, self._batch_bytes = [], 0

    def finish(self) -> None:
        if self._pairs_left is not None or self._in_pair or self._unpacker.tell() != self._fed_bytes:
            raise SnapshotError("snapshot ends inside a document")
        self._flush()
        # Sync everything written so far before the directory swap makes it the live store.
        self.store.finish_snapshot_load()
        self.store.close()


def _bytes(item: object) -> bytes:
    if type(item) is not bytes:
        raise SnapshotError("a snapshot record is not a [key, value] pair of byte strings")
    return item


def _check_head(incoming: LedgerStore, position: AppliedPosition, genesis_hash: bytes | None) -> None:
    """The snapshot's applied position names its last block, which is there and matches (the
    check every start makes, LedgerStore.check_head, before the swap), of this node's chain."""
    incoming.check_head()
    if incoming.block(position.height + 1) is not None:
        raise SnapshotError(f"the snapshot holds blocks past its position (height {position.height})")
    if genesis_hash is not None and incoming.genesis_hash() != genesis_hash:
        raise SnapshotError("the snapshot is of another chain (its genesis differs)")


def _counting(decoded: Callable[[bytes], SignedTx | None],
              hits: list[int]) -> Callable[[bytes], SignedTx | None]:
    """`decoded` that counts its hits into hits[0] (for the block trace)."""
    def lookup(raw: bytes) -> SignedTx | None:
        tx = decoded(raw)
        if tx is not None:
            hits[0] += 1
        return tx
    return lookup


class LedgerApp:
    """Consensus's application. The driver calls apply/install_snapshot in a worker thread,
    one call at a time; results are handed to the node on its event loop."""

    def __init__(self, executor: Executor, data_dir: Path,
                 on_block: Callable[[AppliedBlock | None, int, float], None],
                 on_store_replaced: Callable[[LedgerStore], None],
                 decoded: Callable[[bytes], SignedTx | None] | None = None) -> None:
        """`decoded`: transactions this node already decoded, by their bytes (the mempool's),
        so the executor does not decode them a second time. A snapshot install closes the live
        store on the event loop and calls `on_store_replaced` once the new one is open: in
        between, the node's store is closed and its readers must not read it."""
        self.executor = executor
        self.decoded = decoded
        self.data_dir = data_dir
        self.on_block = on_block
        self.on_store_replaced = on_store_replaced
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def store(self) -> LedgerStore:
        return self.executor.store

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def _notify(self, fn: Callable[..., None], *args: object) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(fn, *args)

    def applied_index(self) -> int:
        return self.store.position.raft_index

    def apply(self, entries: list[Entry]) -> None:
        """Execute committed entries in log order; one already applied is skipped by the executor."""
        for entry in entries:
            hits = [0]
            decoded = self.decoded
            if TRACE.on and decoded is not None:
                decoded = _counting(decoded, hits)
            started = time.perf_counter()
            applied = self.executor.apply(entry.data, entry.index, entry.term, decoded=decoded)
            seconds = time.perf_counter() - started
            if TRACE.on:
                TRACE.event("apply", index=entry.index, ms=f"{seconds * 1000:.2f}",
                            txs=len(applied.txs) if applied is not None else 0, reused=hits[0])
            self._notify(self.on_block, applied, entry.index, seconds)

    def snapshot(self) -> tuple[int, int, Iterator[bytes]]:
        position, chunks = snapshot_chunks(self.store)
        return position.raft_index, position.raft_term, chunks

    def install_snapshot(self, index: int, term: int, chunks: Iterator[bytes]) -> None:
        """Replace the whole ledger with a snapshot taken at (index, term) on another node."""
        writer = SnapshotWriter(self.data_dir)
        try:
            for chunk in chunks:
                writer.write(chunk)
            writer.finish()
        except BaseException:
            writer.store.close()  # the incoming directory is removed by the next attempt
            raise
        try:
            incoming = LedgerStore(writer.path)
            try:
                incoming.verify_blocks()
                position = incoming.position
                _check_head(incoming, position, self.store.genesis_hash())
            finally:
                incoming.close()
        except StoreError as exc:
            raise SnapshotError(f"the installed snapshot does not open: {exc}") from exc
        if position.raft_index != index:
            raise SnapshotError(f"snapshot claims index {index} but holds {position.raft_index}")
        self._close_store_among_readers()
        ledger, old = self.data_dir / LEDGER_DIR, self.data_dir / OLD_DIR
        ledger.rename(old)
        writer.path.rename(ledger)
        # The swap must survive a power cut: consensus compacts its log to the snapshot next.
        fsync_directory(self.data_dir)
        store = LedgerStore(ledger)
        self.executor.replace_store(store)
        log.info("installed a snapshot of the ledger: raft index %d, height %d", index, store.position.height)
        self._notify(self.on_store_replaced, store)
        shutil.rmtree(old)  # after the readers have the new store (a crash here: recover_dirs)

    def _close_store_among_readers(self) -> None:
        """Close the live store on the event loop, the one thread its readers run on (the node
        answers "not ready" while its store is closed, instead of reading it).

        Closing it here, on the apply thread, could free LevelDB's database under a read the
        loop is making at that instant: plyvel releases the GIL inside every read, so the read
        would go on in freed memory. On the loop, no read is under way while the close runs,
        and any read after it finds the store closed and raises."""
        store, loop = self.store, self.loop
        if loop is None or loop.is_closed():
            store.close()
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:  # already on the loop: nothing else is reading, and waiting would be for itself
            store.close()
            return
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def close_on_loop() -> None:
            try:
                store.close()
            except BaseException as exc:  # handed to the apply thread, which fails the install
                done.set_exception(exc)
            else:
                done.set_result(None)

        loop.call_soon_threadsafe(close_on_loop)
        done.result()
