"""Settlement: delivery-versus-payment and multi-leg batches, all legs or none.

Part of contracts/. settle_legs is the one way several movements happen atomically: the DvP and
batch methods here use it, and so do offerings (allocations); the market's fills use
settle_fill, which reaches settle_legs' outcome without re-checking per leg what cannot change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from contracts import balances, cash, compliance, securities
from contracts.base import ADDRESS, AMOUNT, ASSET_ID, TEXT, Context, MethodTable, list_of, map_of
from ledger.reasons import ContractError, Reason

NAME = "settlement"
METHODS = MethodTable()
CASH = "cash"
SECURITY = "security"
MAX_BATCH_LEGS = 64  # legs in one signed batch transaction
MAX_SETTLEMENT_LEGS = 10_000  # legs in one settle_legs call by another contract
DELIVERY_LEG = 0  # in a DvP, leg 0 delivers the security, leg 1 pays for it
PAYMENT_LEG = 1


@dataclass(frozen=True)
class Leg:
    """One movement of a settlement: `quantity` of `asset` from source to target.

    from_locked takes it from the source's locked part (an order or subscription settling).
    """

    asset: str
    source: str
    target: str
    quantity: int
    from_locked: bool = False


def asset_kind(ctx: Context, asset: str) -> str:
    """CASH for a registered currency, SECURITY for a registered instrument, else UNKNOWN_ASSET."""
    if cash.get_currency(ctx, asset) is not None:
        return CASH
    if securities.get_instrument(ctx, asset) is not None:
        return SECURITY
    raise ContractError(Reason.UNKNOWN_ASSET, f"no asset {asset}")


@contextmanager
def atomic(ctx: Context) -> Iterator[Context]:
    """A child context whose writes reach ctx only if the block completes without an error.

    Lets a caller that catches a ContractError (a matching engine skipping one trade) go on with
    the state exactly as before the failed attempt.
    """
    child = ctx.child()
    yield child
    ctx.merge_child(child)


def _apply(ctx: Context, leg: Leg) -> None:
    if asset_kind(ctx, leg.asset) == CASH:
        cash.transfer_checked(ctx, leg.asset, leg.source, leg.target, leg.quantity, from_locked=leg.from_locked)
    else:
        securities.transfer_checked(ctx, leg.asset, leg.source, leg.target, leg.quantity,
                                    from_locked=leg.from_locked)


def settle_legs(ctx: Context, legs: list[Leg]) -> None:
    """Apply every leg in order, each under its asset's rules, or none of them.

    Each leg sees the effect of the legs before it (a party may pass on what an earlier leg
    gave it). On failure the error keeps its reason code and its detail starts "leg <i>: ",
    <i> being the 0-based position of the failing leg; nothing has moved.
    """
    if not legs:
        raise ContractError(Reason.BAD_ARGUMENTS, "a settlement has at least one leg")
    if len(legs) > MAX_SETTLEMENT_LEGS:
        raise ContractError(Reason.LIMIT_EXCEEDED, f"at most {MAX_SETTLEMENT_LEGS} legs in one settlement")
    with atomic(ctx) as child:
        for position, leg in enumerate(legs):
            try:
                _apply(child, leg)
            except ContractError as exc:
                raise ContractError(exc.reason, f"leg {position}: {exc.detail}") from exc


# ---------------------------------------------------------------- the venue's fills


class FillTerms(NamedTuple):
    """What every fill of one incoming order shares, read once when the order is admitted.

    Instruments, currencies, participants and freezes are never written while an order matches
    (matching writes only balances, the book and market data), so these cannot change between
    the order's entry and its last fill.
    """

    isin: str
    currency: str
    currency_known: bool  # the book's currency is registered (it always is: open_book checks it)
    lockup_until_ms: int
    max_holders: int | None
    taker_freeze: compliance.FreezeState  # the taker's freeze of the asset it pays with


def settle_fill(ctx: Context, terms: FillTerms, seller: str, buyer: str, quantity: int, amount: int,
                maker_sells: bool) -> None:
    """One fill's DvP: exactly settle_legs([delivery, payment]) with the maker's leg from_locked,
    with the same outcomes, reason codes and details, for a caller that has already checked
    what cannot change inside the transaction: the taker at entry (market._check_taker: the
    asset not paused, the taker eligible, an investor and qualified if buying, past the lock-up
    if selling, not frozen for either asset) and each maker before it trades
    (matching._Eligibility: active, not frozen for either asset, an eligible investor if
    buying), and no self-trade. What is left per fill depends on balances, or (the lock-up) can
    only stop a taker's buy; tests/test_market_fill_path.py compares both paths.

    No child context: MAX_HOLDERS_REACHED, the one refusal the venue catches and goes on after,
    is raised before anything moves; any other refusal refuses the whole transaction.
    """
    try:
        _deliver(ctx, terms, seller, buyer, quantity, maker_sells)
    except ContractError as exc:
        raise ContractError(exc.reason, f"leg {DELIVERY_LEG}: {exc.detail}") from exc
    try:
        _pay(ctx, terms, buyer, seller, amount, not maker_sells)
    except ContractError as exc:
        raise ContractError(exc.reason, f"leg {PAYMENT_LEG}: {exc.detail}") from exc


def _deliver(ctx: Context, terms: FillTerms, seller: str, buyer: str, quantity: int, from_locked: bool) -> None:
    """securities.transfer_checked without the checks the caller made (same order for the rest)."""
    isin = terms.isin
    if ctx.block.time_ms < terms.lockup_until_ms:
        raise ContractError(Reason.LOCKED_UP, f"{isin} is locked up until {terms.lockup_until_ms}")
    held = balances.get(ctx, isin, seller)
    if terms.max_holders is not None and balances.get(ctx, isin, buyer).total == 0:
        # A new holder: check_receiver's rule, the issuer's treasury not counted (docs/CONTRACTS.md).
        instrument = securities.require_instrument(ctx, isin)
        securities.check_holder_room(ctx, instrument, buyer,
                                     freed_slots=securities.freed_slots_of(instrument, seller, held.total, quantity))
    _move(ctx, terms, isin, seller, buyer, quantity, from_locked, held)


def _pay(ctx: Context, terms: FillTerms, buyer: str, seller: str, amount: int, from_locked: bool) -> None:
    """cash.transfer_checked without the checks the caller made (same order for the rest)."""
    currency = terms.currency
    if not terms.currency_known:
        raise ContractError(Reason.UNKNOWN_ASSET, f"no asset {currency}")  # as asset_kind says it
    if amount <= 0:
        raise ContractError(Reason.INVALID_AMOUNT, "an amount is a positive integer")
    _move(ctx, terms, currency, buyer, seller, amount, from_locked, None)


def _move(ctx: Context, terms: FillTerms, asset: str, source: str, target: str, units: int, from_locked: bool,
          held: balances.Balance | None) -> None:
    """One leg's movement: the maker's locked units, or the taker's spendable ones under the
    freeze read at entry. `held`: the source's balance if the caller has just read it."""
    if from_locked:  # move_locked refuses INSUFFICIENT_LOCKED_BALANCE as transfer_checked does
        balances.move_locked(ctx, asset, source, target, units, source_balance=held)
    else:
        held = compliance.check_spendable(ctx, source, asset, units, terms.taker_freeze, held)
        balances.move(ctx, asset, source, target, units, source_balance=held)


# ---------------------------------------------------------------- methods


@METHODS.method(optional=("reference",), seller=ADDRESS, buyer=ADDRESS, isin=ASSET_ID, quantity=AMOUNT,
                currency=ASSET_ID, amount=AMOUNT, reference=TEXT)
def dvp(ctx: Context, seller: str, buyer: str, isin: str, quantity: int, currency: str, amount: int,
        reference: str = "") -> None:
    """Seller delivers `quantity` of a security, buyer pays `amount` of a currency; both sign this one
    transaction. Leg 0 is the delivery, leg 1 the payment; both settle or neither."""
    for role, party in (("seller", seller), ("buyer", buyer)):
        if party not in ctx.signers:
            raise ContractError(Reason.SIGNATURE_REQUIRED, f"the {role} {party} must sign")
    if seller == buyer:
        raise ContractError(Reason.SELF_TRANSFER, "seller and buyer are the same account")
    if securities.get_instrument(ctx, isin) is None:
        raise ContractError(Reason.UNKNOWN_ASSET, f"leg {DELIVERY_LEG}: {isin} is not a security")
    if cash.get_currency(ctx, currency) is None:
        raise ContractError(Reason.UNKNOWN_ASSET, f"leg {PAYMENT_LEG}: {currency} is not a currency")
    settle_legs(ctx, [Leg(isin, seller, buyer, quantity), Leg(currency, buyer, seller, amount)])
    # Attributes in key order, as on the venue's order path (see market.place).
    ctx.emit("dvp_settled", amount=amount, buyer=buyer, currency=currency, isin=isin,
             quantity=quantity, reference=reference, seller=seller)


LEG_ARG = map_of({"asset": ASSET_ID, "source": ADDRESS, "target": ADDRESS, "quantity": AMOUNT})


@METHODS.method(optional=("reference",), legs=list_of(LEG_ARG, MAX_BATCH_LEGS), reference=TEXT)
def batch(ctx: Context, legs: list[dict[str, Any]], reference: str = "") -> None:
    """Any number of legs across parties and assets, signed by every party that gives something."""
    parsed = [Leg(leg["asset"], leg["source"], leg["target"], leg["quantity"]) for leg in legs]
    for position, leg in enumerate(parsed):
        if leg.source not in ctx.signers:
            raise ContractError(Reason.SIGNATURE_REQUIRED, f"leg {position}: the giver {leg.source} must sign")
    settle_legs(ctx, parsed)
    ctx.emit("batch_settled", reference=reference,
             legs=[[leg.asset, leg.source, leg.target, leg.quantity] for leg in parsed])
