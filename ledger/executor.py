"""The executor: applies one committed batch to the state and commits it as one block.

Part of ledger/. A function of (state, batch, block context): each transaction runs through its
contract on its own overlay, a failing one is rolled back alone and kept in the block marked
invalid; the block, receipts, state changes, indexes and the applied consensus position then
go to LevelDB in ONE synced write batch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from contracts.base import BlockContext, Context, Method
from contracts.registry import Registry
from ledger import codec
from ledger.auth import resolve_signer
from ledger.batch import MAX_BATCH_BYTES, Batch, BatchError
from ledger.block import GENESIS_PREV_HASH, MAX_BLOCK_BYTES, RECEIPT_ENCODED, Block, BlockHeader, Receipt, results_root
from ledger.frozen import check_buildable, new_record, set_fields
from ledger.genesis import Genesis
from ledger.merkle import merkle_root
from ledger.reasons import ContractError, InvariantViolation, Reason, TxRejected, require
from ledger.sigpool import SignaturePool
from ledger.state import Overlay, ReadCache
from ledger.store import (
    HISTORY_SYSTEM,
    META_GENESIS,
    AppliedPosition,
    LedgerStore,
    StoreError,
    history_keys,
    index_transactions,
)
from ledger.tx import SignedTx, decode_signed

MAX_TX_LIFETIME_MS = 60 * 60 * 1000
STATE_HASH_DOMAIN = b"keiretsu/state/v1\x00"
_STATE_KEY_TYPES = frozenset({bytes})
_STATE_VALUE_TYPES = frozenset({bytes, type(None)})
PARALLEL_VERIFY_MIN_TXS = 64
VERIFY_CHUNK_TXS = 32
_VERIFY_POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="sigverify")


check_buildable(Receipt)


@dataclass(frozen=True)
class Dropped:
    """A transaction the batch carried but the block does not: it was never ordered."""

    tx_id: bytes | None
    reason: Reason
    detail: str


@dataclass(frozen=True)
class AppliedBlock:
    block: Block
    dropped: tuple[Dropped, ...]
    txs: tuple[SignedTx, ...]  # the block's transactions, decoded, in block order
    subjects: tuple[tuple[str, ...], ...]  # per transaction: what its history index lists it under


def _array_header(count: int) -> bytes:
    """The msgpack header of an array of `count` items (fixarray, array 16 or array 32)."""
    if count < 16:
        return bytes([0x90 | count])
    if count < 2**16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def state_hash_after(prev_state_hash: bytes, height: int, writes: dict[bytes, bytes | None]) -> bytes:
    """Chains the previous state hash with this block's sorted write set (docs/STORAGE.md).

    The hashed bytes are the canonical encoding of the array of [key, value] pairs, streamed
    pair by pair so a block may write any number of keys (the codec caps containers it decodes).
    """
    digest = hashlib.sha256(STATE_HASH_DOMAIN + prev_state_hash + height.to_bytes(8, "big"))
    if (len(writes) <= codec.MAX_CONTAINER_ITEMS and {type(key) for key in writes} <= _STATE_KEY_TYPES
            and {type(value) for value in writes.values()} <= _STATE_VALUE_TYPES):
        # Every pair is two byte strings (or a key and None): the whole array in one pack, the
        # same bytes as the header and the pairs one by one, without a call per write.
        packed = codec.pack_normal([[key, writes[key]] for key in sorted(writes)])
        if packed is not None:
            digest.update(packed)
            return digest.digest()
    digest.update(_array_header(len(writes)))
    pair = codec.encode_leaves
    for key in sorted(writes):
        digest.update(pair([key, writes[key]]))
    return digest.digest()


def verify_stream(txs: list[SignedTx], processes: SignaturePool | None = None) -> Iterator[bool]:
    """Each transaction's signature verdict, in order, as soon as its chunk is checked.

    Chunks are checked in the worker processes of `processes` if it runs, else on the pool's
    threads (pynacl releases the GIL while verifying), so a caller that executes transaction i
    meanwhile overlaps execution with the checks after it. The threads overlap it only in
    part: a finished check waits for the GIL the executing thread holds (docs/PERFORMANCE.md).
    """
    if len(txs) < PARALLEL_VERIFY_MIN_TXS:
        yield from (tx.verify_signatures() for tx in txs)
        return
    if processes is not None and processes.running:
        yield from processes.verify_stream(txs)
        return
    futures = [_VERIFY_POOL.submit(_verify_chunk, txs[i:i + VERIFY_CHUNK_TXS])
               for i in range(0, len(txs), VERIFY_CHUNK_TXS)]
    try:
        for future in futures:
            yield from future.result()
    finally:
        for future in futures:  # the caller stopped early (a bug raised): do not verify for nobody
            future.cancel()


def _verify_chunk(txs: list[SignedTx]) -> list[bool]:
    return [tx.verify_signatures() for tx in txs]


def verify_all(txs: list[SignedTx]) -> list[bool]:
    """Signature checks spread over the cores (pynacl releases the GIL while verifying)."""
    return list(verify_stream(txs))


class VerifiedCache:
    """Ids of transactions whose signatures this node already checked at admission (bounded)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._seen: dict[bytes, None] = {}

    def _key(self, tx: SignedTx) -> bytes:
        return hashlib.sha256(tx.raw).digest()

    def add(self, tx: SignedTx) -> None:
        if len(self._seen) >= self.max_entries:
            self._seen.pop(next(iter(self._seen)))
        self._seen[self._key(tx)] = None

    def contains(self, tx: SignedTx) -> bool:
        return self._key(tx) in self._seen


# What a contract's arithmetic or inputs can produce that the canonical encoding cannot hold (an
# integer past 2**64 - 1 or below -2**63, a container past its item bound; OverflowError where a
# key packs an integer). Deterministic on every node, so a transaction that makes one fails alone
# (LIMIT_EXCEEDED) instead of stopping every node on its block, for ever: the contracts keep their
# values in range (docs/LIFECYCLE.md), and this is the net under them. A value of a type the codec
# refuses (a float, a set) is a bug in our code and still stops the node (CodecError).
BEYOND_THE_CODEC = (codec.OutOfRange, OverflowError)
BEYOND_THE_CODEC_DETAIL = "a value past what the ledger stores"


# The receipts of one block, encoded, at most: with its transactions (a batch, MAX_BATCH_BYTES)
# and ample room for the header, the failed receipts and the block-start events, a block stays
# under MAX_BLOCK_BYTES, which the block file refuses past (every node, every replay: a halt).
MAX_BLOCK_RECEIPTS_BYTES = MAX_BLOCK_BYTES - MAX_BATCH_BYTES - 32 * 1024 * 1024
RECEIPTS_FULL_DETAIL = "the block's receipts would pass what a block may hold; send it again"


def _beyond_the_codec(tx: SignedTx, signers: tuple[str, ...], exc: Exception) -> tuple[Receipt, tuple[str, ...]]:
    return _limit_exceeded(tx, signers, f"{BEYOND_THE_CODEC_DETAIL}: {exc}")


def _limit_exceeded(tx: SignedTx, signers: tuple[str, ...], detail: str) -> tuple[Receipt, tuple[str, ...]]:
    subjects = list(signers) or list(tx.signer_addresses)
    return Receipt(tx.tx_id, Reason.LIMIT_EXCEEDED, detail, ()), tuple(_dedupe(subjects))


def _collect_system_events(system_ctx: Context, hook_ctx: Context) -> None:
    """A hook's events join the block's; subjects touched after its last event belong to it."""
    if hook_ctx.touched and hook_ctx.event_subjects:
        hook_ctx.event_subjects[-1].extend(hook_ctx.touched)
    system_ctx.events.extend(hook_ctx.events)
    system_ctx.event_subjects.extend(hook_ctx.event_subjects)


def _first_copies(candidates: list[tuple[int, SignedTx]], dropped: list[tuple[int, Dropped]]) -> list[SignedTx]:
    """Executor._checked without signature checks: each transaction once, a later copy dropped."""
    seen: set[bytes] = set()
    admitted: list[SignedTx] = []
    for position, tx in candidates:
        if tx.tx_id in seen:
            dropped.append((position, Dropped(tx.tx_id, Reason.DUPLICATE, "twice in one batch")))
        else:
            seen.add(tx.tx_id)
            admitted.append(tx)
    return admitted


def _dedupe(subjects: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(subjects))


class Executor:
    def __init__(
        self,
        store: LedgerStore,
        registry: Registry,
        genesis: Genesis,
        *,
        verify_signatures: bool = True,
        verified_cache: VerifiedCache | None = None,
        sync: bool = True,
        signature_pool: SignaturePool | None = None,
    ) -> None:
        """`signature_pool`: worker processes for the signature checks, started and closed by
        the caller; without one (or once it has stopped) they run on a thread pool."""
        self.store = store
        self.signature_pool = signature_pool
        self.registry = registry
        self.genesis = genesis
        self.verify_signatures = verify_signatures
        self.verified_cache = verified_cache
        self.sync = sync
        self._reads = ReadCache(store.state)
        # The registry's methods by (contract, method): one dict lookup per transaction instead
        # of a call and two lookups (the registry does not change under an executor).
        self._methods: dict[tuple[str, str], Method] = {}

    def replace_store(self, store: LedgerStore) -> None:
        """Continue on another store (a snapshot installed in place of this node's ledger).

        The read cache goes with the old store: its values describe a state that is gone.
        """
        self.store = store
        self._reads = ReadCache(store.state)

    # ------------------------------------------------------------ genesis

    def init_genesis(self) -> None:
        """Write block 0 from the genesis, or check that the store holds this network's data."""
        stored = self.store.genesis_hash()
        if stored is not None:
            if stored != self.genesis.hash():
                raise StoreError(f"{self.store.path} holds data of another network (genesis hash differs)")
            return
        require(self.store.position.height == -1, "a store with blocks but no genesis hash")
        overlay = Overlay(self.store.state)
        bctx = BlockContext(self.genesis.chain_id, 0, self.genesis.genesis_time_ms)
        ctx = Context(overlay, bctx, None, ())
        for contract in self.registry.in_order():
            if contract.genesis is not None:
                # Each contract gets its own context so subjects one touched without an event
                # are not listed under the next contract's first event.
                hook_ctx = Context(overlay, bctx, None, ())
                contract.genesis(hook_ctx, self.genesis.app_state)
                _collect_system_events(ctx, hook_ctx)
        events = tuple(ctx.events)
        header = BlockHeader(
            self.genesis.chain_id, 0, GENESIS_PREV_HASH, self.genesis.genesis_time_ms, merkle_root([]),
            results_root((), events), state_hash_after(bytes(32), 0, overlay.writes), 0, 0,
        )
        block = Block(header, (), (), events)
        index = {META_GENESIS: self.genesis.hash()}
        self._index_system(index, 0, ctx)
        position = AppliedPosition(0, 0, 0, block.hash(), header.state_hash, header.time_ms)
        self.store.commit(overlay.writes, block, index, position, sync=self.sync)

    # ------------------------------------------------------------ one batch

    def apply(self, batch_bytes: bytes, raft_index: int, raft_term: int, *,
              decoded: Callable[[bytes], SignedTx | None] | None = None) -> AppliedBlock | None:
        """Apply a committed consensus entry; None if it was applied before (idempotent replay).

        `decoded`, if given, returns the transaction a caller already decoded from exactly these
        bytes (a node's mempool holds most of a block's), or None: decoding is a function of the
        bytes, so reusing it changes nothing but the time a second decode would take.
        """
        position = self.store.position
        require(position.height >= 0, "genesis must be applied before any batch")
        if raft_index <= position.raft_index:
            return None
        try:
            batch = Batch.decode(batch_bytes)
        except BatchError:
            # Not a batch (consensus never makes one): advance past it identically on every node.
            moved = AppliedPosition(raft_index, raft_term, position.height, position.block_hash,
                                    position.state_hash, position.time_ms)
            self._commit({}, None, {}, moved)
            return None
        height = position.height + 1
        bctx = BlockContext(self.genesis.chain_id, height, max(batch.proposed_time_ms, position.time_ms))
        block_overlay = Overlay(self._reads)
        system_ctx = self._begin_block(block_overlay, bctx)
        accepted: list[SignedTx] = []
        dropped: list[tuple[int, Dropped]] = []
        receipts: list[Receipt] = []
        tx_subjects: list[tuple[str, ...]] = []
        receipts_room = MAX_BLOCK_RECEIPTS_BYTES
        for tx in self._admit(batch.txs, bctx, dropped, decoded):
            receipt, subjects = self._run_tx(block_overlay, bctx, tx, receipts_room)
            receipts_room -= len(receipt.encoded)
            accepted.append(tx)
            receipts.append(receipt)
            tx_subjects.append(subjects)
        dropped.sort(key=lambda item: item[0])
        system_events = tuple(system_ctx.events)
        state_hash = state_hash_after(position.state_hash, height, block_overlay.writes)
        raws = [tx.raw for tx in accepted]
        header = BlockHeader(
            self.genesis.chain_id, height, position.block_hash, bctx.time_ms,
            merkle_root(raws), results_root(receipts, system_events),
            state_hash, raft_index, raft_term,
        )
        block = Block(header, tuple(raws), tuple(receipts), system_events)
        index: dict[bytes, bytes] = {}
        index_transactions(index, height, [tx.tx_id for tx in accepted], tx_subjects)
        self._index_system(index, height, system_ctx)
        new_position = AppliedPosition(raft_index, raft_term, height, block.hash(), state_hash, bctx.time_ms)
        self._commit(block_overlay.writes, block, index, new_position)
        return AppliedBlock(block, tuple(drop for _, drop in dropped), tuple(accepted), tuple(tx_subjects))

    def _commit(self, writes: dict[bytes, bytes | None], block: Block | None, index: dict[bytes, bytes],
                position: AppliedPosition) -> None:
        try:
            self.store.commit(writes, block, index, position, sync=self.sync, presence=self._reads.presence)
            # Inside the try: an exception between the commit and this (an interrupt) must not
            # leave the cache describing the store before the block, whose "absent" the next
            # commit trusts.
            self._reads.committed(writes)
        except BaseException:
            self._reads.clear()  # we no longer know what the store holds
            raise

    def _begin_block(self, block_overlay: Overlay, bctx: BlockContext) -> Context:
        """Scheduled work of every contract, before the block's transactions, in registry order."""
        system_ctx = Context(block_overlay, bctx, None, ())
        for contract in self.registry.in_order():
            if contract.begin_block is None:
                continue
            hook_overlay = Overlay(block_overlay)
            hook_ctx = Context(hook_overlay, bctx, None, ())
            try:
                contract.begin_block(hook_ctx)
                codec.encode([e.to_wire() for e in hook_ctx.events])  # as results_root will (rare: scheduled work)
            except ContractError as exc:
                system_ctx.emit("scheduled_work_failed", contract=contract.name, reason=str(exc.reason),
                                detail=exc.detail)
                continue
            except BEYOND_THE_CODEC as exc:  # rolled back like a refusal, retried next block
                system_ctx.emit("scheduled_work_failed", contract=contract.name, reason=str(Reason.LIMIT_EXCEEDED),
                                detail=f"{BEYOND_THE_CODEC_DETAIL}: {exc}")
                continue
            hook_overlay.merge_into(block_overlay)
            _collect_system_events(system_ctx, hook_ctx)
        return system_ctx

    def _index_system(self, index: dict[bytes, bytes], height: int, ctx: Context) -> None:
        for i, subjects in enumerate(ctx.event_subjects):
            for key in history_keys(_dedupe(subjects), height, HISTORY_SYSTEM, i):
                index[key] = b""

    def _admit(self, raws: tuple[bytes, ...], bctx: BlockContext, dropped: list[tuple[int, Dropped]],
               decoded: Callable[[bytes], SignedTx | None] | None = None) -> Iterable[SignedTx]:
        """The transactions that enter the block, in order; the others go to `dropped` with
        their position in the batch.

        Signatures are checked before the in-batch duplicate check, so a forged copy placed
        first cannot shadow the genuine one. With checks, yielding one by one lets the caller
        execute a transaction while the pool still verifies those after it; without, a list
        (a generator's resumption per transaction costs more than building it).
        """
        candidates = self._candidates(raws, bctx, dropped, decoded)
        if not self.verify_signatures:
            return _first_copies(candidates, dropped)
        return self._checked(candidates, dropped)

    def _candidates(self, raws: tuple[bytes, ...], bctx: BlockContext, dropped: list[tuple[int, Dropped]],
                    decoded: Callable[[bytes], SignedTx | None] | None) -> list[tuple[int, SignedTx]]:
        """(position, transaction) of each well-formed, fresh transaction not yet in the ledger."""
        candidates: list[tuple[int, SignedTx]] = []
        chain_id, time_ms = bctx.chain_id, bctx.time_ms
        latest_expiry_ms = time_ms + MAX_TX_LIFETIME_MS
        for position, raw in enumerate(raws):
            try:
                known = decoded(raw) if decoded is not None else None
                tx = known if known is not None else decode_signed(raw)
            except TxRejected as exc:
                dropped.append((position, Dropped(None, exc.reason, exc.detail)))
                continue
            body = tx.body
            if (body.chain_id != chain_id or not time_ms <= body.expires_at_ms <= latest_expiry_ms):
                try:  # _check_fresh names the reason; the test above spares its call when fresh
                    self._check_fresh(tx, bctx)
                except TxRejected as exc:
                    dropped.append((position, Dropped(tx.tx_id, exc.reason, exc.detail)))
                    continue
            if self.store.has_tx(tx.tx_id):
                dropped.append((position, Dropped(tx.tx_id, Reason.DUPLICATE, "already in the ledger")))
                continue
            candidates.append((position, tx))
        return candidates

    def _checked(self, candidates: list[tuple[int, SignedTx]],
                 dropped: list[tuple[int, Dropped]]) -> Iterator[SignedTx]:
        """The candidates whose signatures hold, each once, as their verdicts arrive."""
        seen: set[bytes] = set()
        verdicts = self._verdicts([tx for _, tx in candidates])
        for (position, tx), genuine in zip(candidates, verdicts, strict=True):
            if not genuine:
                dropped.append((position, Dropped(tx.tx_id, Reason.BAD_SIGNATURE, "a signature does not verify")))
            elif tx.tx_id in seen:
                dropped.append((position, Dropped(tx.tx_id, Reason.DUPLICATE, "twice in one batch")))
            else:
                seen.add(tx.tx_id)
                yield tx

    def _verdicts(self, txs: list[SignedTx]) -> Iterator[bool]:
        """Whether each transaction's signatures hold (True for all if checks are off or cached)."""
        if not self.verify_signatures:
            yield from (True for _ in txs)
            return
        cache = self.verified_cache
        # Decide once which to check: the cache may change under us (the mempool adds to it).
        unchecked = [cache is None or not cache.contains(tx) for tx in txs]
        verdicts = verify_stream([tx for tx, check in zip(txs, unchecked, strict=True) if check],
                                 self.signature_pool)
        for check in unchecked:
            yield next(verdicts) if check else True

    def _check_fresh(self, tx: SignedTx, bctx: BlockContext) -> None:
        body = tx.body
        if body.chain_id != bctx.chain_id:
            raise TxRejected(Reason.WRONG_CHAIN, f"signed for chain {body.chain_id!r}")
        if body.expires_at_ms < bctx.time_ms:
            raise TxRejected(Reason.EXPIRED, f"expired at {body.expires_at_ms}, block time {bctx.time_ms}")
        if body.expires_at_ms > bctx.time_ms + MAX_TX_LIFETIME_MS:
            raise TxRejected(Reason.EXPIRY_TOO_FAR, f"expiry more than {MAX_TX_LIFETIME_MS} ms ahead")

    def _run_tx(self, block_overlay: Overlay, bctx: BlockContext, tx: SignedTx,
                receipts_room: int = MAX_BLOCK_RECEIPTS_BYTES) -> tuple[Receipt, tuple[str, ...]]:
        tx_overlay = block_overlay.child()
        signers: tuple[str, ...] = ()
        body = tx.body
        try:
            keys = body.signers
            if len(keys) == 1:  # most transactions: no generator for one signer
                signers = (resolve_signer(tx_overlay, keys[0]),)
            else:
                signers = tuple(resolve_signer(tx_overlay, pk) for pk in keys)
            method = self._methods.get((body.contract, body.method))
            if method is None:
                method = self._method(body.contract, body.method)
            method.check_args(body.args)
            ctx = Context.for_transaction(tx_overlay, bctx, tx.tx_id, signers)
            method.fn(ctx, **body.args)
        except ContractError as exc:
            subjects = list(signers) or list(tx.signer_addresses)
            return Receipt(tx.tx_id, exc.reason, exc.detail, ()), tuple(_dedupe(subjects))
        except InvariantViolation:
            raise
        except BEYOND_THE_CODEC as exc:  # a state write the codec refused
            return _beyond_the_codec(tx, signers, exc)
        # built(Receipt, ...) written out: its two C calls without a Python call per transaction
        receipt = new_record(Receipt)
        set_fields(receipt, "__dict__", {"tx_id": tx.tx_id, "reason": Reason.OK, "detail": "",
                                         "events": tuple(ctx.events)})
        try:
            encoded = RECEIPT_ENCODED.compute_into(receipt)  # kept for results_root and the stored block
        except BEYOND_THE_CODEC as exc:  # an event the codec refused
            return _beyond_the_codec(tx, signers, exc)
        if len(encoded) > receipts_room:  # its events would make a block the block file refuses
            return _limit_exceeded(tx, signers, RECEIPTS_FULL_DETAIL)
        tx_overlay.merge_into(block_overlay)
        subjects = list(signers)
        for group in ctx.event_subjects:
            subjects.extend(group)
        subjects.extend(ctx.touched)
        return receipt, tuple(dict.fromkeys(subjects))  # _dedupe, inlined

    def _method(self, contract: str, name: str) -> Method:
        """registry.method, remembered by (contract, method) for the next transaction; a name the
        registry refuses raises its ContractError and is not remembered (the table stays bounded
        by the registry's methods)."""
        method = self.registry.method(contract, name)
        self._methods[(contract, name)] = method
        return method
