"""Read-only queries the API serves: accounts, history, securities, participants, contract queries.

Part of keiretsu_node/. Reads only committed state, through the same contract functions the
executor uses, so a query and a transaction never disagree on what a rule means.
"""

from __future__ import annotations

from typing import Any

from contracts import balances, participants
from contracts import queries as contract_queries
from contracts.base import Context
from contracts.registry import Registry
from keiretsu_node.jsonview import receipt_json, tx_json
from ledger.block import Block
from ledger.store import HISTORY_SYSTEM, HistoryEntry, LedgerStore

MAX_QUERY_PARAMS = 16


class QueryError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def account(ctx: Context, address: str) -> dict[str, Any]:
    """Balances per asset (free, locked) and the participant record, if any."""
    held = {b.asset: {"free": b.free, "locked": b.locked, "total": b.free + b.locked}
            for b in contract_queries.balances_of(ctx, address)}
    found = participants.get(ctx, address)
    return {
        "address": address,
        "balances": held,
        "participant": None if found is None else participant_view(found),
    }


def participant_view(found: participants.Participant) -> dict[str, Any]:
    return {
        "address": found.address,
        "name": found.name,
        "roles": list(found.roles),
        "status": found.status,
        "kyc_hash": found.kyc_hash.hex(),
        "qualified": found.qualified,
    }


def participant(ctx: Context, address: str) -> dict[str, Any] | None:
    found = participants.get(ctx, address)
    return None if found is None else participant_view(found)


def security(ctx: Context, isin: str) -> contract_queries.InstrumentView | None:
    """An instrument with its supply and holder count (the securities contract's own view)."""
    return contract_queries.instrument(ctx, isin)


def holders(ctx: Context, asset: str, limit: int) -> dict[str, Any]:
    """The cap table: every holder with free and locked quantities, in address order."""
    rows = [{"address": addr, "free": b.free, "locked": b.locked, "total": b.total}
            for addr, b in balances.holders(ctx, asset, limit + 1)]  # one more: is there more?
    issued, retired = balances.supply(ctx, asset)
    return {"asset": asset, "outstanding": issued - retired, "holders": rows[:limit],
            "holder_count": balances.holder_count(ctx, asset), "truncated": len(rows) > limit}


def history(store: LedgerStore, subject: str, after: HistoryEntry | None, limit: int) -> dict[str, Any]:
    """Every transaction (and ledger-run event) touching a subject, oldest first, paged."""
    entries = store.history(subject, after=after, limit=limit)
    blocks: dict[int, Block | None] = {}
    items = []
    for entry in entries:
        if entry.height not in blocks:
            blocks[entry.height] = store.block(entry.height)
        block = blocks[entry.height]
        if block is None:
            continue
        item: dict[str, Any] = {"height": entry.height, "time_ms": block.header.time_ms}
        if entry.kind == HISTORY_SYSTEM:
            event = block.system_events[entry.index]
            item.update({"kind": "ledger_event", "event": {"kind": event.kind, "attrs": event.attrs}})
        else:
            item.update({"kind": "transaction", "tx": tx_json(block.txs[entry.index]),
                         "receipt": receipt_json(block.receipts[entry.index])})
        items.append(item)
    last = entries[-1] if entries else None
    return {"subject": subject, "items": items,
            "next": f"{last.height}-{last.kind}-{last.index}" if last and len(entries) >= limit else None}


def contract_query(registry: Registry, ctx: Context, contract: str, name: str, params: dict[str, str]) -> Any:
    """A contract's named query: module-level QUERIES = {name: fn(ctx, **params)}.

    Parameters arrive as strings (from the URL); the query function parses and checks them.
    """
    found = registry.contracts.get(contract)
    if found is None:
        raise QueryError(404, "UNKNOWN_CONTRACT", f"no contract {contract!r}")
    table = found.queries
    fn = table.get(name)
    if fn is None:
        raise QueryError(404, "UNKNOWN_QUERY", f"contract {contract!r} has no query {name!r}; has {sorted(table)}")
    if len(params) > MAX_QUERY_PARAMS:
        raise QueryError(400, "BAD_REQUEST", "too many query parameters")
    try:
        return fn(ctx, **params)
    except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: a number past a key field's width
        raise QueryError(400, "BAD_ARGUMENTS", f"{contract}.{name}: {exc}") from exc
