"""Primary offerings: an issuer sells new units of a security for cash over a subscription window.

Part of contracts/. Subscribers' cash is locked when they subscribe; the ledger closes the
offering itself in the first block at or after the window's end, allocating (pro rata when
oversubscribed, docs/LIFECYCLE.md) and settling every allocation DvP, or releasing everything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from contracts import (
    balances,
    cash,
    compliance,
    entitlements,
    participants,
    schedule,
    securities,
    settlement,
)
from contracts.base import AMOUNT, ASSET_ID, MAX_AMOUNT, UINT, Context, MethodTable
from contracts.cash import CURRENCY_CODE
from ledger.reasons import ContractError, Reason, require
from ledger.state import prefix_of, state_key

NAME = "offerings"
METHODS = MethodTable()

MAX_INVESTORS_PER_OFFERING = 500  # one close allocates and settles them all in one block
MAX_SETTLEMENTS_PER_BLOCK = 1_000  # investors settled per block, over every offering closing

OPEN, SETTLED, UNDERSUBSCRIBED, FAILED, CANCELLED = "open", "settled", "undersubscribed", "failed", "cancelled"

# The lifecycle of an offering: (state, event) -> next state. A pair not here is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    (OPEN, "subscribe"): OPEN,
    (OPEN, "cancel"): CANCELLED,
    (OPEN, "allocate"): SETTLED,
    (OPEN, "below_minimum"): UNDERSUBSCRIBED,
    (OPEN, "fail"): FAILED,
}


@dataclass(frozen=True)
class Offering:
    """Units are the security's minor units; price_minor is cash (minor units) per unit."""

    offering_id: int
    isin: str
    issuer: str
    currency: str
    price_minor: int
    min_units: int  # below this, nothing is sold
    max_units: int  # never more is sold
    min_per_investor: int
    max_per_investor: int
    opens_ms: int
    closes_ms: int
    status: str = OPEN
    subscribed_units: int = 0
    investors: int = 0
    subscriptions: int = 0  # sequence of subscribe calls: the time order used to break ties
    unit_changes: int = 0  # securities.unit_changes at the opening: the unit price_minor is for


@dataclass(frozen=True)
class Subscription:
    investor: str
    units: int
    first_seq: int  # when the investor first subscribed (earlier wins a rounding tie)


@dataclass(frozen=True)
class Allocation:
    investor: str
    subscribed: int
    allocated: int


def _offering_key(offering_id: int) -> bytes:
    return state_key("off", offering_id)


def _subscription_key(offering_id: int, investor: str) -> bytes:
    return state_key("off_sub", offering_id, investor)


def get_offering(ctx: Context, offering_id: int) -> Offering | None:
    raw = ctx.get(_offering_key(offering_id))
    return None if raw is None else Offering(offering_id=offering_id, **raw)


def require_offering(ctx: Context, offering_id: int) -> Offering:
    found = get_offering(ctx, offering_id)
    if found is None:
        raise ContractError(Reason.NOT_FOUND, f"no offering {offering_id}")
    return found


def _save(ctx: Context, offering: Offering) -> None:
    fields = asdict(offering)
    del fields["offering_id"]
    ctx.put(_offering_key(offering.offering_id), fields)


def _advance(ctx: Context, offering: Offering, event: str, **changes: Any) -> Offering:
    nxt = TRANSITIONS.get((offering.status, event))
    if nxt is None:
        raise ContractError(Reason.INVALID_STATE, f"offering {offering.offering_id} is {offering.status}")
    updated = replace(offering, status=nxt, **changes)
    _save(ctx, updated)
    return updated


def subscriptions(ctx: Context, offering_id: int) -> list[Subscription]:
    """Every subscription of an offering, in investor address order."""
    prefix = prefix_of("off_sub", offering_id)
    return [Subscription(key[len(prefix):].decode("ascii"), raw[0], raw[1])
            for key, raw in ctx.scan(prefix, MAX_INVESTORS_PER_OFFERING)]


# ---------------------------------------------------------------- allocation (pure)


def allocate(subs: list[Subscription], max_units: int) -> list[Allocation]:
    """Everyone in full if the offering is not oversubscribed; else pro rata, rounded down, and
    the units left by rounding go one each by largest remainder, ties to the earlier subscriber
    (then the lower address). Never more than max_units, nor more than anyone asked for."""
    total = sum(s.units for s in subs)
    if total <= max_units:
        return [Allocation(s.investor, s.units, s.units) for s in subs]
    base = {s.investor: s.units * max_units // total for s in subs}
    left = max_units - sum(base.values())
    by_remainder = sorted(subs, key=lambda s: (-(s.units * max_units % total), s.first_seq, s.investor))
    for s in by_remainder[:left]:
        base[s.investor] += 1
    out = [Allocation(s.investor, s.units, base[s.investor]) for s in subs]
    require(sum(a.allocated for a in out) == max_units, "pro-rata allocation sells exactly the maximum")
    return out


# ---------------------------------------------------------------- methods


@METHODS.method(isin=ASSET_ID, currency=CURRENCY_CODE, price_minor=AMOUNT, min_units=AMOUNT, max_units=AMOUNT,
                min_per_investor=AMOUNT, max_per_investor=AMOUNT, opens_ms=UINT, closes_ms=UINT)
def open_offering(ctx: Context, isin: str, currency: str, price_minor: int, min_units: int, max_units: int,
                  min_per_investor: int, max_per_investor: int, opens_ms: int, closes_ms: int) -> None:
    """The issuer offers up to max_units new units at a fixed price during [opens_ms, closes_ms)."""
    instrument = securities.require_instrument(ctx, isin)
    if instrument.issuer not in ctx.signers:  # anywhere among them: the order never decides
        raise ContractError(Reason.UNAUTHORIZED, f"only the issuer {instrument.issuer} offers {isin}")
    participants.require_active(ctx, instrument.issuer, participants.ISSUER, Reason.UNAUTHORIZED)
    cash.require_currency(ctx, currency)
    if not (min_units <= max_units and min_per_investor <= max_per_investor):
        raise ContractError(Reason.BAD_ARGUMENTS, "need min_units <= max_units and min <= max per investor")
    if not opens_ms < closes_ms or closes_ms <= ctx.block.time_ms:
        raise ContractError(Reason.BAD_ARGUMENTS, "need opens_ms < closes_ms and a close after the block time")
    if price_minor * max_units > MAX_AMOUNT:
        raise ContractError(Reason.BAD_ARGUMENTS, "price * max_units exceeds the largest amount")
    if instrument.maturity_ms is not None and closes_ms > instrument.maturity_ms:
        # Closing at maturity still sells first (offerings run before the redemption in a block).
        raise ContractError(Reason.BAD_ARGUMENTS, f"a bond's offering closes by maturity ({instrument.maturity_ms})")
    issued, retired = balances.supply(ctx, isin)
    if issued - retired + max_units > instrument.authorised_supply:
        raise ContractError(Reason.SUPPLY_EXCEEDED, f"{isin} cannot issue {max_units} more units")
    offering_id = (ctx.get(state_key("off_seq")) or 0) + 1
    ctx.put(state_key("off_seq"), offering_id)
    offering = Offering(offering_id, isin, instrument.issuer, currency, price_minor, min_units, max_units,
                        min_per_investor, max_per_investor, opens_ms, closes_ms,
                        unit_changes=securities.unit_changes(ctx, isin))
    _save(ctx, offering)
    schedule.add(ctx, NAME, closes_ms, "close", offering_id)
    ctx.touch(isin)
    ctx.emit("offering_opened", offering_id=offering_id, isin=isin, currency=currency, price_minor=price_minor,
             min_units=min_units, max_units=max_units, opens_ms=opens_ms, closes_ms=closes_ms)


@METHODS.method(offering_id=AMOUNT, units=AMOUNT)
def subscribe(ctx: Context, offering_id: int, units: int) -> None:
    """An eligible investor asks for `units` more; units * price of its cash is locked."""
    offering = require_offering(ctx, offering_id)
    investor = ctx.sender
    if offering.status != OPEN or not offering.opens_ms <= ctx.block.time_ms < offering.closes_ms:
        raise ContractError(Reason.INVALID_STATE, f"offering {offering_id} is not taking subscriptions")
    instrument = securities.require_instrument(ctx, offering.isin)
    void = _void(ctx, offering, instrument)
    if void is not None:
        raise void
    if instrument.paused:
        raise ContractError(Reason.ASSET_PAUSED, f"{offering.isin} is paused")
    securities.check_receiver(ctx, instrument, investor)
    raw = ctx.get(_subscription_key(offering_id, investor))
    held, first_seq = (raw[0], raw[1]) if raw is not None else (0, offering.subscriptions + 1)
    total = held + units
    if not offering.min_per_investor <= total <= offering.max_per_investor:
        raise ContractError(Reason.INVALID_AMOUNT, f"an investor subscribes {offering.min_per_investor}.."
                                                   f"{offering.max_per_investor} units in all")
    investors = offering.investors + (raw is None)
    if investors > MAX_INVESTORS_PER_OFFERING:
        raise ContractError(Reason.LIMIT_EXCEEDED, f"an offering takes {MAX_INVESTORS_PER_OFFERING} investors")
    cost = units * offering.price_minor
    if cost > MAX_AMOUNT or offering.subscribed_units + units > MAX_AMOUNT:
        # Refused at the door, so neither the lock nor the offering's running total of units
        # can outgrow what the ledger stores (the total is bounded otherwise only because every
        # subscribed unit's cash stays locked out of a capped supply: not a rule of this module).
        raise ContractError(Reason.INVALID_AMOUNT, f"{units} units at {offering.price_minor} exceed the largest amount")
    compliance.check_spendable(ctx, investor, offering.currency, cost)
    balances.lock(ctx, offering.currency, investor, cost)
    ctx.put(_subscription_key(offering_id, investor), [total, first_seq])
    _advance(ctx, offering, "subscribe", subscribed_units=offering.subscribed_units + units,
             investors=investors, subscriptions=offering.subscriptions + 1)
    ctx.emit("offering_subscribed", offering_id=offering_id, investor=investor, units=units, total_units=total,
             locked_minor=cost)


@METHODS.method(offering_id=AMOUNT)
def cancel_offering(ctx: Context, offering_id: int) -> None:
    """The issuer withdraws an offering before it closes; every subscriber's cash is released."""
    offering = require_offering(ctx, offering_id)
    if offering.issuer not in ctx.signers:
        raise ContractError(Reason.UNAUTHORIZED, "only the issuer cancels its offering")
    if ctx.block.time_ms >= offering.closes_ms:
        raise ContractError(Reason.INVALID_STATE, f"offering {offering_id} has closed")
    offering = _advance(ctx, offering, "cancel")
    _release_all(ctx, offering, "offering_cancelled")


def _release_all(ctx: Context, offering: Offering, event: str, **attrs: Any) -> None:
    """Unlock every subscriber's cash, with a receipt each, then the offering's own event."""
    for sub in subscriptions(ctx, offering.offering_id):
        _refund(ctx, offering, Allocation(sub.investor, sub.units, 0))
    ctx.touch(offering.issuer)
    ctx.touch(offering.isin)
    ctx.emit(event, offering_id=offering.offering_id, isin=offering.isin, **attrs)


def _refund(ctx: Context, offering: Offering, allocation: Allocation) -> None:
    refund = (allocation.subscribed - allocation.allocated) * offering.price_minor
    if refund:
        balances.unlock(ctx, offering.currency, allocation.investor, refund)
    ctx.delete(_subscription_key(offering.offering_id, allocation.investor))
    ctx.touch(allocation.investor)
    ctx.emit("offering_allocation", offering_id=offering.offering_id, isin=offering.isin,
             investor=allocation.investor, subscribed_units=allocation.subscribed,
             allocated_units=allocation.allocated, paid_minor=allocation.allocated * offering.price_minor,
             refunded_minor=refund)


# ---------------------------------------------------------------- the close, on block time


def _void(ctx: Context, offering: Offering, instrument: securities.Instrument) -> ContractError | None:
    """Why the offering can no longer sell what it offered (INVALID_STATE), or None.

    Its unit changed since it opened (a split or reverse split completed): price_minor, the
    units subscribed and every bound are in a unit that no longer exists, and no conversion of
    them is exact. Or its bond is redeemed: nothing would ever redeem a unit sold now.
    """
    if securities.unit_changes(ctx, offering.isin) != offering.unit_changes:
        return ContractError(Reason.INVALID_STATE, f"a split changed the unit of {offering.isin} since offering "
                                                   f"{offering.offering_id} opened: its price and units are void")
    if instrument.kind == securities.BOND and securities.bond_redeemed(ctx, offering.isin):
        return ContractError(Reason.INVALID_STATE, f"{offering.isin} is redeemed: no unit may be issued")
    return None


def _eligible(ctx: Context, offering: Offering, instrument: securities.Instrument, sub: Subscription) -> bool:
    """May this investor still receive the units and pay from its locked cash (checks only)?

    Only the investor's side: what stops the issuer (its cash account frozen, the issuer
    suspended) stops every allocation alike, so it is left to _settle, where it fails the
    offering with the reason (docs/LIFECYCLE.md), instead of making every investor ineligible.
    An issuer that subscribed to its own offering cannot pay itself: only it is ineligible.
    """
    if sub.investor == offering.issuer:
        return False
    try:
        securities.check_receiver(ctx, instrument, sub.investor)  # also: an active participant
        compliance.check_not_frozen(ctx, sub.investor, offering.currency)
    except ContractError:
        return False
    return balances.get(ctx, offering.currency, sub.investor).locked >= sub.units * offering.price_minor


def _settle(ctx: Context, offering: Offering, instrument: securities.Instrument,
            allocations: list[Allocation]) -> None:
    """Issue each allocation against its payment from the locked cash: all of them or none."""
    for allocation in allocations:
        if allocation.allocated:
            securities.issue_to(ctx, instrument, allocation.investor, allocation.allocated)
            settlement.settle_legs(ctx, [settlement.Leg(offering.currency, allocation.investor, offering.issuer,
                                                        allocation.allocated * offering.price_minor,
                                                        from_locked=True)])
        _refund(ctx, offering, allocation)


def _step_close(ctx: Context, item: schedule.DueItem, budget: int) -> schedule.Progress:
    offering = require_offering(ctx, item.ref)
    if offering.status != OPEN:
        return schedule.Progress(True, 1)
    if offering.investors > budget and budget < MAX_SETTLEMENTS_PER_BLOCK:
        return schedule.Progress(False, 0)  # too big for what is left of this block: first in the next
    if entitlements.held_by(ctx, offering.isin) is not None:
        return schedule.Progress(False, 1)  # a split converts the units: issue after it, in its units
    instrument = securities.require_instrument(ctx, offering.isin)
    subs = subscriptions(ctx, offering.offering_id)
    work = len(subs) + 1
    void = _void(ctx, offering, instrument)
    if void is not None:
        _fail(ctx, offering, void)
        return schedule.Progress(True, work)
    eligible = [s for s in subs if _eligible(ctx, offering, instrument, s)]
    eligible_units = sum(s.units for s in eligible)
    if eligible_units < offering.min_units:
        _advance(ctx, offering, "below_minimum")
        _release_all(ctx, offering, "offering_undersubscribed", eligible_units=eligible_units)
        return schedule.Progress(True, work)
    allocations = allocate(eligible, offering.max_units)
    allocations += [Allocation(s.investor, s.units, 0) for s in subs if s not in eligible]
    allocations.sort(key=lambda a: a.investor)
    sold = sum(a.allocated for a in allocations)

    def close(child: Context) -> None:
        if instrument.paused:
            raise ContractError(Reason.ASSET_PAUSED, f"{offering.isin} is paused")
        _advance(child, offering, "allocate")
        _settle(child, offering, instrument, allocations)
        child.touch(offering.issuer)
        child.touch(offering.isin)
        child.emit("offering_settled", offering_id=offering.offering_id, isin=offering.isin, units_sold=sold,
                   raised_minor=sold * offering.price_minor, investors=len(allocations))

    error = schedule.isolated(ctx, close)
    if error is not None:
        _fail(ctx, offering, error)
    return schedule.Progress(True, work)


def _fail(ctx: Context, offering: Offering, error: ContractError) -> None:
    """Nothing is sold: every subscriber's cash is released and the event says why."""
    offering = _advance(ctx, offering, "fail")
    _release_all(ctx, offering, "offering_failed", reason=str(error.reason), detail=error.detail)


STEPS: dict[str, schedule.Handler] = {"close": _step_close}


def begin_block(ctx: Context) -> None:
    """Close every offering whose window has ended, within MAX_SETTLEMENTS_PER_BLOCK."""
    schedule.run_due(ctx, NAME, STEPS, MAX_SETTLEMENTS_PER_BLOCK)


def next_due_ms(ctx: Context) -> int | None:
    return schedule.next_due_ms(ctx, NAME)


# ---------------------------------------------------------------- queries


@dataclass(frozen=True)
class OfferingView:
    offering: Offering
    subscriptions: tuple[Subscription, ...]  # in investor address order; empty once closed


def offering_view(ctx: Context, offering_id: int) -> OfferingView | None:
    found = get_offering(ctx, offering_id)
    return None if found is None else OfferingView(found, tuple(subscriptions(ctx, offering_id)))


def _id_param(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= MAX_AMOUNT:
        raise ValueError("an id is a positive integer")
    return int(value)


QUERIES: dict[str, Any] = {"offering": lambda ctx, offering_id: offering_view(ctx, _id_param(offering_id))}
