"""Negotiated trades: one party proposes terms to a named counterparty, who accepts or rejects;
acceptance settles DvP in that transaction.

Part of contracts/ (the venue, for SME shares that trade too rarely for a book). The proposer's
side is locked at proposal, so an acceptance before expiry cannot fail for lack of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from contracts import balances, compliance, market, participants, securities, settlement
from contracts.base import ADDRESS, AMOUNT, ASSET_ID, TEXT, Context, MethodTable, one_of
from contracts.cash import CURRENCY_CODE, require_currency
from contracts.market_data import NEGOTIATED, TradeRecorder
from contracts.orderbook import SELL, SIDES
from ledger.keys import is_address
from ledger.reasons import ContractError, InvariantViolation, Reason
from ledger.state import prefix_of, state_key

NAME = "negotiated"
METHODS = MethodTable()
MAX_EXPIRIES_PER_BLOCK = 1_000
MAX_PROPOSALS_LISTED = 1_000
MAX_PROPOSAL_LIFETIME_MS = 30 * 24 * 60 * 60 * 1000  # a month: locks are not held indefinitely

PROPOSED = "proposed"
ACCEPTED = "accepted"
REJECTED = "rejected"
WITHDRAWN = "withdrawn"
EXPIRED = "expired"
CANCELLED = "cancelled"  # by the ledger, for a corporate action on the security

ACCEPT = "accept"
REJECT = "reject"
WITHDRAW = "withdraw"
EXPIRE = "expire"
CANCEL = "cancel"

TRANSITIONS: dict[tuple[str, str], str] = {
    (PROPOSED, ACCEPT): ACCEPTED,
    (PROPOSED, REJECT): REJECTED,
    (PROPOSED, WITHDRAW): WITHDRAWN,
    (PROPOSED, EXPIRE): EXPIRED,
    (PROPOSED, CANCEL): CANCELLED,
}


def advance(status: str, event: str) -> str:
    """The next status; INVALID_STATE for a move the table does not allow (a user can ask)."""
    found = TRANSITIONS.get((status, event))
    if found is None:
        raise ContractError(Reason.INVALID_STATE, f"a proposal that is {status} cannot be {event}ed")
    return found


@dataclass(frozen=True)
class Proposal:
    """`side` is the proposer's: SELL means the proposer delivers `quantity` and receives `amount`."""

    proposal_id: int
    proposer: str
    counterparty: str
    side: str
    isin: str
    currency: str
    quantity: int
    price: int  # currency minor units per whole security unit
    amount: int  # cash for the whole quantity
    expires_at_ms: int
    status: str
    reference: str

    @property
    def seller(self) -> str:
        return self.proposer if self.side == SELL else self.counterparty

    @property
    def buyer(self) -> str:
        return self.counterparty if self.side == SELL else self.proposer

    def to_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "proposal_id"}


SEQUENCE_KEY = state_key("neg", "seq")
EXPIRY_PREFIX = prefix_of("neg", "exp")


def proposal_key(proposal_id: int) -> bytes:
    return state_key("neg", "prop", proposal_id)


def party_key(account: str, proposal_id: int) -> bytes:
    return state_key("neg", "party", account, proposal_id)


def security_key(isin: str, proposal_id: int) -> bytes:
    """Open proposals by security (so a corporate action can end them)."""
    return state_key("neg", "isin", isin, proposal_id)


def open_key(proposer: str, proposal_id: int) -> bytes:
    """Open proposals by proposer (so an authority can end an account's, cancel_account_proposals)."""
    return state_key("neg", "open", proposer, proposal_id)


def expiry_key(expires_at_ms: int, proposal_id: int) -> bytes:
    return EXPIRY_PREFIX + expires_at_ms.to_bytes(8, "big") + proposal_id.to_bytes(8, "big")


def get(ctx: Context, proposal_id: int) -> Proposal | None:
    raw = ctx.get(proposal_key(proposal_id))
    return None if raw is None else Proposal(proposal_id=proposal_id, **raw)


def require_proposal(ctx: Context, proposal_id: int) -> Proposal:
    found = get(ctx, proposal_id)
    if found is None:
        raise ContractError(Reason.NOT_FOUND, f"no proposal {proposal_id}")
    return found


def _save(ctx: Context, proposal: Proposal) -> None:
    ctx.put(proposal_key(proposal.proposal_id), proposal.to_state())


def _locked_part(proposal: Proposal) -> tuple[str, int]:
    """What the proposer locked: the securities if selling, the cash if buying."""
    return (proposal.isin, proposal.quantity) if proposal.side == SELL else (proposal.currency, proposal.amount)


def _close(ctx: Context, proposal: Proposal, event: str, by: str) -> Proposal:
    """End a proposal without a trade: release the proposer's lock, keep the record."""
    closed = replace(proposal, status=advance(proposal.status, event))
    asset, held = _locked_part(proposal)
    balances.unlock(ctx, asset, proposal.proposer, held)
    ctx.delete(expiry_key(proposal.expires_at_ms, proposal.proposal_id))
    ctx.delete(security_key(proposal.isin, proposal.proposal_id))
    ctx.delete(open_key(proposal.proposer, proposal.proposal_id))
    _save(ctx, closed)
    ctx.touch(proposal.counterparty)
    ctx.emit("proposal_" + closed.status, proposal_id=proposal.proposal_id, proposer=proposal.proposer,
             counterparty=proposal.counterparty, by=by)
    return closed


def _amount(price: int, quantity: int, scale: int) -> int:
    amount, rest = divmod(price * quantity, scale)
    if rest:
        raise ContractError(Reason.INVALID_AMOUNT, "price x quantity is not a whole number of cash units")
    if amount <= 0 or amount > balances.MAX_AMOUNT:
        raise ContractError(Reason.INVALID_AMOUNT, "the trade amount is out of range")
    return amount


def _check_proposer(ctx: Context, proposer: str, side: str, instrument: securities.Instrument,
                    currency: str, quantity: int, amount: int) -> None:
    if instrument.paused:
        raise ContractError(Reason.ASSET_PAUSED, f"{instrument.isin} is paused")
    market.require_not_converting(ctx, instrument.isin)
    if side == SELL:
        if ctx.block.time_ms < instrument.lockup_until_ms:
            raise ContractError(Reason.LOCKED_UP, f"{instrument.isin} is locked up")
        participants.require_eligible(ctx, proposer, Reason.SENDER_NOT_ELIGIBLE)
        compliance.check_not_frozen(ctx, proposer, currency)
        compliance.check_spendable(ctx, proposer, instrument.isin, quantity)
    else:
        securities.check_receiver(ctx, instrument, proposer)
        compliance.check_spendable(ctx, proposer, currency, amount)


# ---------------------------------------------------------------- methods


@METHODS.method(optional=("reference",), counterparty=ADDRESS, side=one_of(*SIDES), isin=ASSET_ID,
                currency=CURRENCY_CODE, quantity=AMOUNT, price=AMOUNT, expires_at_ms=AMOUNT, reference=TEXT)
def propose(ctx: Context, counterparty: str, side: str, isin: str, currency: str, quantity: int, price: int,
            expires_at_ms: int, reference: str = "") -> None:
    """Offer to sell (side "sell") or buy `quantity` of `isin` at `price` to one counterparty,
    until `expires_at_ms` (block time). The proposer's side is locked until the proposal ends."""
    proposer = ctx.sender
    if counterparty == proposer:
        raise ContractError(Reason.SELF_TRANSFER, "a proposal names another party")
    participants.require_eligible(ctx, counterparty, Reason.RECEIVER_NOT_ELIGIBLE)
    instrument = securities.require_instrument(ctx, isin)
    require_currency(ctx, currency)
    market.require_trading(ctx, isin)
    now_ms = ctx.block.time_ms
    if not now_ms < expires_at_ms <= now_ms + MAX_PROPOSAL_LIFETIME_MS:
        raise ContractError(Reason.BAD_ARGUMENTS, f"expires_at_ms must be after the block time and within "
                                                  f"{MAX_PROPOSAL_LIFETIME_MS} ms of it")
    amount = _amount(price, quantity, 10 ** instrument.decimals)
    _check_proposer(ctx, proposer, side, instrument, currency, quantity, amount)
    proposal_id = (ctx.get(SEQUENCE_KEY) or 0) + 1
    ctx.put(SEQUENCE_KEY, proposal_id)
    proposal = Proposal(proposal_id, proposer, counterparty, side, isin, currency, quantity, price, amount,
                        expires_at_ms, PROPOSED, reference)
    asset, held = _locked_part(proposal)
    balances.lock(ctx, asset, proposer, held)
    _save(ctx, proposal)
    ctx.put(party_key(proposer, proposal_id), 1)
    ctx.put(party_key(counterparty, proposal_id), 1)
    ctx.put(expiry_key(expires_at_ms, proposal_id), 1)
    ctx.put(security_key(isin, proposal_id), 1)
    ctx.put(open_key(proposer, proposal_id), 1)
    ctx.touch(counterparty)
    ctx.emit("proposal_made", proposal_id=proposal_id, proposer=proposer, counterparty=counterparty, side=side,
             isin=isin, currency=currency, quantity=quantity, price=price, amount=amount,
             expires_at_ms=expires_at_ms, reference=reference)


@METHODS.method(proposal_id=AMOUNT)
def accept(ctx: Context, proposal_id: int) -> None:
    """The named counterparty accepts before expiry: both legs settle now, or neither."""
    proposal = require_proposal(ctx, proposal_id)
    ctx.require_signer(proposal.counterparty)
    if proposal.status == PROPOSED and ctx.block.time_ms >= proposal.expires_at_ms:
        raise ContractError(Reason.INVALID_STATE, f"proposal {proposal_id} expired at {proposal.expires_at_ms}")
    accepted = replace(proposal, status=advance(proposal.status, ACCEPT))
    market.require_trading(ctx, proposal.isin)
    seller_locked = proposal.side == SELL
    settlement.settle_legs(ctx, [
        settlement.Leg(proposal.isin, proposal.seller, proposal.buyer, proposal.quantity, seller_locked),
        settlement.Leg(proposal.currency, proposal.buyer, proposal.seller, proposal.amount, not seller_locked),
    ])
    ctx.delete(expiry_key(proposal.expires_at_ms, proposal_id))
    ctx.delete(security_key(proposal.isin, proposal_id))
    ctx.delete(open_key(proposal.proposer, proposal_id))
    _save(ctx, accepted)
    recorder = TradeRecorder(ctx, proposal.isin, proposal.currency)
    trade = recorder.record(proposal.price, proposal.quantity, proposal.amount, proposal.buyer, proposal.seller,
                            proposal_id, proposal_id, "", NEGOTIATED)
    recorder.flush()
    ctx.emit("negotiated_trade", proposal_id=proposal_id, trade_id=trade.trade_id, isin=proposal.isin,
             currency=proposal.currency, price=proposal.price, quantity=proposal.quantity, amount=proposal.amount,
             buyer=proposal.buyer, seller=proposal.seller, time_ms=trade.time_ms)


@METHODS.method(proposal_id=AMOUNT)
def reject(ctx: Context, proposal_id: int) -> None:
    """The counterparty declines; the proposer's lock is released."""
    proposal = require_proposal(ctx, proposal_id)
    ctx.require_signer(proposal.counterparty)
    _close(ctx, proposal, REJECT, proposal.counterparty)


@METHODS.method(proposal_id=AMOUNT)
def withdraw(ctx: Context, proposal_id: int) -> None:
    """The proposer takes its proposal back before acceptance; its lock is released."""
    proposal = require_proposal(ctx, proposal_id)
    ctx.require_signer(proposal.proposer)
    _close(ctx, proposal, WITHDRAW, proposal.proposer)


@METHODS.method(account=ADDRESS, reason=TEXT)
def cancel_account_proposals(ctx: Context, account: str, reason: str) -> None:
    """An operator or an active regulator ends the open proposals an account made (up to
    MAX_FORCED_CANCELS per transaction; send again for more), releasing what they lock: the
    negotiated side of market.cancel_account_orders, e.g. so a forced transfer finds the units
    free (a proposal's lock would otherwise hold them for up to 30 days)."""
    by = market.require_venue_authority(ctx)
    prefix = prefix_of("neg", "open", account)
    found = [int.from_bytes(key[len(prefix):], "big") for key, _ in ctx.scan(prefix, market.MAX_FORCED_CANCELS)]
    for proposal_id in found:
        _close(ctx, require_proposal(ctx, proposal_id), CANCEL, by)
    ctx.touch(account)
    ctx.emit("account_proposals_cancelled", account=account, count=len(found), reason=reason, by=by)


# ---------------------------------------------------------------- scheduled work and queries


def begin_block(ctx: Context) -> None:
    """Expire proposals due at this block's time (bounded), releasing the proposers' locks."""
    due: list[int] = []
    for key, _ in ctx.state.iter_prefix(EXPIRY_PREFIX):
        if len(due) >= MAX_EXPIRIES_PER_BLOCK:
            break
        if int.from_bytes(key[len(EXPIRY_PREFIX):len(EXPIRY_PREFIX) + 8], "big") > ctx.block.time_ms:
            break
        due.append(int.from_bytes(key[-8:], "big"))
    for proposal_id in due:
        proposal = get(ctx, proposal_id)
        if proposal is None:
            raise InvariantViolation(f"expiry entry for a missing proposal {proposal_id}")
        _close(ctx, proposal, EXPIRE, "")


def withdraw_security_proposals(ctx: Context, isin: str, why: str, limit: int) -> bool:
    """End open proposals on `isin` (status cancelled, locks released), at most `limit`; True
    once none is left. For a corporate action that changes what a unit is (see market.py)."""
    prefix = prefix_of("neg", "isin", isin)
    found = [int.from_bytes(key[len(prefix):], "big") for key, _ in ctx.scan(prefix, limit + 1)]
    for proposal_id in found[:limit]:
        _close(ctx, require_proposal(ctx, proposal_id), CANCEL, why)
    return len(found) <= limit


def next_due_ms(ctx: Context) -> int | None:
    for key, _ in ctx.state.iter_prefix(EXPIRY_PREFIX):
        return int.from_bytes(key[len(EXPIRY_PREFIX):len(EXPIRY_PREFIX) + 8], "big")
    return None


def proposals_of(ctx: Context, account: str, limit: int = 100) -> list[Proposal]:
    """Proposals an account made or received (any status), oldest first."""
    out = []
    prefix = prefix_of("neg", "party", account)
    for key, _ in ctx.scan(prefix, max(0, min(limit, MAX_PROPOSALS_LISTED))):
        found = get(ctx, int.from_bytes(key[len(prefix):], "big"))
        if found is not None:
            out.append(found)
    return out


def _proposal_json(ctx: Context, proposal_id: str) -> dict[str, Any] | None:
    if not proposal_id.isdigit():
        raise ValueError("proposal_id is a positive integer")
    found = get(ctx, int(proposal_id))
    return None if found is None else {"proposal_id": found.proposal_id, **found.to_state()}


def _proposals_json(ctx: Context, account: str, limit: str = "100") -> list[dict[str, Any]]:
    if not is_address(account) or not limit.isdigit():
        raise ValueError("account is an address, limit a non-negative integer")
    return [{"proposal_id": p.proposal_id, **p.to_state()} for p in proposals_of(ctx, account, int(limit))]


QUERIES: dict[str, Callable[..., Any]] = {"proposal": _proposal_json, "proposals": _proposals_json}
