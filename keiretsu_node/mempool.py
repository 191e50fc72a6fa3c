"""The mempool: admitted transactions waiting to be ordered, bounded in count, bytes and per signer.

Part of keiretsu_node/. Admission runs every check that needs no contract state (form,
bounds, chain id, signatures, expiry, duplicates, known contract and argument types); what
passes waits here until the leader proposes it or a follower forwards it to the leader.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice

from contracts.registry import Registry
from keiretsu_node.config import signer_share
from ledger.executor import MAX_TX_LIFETIME_MS, VerifiedCache
from ledger.reasons import ContractError, Reason, TxRejected
from ledger.store import LedgerStore
from ledger.tx import SignedTx, decode_signed

REFORWARD_AFTER_MS = 2_000
REPROPOSE_AFTER_MS = 5_000
RETRY_AFTER_S = 1


class MempoolFull(Exception):
    """The pool, or its signer's share of it, is at its bound: the client should retry later
    (HTTP 503, Retry-After)."""

    retry_after_s = RETRY_AFTER_S


@dataclass
class _Entry:
    tx: SignedTx
    size_bytes: int
    signer: bytes  # the first signer's key: whose share of the pool this entry uses
    handed_off_ms: int | None = None  # when proposed or forwarded; None while pending
    # Once proposed or forwarded, another node may order it: from then on only the ledger's
    # block time may expire it here (expire), never this node's clock (expire_unsent).
    ever_handed_off: bool = False


def _first_signer(tx: SignedTx) -> bytes:
    signers = tx.body.signers
    return signers[0] if signers else b""


class Mempool:
    def __init__(self, chain_id: str, registry: Registry, store: LedgerStore, *, max_txs: int,
                 max_bytes: int, verified_cache: VerifiedCache, max_txs_per_signer: int | None = None) -> None:
        self.chain_id = chain_id
        self.registry = registry
        self.store = store
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_txs_per_signer = max_txs_per_signer if max_txs_per_signer is not None else signer_share(max_txs)
        self._per_signer: dict[bytes, int] = {}  # entries held per first signer, none at zero
        self.verified_cache = verified_cache
        self._entries: dict[bytes, _Entry] = {}
        self._pending: dict[bytes, None] = {}
        self._pending_bytes = 0  # the sizes of the pending entries, kept beside _pending
        # The same transactions by their bytes, for the executor (decoded(), below).
        self._by_raw: dict[bytes, SignedTx] = {}
        self._size_bytes = 0
        self.rejected_full = 0
        # Lower bounds of the earliest expiry and the earliest hand-off among the entries, so
        # the housekeeping calls (4 a second) skip their scan of the whole pool while nothing
        # can be due: the scans were 2-4% of the event loop's samples under load (py-spy).
        # A bound below the true minimum only costs a scan, which then recomputes it.
        self._expiry_floor_ms: int | None = None  # over every entry (expire, by block time)
        self._unsent_expiry_floor_ms: int | None = None  # over those never handed off (expire_unsent)
        self._handoff_floor_ms: int | None = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def contains(self, tx_id: bytes) -> bool:
        return tx_id in self._entries

    def decoded(self, raw: bytes) -> SignedTx | None:
        """The transaction these exact bytes decoded to at admission, if it is still here.

        The executor calls this from its worker thread while the event loop adds and removes:
        one dict lookup, atomic under the GIL; a miss only means the executor decodes again.
        """
        return self._by_raw.get(raw)

    def precheck(self, raw: bytes, now_ms: int) -> SignedTx:
        """Decode and check everything but signatures (cheap; run first, in the event loop)."""
        tx = decode_signed(raw)
        body = tx.body
        if body.chain_id != self.chain_id:
            raise TxRejected(Reason.WRONG_CHAIN, f"signed for chain {body.chain_id!r}, this is {self.chain_id!r}")
        if body.expires_at_ms < now_ms:
            raise TxRejected(Reason.EXPIRED, f"expired at {body.expires_at_ms}, now {now_ms}")
        if body.expires_at_ms > now_ms + MAX_TX_LIFETIME_MS:
            raise TxRejected(Reason.EXPIRY_TOO_FAR, f"expiry more than {MAX_TX_LIFETIME_MS} ms ahead")
        try:
            self.registry.check_call(body.contract, body.method, body.args)
        except ContractError as exc:
            raise TxRejected(exc.reason, exc.detail) from exc
        if tx.tx_id in self._entries or self.store.has_tx(tx.tx_id):
            raise TxRejected(Reason.DUPLICATE, "this transaction was already submitted")
        return tx

    def add(self, tx: SignedTx, *, signatures_verified: bool) -> bool:
        """Add a checked transaction; False if it is already here. MempoolFull at the pool's
        bound or at its first signer's share (one signer cannot take every slot)."""
        if tx.tx_id in self._entries:
            return False
        size = len(tx.raw)
        if len(self._entries) >= self.max_txs or self._size_bytes + size > self.max_bytes:
            self.rejected_full += 1
            raise MempoolFull(f"mempool holds {len(self._entries)} transactions; retry shortly")
        signer = _first_signer(tx)
        held = self._per_signer.get(signer, 0)
        if held >= self.max_txs_per_signer:
            self.rejected_full += 1
            raise MempoolFull(f"this signer has {held} transactions pending, the most one signer may "
                              f"(mempool.max_txs_per_signer); retry shortly")
        if signatures_verified:
            self.verified_cache.add(tx)
        self._entries[tx.tx_id] = _Entry(tx, size, signer)
        self._per_signer[signer] = held + 1
        expires_ms = tx.body.expires_at_ms
        if self._expiry_floor_ms is None or expires_ms < self._expiry_floor_ms:
            self._expiry_floor_ms = expires_ms
        if self._unsent_expiry_floor_ms is None or expires_ms < self._unsent_expiry_floor_ms:
            self._unsent_expiry_floor_ms = expires_ms
        self._by_raw[tx.raw] = tx
        self._pending[tx.tx_id] = None
        self._pending_bytes += size
        self._size_bytes += size
        return True

    def take(self, now_ms: int, max_txs: int, max_bytes: int) -> list[SignedTx]:
        """Pending transactions in arrival order, marked handed off (proposed or forwarded)."""
        out: list[SignedTx] = []
        total = 0
        # At most max_txs ids are copied out of the pending dict (it cannot change while we
        # iterate it), not the whole backlog: a saturated pool holds up to max_txs entries.
        for tx_id in list(islice(self._pending, max(max_txs, 1))):
            entry = self._entries[tx_id]
            if out and (len(out) >= max_txs or total + entry.size_bytes > max_bytes):
                break
            del self._pending[tx_id]
            self._pending_bytes -= entry.size_bytes
            entry.handed_off_ms = now_ms
            entry.ever_handed_off = True
            out.append(entry.tx)
            total += entry.size_bytes
        if out and (self._handoff_floor_ms is None or now_ms < self._handoff_floor_ms):
            self._handoff_floor_ms = now_ms
        return out

    def pending_count(self) -> int:
        return len(self._pending)

    def held_by(self, signer: bytes) -> int:
        """How many entries name this key as their first signer."""
        return self._per_signer.get(signer, 0)

    def pending_bytes(self) -> int:
        return self._pending_bytes

    def oldest_pending_since(self) -> bytes | None:
        return next(iter(self._pending), None)

    def requeue_stale(self, now_ms: int, after_ms: int) -> int:
        """Handed-off transactions not committed after `after_ms` become pending again.

        Safe because the executor drops a transaction already in the ledger: at-least-once
        hand-off, exactly-once application.
        """
        if self._handoff_floor_ms is None or now_ms - self._handoff_floor_ms < after_ms:
            return 0  # nothing was handed off that long ago
        count = 0
        floor: int | None = None
        for tx_id, entry in self._entries.items():
            handed_off_ms = entry.handed_off_ms
            if handed_off_ms is None:
                continue
            if now_ms - handed_off_ms >= after_ms:
                self._back_to_pending(tx_id, entry)
                count += 1
            elif floor is None or handed_off_ms < floor:
                floor = handed_off_ms
        self._handoff_floor_ms = floor
        return count

    def requeue(self, tx_ids: list[bytes]) -> None:
        """These handed-off transactions (a proposal that did not commit) are pending again."""
        for tx_id in tx_ids:
            entry = self._entries.get(tx_id)
            if entry is not None and entry.handed_off_ms is not None:
                self._back_to_pending(tx_id, entry)

    def requeue_all(self) -> None:
        """On a change of leader: everything handed off goes back to pending."""
        for tx_id, entry in self._entries.items():
            if entry.handed_off_ms is not None:
                self._back_to_pending(tx_id, entry)

    def _back_to_pending(self, tx_id: bytes, entry: _Entry) -> None:
        """A handed-off entry is pending again, at the end of the arrival order, and its bytes
        count in pending_bytes."""
        entry.handed_off_ms = None
        self._pending[tx_id] = None
        self._pending_bytes += entry.size_bytes

    def remove(self, tx_ids: list[bytes]) -> None:
        for tx_id in tx_ids:
            entry = self._entries.pop(tx_id, None)
            if entry is not None:
                self._by_raw.pop(entry.tx.raw, None)
                if tx_id in self._pending:
                    del self._pending[tx_id]
                    self._pending_bytes -= entry.size_bytes
                self._size_bytes -= entry.size_bytes
                held = self._per_signer[entry.signer] - 1
                if held:
                    self._per_signer[entry.signer] = held
                else:
                    del self._per_signer[entry.signer]

    def remove_committed(self) -> list[bytes]:
        """Remove the transactions the store already holds in a block; returns their ids.

        After a snapshot install the store holds blocks this node never executed, so their
        transactions were never removed on commit: left pooled, they were forwarded or proposed
        again (and refused as duplicates) until they expired. One store lookup per pooled
        transaction, at most max_txs, once per install.
        """
        done = [tx_id for tx_id in self._entries if self.store.has_tx(tx_id)]
        self.remove(done)
        return done

    def expire(self, block_time_ms: int) -> list[bytes]:
        """Remove every entry that expired before this block time; returns their ids.

        Sound for handed-off entries too: block time never goes backwards, and the executor
        drops a transaction whose expiry is before its block's time, so none of these can
        ever be in a block.
        """
        if self._expiry_floor_ms is None or block_time_ms <= self._expiry_floor_ms:
            return []  # nothing here expires before the floor
        gone = [tx_id for tx_id, e in self._entries.items() if e.tx.body.expires_at_ms < block_time_ms]
        self.remove(gone)
        self._expiry_floor_ms = min((e.tx.body.expires_at_ms for e in self._entries.values()), default=None)
        return gone

    def expire_unsent(self, now_ms: int) -> list[bytes]:
        """Remove the entries expired by this node's clock that were never proposed or
        forwarded (only this pool holds them); returns their ids.

        A handed-off entry may be in a block cut before its expiry, or by a leader whose clock
        is behind ours: only the ledger's block time (expire) or its block settles it.
        """
        floor = self._unsent_expiry_floor_ms
        if floor is None or now_ms <= floor:
            return []
        unsent = [(tx_id, e.tx.body.expires_at_ms) for tx_id, e in self._entries.items() if not e.ever_handed_off]
        gone = [tx_id for tx_id, expires_ms in unsent if expires_ms < now_ms]
        self.remove(gone)
        self._unsent_expiry_floor_ms = min((expires_ms for _, expires_ms in unsent if expires_ms >= now_ms),
                                           default=None)
        return gone
