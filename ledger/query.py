"""Read-only queries over a LedgerStore: blocks, transaction receipts with inclusion proofs,
history, balances and raw state — the query side of the ledger boundary the API and SDK use.

Part of ledger/. Every result is a frozen record with to_json() (bytes as hex); contract
engineers build their own queries on `ReadContext`, a read-only contracts.base.Context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from contracts.base import MAX_STATE_VALUE_BYTES, BlockContext, Context
from ledger import codec
from ledger.block import Block, BlockHeader, Event, Receipt
from ledger.keys import address_of
from ledger.merkle import merkle_proof
from ledger.reasons import InvariantViolation
from ledger.state import Overlay, StateReader, prefix_of
from ledger.store import HISTORY_SYSTEM, MAX_HEIGHT, MAX_HISTORY_INDEX, MAX_HISTORY_PAGE, HistoryEntry, LedgerStore
from ledger.tx import decode_signed

MAX_SCAN_ENTRIES = 1_000
MAX_ACCOUNT_ASSETS = 10_000
DEFAULT_HISTORY_PAGE = 100


def json_safe(value: Any) -> Any:
    """A JSON-serialisable copy: bytes become lowercase hex, tuples become lists."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


# ---------------------------------------------------------------- read-only context


class ReadOnlyState(Overlay):
    """Committed state that refuses writes: a query that tries one is a bug of ours."""

    def put(self, key: bytes, value: bytes) -> None:
        raise InvariantViolation("a query tried to write state")

    def delete(self, key: bytes) -> None:
        raise InvariantViolation("a query tried to delete state")


class ReadContext(Context):
    """A contracts.base.Context over committed state, for queries: reads work, writes raise.

    Its block is the latest committed one (height and time), so rules that read the block
    (lock-ups, maturities) answer as the next transaction would see them, give or take a block.
    """

    @classmethod
    def over(cls, store: LedgerStore, chain_id: str = "") -> ReadContext:
        position = store.position
        if not chain_id and position.height >= 0:
            header = store.block_header(position.height)
            chain_id = header.chain_id if header is not None else ""
        block = BlockContext(chain_id, max(position.height, 0), position.time_ms)
        return cls(ReadOnlyState(store.state), block, None, ())


def read_context(store: LedgerStore, chain_id: str = "") -> ReadContext:
    return ReadContext.over(store, chain_id)


# ---------------------------------------------------------------- blocks


@dataclass(frozen=True)
class BlockView:
    height: int
    block_hash: bytes
    header: BlockHeader
    tx_ids: tuple[bytes, ...]
    receipts: tuple[Receipt, ...]
    system_events: tuple[Event, ...]

    @classmethod
    def of(cls, block: Block) -> BlockView:
        return cls(block.height, block.hash(), block.header, tuple(r.tx_id for r in block.receipts),
                   block.receipts, block.system_events)

    def to_json(self) -> dict[str, Any]:
        h = self.header
        return {
            "height": self.height,
            "hash": self.block_hash.hex(),
            "header": {
                "chain_id": h.chain_id, "height": h.height, "prev_hash": h.prev_hash.hex(),
                "time_ms": h.time_ms, "tx_root": h.tx_root.hex(), "results_root": h.results_root.hex(),
                "state_hash": h.state_hash.hex(), "raft_index": h.raft_index, "raft_term": h.raft_term,
            },
            "tx_ids": [tx_id.hex() for tx_id in self.tx_ids],
            "receipts": [receipt_json(r) for r in self.receipts],
            "system_events": [event_json(e) for e in self.system_events],
        }


def event_json(event: Event) -> dict[str, Any]:
    return {"kind": event.kind, "attrs": json_safe(event.attrs)}


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {"tx_id": receipt.tx_id.hex(), "valid": receipt.valid, "reason": str(receipt.reason),
            "detail": receipt.detail, "events": [event_json(e) for e in receipt.events]}


def block_at(store: LedgerStore, height: int) -> BlockView | None:
    block = store.block(height) if height >= 0 else None
    return None if block is None else BlockView.of(block)


def latest_block(store: LedgerStore) -> BlockView | None:
    return block_at(store, store.position.height)


# ---------------------------------------------------------------- transactions


@dataclass(frozen=True)
class TxView:
    """A committed transaction, its receipt, where it is and the proof that it is there."""

    tx_id: bytes
    height: int
    index: int
    block_hash: bytes
    time_ms: int
    raw: bytes
    receipt: Receipt
    tx_root: bytes
    proof: tuple[tuple[bool, bytes], ...]  # (sibling_is_left, hash), leaf to root; see merkle.py

    def to_json(self) -> dict[str, Any]:
        tx = decode_signed(self.raw)
        body = tx.body
        return {
            "tx_id": self.tx_id.hex(),
            "height": self.height,
            "index": self.index,
            "block_hash": self.block_hash.hex(),
            "time_ms": self.time_ms,
            "tx": {
                "chain_id": body.chain_id, "contract": body.contract, "method": body.method,
                "args": json_safe(body.args), "nonce": body.nonce, "expires_at_ms": body.expires_at_ms,
                "signers": [pk.hex() for pk in body.signers],
                "signer_addresses": [address_of(pk) for pk in body.signers],
                "signatures": [sig.hex() for sig in tx.signatures],
            },
            "raw": self.raw.hex(),
            "receipt": receipt_json(self.receipt),
            "inclusion": {
                "tx_root": self.tx_root.hex(),
                "proof": [{"side": "left" if left else "right", "hash": h.hex()} for left, h in self.proof],
            },
        }


def transaction(store: LedgerStore, tx_id: bytes) -> TxView | None:
    """A committed transaction by id, with the Merkle proof of its raw bytes under tx_root."""
    location = store.tx_location(tx_id)
    if location is None:
        return None
    height, index = location
    block = store.block(height)
    if block is None or index >= len(block.txs):
        raise InvariantViolation(f"tx index points at a missing block or slot ({height}, {index})")
    proof = tuple(merkle_proof(list(block.txs), index))
    return TxView(tx_id, height, index, block.hash(), block.header.time_ms, block.txs[index],
                  block.receipts[index], block.header.tx_root, proof)


# ---------------------------------------------------------------- history


@dataclass(frozen=True)
class HistoryItem:
    height: int
    kind: int  # HISTORY_TX or HISTORY_SYSTEM (store.py)
    index: int
    time_ms: int
    tx_id: bytes | None  # None for an event the ledger itself ran (scheduled work)
    receipt: Receipt | None
    event: Event | None

    @property
    def cursor(self) -> str:
        return f"{self.height}-{self.kind}-{self.index}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"height": self.height, "time_ms": self.time_ms, "cursor": self.cursor}
        if self.receipt is not None:
            out.update(kind="transaction", tx_id=self.receipt.tx_id.hex(), receipt=receipt_json(self.receipt))
        elif self.event is not None:
            out.update(kind="ledger_event", event=event_json(self.event))
        return out


@dataclass(frozen=True)
class HistoryPage:
    subject: str
    items: tuple[HistoryItem, ...]
    next_cursor: str | None  # pass back as `after` for the next page; None at the end

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "items": [i.to_json() for i in self.items], "next": self.next_cursor}


def parse_cursor(cursor: str) -> HistoryEntry:
    """A history cursor "height-kind-index", as a page's `next` gives it; ValueError if it is
    not one, or names no entry a history key can hold (its fields' widths, history_key)."""
    parts = cursor.split("-")
    if len(parts) != 3 or not all(p.isdigit() and len(p) <= 20 for p in parts):
        raise ValueError("a history cursor is height-kind-index")
    height, kind, index = (int(p) for p in parts)
    if height > MAX_HEIGHT or kind > HISTORY_SYSTEM or index > MAX_HISTORY_INDEX:
        raise ValueError("the history cursor names no possible entry: use the 'next' a page returned")
    return HistoryEntry(height, kind, index)


def history(store: LedgerStore, subject: str, *, after: str | None = None,
            limit: int = DEFAULT_HISTORY_PAGE) -> HistoryPage:
    """Transactions and ledger events touching an account or asset, oldest first, paged."""
    limit = max(1, min(limit, MAX_HISTORY_PAGE))
    entries = store.history(subject, after=parse_cursor(after) if after else None, limit=limit)
    blocks: dict[int, Block] = {}
    items = []
    for entry in entries:
        block = blocks.get(entry.height) or store.block(entry.height)
        if block is None:
            raise InvariantViolation(f"history points at a missing block {entry.height}")
        blocks[entry.height] = block
        if entry.kind == HISTORY_SYSTEM:
            items.append(HistoryItem(entry.height, entry.kind, entry.index, block.header.time_ms, None, None,
                                     block.system_events[entry.index]))
        else:
            receipt = block.receipts[entry.index]
            items.append(HistoryItem(entry.height, entry.kind, entry.index, block.header.time_ms,
                                     receipt.tx_id, receipt, None))
    more = len(entries) == limit and bool(store.history(subject, after=entries[-1], limit=1))
    return HistoryPage(subject, tuple(items), items[-1].cursor if more else None)


# ---------------------------------------------------------------- balances and raw state


@dataclass(frozen=True)
class AssetBalance:
    asset: str
    free: int
    locked: int

    @property
    def total(self) -> int:
        return self.free + self.locked

    def to_json(self) -> dict[str, Any]:
        return {"asset": self.asset, "free": self.free, "locked": self.locked, "total": self.total}


@dataclass(frozen=True)
class AccountBalances:
    address: str
    balances: tuple[AssetBalance, ...]  # assets in name order; only those held

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "balances": [b.to_json() for b in self.balances]}


def account_balances(store: LedgerStore, address: str) -> AccountBalances:
    """Free and locked amounts of every asset an account holds (the `holding` index)."""
    from contracts import balances  # contracts own the key layout of balances

    ctx = read_context(store)
    prefix = prefix_of("holding", address)
    rows = []
    for key, _ in ctx.scan(prefix, MAX_ACCOUNT_ASSETS):
        asset = key[len(prefix):].decode("utf-8")
        found = balances.get(ctx, asset, address)
        rows.append(AssetBalance(asset, found.free, found.locked))
    return AccountBalances(address, tuple(rows))


@dataclass(frozen=True)
class StateEntry:
    key: bytes
    raw: bytes

    @property
    def value(self) -> Any:
        return codec.decode(self.raw, max_bytes=MAX_STATE_VALUE_BYTES)

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key.hex(), "raw": self.raw.hex(), "value": json_safe(self.value)}


def state_get(store: LedgerStore, key: bytes) -> StateEntry | None:
    raw = store.state.get(key)
    return None if raw is None else StateEntry(key, raw)


def state_scan(state: LedgerStore | StateReader, prefix: bytes, *, limit: int = 100,
               start: bytes | None = None) -> tuple[StateEntry, ...]:
    """At most `limit` (<= MAX_SCAN_ENTRIES) committed entries under a prefix, in key order,
    from key `start` if given (a page after the last key seen)."""
    reader = state.state if isinstance(state, LedgerStore) else state
    limit = max(1, min(limit, MAX_SCAN_ENTRIES))
    out: list[StateEntry] = []
    for key, raw in reader.iter_prefix(prefix, start):
        if len(out) >= limit:
            break
        out.append(StateEntry(key, raw))
    return tuple(out)
