"""What a trader relies on from the order book: locks, fills, priority, order types, halts,
expiry and the queries, one behaviour per test (the model test covers random flows)."""

from __future__ import annotations

import pytest

from contracts import market, matching
from contracts.base import Context
from contracts.market_data import MS_PER_DAY
from ledger.reasons import Reason
from tests.market_world import CURRENCY, Outcome, World


def _ids(outcome: Outcome, kind: str = "trade") -> list[tuple[int, int]]:
    return [(t["price"], t["quantity"]) for t in outcome.of_kind(kind)]


def _order_id(outcome: Outcome) -> int:
    return outcome.of_kind("order_placed")[0]["order_id"]


def test_resting_orders_lock_exactly_what_they_may_pay_and_cancel_releases_it() -> None:
    w = World()
    a = w.investors[0]
    bid = w.order(a, "buy", 30, 250)
    ask = w.order(a, "sell", 40, 300)
    assert bid.ok and ask.ok
    assert w.balance(CURRENCY, a).locked == 30 * 250
    assert w.balance(w.isin, a).locked == 40
    w.must(a, "market", "cancel_order", order_id=_order_id(bid))
    w.must(a, "market", "cancel_order", order_id=_order_id(ask))
    assert w.balance(CURRENCY, a).locked == 0 and w.balance(w.isin, a).locked == 0
    assert market.open_orders(w.query_ctx(), a) == []


def test_a_match_settles_both_sides_in_the_placing_call_at_the_resting_price() -> None:
    w = World()
    seller, buyer = w.investors[:2]
    cash_before, shares_before = w.balance(CURRENCY, buyer).free, w.balance(w.isin, buyer).free
    w.must(seller, "market", "place_order", isin=w.isin, currency=CURRENCY, side="sell", quantity=10, price=500)
    done = w.order(buyer, "buy", 10, 520)
    assert _ids(done) == [(500, 10)]  # price improvement goes to the incoming order
    assert w.balance(CURRENCY, buyer).free == cash_before - 5_000
    assert w.balance(w.isin, buyer).free == shares_before + 10
    assert w.balance(w.isin, seller).locked == 0 and w.balance(CURRENCY, seller).locked == 0
    assert w.balance(CURRENCY, buyer).locked == 0


def test_price_then_time_priority_and_partial_fills() -> None:
    w = World()
    a, b, c, d = w.investors
    first = _order_id(w.order(a, "sell", 10, 101))
    second = _order_id(w.order(b, "sell", 10, 101))
    better = _order_id(w.order(c, "sell", 5, 100))
    done = w.order(d, "buy", 20, 101)
    assert [(t["sell_order"], t["price"], t["quantity"]) for t in done.of_kind("trade")] == \
        [(better, 100, 5), (first, 101, 10), (second, 101, 5)]
    left = market.open_orders(w.query_ctx(), b)
    assert [(o.order_id, o.remaining, o.status) for o in left] == [(second, 5, "partial")]
    assert w.balance(w.isin, b).locked == 5


def test_ioc_and_market_orders_never_rest_and_respect_their_limit() -> None:
    w = World()
    a, b = w.investors[:2]
    w.order(a, "sell", 10, 100)
    w.order(a, "sell", 10, 110)
    ioc = w.order(b, "buy", 30, 105, time_in_force="ioc")
    assert _ids(ioc) == [(100, 10)]
    assert ioc.of_kind("order_cancelled")[0]["remaining"] == 20
    mkt = w.order(b, "buy", 30, 120, time_in_force="ioc", kind="market")  # 120 is the protection price
    assert _ids(mkt) == [(110, 10)]
    assert market.open_orders(w.query_ctx(), b) == []
    assert w.balance(CURRENCY, b).locked == 0
    assert w.order(b, "buy", 10, 120, kind="market").reason == Reason.BAD_ARGUMENTS  # market + gtc


def test_fill_or_kill_fills_completely_or_changes_nothing() -> None:
    w = World()
    a, b = w.investors[:2]
    w.order(a, "sell", 10, 100)
    before = (w.balance(CURRENCY, b), w.balance(w.isin, a))
    killed = w.order(b, "buy", 11, 100, time_in_force="fok")
    assert killed.ok and killed.of_kind("order_killed") and not killed.of_kind("trade")
    assert (w.balance(CURRENCY, b), w.balance(w.isin, a)) == before
    filled = w.order(b, "buy", 10, 100, time_in_force="fok")
    assert _ids(filled) == [(100, 10)] and filled.of_kind("order_filled")


def test_self_trade_prevention_cancels_the_resting_order_and_matching_goes_on() -> None:
    w = World()
    a, b = w.investors[:2]
    own = _order_id(w.order(a, "sell", 10, 100))
    other = _order_id(w.order(b, "sell", 10, 101))
    done = w.order(a, "buy", 10, 101)
    assert [c["order_id"] for c in done.of_kind("order_cancelled") if c["why"] == "self_trade"] == [own]
    assert [t["sell_order"] for t in done.of_kind("trade")] == [other]
    assert w.balance(w.isin, a).locked == 0


def test_tick_lot_funds_and_book_are_checked_at_entry() -> None:
    w = World(tick_size=5, lot_size=10, cash_each=1_000)
    a = w.investors[0]
    assert w.order(a, "sell", 10, 101).reason == Reason.OFF_TICK
    assert w.order(a, "sell", 15, 100).reason == Reason.OFF_TICK  # off the lot
    assert w.order(a, "buy", 20, 100).reason == Reason.INSUFFICIENT_FREE_BALANCE  # 2,000 > 1,000
    assert w.order(a, "sell", 20_000, 100).reason == Reason.INSUFFICIENT_FREE_BALANCE
    missing = w.call(a, "market", "place_order", isin=w.isin, currency="USD", side="buy", quantity=10, price=5)
    assert missing.reason == Reason.NOT_FOUND
    assert w.call(w.operator, "market", "set_book_params", isin=w.isin, currency=CURRENCY, tick_size=7,
                  lot_size=1).ok
    assert w.order(a, "sell", 10, 100).reason == Reason.OFF_TICK  # off the new tick of 7
    w.must(a, "market", "place_order", isin=w.isin, currency=CURRENCY, side="sell", quantity=10, price=105 + 7 * 3)
    changed = w.call(w.operator, "market", "set_book_params", isin=w.isin, currency=CURRENCY, tick_size=1,
                     lot_size=1)
    assert changed.reason == Reason.INVALID_STATE  # not while orders rest
    assert w.call(a, "market", "open_book", isin=w.isin, currency="EUR", tick_size=1, lot_size=1).reason == \
        Reason.UNAUTHORIZED


def test_a_halt_stops_new_orders_but_not_cancels() -> None:
    w = World()
    a = w.investors[0]
    resting = _order_id(w.order(a, "sell", 10, 100))
    assert w.call(a, "market", "halt_trading", isin=w.isin, reason="news").reason == Reason.UNAUTHORIZED
    w.must(w.regulator, "market", "halt_trading", isin=w.isin, reason="pending announcement")
    assert market.is_halted(w.query_ctx(), w.isin)
    assert w.order(w.investors[1], "buy", 10, 100).reason == Reason.TRADING_HALTED
    w.must(a, "market", "cancel_order", order_id=resting)
    w.must(w.operator, "market", "resume_trading", isin=w.isin, reason="announced")
    assert w.order(w.investors[1], "buy", 10, 100).ok


def test_good_till_time_orders_expire_at_block_start_and_release_their_lock() -> None:
    w = World()
    a = w.investors[0]
    expires = w.time_ms + 5_000
    gtt = _order_id(w.order(a, "buy", 10, 100, time_in_force="gtt", expires_at_ms=expires))
    assert market.next_due_ms(w.query_ctx()) == expires
    assert w.begin_block(expires - 1) == []
    events = w.begin_block(expires)
    assert [(e.kind, e.attrs["order_id"]) for e in events] == [("order_expired", gtt)]
    assert w.balance(CURRENCY, a).locked == 0
    assert market.next_due_ms(w.query_ctx()) is None
    assert w.order(a, "buy", 10, 100, time_in_force="gtt", expires_at_ms=w.time_ms).reason == Reason.BAD_ARGUMENTS
    assert w.order(a, "buy", 10, 100, expires_at_ms=w.time_ms + 10).reason == Reason.BAD_ARGUMENTS  # gtc


def test_an_expired_order_not_yet_swept_never_trades() -> None:
    w = World()
    a, b = w.investors[:2]
    stale = _order_id(w.order(a, "sell", 10, 100, time_in_force="gtt", expires_at_ms=w.time_ms + 1))
    live = _order_id(w.order(a, "sell", 10, 101))
    w.time_ms += 1  # a later block whose sweep has not run (or ran out of its bound)
    done = w.order(b, "buy", 10, 101)
    assert [x["order_id"] for x in done.of_kind("order_expired")] == [stale]
    assert [t["sell_order"] for t in done.of_kind("trade")] == [live]


def test_replace_moves_the_order_to_the_back_of_the_queue() -> None:
    w = World()
    a, b, c = w.investors[:3]
    old = _order_id(w.order(a, "sell", 10, 100))
    w.order(b, "sell", 10, 100)
    replaced = w.must(a, "market", "replace_order", order_id=old, quantity=20, price=100)
    new = _order_id(replaced)
    assert new > old and w.balance(w.isin, a).locked == 20
    done = w.order(c, "buy", 10, 100)
    assert [t["seller"] for t in done.of_kind("trade")] == [b]
    assert w.call(a, "market", "cancel_order", order_id=old).reason == Reason.NOT_FOUND
    assert w.call(b, "market", "cancel_order", order_id=new).reason == Reason.NOT_FOUND  # not b's


def test_a_frozen_resting_order_is_cancelled_instead_of_blocking_the_book() -> None:
    w = World()
    a, b, c = w.investors[:3]
    frozen = _order_id(w.order(a, "sell", 10, 100))
    w.order(b, "sell", 10, 101)
    w.must(w.regulator, "compliance", "freeze", account=a, reason="court order")
    done = w.order(c, "buy", 10, 101)
    assert [x["order_id"] for x in done.of_kind("order_cancelled")] == [frozen]
    assert [t["seller"] for t in done.of_kind("trade")] == [b]
    assert w.balance(w.isin, a).locked == 0


def test_an_ineligible_taker_is_refused_whole() -> None:
    w = World()
    a, b = w.investors[:2]
    w.order(a, "sell", 10, 100)
    w.must(w.operator, "participants", "suspend", address=b, reason="kyc expired")
    assert w.order(b, "buy", 10, 100).reason == Reason.PARTICIPANT_SUSPENDED
    w.must(w.regulator, "compliance", "freeze", account=w.investors[2], reason="inquiry")
    assert w.order(w.investors[2], "buy", 10, 100).reason == Reason.ACCOUNT_FROZEN
    assert market.depth(w.query_ctx(), w.isin, CURRENCY).asks[0].quantity == 10


def test_holder_limit_cancels_a_resting_buyer_it_shuts_out() -> None:
    w = World(investors=3, shares_each=0, max_holders=2)
    a, b, c = w.investors
    w.must(w.issuer, "securities", "issue", isin=w.isin, to=a, quantity=100)
    shut_out = _order_id(w.order(b, "buy", 10, 100))  # room for one more holder when placed
    w.order(c, "buy", 10, 101)
    assert w.order(a, "sell", 10, 101).ok  # c takes the last slot
    done = w.order(a, "sell", 10, 100)
    assert [x["order_id"] for x in done.of_kind("order_cancelled")] == [shut_out]
    assert not done.of_kind("trade") and done.of_kind("order_rested")
    assert w.balance(CURRENCY, b).locked == 0
    assert w.order(b, "buy", 10, 100).reason == Reason.MAX_HOLDERS_REACHED  # refused at entry now


def test_queries_depth_tape_last_price_and_daily_bars() -> None:
    w = World()
    a, b = w.investors[:2]
    for price in (100, 100, 102, 105):
        w.order(a, "sell", 10, price)
    w.order(b, "buy", 10, 95)
    ctx = w.query_ctx()
    depth = market.depth(ctx, w.isin, CURRENCY, levels=2)
    assert [(x.price, x.quantity, x.orders) for x in depth.asks] == [(100, 20, 2), (102, 10, 1)]
    assert [(x.price, x.quantity) for x in depth.bids] == [(95, 10)]
    assert market.last_price(ctx, w.isin, CURRENCY) is None
    w.order(b, "buy", 25, 102)
    day = w.time_ms // MS_PER_DAY
    w.begin_block((day + 1) * MS_PER_DAY)  # the next UTC day
    w.order(b, "buy", 5, 105)
    ctx = w.query_ctx()
    assert market.last_price(ctx, w.isin, CURRENCY) == 102
    tape = market.trades(ctx, w.isin, CURRENCY, limit=10)
    assert [(t.price, t.quantity) for t in tape] == [(102, 5), (102, 5), (100, 10), (100, 10)]
    assert [t.trade_id for t in tape] == [4, 3, 2, 1]
    bars = market.daily_bars(ctx, w.isin, CURRENCY, day, day + 1)
    assert [(x.day, x.open, x.high, x.low, x.close, x.volume, x.trades) for x in bars] == \
        [(day, 100, 102, 100, 102, 25, 3), (day + 1, 102, 102, 102, 102, 5, 1)]
    assert market.open_orders(ctx, a)[0].price == 105


def test_the_match_step_bound_cancels_a_remainder_that_could_still_cross(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matching, "MAX_MATCH_STEPS", 3)
    w = World()
    a, b = w.investors[:2]
    for _ in range(5):
        w.order(a, "sell", 10, 100)
    done = w.order(b, "buy", 50, 100)
    assert len(done.of_kind("trade")) == 3
    assert done.of_kind("order_cancelled")[-1]["why"] == "step_limit"
    assert market.depth(w.query_ctx(), w.isin, CURRENCY).bids == []  # never rested crossing
    assert w.balance(CURRENCY, b).locked == 0


def test_the_expiry_sweep_is_bounded_per_block_and_resumes_in_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(market, "MAX_EXPIRIES_PER_BLOCK", 2)
    w = World()
    a = w.investors[0]
    due = w.time_ms + 100
    for price in (90, 91, 92):
        w.order(a, "buy", 10, price, time_in_force="gtt", expires_at_ms=due)
    assert len(w.begin_block(due)) == 2
    assert market.next_due_ms(w.query_ctx()) == due  # still due: the node proposes a block at once
    assert len(w.begin_block(due)) == 1
    assert w.balance(CURRENCY, a).locked == 0


def test_the_api_queries_return_plain_json_values() -> None:
    w = World()
    a, b = w.investors[:2]
    w.order(a, "sell", 10, 100)
    w.order(b, "buy", 4, 100)
    ctx = w.query_ctx()
    book = market.QUERIES["book"](ctx, isin=w.isin, currency=CURRENCY)
    assert (book["best_ask"], book["best_bid"], book["last_price"], book["halted"]) == (100, None, 100, False)
    assert market.QUERIES["depth"](ctx, isin=w.isin, currency=CURRENCY)["asks"] == \
        [{"price": 100, "quantity": 6, "orders": 1}]
    assert market.QUERIES["open_orders"](ctx, account=a)[0]["remaining"] == 6
    assert market.QUERIES["trades"](ctx, isin=w.isin, currency=CURRENCY, limit="1")[0]["quantity"] == 4
    day = str(w.time_ms // MS_PER_DAY)
    assert market.QUERIES["daily_bars"](ctx, isin=w.isin, currency=CURRENCY, first_day=day,
                                        last_day=day)[0]["volume"] == 4


def test_a_corporate_action_can_withdraw_every_order_on_the_security_in_bounded_steps() -> None:
    w = World()
    a, b = w.investors[:2]
    for price in (90, 95):
        w.order(a, "buy", 10, price)
    for price in (100, 105):
        w.order(b, "sell", 10, price)

    def withdraw(ctx: Context) -> bool:
        return market.withdraw_security_orders(ctx, w.isin, "split", limit=3)

    done, events = w.system(withdraw)
    assert done is False and len(events) == 3
    done, events = w.system(withdraw)
    assert done is True and [e.attrs["why"] for e in events] == ["split"]
    assert market.depth(w.query_ctx(), w.isin, CURRENCY) == market.Depth([], [])
    assert w.balance(CURRENCY, a).locked == 0 and w.balance(w.isin, b).locked == 0


def test_a_forced_cancel_takes_an_accounts_orders_queued_next_to_each_other_at_one_price() -> None:
    """A market maker quoting one price has its orders next to each other in the level's queue;
    each is read again just before it leaves (a record read before its neighbour left points at
    it, and the removal once stopped every node on the block)."""
    w = World()
    a, b = w.investors[:2]
    for _ in range(3):
        w.order(a, "buy", 10, 90)
    w.order(b, "buy", 10, 90)
    w.order(a, "sell", 10, 100)
    w.order(a, "sell", 10, 100)
    done = w.must(w.operator, "market", "cancel_account_orders", account=a, reason="suspension")
    assert done.of_kind("account_orders_cancelled")[0]["count"] == 5
    depth = market.depth(w.query_ctx(), w.isin, CURRENCY)
    assert [(lv.price, lv.quantity, lv.orders) for lv in depth.bids] == [(90, 10, 1)] and depth.asks == []
    assert market.open_orders(w.query_ctx(), a) == []
    assert w.balance(CURRENCY, a).locked == 0 and w.balance(w.isin, a).locked == 0


def test_an_operator_or_regulator_can_cancel_an_accounts_orders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(market, "MAX_FORCED_CANCELS", 2)
    w = World()
    a, b = w.investors[:2]
    for price in (90, 91, 92):
        w.order(a, "buy", 10, price)
    w.order(b, "buy", 10, 93)
    assert w.call(b, "market", "cancel_account_orders", account=a, reason="x").reason == Reason.UNAUTHORIZED
    done = w.must(w.regulator, "market", "cancel_account_orders", account=a, reason="court order")
    assert done.of_kind("account_orders_cancelled")[0]["count"] == 2
    w.must(w.operator, "market", "cancel_account_orders", account=a, reason="court order")
    assert market.open_orders(w.query_ctx(), a) == [] and w.balance(CURRENCY, a).locked == 0
    assert len(market.open_orders(w.query_ctx(), b)) == 1
