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


def safe(value: Any) -> Any:
    """Any decoded state value as JSON: bytes become hex, tuples lists, dict keys strings."""
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
