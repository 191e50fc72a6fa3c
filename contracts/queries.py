"""Read-only queries over the state: an account's balances, a cap table, an instrument, a participant.

Part of contracts/. Pure functions over a Context (the API builds one over committed state) that
return frozen records; registered as the method-less contract "queries" so the API serves QUERIES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts import balances, compliance, participants, securities
from contracts.base import ASSET_ID, BlockContext, Context, MethodTable
from ledger import auth
from ledger.keys import is_address
from ledger.state import Overlay, StateReader, prefix_of

NAME = "queries"
METHODS = MethodTable()  # no transactions: this contract only reads
MAX_ACCOUNT_ASSETS = 10_000
MAX_CAP_TABLE_ROWS = 10_000
DEFAULT_CAP_TABLE_ROWS = 1_000


@dataclass(frozen=True)
class AssetBalance:
    asset: str
    free: int
    locked: int
    frozen: bool  # nothing of this asset may enter or leave
    frozen_amount: int  # units of the free part that may not leave (partial freeze)
    spendable: int  # what a transfer or a new lock may take now


@dataclass(frozen=True)
class Holding:
    account: str
    free: int
    locked: int


@dataclass(frozen=True)
class CapTable:
    isin: str
    issued: int
    retired: int
    outstanding: int
    holder_count: int
    holders: tuple[Holding, ...]  # in address order
    truncated: bool


@dataclass(frozen=True)
class InstrumentView:
    instrument: securities.Instrument
    issued: int
    retired: int
    outstanding: int
    holder_count: int


@dataclass(frozen=True)
class ParticipantView:
    participant: participants.Participant
    current_key: bytes | None  # None: the key the address was derived from
    recoveries: tuple[participants.Recovery, ...]
    freezes: tuple[compliance.Freeze, ...]


def read_context(state: StateReader, block: BlockContext | None = None) -> Context:
    """A context for reading: writes go to a throwaway overlay, there is no signer."""
    return Context(Overlay(state), block or BlockContext("", 0, 0), None, ())


def balances_of(ctx: Context, account: str, limit: int = MAX_ACCOUNT_ASSETS) -> tuple[AssetBalance, ...]:
    """Every asset the account holds (free or locked), in asset order."""
    prefix = prefix_of("holding", account)
    assets = [key[len(prefix):].decode("ascii") for key, _ in ctx.scan(prefix, min(limit, MAX_ACCOUNT_ASSETS))]
    out = []
    for asset in assets:
        held = balances.get(ctx, asset, account)
        out.append(AssetBalance(asset, held.free, held.locked, compliance.is_frozen(ctx, account, asset),
                                compliance.frozen_amount(ctx, account, asset),
                                compliance.spendable(ctx, account, asset)))
    return tuple(out)


def cap_table(ctx: Context, isin: str, limit: int = DEFAULT_CAP_TABLE_ROWS) -> CapTable | None:
    """Holders of a security with their quantities; None if there is no such security."""
    if securities.get_instrument(ctx, isin) is None:
        return None
    limit = max(1, min(limit, MAX_CAP_TABLE_ROWS))
    rows = tuple(Holding(account, held.free, held.locked) for account, held in balances.holders(ctx, isin, limit))
    issued, retired = balances.supply(ctx, isin)
    count = balances.holder_count(ctx, isin)
    return CapTable(isin, issued, retired, issued - retired, count, rows, len(rows) < count)


def instrument(ctx: Context, isin: str) -> InstrumentView | None:
    found = securities.get_instrument(ctx, isin)
    if found is None:
        return None
    issued, retired = balances.supply(ctx, isin)
    return InstrumentView(found, issued, retired, issued - retired, balances.holder_count(ctx, isin))


def participant(ctx: Context, address: str) -> ParticipantView | None:
    found = participants.get(ctx, address)
    if found is None:
        return None
    return ParticipantView(found, auth.current_key(ctx.state, address),
                           tuple(participants.recoveries(ctx, address)), tuple(compliance.freezes(ctx, address)))


# ---------------------------------------------------------------- served by the API (string params)


def _address_param(value: str) -> str:
    if not is_address(value):
        raise ValueError("not an address")
    return value


def _isin_param(value: str) -> str:
    if not ASSET_ID(value):
        raise ValueError("not an asset id")
    return value


def _limit_param(value: str) -> int:
    if not value.isdigit():
        raise ValueError("limit is a positive integer")
    return int(value)


QUERIES: dict[str, Callable[..., Any]] = {
    "balances": lambda ctx, account: balances_of(ctx, _address_param(account)),
    "cap_table": lambda ctx, isin, limit="1000": cap_table(ctx, _isin_param(isin), _limit_param(limit)),
    "instrument": lambda ctx, isin: instrument(ctx, _isin_param(isin)),
    "participant": lambda ctx, address: participant(ctx, _address_param(address)),
}
