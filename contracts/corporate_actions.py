"""Corporate actions the ledger executes itself, on block time: dividends, splits, bond service.

Part of contracts/. An issuer declares; the schedule (contracts/schedule.py) runs each step in
the first block at or after its time, paying in bounded chunks over consecutive blocks; every
holder gets an event of what it received. docs/LIFECYCLE.md states every rounding rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from contracts import (
    balances,
    cash,
    compliance,
    entitlements,
    market,
    negotiated,
    participants,
    schedule,
    securities,
)
from contracts.base import AMOUNT, ASSET_ID, MAX_AMOUNT, UINT, Context, MethodTable
from contracts.cash import CURRENCY_CODE
from ledger.reasons import ContractError, InvariantViolation, Reason, require
from ledger.state import state_key

NAME = "corporate_actions"
METHODS = MethodTable()

MAX_PAYMENTS_PER_BLOCK = 256  # holder payments or conversions per block, all actions together
BPS_PER_UNIT = 10_000

DIVIDEND, SPLIT, COUPON, REDEMPTION = "dividend", "split", "coupon", "redemption"

# The lifecycle of an action: (state, event) -> next state. A pair not here is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("declared", "cancel"): "cancelled",
    ("declared", "record"): "recorded",
    ("declared", "unfunded"): "failed",
    ("recorded", "pay"): "paying",
    ("declared", "pay"): "paying",  # coupons and splits record and start in one step
    ("paying", "finish"): "completed",
    ("declared", "default"): "defaulted",
    ("defaulted", "cure"): "declared",  # the issuer has the cash now: the payment runs again
}


@dataclass(frozen=True)
class Action:
    """One declared action. Amounts are integers in the cash currency's minor unit."""

    action_id: int
    kind: str
    isin: str
    issuer: str
    status: str
    currency: str = ""
    # Cash per unit held is the fraction pay_num / pay_den (kept exact, rounded per holder);
    # a coupon's pay_num is its accrual in ms, the bond's face and rate multiplied in by per_unit.
    pay_num: int = 0
    pay_den: int = 1
    ratio_to: int = 1  # split: new holding = floor(old * ratio_to / ratio_from)
    ratio_from: int = 1
    record_ms: int = 0
    payment_ms: int = 0
    locked_minor: int = 0  # issuer cash this action holds locked
    paid_minor: int = 0
    cursor: str = ""  # conversions: the last account converted, in address order
    units_target: int = 0  # split: outstanding units after it
    units_converted: int = 0  # split: new units of the holders converted so far

    @property
    def snapshot_id(self) -> str:
        return f"ca{self.action_id}"


def _action_key(action_id: int) -> bytes:
    return state_key("ca", action_id)


def get_action(ctx: Context, action_id: int) -> Action | None:
    raw = ctx.get(_action_key(action_id))
    return None if raw is None else Action(action_id=action_id, **raw)


def require_action(ctx: Context, action_id: int) -> Action:
    found = get_action(ctx, action_id)
    if found is None:
        raise ContractError(Reason.NOT_FOUND, f"no corporate action {action_id}")
    return found


def _save(ctx: Context, action: Action) -> None:
    fields = asdict(action)
    del fields["action_id"]
    ctx.put(_action_key(action.action_id), fields)


def _advance(ctx: Context, action: Action, event: str, **changes: Any) -> Action:
    nxt = TRANSITIONS.get((action.status, event))
    if nxt is None:
        raise ContractError(Reason.INVALID_STATE, f"action {action.action_id} is {action.status}, cannot {event}")
    updated = replace(action, status=nxt, **changes)
    _save(ctx, updated)
    return updated


def _new_action(ctx: Context, **fields: Any) -> Action:
    action_id = (ctx.get(state_key("ca_seq")) or 0) + 1
    ctx.put(state_key("ca_seq"), action_id)
    action = Action(action_id=action_id, status="declared", **fields)
    _save(ctx, action)
    return action


# ---------------------------------------------------------------- arithmetic (exact, documented)


def unit_scale(ctx: Context, isin: str) -> int:
    return 10 ** securities.require_instrument(ctx, isin).decimals


def pro_rata(units: int, num: int, den: int) -> int:
    """Cash for a holding, rounded down; the sum over holders never exceeds the total's floor."""
    return units * num // den


def split_units(units: int, ratio_to: int, ratio_from: int) -> int:
    return units * ratio_to // ratio_from


def per_unit(ctx: Context, action: Action) -> tuple[int, int]:
    """Cash per unit held, as the exact fraction (numerator, denominator).

    A coupon's record keeps only its accrual (pay_num = accrual_ms): face_value_minor *
    coupon_rate_bps * accrual_ms can pass the largest integer a record holds (2**64 - 1), so the
    bond's face and rate, fixed at registration, are multiplied back in here, in exact integers.
    """
    if action.kind != COUPON:
        return action.pay_num, action.pay_den
    instrument = securities.require_instrument(ctx, action.isin)
    face, rate = instrument.face_value_minor, instrument.coupon_rate_bps
    if face is None or rate is None:
        raise InvariantViolation(f"coupon {action.action_id} of {action.isin}, a bond without terms")
    return face * rate * action.pay_num, action.pay_den


def due_minor(ctx: Context, action: Action, units: int) -> int:
    """What `units` receive from this action, rounded down (pro_rata of per_unit)."""
    return pro_rata(units, *per_unit(ctx, action))


def reportable_minor(amount: int) -> int:
    """An amount for an event that may exceed what any balance holds: capped at MAX_AMOUNT.

    A payment due beyond MAX_AMOUNT can never be funded; the exact figure would not fit the
    codec's integers (2**64 - 1 at most) and would halt the block that reports it.
    """
    return min(amount, MAX_AMOUNT)


def entitled_units(ctx: Context, isin: str, issuer: str) -> int:
    """Outstanding units outside the issuer's treasury: what a distribution is paid on."""
    issued, retired = balances.supply(ctx, isin)
    return issued - retired - balances.get(ctx, isin, issuer).total


# ---------------------------------------------------------------- issuer cash


def _lock_issuer_cash(ctx: Context, action: Action, needed_minor: int) -> Action:
    """Bring the cash this action holds locked to `needed_minor` (INSUFFICIENT_* if short)."""
    if needed_minor > action.locked_minor:
        _lock_free_cash(ctx, action.currency, action.issuer, needed_minor - action.locked_minor)
    elif needed_minor < action.locked_minor:
        balances.unlock(ctx, action.currency, action.issuer, action.locked_minor - needed_minor)
    return replace(action, locked_minor=needed_minor)


def _lock_free_cash(ctx: Context, currency: str, issuer: str, amount: int) -> None:
    """Lock issuer cash for a payment: frozen cash (a regulator's freeze) never funds one."""
    compliance.check_spendable(ctx, issuer, currency, amount)
    balances.lock(ctx, currency, issuer, amount)


def _release_rest(ctx: Context, action: Action) -> int:
    rest = action.locked_minor - action.paid_minor
    require(rest >= 0, f"action {action.action_id} paid more than it locked")
    if rest:
        balances.unlock(ctx, action.currency, action.issuer, rest)
    return rest


# ---------------------------------------------------------------- methods


def _require_issuer(ctx: Context, isin: str) -> securities.Instrument:
    instrument = securities.require_instrument(ctx, isin)
    if instrument.issuer not in ctx.signers:  # anywhere among them: the order never decides
        raise ContractError(Reason.UNAUTHORIZED, f"only the issuer {instrument.issuer} acts on {isin}")
    participants.require_active(ctx, instrument.issuer, "issuer", Reason.UNAUTHORIZED)
    return instrument


@METHODS.method(isin=ASSET_ID, currency=CURRENCY_CODE, per_unit_minor=AMOUNT, record_ms=UINT, payment_ms=UINT)
def declare_dividend(ctx: Context, isin: str, currency: str, per_unit_minor: int, record_ms: int,
                     payment_ms: int) -> None:
    """The issuer declares a cash dividend; the cash for every unit outstanding is locked now."""
    issuer = _require_issuer(ctx, isin).issuer
    cash.require_currency(ctx, currency)
    if not ctx.block.time_ms < record_ms <= payment_ms:
        raise ContractError(Reason.BAD_ARGUMENTS, "need block time < record_ms <= payment_ms")
    action = _new_action(ctx, kind=DIVIDEND, isin=isin, issuer=issuer, currency=currency,
                         pay_num=per_unit_minor, pay_den=unit_scale(ctx, isin), record_ms=record_ms,
                         payment_ms=payment_ms)
    needed = due_minor(ctx, action, entitled_units(ctx, isin, issuer))
    action = _lock_issuer_cash(ctx, action, needed)
    _save(ctx, action)
    schedule.add(ctx, NAME, record_ms, "dividend_record", action.action_id)
    schedule.add(ctx, NAME, payment_ms, "distribute", action.action_id)
    ctx.emit("dividend_declared", action_id=action.action_id, isin=isin, currency=currency,
             per_unit_minor=per_unit_minor, record_ms=record_ms, payment_ms=payment_ms, locked_minor=needed)


@METHODS.method(isin=ASSET_ID, ratio_to=AMOUNT, ratio_from=AMOUNT, effective_ms=UINT)
def declare_split(ctx: Context, isin: str, ratio_to: int, ratio_from: int, effective_ms: int) -> None:
    """The issuer declares a split (ratio_to > ratio_from) or reverse split (ratio_to < ratio_from)."""
    instrument = _require_issuer(ctx, isin)
    if instrument.kind != "equity":
        raise ContractError(Reason.BAD_ARGUMENTS, "only equity is split")
    if ratio_to == ratio_from or ratio_to > 1_000_000 or ratio_from > 1_000_000:
        raise ContractError(Reason.BAD_ARGUMENTS, "a split changes the units by a ratio of at most 1e6")
    if effective_ms <= ctx.block.time_ms:
        raise ContractError(Reason.BAD_ARGUMENTS, "effective_ms must be after the block time")
    action = _new_action(ctx, kind=SPLIT, isin=isin, issuer=instrument.issuer, ratio_to=ratio_to,
                         ratio_from=ratio_from, record_ms=effective_ms, payment_ms=effective_ms)
    schedule.add(ctx, NAME, effective_ms, "convert", action.action_id)
    ctx.emit("split_declared", action_id=action.action_id, isin=isin, ratio_to=ratio_to, ratio_from=ratio_from,
             effective_ms=effective_ms)


@METHODS.method(action_id=AMOUNT)
def cancel(ctx: Context, action_id: int) -> None:
    """The issuer withdraws a dividend or split before its record time; locked cash returns."""
    action = require_action(ctx, action_id)
    if action.issuer not in ctx.signers:
        raise ContractError(Reason.UNAUTHORIZED, "only the declaring issuer cancels")
    if action.kind not in (DIVIDEND, SPLIT):
        raise ContractError(Reason.INVALID_STATE, "bond service follows the bond's terms")
    if ctx.block.time_ms >= action.record_ms:  # a split's record_ms is its effective time
        # Its record step may still be queued, but from its time on the action is due: holders
        # have traded on it, whether or not its step has run yet.
        raise ContractError(Reason.INVALID_STATE, f"action {action_id} is past its record time")
    if action.locked_minor:
        balances.unlock(ctx, action.currency, action.issuer, action.locked_minor)
    _advance(ctx, action, "cancel", locked_minor=0)
    ctx.emit("corporate_action_cancelled", action_id=action_id, isin=action.isin)


# ---------------------------------------------------------------- bonds

YEAR_MS = 365 * 24 * 60 * 60 * 1000  # Actual/365 Fixed: a coupon accrues by elapsed block time


def _reserve_key(isin: str) -> bytes:
    return state_key("ca_reserve", isin)


def reserve_minor(ctx: Context, isin: str) -> int:
    """Issuer cash locked ahead for a bond's coupons and principal."""
    return ctx.get(_reserve_key(isin)) or 0


def _serviced_key(isin: str) -> bytes:
    return state_key("ca_serviced", isin)


def schedule_bond_service(ctx: Context, isin: str) -> None:
    """Schedule every coupon and the redemption of a bond from its terms (once per bond).

    A date already past runs in the next block: starting service late never skips a payment.
    """
    instrument = securities.require_instrument(ctx, isin)
    if instrument.kind != "bond":
        raise ContractError(Reason.BAD_ARGUMENTS, f"{isin} is not a bond")
    if ctx.exists(_serviced_key(isin)):
        raise ContractError(Reason.ALREADY_EXISTS, f"{isin} is already serviced")
    face, rate, currency, maturity_ms = (instrument.face_value_minor, instrument.coupon_rate_bps,
                                         instrument.currency, instrument.maturity_ms)
    if face is None or rate is None or currency is None or maturity_ms is None:
        raise InvariantViolation(f"bond {isin} was registered without its terms")
    ctx.put(_serviced_key(isin), 1)
    scale = 10 ** instrument.decimals
    accrued_from = instrument.registered_at_ms
    require(len(instrument.coupon_schedule_ms) <= securities.MAX_COUPONS, f"{isin} has too many coupons")
    for due_ms in instrument.coupon_schedule_ms:  # every one: register refuses more than MAX_COUPONS
        if rate:
            # pay_num is the accrual alone (see per_unit): the product with face and rate may not fit.
            action = _new_action(ctx, kind=COUPON, isin=isin, issuer=instrument.issuer,
                                 currency=currency, pay_num=due_ms - accrued_from,
                                 pay_den=BPS_PER_UNIT * YEAR_MS * scale, record_ms=due_ms, payment_ms=due_ms)
            schedule.add(ctx, NAME, due_ms, "coupon_start", action.action_id)
            schedule.add(ctx, NAME, due_ms, "distribute", action.action_id)
        accrued_from = due_ms
    action = _new_action(ctx, kind=REDEMPTION, isin=isin, issuer=instrument.issuer, currency=currency,
                         pay_num=face, pay_den=scale, record_ms=maturity_ms, payment_ms=maturity_ms)
    schedule.add(ctx, NAME, maturity_ms, "convert", action.action_id)
    ctx.touch(isin)
    ctx.emit("bond_service_scheduled", isin=isin, coupons=len(instrument.coupon_schedule_ms),
             maturity_ms=maturity_ms)


@METHODS.method(isin=ASSET_ID)
def service_bond(ctx: Context, isin: str) -> None:
    """Any active participant starts a bond's automatic service, so no issuer can withhold it.

    securities.register schedules it for every bond registered since; this serves bonds
    registered before that (ALREADY_EXISTS for the others)."""
    participants.require_active(ctx, ctx.sender)
    schedule_bond_service(ctx, isin)


@METHODS.method(isin=ASSET_ID, amount=AMOUNT)
def fund_bond(ctx: Context, isin: str, amount: int) -> None:
    """The issuer locks cash ahead for its bond's payments; it is used before free cash."""
    instrument = _require_issuer(ctx, isin)
    if instrument.kind != "bond" or instrument.currency is None:
        raise ContractError(Reason.BAD_ARGUMENTS, f"{isin} is not a bond")
    if securities.bond_redeemed(ctx, isin):
        # Only the redemption releases a reserve: cash locked after it would stay locked forever.
        raise ContractError(Reason.INVALID_STATE, f"{isin} is redeemed: no payment is left to fund")
    _lock_free_cash(ctx, instrument.currency, instrument.issuer, amount)
    ctx.put(_reserve_key(isin), reserve_minor(ctx, isin) + amount)
    ctx.emit("bond_funded", isin=isin, amount=amount, reserve_minor=reserve_minor(ctx, isin))


def _fund_from_reserve(ctx: Context, action: Action, needed_minor: int) -> Action:
    """Lock `needed_minor` for a bond payment: the reserve first (already locked), then free cash."""
    reserve = reserve_minor(ctx, action.isin)
    from_reserve = min(reserve, needed_minor)
    if needed_minor > from_reserve:
        _lock_free_cash(ctx, action.currency, action.issuer, needed_minor - from_reserve)
    ctx.put(_reserve_key(action.isin), reserve - from_reserve)
    return replace(action, locked_minor=needed_minor)


def _default(ctx: Context, action: Action, needed_minor: int, error: ContractError) -> None:
    """The issuer cannot pay: a default event on the ledger, not an exception."""
    _advance(ctx, action, "default")
    ctx.touch(action.issuer)
    ctx.touch(action.isin)
    ctx.emit("bond_defaulted", action_id=action.action_id, isin=action.isin, payment=action.kind,
             due_ms=action.payment_ms, due_minor=reportable_minor(needed_minor), currency=action.currency,
             reason=str(error.reason), detail=error.detail)


@METHODS.method(action_id=AMOUNT)
def cure_default(ctx: Context, action_id: int) -> None:
    """The issuer of a defaulted coupon or redemption has the cash now: the payment runs in the
    next block, on the holdings of that block (the default stays in the history)."""
    action = require_action(ctx, action_id)
    _require_issuer(ctx, action.isin)
    if action.kind == COUPON and _fully_retired(ctx, action.isin):
        raise ContractError(Reason.INVALID_STATE, f"{action.isin} is redeemed: no holder is left to pay")
    if action.kind == COUPON and _redemption_under_way(ctx, action):
        # The coupon would run after the redemption (same bond: strict order) and find no holder.
        raise ContractError(Reason.INVALID_STATE,
                            f"the redemption of {action.isin} is under way: cure coupons before the redemption")
    _advance(ctx, action, "cure")
    if action.kind == COUPON:
        schedule.add(ctx, NAME, ctx.block.time_ms, "coupon_start", action_id)
        schedule.add(ctx, NAME, ctx.block.time_ms, "distribute", action_id)
    else:
        schedule.add(ctx, NAME, ctx.block.time_ms, "convert", action_id)
    ctx.emit("bond_default_cured", action_id=action_id, isin=action.isin, payment=action.kind)


def _fully_retired(ctx: Context, isin: str) -> bool:
    """Every unit ever issued is retired (at maturity, or early by securities.redeem): not the
    same as securities.bond_redeemed, which is set only as the maturity redemption completes."""
    issued, retired = balances.supply(ctx, isin)
    return issued > 0 and issued == retired


def _redemption_of(ctx: Context, coupon: Action) -> Action:
    """A coupon's bond's redemption: schedule_bond_service creates one action per coupon date
    (strictly increasing), then the redemption, so it follows the coupons dated after this one."""
    dates = securities.require_instrument(ctx, coupon.isin).coupon_schedule_ms
    redemption = get_action(ctx, coupon.action_id + sum(1 for d in dates if d > coupon.record_ms) + 1)
    if redemption is None or redemption.kind != REDEMPTION or redemption.isin != coupon.isin:
        raise InvariantViolation(f"coupon {coupon.action_id} of {coupon.isin} has no redemption after it")
    return redemption


def _redemption_under_way(ctx: Context, coupon: Action) -> bool:
    """Due and not ended: queued at maturity, cured (queued again) or converting."""
    redemption = _redemption_of(ctx, coupon)
    return redemption.status in ("declared", "paying") and redemption.payment_ms <= ctx.block.time_ms


# ---------------------------------------------------------------- scheduled steps


def _live(ctx: Context, item: schedule.DueItem, *states: str) -> Action | None:
    action = require_action(ctx, item.ref)
    return action if action.status in states else None


def _step_dividend_record(ctx: Context, item: schedule.DueItem, budget: int) -> schedule.Progress:
    """Fix entitlements now; top the locked cash up (or down) to the units outstanding now."""
    action = _live(ctx, item, "declared")
    if action is None:
        return schedule.Progress(True, 1)
    needed = due_minor(ctx, action, entitled_units(ctx, action.isin, action.issuer))

    def record(child: Context) -> None:
        funded = _lock_issuer_cash(child, action, needed)
        entitlements.open_snapshot(child, action.isin, action.snapshot_id)
        _advance(child, funded, "record")
        child.emit("dividend_recorded", action_id=action.action_id, isin=action.isin, locked_minor=needed)

    error = schedule.isolated(ctx, record)
    if error is not None:
        if action.locked_minor:
            balances.unlock(ctx, action.currency, action.issuer, action.locked_minor)
        _advance(ctx, action, "unfunded", locked_minor=0)
        ctx.touch(action.issuer)
        ctx.emit("dividend_failed", action_id=action.action_id, isin=action.isin, due_minor=reportable_minor(needed),
                 reason=str(error.reason), detail=error.detail)
    return schedule.Progress(True, 1)


def _step_coupon_start(ctx: Context, item: schedule.DueItem, budget: int) -> schedule.Progress:
    """A coupon date: fix entitlements and lock the coupon, or record a default."""
    action = _live(ctx, item, "declared")
    if action is None:
        return schedule.Progress(True, 1)
    needed = due_minor(ctx, action, entitled_units(ctx, action.isin, action.issuer))

    def start(child: Context) -> None:
        funded = _fund_from_reserve(child, action, needed)
        entitlements.open_snapshot(child, action.isin, action.snapshot_id)
        _advance(child, funded, "record")

    error = schedule.isolated(ctx, start)
    if error is not None:
        _default(ctx, action, needed, error)
    return schedule.Progress(True, 1)


def _step_distribute(ctx: Context, item: schedule.DueItem, budget: int) -> schedule.Progress:
    """Pay up to `budget` holders their record-time entitlement; finish when none is left."""
    action = _live(ctx, item, "recorded", "paying")
    if action is None:
        return schedule.Progress(True, 1)
    if action.status == "recorded":
        action = _advance(ctx, action, "pay")
    batch = entitlements.next_entitled(ctx, action.isin, action.snapshot_id, budget)
    pay_num, pay_den = per_unit(ctx, action)
    paid = action.paid_minor
    for entitlement in batch:
        entitlements.mark_paid(ctx, action.isin, action.snapshot_id, entitlement.account)
        if entitlement.account == action.issuer or entitlement.units == 0:
            continue  # treasury units earn nothing; a zero is an account that bought after the record
        amount = pro_rata(entitlement.units, pay_num, pay_den)
        if amount:
            balances.move_locked(ctx, action.currency, action.issuer, entitlement.account, amount)
        paid += amount
        ctx.touch(entitlement.account)
        ctx.emit(f"{action.kind}_paid", action_id=action.action_id, isin=action.isin, account=entitlement.account,
                 units=entitlement.units, currency=action.currency, amount=amount)
    action = replace(action, paid_minor=paid)
    _save(ctx, action)
    if len(batch) == budget:
        return schedule.Progress(False, len(batch))
    return schedule.Progress(_finish_distribution(ctx, action, budget), len(batch) + 1)


def _finish_distribution(ctx: Context, action: Action, budget: int) -> bool:
    if not entitlements.close_snapshot(ctx, action.isin, action.snapshot_id, budget):
        return False
    remainder = _release_rest(ctx, action)
    _advance(ctx, action, "finish")
    ctx.touch(action.issuer)
    ctx.emit(f"{action.kind}_completed", action_id=action.action_id, isin=action.isin, currency=action.currency,
             paid_minor=action.paid_minor, remainder_minor=remainder)
    return True


def _step_convert(ctx: Context, item: schedule.DueItem, budget: int) -> schedule.Progress:
    """A split or a redemption: hold the asset, convert holders in address order, release."""
    action = _live(ctx, item, "declared", "paying")
    if action is None:
        return schedule.Progress(True, 1)
    if action.status == "declared":
        # From this first step on, no new order or proposal on the security is taken, so the
        # withdrawal below (bounded per block) ends however many are sent.
        entitlements.mark_pending(ctx, action.isin, _conversion_name(action))
        if not _withdraw_open_trading(ctx, action, budget):
            return schedule.Progress(False, budget)  # more orders to cancel: go on next block
        action = _start_conversion(ctx, action)
        if action.status != "paying":
            return schedule.Progress(True, 1)
    batch = entitlements.holders_after(ctx, action.isin, action.cursor, budget)
    for holder in batch:
        action = replace(action, cursor=holder.account)
        if holder.account == action.issuer:
            continue  # the issuer is converted last, taking the remainders
        if action.kind == SPLIT:
            action = _split_holder(ctx, action, holder)
        else:
            action = _redeem_holder(ctx, action, holder)
    _save(ctx, action)
    if len(batch) == budget:
        return schedule.Progress(False, len(batch))
    if action.kind == SPLIT:
        _finish_split(ctx, action)
    else:
        _finish_redemption(ctx, action)
    return schedule.Progress(True, len(batch) + 1)


def _withdraw_open_trading(ctx: Context, action: Action, budget: int) -> bool:
    """Cancel resting orders and open proposals on the security, at most `budget` in a step.

    They are priced and sized in the old units, and their locks must be released before the
    holdings are converted; True once none is left (the conversion may then start at once,
    in the same step, so no new order can slip in between). A step that finds orders resting
    spends its budget on them, and proposals wait for the next step unless there are none.
    """
    why = f"{action.kind} {action.action_id} changes what a unit of {action.isin} is"
    if not market.withdraw_security_orders(ctx, action.isin, why, 0):  # limit 0: True iff none rests
        done = market.withdraw_security_orders(ctx, action.isin, why, budget)
        return done and negotiated.withdraw_security_proposals(ctx, action.isin, why, 0)
    return negotiated.withdraw_security_proposals(ctx, action.isin, why, budget)


def _conversion_name(action: Action) -> str:
    return f"corporate action {action.action_id}"


def _start_conversion(ctx: Context, action: Action) -> Action:
    """Hold the asset and fix the totals; a redemption the issuer cannot fund is a default."""
    issued, retired = balances.supply(ctx, action.isin)
    outstanding = issued - retired
    if action.kind == SPLIT:
        target = split_units(outstanding, action.ratio_to, action.ratio_from)
        if target > MAX_AMOUNT:
            entitlements.clear_pending(ctx, action.isin)
            _advance(ctx, action, "unfunded")
            ctx.emit("split_failed", action_id=action.action_id, isin=action.isin, reason=str(Reason.SUPPLY_EXCEEDED))
            return replace(action, status="failed")
        started = _advance(ctx, action, "pay", units_target=target)
    else:
        needed = due_minor(ctx, action, entitled_units(ctx, action.isin, action.issuer))
        funded: list[Action] = []
        error = schedule.isolated(ctx, lambda child: funded.append(_fund_from_reserve(child, action, needed)))
        if error is not None:
            entitlements.clear_pending(ctx, action.isin)  # a cure runs the conversion again
            _default(ctx, action, needed, error)
            return replace(action, status="defaulted")
        started = _advance(ctx, funded[0], "pay")
    entitlements.hold(ctx, action.isin, _conversion_name(action))
    ctx.touch(action.isin)
    ctx.emit(f"{action.kind}_started", action_id=action.action_id, isin=action.isin, outstanding=outstanding)
    return started


def _set_holding(ctx: Context, isin: str, account: str, old: balances.Balance | entitlements.Holding,
                 total: int, locked: int) -> None:
    """Replace a holding by (total, locked), creating or retiring the difference."""
    require(0 <= locked <= total, "a converted holding keeps locked within total")
    if old.locked:
        balances.unlock(ctx, isin, account, old.locked)
    if total > old.total:
        balances.issue(ctx, isin, account, total - old.total)
    elif total < old.total:
        balances.retire(ctx, isin, account, old.total - total)
    if locked:
        # Re-locks what the holder had locked before (converted); no freeze check: these units
        # were already spoken for, and a freeze must not undo a conversion half way.
        balances.lock(ctx, isin, account, locked)


def _split_holder(ctx: Context, action: Action, holder: entitlements.Holding) -> Action:
    old = holder
    total = split_units(old.total, action.ratio_to, action.ratio_from)
    locked = split_units(old.locked, action.ratio_to, action.ratio_from)
    _set_holding(ctx, action.isin, holder.account, old, total, locked)
    _convert_partial_freeze(ctx, action, holder.account)
    ctx.touch(holder.account)
    ctx.emit("split_converted", action_id=action.action_id, isin=action.isin, account=holder.account,
             units_before=old.total, units_after=total)
    return replace(action, units_converted=action.units_converted + total)


def _convert_partial_freeze(ctx: Context, action: Action, account: str) -> None:
    """A partial freeze of the split security is in old units: convert it, rounding up."""
    converted = compliance.convert_partial_freeze(ctx, account, action.isin, action.ratio_to, action.ratio_from)
    if converted is not None:
        ctx.emit("partial_freeze_converted", action_id=action.action_id, isin=action.isin, account=account,
                 amount_before=converted[0], amount_after=converted[1])


def _redeem_holder(ctx: Context, action: Action, holder: entitlements.Holding) -> Action:
    amount = due_minor(ctx, action, holder.total)
    _set_holding(ctx, action.isin, holder.account, holder, 0, 0)
    if amount:
        balances.move_locked(ctx, action.currency, action.issuer, holder.account, amount)
    ctx.touch(holder.account)
    ctx.emit("redemption_paid", action_id=action.action_id, isin=action.isin, account=holder.account,
             units=holder.total, currency=action.currency, amount=amount)
    return replace(action, paid_minor=action.paid_minor + amount)


def _finish_split(ctx: Context, action: Action) -> None:
    """The issuer takes every fractional remainder: outstanding ends exactly at the target."""
    old = balances.get(ctx, action.isin, action.issuer)
    issuer_units = action.units_target - action.units_converted
    require(issuer_units >= split_units(old.total, action.ratio_to, action.ratio_from),
            "the issuer's share of a split is at least its own holding converted")
    _set_holding(ctx, action.isin, action.issuer, old, issuer_units,
                 split_units(old.locked, action.ratio_to, action.ratio_from))
    _convert_partial_freeze(ctx, action, action.issuer)
    instrument = securities.require_instrument(ctx, action.isin)
    # Scaled like the holdings, at least the target (<= MAX_AMOUNT), at most MAX_AMOUNT.
    authorised = min(max(split_units(instrument.authorised_supply, action.ratio_to, action.ratio_from),
                         action.units_target), MAX_AMOUNT)
    securities.save_instrument(ctx, replace(instrument, authorised_supply=authorised))
    securities.record_unit_change(ctx, action.isin)  # an offering open across it is void (offerings.py)
    entitlements.release(ctx, action.isin)
    _advance(ctx, action, "finish")
    issued, retired = balances.supply(ctx, action.isin)
    require(issued - retired == action.units_target, "a split ends at its target outstanding")
    ctx.touch(action.issuer)
    ctx.emit("split_completed", action_id=action.action_id, isin=action.isin, outstanding=action.units_target,
             issuer_units=issuer_units, authorised_supply=authorised)


def _finish_redemption(ctx: Context, action: Action) -> None:
    """Treasury units are retired unpaid; unused principal and reserve return to the issuer."""
    old = balances.get(ctx, action.isin, action.issuer)
    if old.total:
        _set_holding(ctx, action.isin, action.issuer, old, 0, 0)
    remainder = _release_rest(ctx, action)
    reserve = reserve_minor(ctx, action.isin)
    if reserve:
        balances.unlock(ctx, action.currency, action.issuer, reserve)
        ctx.delete(_reserve_key(action.isin))
    entitlements.release(ctx, action.isin)
    securities.record_bond_redeemed(ctx, action.isin, action.action_id)
    _advance(ctx, action, "finish")
    ctx.touch(action.issuer)
    ctx.emit("redemption_completed", action_id=action.action_id, isin=action.isin, currency=action.currency,
             paid_minor=action.paid_minor, remainder_minor=remainder, reserve_released_minor=reserve)


# ---------------------------------------------------------------- block hooks

STEPS: dict[str, schedule.Handler] = {
    "dividend_record": _step_dividend_record,
    "coupon_start": _step_coupon_start,
    "distribute": _step_distribute,
    "convert": _step_convert,
}


def _asset_of(ctx: Context, item: schedule.DueItem) -> str:
    return require_action(ctx, item.ref).isin


# One lane per asset: an asset's steps run in strict order, unrelated to other assets' work.
# Fixing a record is O(1) and must happen at its time, so it runs even with the budget spent.
LANES = schedule.Lanes(lane_of=_asset_of, unbudgeted=frozenset({"dividend_record", "coupon_start"}))


def begin_block(ctx: Context) -> None:
    """Every due step, in (time, declaration) order per asset, within MAX_PAYMENTS_PER_BLOCK."""
    schedule.run_due(ctx, NAME, STEPS, MAX_PAYMENTS_PER_BLOCK, LANES)


def next_due_ms(ctx: Context) -> int | None:
    return schedule.next_due_ms(ctx, NAME)


# ---------------------------------------------------------------- queries


def _id_param(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= MAX_AMOUNT:
        raise ValueError("an id is a positive integer")
    return int(value)


QUERIES: dict[str, Any] = {
    "action": lambda ctx, action_id: get_action(ctx, _id_param(action_id)),
    "bond_reserve": lambda ctx, isin: reserve_minor(ctx, isin) if ASSET_ID(isin) else 0,
}
