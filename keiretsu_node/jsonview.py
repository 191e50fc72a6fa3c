"""JSON views of ledger records for the HTTP API: bytes as hex, addresses as text.

Part of keiretsu_node/. One place decides how a block, transaction or receipt looks in JSON,
so the API, the CLI and the SDK print the same thing.
"""

from __future__ import annotations

from typing import Any

from ledger.block import Block, Receipt
from ledger.keys import address_of
from ledger.reasons import TxRejected
from ledger.tx import decode_signed

# Exact types JSON takes as they are. Checked by `type(x) in`, not isinstance, so subclasses
# (an IntEnum, a dataclass) still take the general path and come out as before.
_PLAIN_TYPES = frozenset({str, int, bool, float, type(None)})


def safe(value: Any) -> Any:
    """Any decoded state value as JSON: bytes become hex, tuples lists, dict keys strings.

    Every waited-for receipt goes through here (a trade event has 13 attributes); the exact-type
    fast paths take a trade event from 3.2 to 1.5 µs (measured, process CPU time).
    """
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if kind is bytes:
        return value.hex()
    if kind is dict:
        plain = _PLAIN_TYPES
        return {(k if type(k) is str else str(k)): (v if type(v) in plain else safe(v)) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [safe(v) for v in value]
    return _safe_general(value)


def _safe_general(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {name: safe(getattr(value, name)) for name in value.__dataclass_fields__}
    return value


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "tx_id": receipt.tx_id.hex(),
        "result": "valid" if receipt.valid else "invalid",
        "reason": str(receipt.reason),
        "detail": receipt.detail,
        "events": [{"kind": e.kind, "attrs": safe(e.attrs)} for e in receipt.events],
    }


def tx_json(raw: bytes) -> dict[str, Any]:
    try:
        tx = decode_signed(raw)
    except TxRejected:
        return {"raw": raw.hex()}
    body = tx.body
    return {
        "tx_id": tx.tx_id.hex(),
        "chain_id": body.chain_id,
        "contract": body.contract,
        "method": body.method,
        "args": safe(body.args),
        "nonce": body.nonce,
        "expires_at_ms": body.expires_at_ms,
        "signers": [address_of(pk) for pk in body.signers],
        "signer_keys": [pk.hex() for pk in body.signers],
    }


def block_json(block: Block, *, with_txs: bool = True) -> dict[str, Any]:
    h = block.header
    out: dict[str, Any] = {
        "height": h.height,
        "hash": block.hash().hex(),
        "prev_hash": h.prev_hash.hex(),
        "time_ms": h.time_ms,
        "tx_root": h.tx_root.hex(),
        "results_root": h.results_root.hex(),
        "state_hash": h.state_hash.hex(),
        "raft_index": h.raft_index,
        "raft_term": h.raft_term,
        "tx_count": len(block.txs),
    }
    if with_txs:
        out["transactions"] = [
            {**tx_json(raw), "receipt": receipt_json(r)} for raw, r in zip(block.txs, block.receipts, strict=True)
        ]
        out["system_events"] = [{"kind": e.kind, "attrs": safe(e.attrs)} for e in block.system_events]
    return out
