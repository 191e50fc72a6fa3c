"""The market contract against the reference model (tests/book_model.py), step by step.

Hypothesis drives the same random order flow (limit GTC/GTT, IOC, FOK, market orders,
cancels, replaces, forced cancels of an account, block times passing) into both and compares
every outcome, fill, resting order and balance; invariants that need no model are checked after
every step too.
"""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contracts import market
from tests.book_model import BUY, SELL, BookModel, Fill
from tests.market_world import CURRENCY, Outcome, World

TICK = 5
LOT = 10
CASH_EACH = 200_000
SHARES_EACH = 400
TRADERS = 3
OUTCOME_EVENTS = {"order_filled": "filled", "order_rested": "rested", "order_cancelled": "cancelled",
                  "order_killed": "killed"}

prices = st.integers(min_value=1, max_value=12).map(lambda n: 90 + n * TICK)  # 95..150, on tick
lots = st.integers(min_value=1, max_value=6).map(lambda n: n * LOT)
tifs = st.sampled_from(["gtc", "gtc", "gtt", "ioc", "fok", "market"])


class MarketAgainstModel(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.world = World(TRADERS, cash_each=CASH_EACH, shares_each=SHARES_EACH, tick_size=TICK, lot_size=LOT)
        self.model = BookModel(self.world.isin, CURRENCY, TICK, LOT)
        self.halted = False
        for account in self.world.investors:
            self.model.fund(account, CURRENCY, CASH_EACH)
            self.model.fund(account, self.world.isin, SHARES_EACH)

    # ------------------------------------------------------------ rules

    @rule(trader=st.integers(0, TRADERS - 1), side=st.sampled_from([BUY, SELL]), quantity=lots, price=prices,
          tif=tifs, lifetime=st.integers(1, 3), off_grid=st.integers(0, 20))
    def place(self, trader: int, side: str, quantity: int, price: int, tif: str, lifetime: int,
              off_grid: int) -> None:
        owner = self.world.investors[trader]
        if off_grid == 0:
            price += 1  # now off the tick: both must refuse it
        extra: dict[str, object] = {}
        expires = 0
        if tif == "gtt":
            expires = self.world.time_ms + lifetime * 1000
            extra = {"time_in_force": "gtt", "expires_at_ms": expires}
        elif tif == "market":
            extra = {"time_in_force": "ioc", "kind": "market"}
        elif tif != "gtc":
            extra = {"time_in_force": tif}
        done = self.world.order(owner, side, quantity, price, **extra)
        if self.halted:
            assert not done.ok, "an order was accepted during a halt"
            return
        model_tif = "ioc" if tif == "market" else tif
        outcome, fills, _ = self.model.place(owner, side, quantity, price, model_tif, self.world.time_ms, expires)
        self._compare_outcome(done, outcome, fills, side, price)

    @rule(trader=st.integers(0, TRADERS - 1), side=st.sampled_from([BUY, SELL]), quantity=lots, price=prices)
    def quote_twice(self, trader: int, side: str, quantity: int, price: int) -> None:
        """A market maker's habit: two orders at one price in a row, next to each other in the
        level's queue unless the first one trades."""
        for _ in range(2):
            self.place(trader, side, quantity, price, "gtc", 1, 1)

    def _compare_outcome(self, done: Outcome, outcome: str, fills: list[Fill], side: str, limit: int) -> None:
        if outcome == "refused":
            assert not done.ok, "the contract accepted an order the model refuses"
            return
        assert done.ok, f"refused: {done.reason} {done.detail}"
        got = [(t["buy_order"], t["sell_order"], t["price"], t["quantity"]) for t in done.of_kind("trade")]
        assert got == [(f.buy_order, f.sell_order, f.price, f.quantity) for f in fills]
        for trade in done.of_kind("trade"):  # every fill within the incoming order's limit
            assert trade["price"] <= limit if side == BUY else trade["price"] >= limit
        placed = done.of_kind("order_placed")[-1]
        assert sum(t["quantity"] for t in done.of_kind("trade")) <= placed["quantity"]  # never overfilled
        ends = [OUTCOME_EVENTS[e.kind] for e in done.events if e.kind in OUTCOME_EVENTS
                and e.attrs.get("why", "") not in ("self_trade", "replaced")]
        assert ends[-1] == outcome

    @precondition(lambda self: bool(self.model.resting))
    @rule(pick=st.integers(0, 10_000))
    def cancel(self, pick: int) -> None:
        order = self.model.resting[pick % len(self.model.resting)]
        done = self.world.call(order.owner, "market", "cancel_order", order_id=order.order_id)
        assert done.ok, done.detail
        assert self.model.cancel(order.owner, order.order_id)

    @precondition(lambda self: bool(self.model.resting))
    @rule(pick=st.integers(0, 10_000), quantity=lots, price=prices)
    def replace(self, pick: int, quantity: int, price: int) -> None:
        order = self.model.resting[pick % len(self.model.resting)]
        extra = {"expires_at_ms": order.expires_at_ms} if order.tif == "gtt" and quantity % 20 else {}
        done = self.world.call(order.owner, "market", "replace_order", order_id=order.order_id, quantity=quantity,
                               price=price, **extra)
        if self.halted:
            assert not done.ok, "a replace was accepted during a halt"
            return
        saved = copy.deepcopy(self.model)
        assert self.model.cancel(order.owner, order.order_id)
        outcome, fills, _ = self.model.place(order.owner, order.side, quantity, price, order.tif,
                                             self.world.time_ms, order.expires_at_ms)
        if outcome == "refused":
            self.model = saved
        self._compare_outcome(done, outcome, fills, order.side, price)

    @rule(trader=st.integers(0, TRADERS - 1))
    def cancel_account(self, trader: int) -> None:
        """The regulator cancels every resting order of one account, halted or not; an account
        often has several orders queued at one price (a forced cancel once stopped on that)."""
        owner = self.world.investors[trader]
        done = self.world.call(self.world.regulator, "market", "cancel_account_orders", account=owner,
                               reason="test")
        assert done.ok, done.detail
        mine = [o for o in self.model.resting if o.owner == owner]
        assert done.of_kind("account_orders_cancelled")[0]["count"] == len(mine)
        for order in mine:
            assert self.model.cancel(owner, order.order_id)

    @rule(roll=st.integers(0, 3))
    def halt_or_resume(self, roll: int) -> None:
        """Halts are short: the next time this rule runs it resumes trading."""
        if not self.halted and roll:
            return
        method = "resume_trading" if self.halted else "halt_trading"
        self.world.must(self.world.regulator, "market", method, isin=self.world.isin, reason="test")
        self.halted = not self.halted

    @rule(seconds=st.integers(0, 2))
    def next_block(self, seconds: int) -> None:
        events = self.world.begin_block(self.world.time_ms + seconds * 1000)
        expired = sorted(e.attrs["order_id"] for e in events if e.kind == "order_expired")
        assert expired == sorted(self.model.expire(self.world.time_ms))

    # ------------------------------------------------------------ after every step

    @invariant()
    def same_resting_orders(self) -> None:
        if not hasattr(self, "model"):
            return
        ctx = self.world.query_ctx()
        got = sorted((o.order_id, o.owner, o.side, o.price, o.remaining)
                     for a in self.world.investors for o in market.open_orders(ctx, a))
        want = sorted((o.order_id, o.owner, o.side, o.price, o.remaining) for o in self.model.resting)
        assert got == want

    @invariant()
    def same_balances_and_conserved(self) -> None:
        if not hasattr(self, "model"):
            return
        for asset, each in ((CURRENCY, CASH_EACH), (self.world.isin, SHARES_EACH)):
            total = 0
            for account in self.world.investors:
                held = self.world.balance(asset, account)
                assert (held.free, held.locked) == self.model.balance(asset, account)
                total += held.free + held.locked
            assert total == each * TRADERS  # locked plus free is conserved

    @invariant()
    def book_not_crossed_and_depth_matches(self) -> None:
        if not hasattr(self, "model"):
            return
        depth = market.depth(self.world.query_ctx(), self.world.isin, CURRENCY, levels=100)
        if depth.bids and depth.asks:
            assert depth.bids[0].price < depth.asks[0].price
        for side, levels in ((BUY, depth.bids), (SELL, depth.asks)):
            want: dict[int, list[int]] = {}
            for order in self.model.priority(side):
                want.setdefault(order.price, []).append(order.remaining)
            assert [(lv.price, lv.quantity, lv.orders) for lv in levels] == \
                [(p, sum(q), len(q)) for p, q in want.items()]
            for order in self.model.resting:  # never more than its quantity
                assert 0 < order.remaining <= order.quantity


MarketAgainstModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_market_against_model = MarketAgainstModel.TestCase
