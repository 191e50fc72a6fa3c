"""The venue: one order book per security and currency, where a matching order settles DvP
in the transaction that placed it.

Part of contracts/. Methods admit, cancel and replace orders, open books and halt trading;
begin_block expires good-till-time orders; the query functions at the end read books and
market data. Storage is in orderbook.py, matching in matching.py, docs in docs/MARKET.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack

from contracts import balances, compliance, entitlements, market_data, orderbook, participants, securities
from contracts.base import ADDRESS, AMOUNT, ASSET_ID, TEXT, UINT, Context, MethodTable, one_of
from contracts.cash import CURRENCY_CODE, currency_key, require_currency
from contracts.market_data import BookStats, DayBar, Trade
from contracts.matching import BookSpec, MatchResult, match, notional, take_off_book
from contracts.orderbook import (
    BUY,
    FOK,
    GTT,
    IOC,
    NEW,
    RESTING_TIFS,
    SELL,
    SIDES,
    TIMES_IN_FORCE,
    Order,
)
from contracts.settlement import FillTerms
from ledger.keys import is_address
from ledger.reasons import ContractError, InvariantViolation, Reason
from ledger.state import KEY_CACHE_ENTRIES, prefix_of, state_key

NAME = "market"
METHODS = MethodTable()

LIMIT = "limit"
MARKET = "market"  # executes at once up to its protection price, never rests
KINDS = (LIMIT, MARKET)
MAX_EXPIRIES_PER_BLOCK = 1_000  # bounded sweep; the rest expire lazily or in the next blocks
MAX_DEPTH_LEVELS = 100
MAX_OPEN_ORDERS_LISTED = 1_000
MAX_DAY_BARS_LISTED = 366
MAX_FORCED_CANCELS = 1_000  # orders one cancel_account_orders transaction takes off
MAX_BOOKS_KEPT = 1_024  # decoded book parameters kept by their record's bytes (every order reads one)
# Per-order records built with tuple.__new__ (a C call) instead of a NamedTuple's Python-level
# constructor; the fields are written out in order right here.
_new = tuple.__new__

# Reason codes of the venue's refusals, in one place (docs/MARKET.md lists them).
HALTED = Reason.TRADING_HALTED  # trading in the security is halted
OFF_TICK = Reason.OFF_TICK  # price not a multiple of the tick size, quantity not of the lot size
NO_BOOK = Reason.NOT_FOUND


class BookParams(NamedTuple):
    """Per book: prices are multiples of tick_size, quantities of lot_size; tick*lot is a
    multiple of scale (10**decimals of the security), so every trade's cash is a whole number."""

    tick_size: int
    lot_size: int
    scale: int


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def book_key(isin: str, currency: str) -> bytes:
    return state_key("mkt", "book", isin, currency)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def halt_key(isin: str) -> bytes:
    return state_key("mkt", "halt", isin)


@functools.lru_cache(maxsize=MAX_BOOKS_KEPT)
def _book_params(raw: bytes) -> BookParams:
    """A pure function of the record's bytes, so a kept one is never stale (see Context.record)."""
    return BookParams(*msgpack.unpackb(raw))


def get_book(ctx: Context, isin: str, currency: str) -> BookParams | None:
    raw = ctx.state.get(book_key(isin, currency))
    return None if raw is None else _book_params(raw)


def require_book(ctx: Context, isin: str, currency: str) -> BookParams:
    found = get_book(ctx, isin, currency)
    if found is None:
        raise ContractError(NO_BOOK, f"no order book for {isin} in {currency}")
    return found


def _spec(isin: str, currency: str, params: BookParams) -> BookSpec:
    """What taking orders off this book needs (qualified_only matters only to matching)."""
    return BookSpec(isin, currency, params.scale, params.tick_size)


def is_halted(ctx: Context, isin: str) -> bool:
    """True while an operator or regulator halts trading in the security (negotiated trades too)."""
    return ctx.state.get(halt_key(isin)) is not None


def require_trading(ctx: Context, isin: str) -> None:
    if is_halted(ctx, isin):
        raise ContractError(HALTED, f"trading in {isin} is halted")


def require_not_converting(ctx: Context, isin: str) -> None:
    """ASSET_PAUSED from a split's or redemption's first step until its conversion ends.

    Every order and proposal in the old units is withdrawn before the hold starts, so none may
    be made meanwhile: a buy locks only cash, so the hold's balance hook would not refuse it,
    and it would rest priced and sized in units that no longer exist once the conversion ends.
    Refused already while the withdrawal runs (bounded per block), or new orders could outpace it.
    """
    action = entitlements.converting(ctx, isin)
    if action is not None:
        raise ContractError(Reason.ASSET_PAUSED, f"{isin} is being converted by {action}")


def require_venue_authority(ctx: Context) -> str:
    """An operator, or failing that an active regulator, must sign."""
    for signer in ctx.signers:
        if participants.is_operator(ctx, signer):
            return signer
    return participants.require_role_signer(ctx, participants.REGULATOR)


def _check_params(tick_size: int, lot_size: int, scale: int) -> None:
    if (tick_size * lot_size) % scale != 0:
        raise ContractError(Reason.BAD_ARGUMENTS,
                            f"tick_size x lot_size must be a multiple of {scale} so trade amounts are whole")


def _book_empty(ctx: Context, isin: str, currency: str) -> bool:
    return all(orderbook.best_price(ctx, isin, currency, side) is None for side in SIDES)


# ---------------------------------------------------------------- book administration


@METHODS.method(isin=ASSET_ID, currency=CURRENCY_CODE, tick_size=AMOUNT, lot_size=AMOUNT)
def open_book(ctx: Context, isin: str, currency: str, tick_size: int, lot_size: int) -> None:
    """An operator lists a security for trading against a currency, with its tick and lot sizes."""
    operator = participants.require_operator(ctx)
    instrument = securities.require_instrument(ctx, isin)
    require_currency(ctx, currency)
    if get_book(ctx, isin, currency) is not None:
        raise ContractError(Reason.ALREADY_EXISTS, f"{isin}/{currency} already has a book")
    scale = 10 ** instrument.decimals
    _check_params(tick_size, lot_size, scale)
    ctx.state.put(book_key(isin, currency), msgpack.packb((tick_size, lot_size, scale)))
    ctx.touch(isin)
    ctx.emit("book_opened", isin=isin, currency=currency, tick_size=tick_size, lot_size=lot_size, by=operator)


@METHODS.method(isin=ASSET_ID, currency=CURRENCY_CODE, tick_size=AMOUNT, lot_size=AMOUNT)
def set_book_params(ctx: Context, isin: str, currency: str, tick_size: int, lot_size: int) -> None:
    """An operator changes tick and lot sizes of an empty book (resting orders were sized by
    the old ones, so a change with orders resting could make a trade amount fractional)."""
    operator = participants.require_operator(ctx)
    params = require_book(ctx, isin, currency)
    _check_params(tick_size, lot_size, params.scale)
    if not _book_empty(ctx, isin, currency):
        raise ContractError(Reason.INVALID_STATE, f"{isin}/{currency} has resting orders")
    ctx.state.put(book_key(isin, currency), msgpack.packb((tick_size, lot_size, params.scale)))
    ctx.touch(isin)
    ctx.emit("book_params_set", isin=isin, currency=currency, tick_size=tick_size, lot_size=lot_size, by=operator)


@METHODS.method(isin=ASSET_ID, reason=TEXT)
def halt_trading(ctx: Context, isin: str, reason: str) -> None:
    """An operator or regulator halts trading in a security: no new orders, no matching, no
    negotiated trades; cancels and expiries still release what orders hold."""
    by = require_venue_authority(ctx)
    securities.require_instrument(ctx, isin)
    if is_halted(ctx, isin):
        raise ContractError(Reason.INVALID_STATE, f"trading in {isin} is already halted")
    ctx.put(halt_key(isin), {"by": by, "reason": reason, "height": ctx.block.height})
    ctx.touch(isin)
    ctx.emit("trading_halted", isin=isin, reason=reason, by=by)


@METHODS.method(isin=ASSET_ID, reason=TEXT)
def resume_trading(ctx: Context, isin: str, reason: str) -> None:
    by = require_venue_authority(ctx)
    if not is_halted(ctx, isin):
        raise ContractError(Reason.INVALID_STATE, f"trading in {isin} is not halted")
    ctx.delete(halt_key(isin))
    ctx.touch(isin)
    ctx.emit("trading_resumed", isin=isin, reason=reason, by=by)


# ---------------------------------------------------------------- orders


class OrderRequest(NamedTuple):
    isin: str
    currency: str
    side: str
    quantity: int
    price: int
    tif: str
    kind: str
    expires_at_ms: int
    client_ref: str


def _check_request(ctx: Context, request: OrderRequest, params: BookParams) -> None:
    if request.price % params.tick_size != 0:
        raise ContractError(OFF_TICK, f"price {request.price} is not a multiple of the tick {params.tick_size}")
    if request.quantity % params.lot_size != 0:
        raise ContractError(OFF_TICK, f"quantity {request.quantity} is not a multiple of the lot {params.lot_size}")
    if request.kind == MARKET and request.tif not in (IOC, FOK):
        raise ContractError(Reason.BAD_ARGUMENTS, "a market order is ioc or fok (it never rests)")
    if (request.tif == GTT) != (request.expires_at_ms != orderbook.NO_EXPIRY):
        raise ContractError(Reason.BAD_ARGUMENTS, "expires_at_ms is given exactly when time_in_force is gtt")
    if request.tif == GTT and request.expires_at_ms <= ctx.block.time_ms:
        raise ContractError(Reason.BAD_ARGUMENTS, "expires_at_ms must be after the block time")
    if notional(request.price, request.quantity, params.scale) > balances.MAX_AMOUNT:
        raise ContractError(Reason.INVALID_AMOUNT, "price x quantity exceeds the largest amount")


def _check_taker(ctx: Context, owner: str, request: OrderRequest,
                 scale: int) -> tuple[securities.Instrument, compliance.FreezeState, balances.Balance]:
    """The rules of the placing account's own side, and that it can pay for the whole order;
    the instrument, the taker's freeze state of the asset it pays with and its balance of it."""
    instrument = securities.require_instrument(ctx, request.isin)
    if instrument.paused:
        raise ContractError(Reason.ASSET_PAUSED, f"{request.isin} is paused")
    require_not_converting(ctx, request.isin)
    # Both assets' freezes in one lookup (reads only); refused below in the documented order.
    security_freeze, cash_freeze = compliance.freeze_states(ctx, owner, request.isin, request.currency)
    if request.side == BUY:
        securities.check_receiver(ctx, instrument, owner, frozen=security_freeze.frozen)
        paying = compliance.refuse_frozen(owner, request.currency, cash_freeze)
        held = compliance.check_spendable(ctx, owner, request.currency,
                                          notional(request.price, request.quantity, scale), paying)
    else:
        if ctx.block.time_ms < instrument.lockup_until_ms:
            raise ContractError(Reason.LOCKED_UP, f"{request.isin} is locked up until {instrument.lockup_until_ms}")
        participants.require_eligible(ctx, owner, Reason.SENDER_NOT_ELIGIBLE)
        compliance.refuse_frozen(owner, request.currency, cash_freeze)
        paying = compliance.refuse_frozen(owner, request.isin, security_freeze)
        held = compliance.check_spendable(ctx, owner, request.isin, request.quantity, paying)
    return instrument, paying, held


def place(ctx: Context, owner: str, request: OrderRequest) -> Order:
    """Admit an order, match it, then rest, cancel or kill what is left; returns its final form."""
    params = require_book(ctx, request.isin, request.currency)
    require_trading(ctx, request.isin)
    _check_request(ctx, request, params)
    instrument, paying, held = _check_taker(ctx, owner, request, params.scale)
    spec = _new(BookSpec, (request.isin, request.currency, params.scale, params.tick_size,
                           instrument.qualified_only))
    terms = _new(FillTerms, (request.isin, request.currency,
                             ctx.state.get(currency_key(request.currency)) is not None,
                             instrument.lockup_until_ms, instrument.max_holders, paying))
    order = _new(Order, (orderbook.next_order_id(ctx), request.isin, request.currency, request.side, owner,
                         request.price, request.quantity, request.quantity, request.tif, request.expires_at_ms,
                         NEW, request.client_ref, orderbook.NO_ORDER, orderbook.NO_ORDER))
    ctx.touch(owner)
    # The order path's events name their attributes in key order, the order they are encoded
    # in: such a map packs as it stands, without a sorted copy (codec.is_leaf_map_sorted;
    # tests/test_venue_events_in_key_order.py).
    ctx.emit("order_placed", client_ref=order.client_ref, currency=order.currency,
             expires_at_ms=order.expires_at_ms, isin=order.isin, order_id=order.order_id,
             order_type=request.kind, owner=owner, price=order.price, quantity=order.quantity,
             side=order.side, time_in_force=order.tif)
    result = _match_fok(ctx, spec, terms, order) if order.tif == FOK else _match(ctx, spec, terms, order)
    # What rests is locked from the balance read at entry unless matching may have changed it.
    return _finish(ctx, spec, result, None if result.met_maker else held)


def _match(ctx: Context, spec: BookSpec, terms: FillTerms, order: Order) -> MatchResult:
    result = match(ctx, spec, terms, order)
    if result.recorder is not None:
        result.recorder.flush()
    return result


def _match_fok(ctx: Context, spec: BookSpec, terms: FillTerms, order: Order) -> MatchResult:
    """Match on a child overlay and keep it only if the order filled completely."""
    child = ctx.child()
    result = _match(child, spec, terms, order)
    if result.taker.remaining > 0:
        return MatchResult(order)
    ctx.merge_child(child)
    return result


def _finish(ctx: Context, spec: BookSpec, result: MatchResult, held: balances.Balance | None) -> Order:
    """`held`: the owner's balance of the asset it pays with, if nothing has written it since
    it was read (None: read it again)."""
    order = result.taker
    if order.remaining == 0:
        ctx.emit("order_filled", order_id=order.order_id, owner=order.owner, quantity=order.quantity)
        return order
    if order.tif == FOK:
        order = order.with_status(orderbook.advance(order.status, orderbook.KILL))
        ctx.emit("order_killed", order_id=order.order_id, owner=order.owner, remaining=order.remaining)
        return order
    if order.tif not in RESTING_TIFS or result.stopped:
        why = result.stopped or "not_resting"
        order = order.with_status(orderbook.advance(order.status, orderbook.CANCEL))
        ctx.emit("order_cancelled", currency=order.currency, isin=order.isin, order_id=order.order_id,
                 owner=order.owner, remaining=order.remaining, status=order.status, why=why)
        return order
    order = order.with_status(orderbook.advance(order.status, orderbook.REST))
    if order.side == BUY:
        balances.lock(ctx, spec.currency, order.owner, notional(order.price, order.remaining, spec.scale),
                      source_balance=held)
    else:
        balances.lock(ctx, spec.isin, order.owner, order.remaining, source_balance=held)
    order = orderbook.rest(ctx, order)
    ctx.emit("order_rested", order_id=order.order_id, owner=order.owner, price=order.price,
             remaining=order.remaining, status=order.status)
    return order


@METHODS.method(optional=("time_in_force", "kind", "expires_at_ms", "client_ref"),
                isin=ASSET_ID, currency=CURRENCY_CODE, side=one_of(*SIDES), quantity=AMOUNT, price=AMOUNT,
                time_in_force=one_of(*TIMES_IN_FORCE), kind=one_of(*KINDS), expires_at_ms=UINT, client_ref=TEXT)
def place_order(ctx: Context, isin: str, currency: str, side: str, quantity: int, price: int,
                time_in_force: str = orderbook.GTC, kind: str = LIMIT, expires_at_ms: int = orderbook.NO_EXPIRY,
                client_ref: str = "") -> None:
    """Place an order. `price` is the limit (for a market order, its protection price) in
    currency minor units per whole security unit; `quantity` is in security minor units."""
    place(ctx, ctx.sender, _new(OrderRequest, (isin, currency, side, quantity, price, time_in_force, kind,
                                               expires_at_ms, client_ref)))


@METHODS.method(order_id=AMOUNT)
def cancel_order(ctx: Context, order_id: int) -> None:
    """The owner cancels its resting order; what it held is released. Allowed during a halt."""
    order = orderbook.find(ctx, ctx.sender, order_id)
    params = require_book(ctx, order.isin, order.currency)
    take_off_book(ctx, _spec(order.isin, order.currency, params), order, orderbook.CANCEL, "by_owner")


@METHODS.method(optional=("expires_at_ms",), order_id=AMOUNT, quantity=AMOUNT, price=AMOUNT, expires_at_ms=AMOUNT)
def replace_order(ctx: Context, order_id: int, quantity: int, price: int, expires_at_ms: int | None = None) -> None:
    """Cancel a resting order and place a new one of the same side and time in force, atomically.

    The new order gets a new id and joins the back of its price level (it loses priority); a
    good-till-time order keeps its expiry unless a new one is given.
    """
    owner = ctx.sender
    old = orderbook.find(ctx, owner, order_id)
    params = require_book(ctx, old.isin, old.currency)
    take_off_book(ctx, _spec(old.isin, old.currency, params), old, orderbook.CANCEL, "replaced")
    if old.tif != GTT and expires_at_ms is not None:
        raise ContractError(Reason.BAD_ARGUMENTS, "only a good-till-time order has an expiry")
    expiry = old.expires_at_ms if expires_at_ms is None else expires_at_ms
    place(ctx, owner, OrderRequest(old.isin, old.currency, old.side, quantity, price, old.tif, LIMIT, expiry,
                                   old.client_ref))


@METHODS.method(account=ADDRESS, reason=TEXT)
def cancel_account_orders(ctx: Context, account: str, reason: str) -> None:
    """An operator or regulator cancels an account's resting orders (up to MAX_FORCED_CANCELS
    per transaction; send again for more), e.g. so a forced transfer finds the units free."""
    by = require_venue_authority(ctx)
    # Ids first, each order read again just before it leaves: taking one off its level rewrites
    # its neighbours' links, so a record read before that (the next of the same account at the
    # same price) would point at the order just removed.
    order_ids = orderbook.account_order_ids(ctx, account, MAX_FORCED_CANCELS)
    specs: dict[tuple[str, str], BookSpec] = {}
    for order_id in order_ids:
        order = orderbook.linked(ctx, order_id)
        pair = (order.isin, order.currency)
        if pair not in specs:
            specs[pair] = _spec(order.isin, order.currency, require_book(ctx, *pair))
        take_off_book(ctx, specs[pair], order, orderbook.CANCEL, "by_authority")
    ctx.emit("account_orders_cancelled", account=account, count=len(order_ids), reason=reason, by=by)


# ---------------------------------------------------------------- for corporate actions


def _book_currencies(ctx: Context, isin: str) -> list[str]:
    prefix = prefix_of("mkt", "book", isin)
    return [key[len(prefix):].decode("ascii") for key, _ in ctx.state.iter_prefix(prefix)]


def withdraw_security_orders(ctx: Context, isin: str, why: str, limit: int) -> bool:
    """Cancel resting orders in every book of `isin`, at most `limit`; True once none is left.

    For a corporate action that changes what a unit is (a split, a redemption): orders priced
    and sized in the old units must not survive it, and their locks must be released before the
    holdings are converted (a converted lock no longer matches the order that made it).
    """
    left = limit
    for currency in _book_currencies(ctx, isin):
        spec = _spec(isin, currency, require_book(ctx, isin, currency))
        for side in SIDES:
            while (order := orderbook.best_order(ctx, isin, currency, side)) is not None:
                if left == 0:
                    return False
                take_off_book(ctx, spec, order, orderbook.CANCEL, why)
                left -= 1
    return True


# ---------------------------------------------------------------- scheduled work


def begin_block(ctx: Context) -> None:
    """Expire good-till-time orders due at this block's time, at most MAX_EXPIRIES_PER_BLOCK."""
    specs: dict[tuple[str, str], BookSpec] = {}
    for order_id in orderbook.due_expiries(ctx, ctx.block.time_ms, MAX_EXPIRIES_PER_BLOCK):
        order = orderbook.get_order(ctx, order_id)
        if order is None:
            raise InvariantViolation(f"an expiry entry points at no order ({order_id})")
        pair = (order.isin, order.currency)
        if pair not in specs:
            specs[pair] = _spec(order.isin, order.currency, require_book(ctx, *pair))
        take_off_book(ctx, specs[pair], order, orderbook.EXPIRE)


def next_due_ms(ctx: Context) -> int | None:
    """When the next good-till-time order expires (the node proposes a block by then)."""
    return orderbook.next_expiry_ms(ctx)


# ---------------------------------------------------------------- queries (pure functions of the state)


class DepthLevel(NamedTuple):
    price: int
    quantity: int
    orders: int


class Depth(NamedTuple):
    bids: list[DepthLevel]  # best (highest) first
    asks: list[DepthLevel]  # best (lowest) first


def depth(ctx: Context, isin: str, currency: str, levels: int = 10) -> Depth:
    """Quantity and order count per price level, best first, at most `levels` per side.

    Orders past their expiry count until the block-start sweep (or a match) removes them.
    """
    levels = max(0, min(levels, MAX_DEPTH_LEVELS))
    return Depth(_side_levels(ctx, isin, currency, BUY, levels), _side_levels(ctx, isin, currency, SELL, levels))


def _side_levels(ctx: Context, isin: str, currency: str, side: str, levels: int) -> list[DepthLevel]:
    out: list[DepthLevel] = []
    for price, level in orderbook.levels(ctx, isin, currency, side):
        if len(out) >= levels:
            break
        out.append(DepthLevel(price, level.quantity, level.orders))
    return out


def open_orders(ctx: Context, account: str, limit: int = 100) -> list[Order]:
    """An account's resting orders across all books, oldest first."""
    return list(orderbook.account_orders(ctx, account, max(0, min(limit, MAX_OPEN_ORDERS_LISTED))))


def trades(ctx: Context, isin: str, currency: str, limit: int = 100) -> list[Trade]:
    """The trade tape, newest first (the latest market_data.MAX_TAPE_TRADES are kept in state)."""
    return market_data.tape(ctx, isin, currency, max(0, limit))


def last_price(ctx: Context, isin: str, currency: str) -> int | None:
    found: BookStats = market_data.stats(ctx, isin, currency)
    return found.last_price if found.last_price else None


def daily_bars(ctx: Context, isin: str, currency: str, first_day: int, last_day: int) -> list[DayBar]:
    """Open/high/low/close and volume per UTC day with trades, days as days since 1970-01-01."""
    last_day = min(last_day, first_day + MAX_DAY_BARS_LISTED - 1)
    out = []
    for day in range(first_day, last_day + 1):
        bar = market_data.day_bar(ctx, isin, currency, day)
        if bar is not None:
            out.append(bar)
    return out


def book_params(ctx: Context, isin: str, currency: str) -> BookParams | None:
    return get_book(ctx, isin, currency)


# ---------------------------------------------------------------- served by the API (string params)


def _asset_param(value: str) -> str:
    if not ASSET_ID(value):
        raise ValueError("not an asset id")
    return value


def _count_param(value: str) -> int:
    if not value.isdigit():
        raise ValueError("expected a non-negative integer")
    return int(value)


def _address_param(value: str) -> str:
    if not is_address(value):
        raise ValueError("not an address")
    return value


def _depth_json(ctx: Context, isin: str, currency: str, levels: str = "10") -> dict[str, object]:
    found = depth(ctx, _asset_param(isin), _asset_param(currency), _count_param(levels))
    return {"bids": [lv._asdict() for lv in found.bids], "asks": [lv._asdict() for lv in found.asks]}


def _book_json(ctx: Context, isin: str, currency: str) -> dict[str, object] | None:
    params = get_book(ctx, _asset_param(isin), _asset_param(currency))
    if params is None:
        return None
    return {**params._asdict(), "halted": is_halted(ctx, isin),
            "best_bid": orderbook.best_price(ctx, isin, currency, BUY),
            "best_ask": orderbook.best_price(ctx, isin, currency, SELL),
            "last_price": last_price(ctx, isin, currency)}


QUERIES: dict[str, Callable[..., Any]] = {
    "book": _book_json,
    "depth": _depth_json,
    "open_orders": lambda ctx, account, limit="100": [
        o.to_json() for o in open_orders(ctx, _address_param(account), _count_param(limit))],
    "trades": lambda ctx, isin, currency, limit="100": [
        t.to_json() for t in trades(ctx, _asset_param(isin), _asset_param(currency), _count_param(limit))],
    "daily_bars": lambda ctx, isin, currency, first_day, last_day: [
        b.to_json() for b in daily_bars(ctx, _asset_param(isin), _asset_param(currency), _count_param(first_day),
                                        _count_param(last_day))],
}
