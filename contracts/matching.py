"""Price-time matching: an incoming order against the opposite side of its book, settled DvP.

Part of contracts/ (the venue). market.py admits an order and calls `match`; every fill
moves securities and cash for both sides through settlement.settle_fill in this same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from contracts import balances, compliance, orderbook, participants, settlement
from contracts.base import Context
from contracts.market_data import TradeRecorder
from contracts.orderbook import BUY, SELL, Order
from ledger.reasons import ContractError, InvariantViolation, Reason

MAX_MATCH_STEPS = 1_000  # resting orders one incoming order may visit (fills, expiries, skips)

SELF_TRADE = "self_trade"
MAKER_INELIGIBLE = "maker_ineligible"
STEP_LIMIT = "step_limit"


class BookSpec(NamedTuple):
    """What matching needs to know of a book: its assets and the price scale of the security."""

    isin: str
    currency: str
    scale: int  # 10 ** security decimals: price is per whole unit, quantity in minor units
    tick_size: int  # every resting price is a multiple of it (orderbook._move_best relies on it)
    qualified_only: bool = False


def notional(price: int, quantity: int, scale: int) -> int:
    """Cash for `quantity` minor units at `price` per whole unit; exact by the book's tick/lot rule."""
    amount, rest = divmod(price * quantity, scale)
    if rest:  # the message is built only on failure: this runs two or three times per order
        raise InvariantViolation(f"price {price} x quantity {quantity} is not a whole number of cash units")
    return amount


def release(ctx: Context, spec: BookSpec, order: Order) -> None:
    """Unlock what a resting order still holds (its remaining quantity, or the cash for it)."""
    if order.side == BUY:
        balances.unlock(ctx, spec.currency, order.owner, notional(order.price, order.remaining, spec.scale))
    else:
        balances.unlock(ctx, spec.isin, order.owner, order.remaining)


def take_off_book(ctx: Context, spec: BookSpec, order: Order, event: str, why: str = "") -> None:
    """Remove a resting order that will not trade (cancel or expiry) and release its locks."""
    status = orderbook.advance(order.status, event)
    orderbook.remove(ctx, order, spec.tick_size)
    release(ctx, spec, order)
    ctx.touch(order.owner)
    kind = "order_expired" if event == orderbook.EXPIRE else "order_cancelled"
    # Attributes in key order, as on the whole order path (see market.place).
    ctx.emit(kind, currency=order.currency, isin=order.isin, order_id=order.order_id, owner=order.owner,
             remaining=order.remaining, status=status, why=why)


@dataclass
class MatchResult:
    taker: Order  # after its fills: remaining and status updated
    stopped: str = ""  # STEP_LIMIT if the step bound stopped an order that could still trade
    met_maker: bool = False  # a maker was met: balances (the taker's too) may have changed
    recorder: TradeRecorder | None = None  # made at the first fill (most orders make none); flush it


class _Eligibility:
    """Whether a maker may still trade, asked once per account per incoming order."""

    def __init__(self, ctx: Context, spec: BookSpec) -> None:
        self.ctx = ctx
        self.spec = spec
        self.known: dict[str, bool] = {}

    def ok(self, maker: Order) -> bool:
        found = self.known.get(maker.owner)
        if found is None:
            found = self._check(maker)
            self.known[maker.owner] = found
        return found

    def _check(self, maker: Order) -> bool:
        found = participants.get(self.ctx, maker.owner)
        if found is None or not found.active:
            return False
        if maker.side == BUY and not (found.has_role(participants.INVESTOR)
                                      and (found.qualified or not self.spec.qualified_only)):
            return False
        security, currency = compliance.freeze_states(self.ctx, maker.owner, self.spec.isin, self.spec.currency)
        return not (security.frozen or currency.frozen)


def crosses(taker: Order, maker_price: int) -> bool:
    return maker_price <= taker.price if taker.side == BUY else maker_price >= taker.price


def match(ctx: Context, spec: BookSpec, terms: settlement.FillTerms, taker: Order) -> MatchResult:
    """Fill `taker` against the opposite side, best price first and oldest first within a price.

    The taker pays from its free balance (checked at entry); makers pay from what they locked.
    Trades happen at the maker's price. Expired makers met on the way are expired, makers of the
    same account are cancelled (self-trade prevention: the resting order goes), and makers that
    can no longer trade (suspended, frozen) are cancelled. At most MAX_MATCH_STEPS makers are
    visited; `stopped` says so, and the caller must not rest a remainder that could cross.
    `terms` come from the taker's entry checks (settlement.settle_fill says which they are).
    The caller flushes `recorder` of the result, if a fill made one.
    """
    result = MatchResult(taker)
    opposite = SELL if taker.side == BUY else BUY
    eligible: _Eligibility | None = None  # built at the first maker met (many orders meet none)
    now_ms = ctx.block.time_ms
    for _ in range(MAX_MATCH_STEPS):
        if result.taker.remaining == 0:
            return result
        best = orderbook.best_price(ctx, spec.isin, spec.currency, opposite)
        if best is None or not crosses(result.taker, best):
            return result
        result.met_maker = True
        level, maker = orderbook.head_of_level(ctx, spec.isin, spec.currency, opposite, best)
        if maker.expired_at(now_ms):
            take_off_book(ctx, spec, maker, orderbook.EXPIRE)
        elif maker.owner == taker.owner:
            take_off_book(ctx, spec, maker, orderbook.CANCEL, SELF_TRADE)
        else:
            eligible = eligible or _Eligibility(ctx, spec)
            if eligible.ok(maker):
                _fill(ctx, spec, terms, maker, level, result)
            else:
                take_off_book(ctx, spec, maker, orderbook.CANCEL, MAKER_INELIGIBLE)
    if result.taker.remaining > 0:
        best = orderbook.best_price(ctx, spec.isin, spec.currency, opposite)
        if best is not None and crosses(result.taker, best):
            result.stopped = STEP_LIMIT
    return result


def _fill(ctx: Context, spec: BookSpec, terms: settlement.FillTerms, maker: Order, level: orderbook.Level,
          result: MatchResult) -> None:
    """One fill of the taker against the maker at the head of the best level (`level`, as read;
    settling writes balances only, so it is still current when the book is updated)."""
    taker = result.taker
    quantity = min(taker.remaining, maker.remaining)
    price = maker.price
    amount = notional(price, quantity, spec.scale)
    buy, sell = (taker, maker) if taker.side == BUY else (maker, taker)
    try:
        settlement.settle_fill(ctx, terms, sell.owner, buy.owner, quantity, amount, sell is maker)
    except ContractError as exc:
        # A resting buyer the security's holder limit now shuts out must not block the book;
        # any other refusal is the incoming order's and refuses it whole.
        if exc.reason == Reason.MAX_HOLDERS_REACHED and buy is maker:
            take_off_book(ctx, spec, maker, orderbook.CANCEL, MAKER_INELIGIBLE)
            return
        raise
    left = maker.remaining - quantity
    maker_status = orderbook.advance(maker.status, orderbook.FILL_ALL if left == 0 else orderbook.FILL_SOME)
    if left == 0:
        orderbook.remove(ctx, maker, spec.tick_size, level, at_best=True)
    else:
        orderbook.reduce(ctx, maker, quantity, maker_status, level)
    taker_left = taker.remaining - quantity
    taker_status = orderbook.advance(taker.status, orderbook.FILL_ALL if taker_left == 0 else orderbook.FILL_SOME)
    result.taker = taker.filled_to(taker_left, taker_status)
    recorder = result.recorder
    if recorder is None:
        recorder = result.recorder = TradeRecorder(ctx, spec.isin, spec.currency)
    trade = recorder.record(price, quantity, amount, buy.owner, sell.owner, buy.order_id, sell.order_id, taker.side)
    # Attributes in key order, as on the whole order path (see market.place).
    ctx.emit("trade", aggressor=taker.side, amount=amount, buy_order=buy.order_id, buyer=buy.owner,
             currency=spec.currency, isin=spec.isin, maker_status=maker_status, price=price, quantity=quantity,
             sell_order=sell.order_id, seller=sell.owner, time_ms=trade.time_ms, trade_id=trade.trade_id)
