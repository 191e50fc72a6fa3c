"""The reference model of the venue's order book, written as plainly as possible.

Part of tests/. A list of orders sorted on every use, balances in a dict, the market's rules
restated without any of the contract's storage: the stateful test feeds it and the contract
the same order flow and compares fills, resting orders and balances after every step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

BUY, SELL = "buy", "sell"


@dataclass
class ModelOrder:
    order_id: int
    owner: str
    side: str
    price: int
    quantity: int
    remaining: int
    tif: str
    expires_at_ms: int  # 0: never

    def expired(self, now_ms: int) -> bool:
        return self.expires_at_ms != 0 and now_ms >= self.expires_at_ms


@dataclass(frozen=True)
class Fill:
    buy_order: int
    sell_order: int
    price: int
    quantity: int


@dataclass
class BookModel:
    """One book: security `isin`, currency `cash`; prices are cash per whole unit (scale)."""

    isin: str
    cash: str
    tick: int
    lot: int
    scale: int = 1
    balances: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (asset, account) -> [free, locked]
    resting: list[ModelOrder] = field(default_factory=list)
    next_id: int = 1

    def fund(self, account: str, asset: str, amount: int) -> None:
        self.balances.setdefault((asset, account), [0, 0])[0] += amount

    def balance(self, asset: str, account: str) -> tuple[int, int]:
        free, locked = self.balances.get((asset, account), [0, 0])
        return free, locked

    def _move(self, asset: str, source: str, target: str, amount: int, from_locked: bool) -> None:
        src = self.balances.setdefault((asset, source), [0, 0])
        src[1 if from_locked else 0] -= amount
        assert src[0] >= 0 and src[1] >= 0, "the model overdrew an account"
        self.balances.setdefault((asset, target), [0, 0])[0] += amount

    def _lock(self, asset: str, account: str, amount: int, lock: bool = True) -> None:
        bal = self.balances.setdefault((asset, account), [0, 0])
        sign = 1 if lock else -1
        bal[0] -= sign * amount
        bal[1] += sign * amount
        assert bal[0] >= 0 and bal[1] >= 0

    def _held(self, order: ModelOrder) -> tuple[str, int]:
        if order.side == BUY:
            return self.cash, order.price * order.remaining // self.scale
        return self.isin, order.remaining

    def _drop(self, order: ModelOrder) -> None:
        self.resting.remove(order)
        asset, amount = self._held(order)
        self._lock(asset, order.owner, amount, lock=False)

    def priority(self, side: str) -> list[ModelOrder]:
        """Resting orders of a side, best price first, then oldest."""
        same = [o for o in self.resting if o.side == side]
        return sorted(same, key=lambda o: (-o.price if side == BUY else o.price, o.order_id))

    # ------------------------------------------------------------ the three things users do

    def place(self, owner: str, side: str, quantity: int, price: int, tif: str, now_ms: int,
              expires_at_ms: int = 0) -> tuple[str, list[Fill], int]:
        """(outcome, fills, order id): outcome is "refused", "rested", "filled", "cancelled", "killed"."""
        if price % self.tick or quantity % self.lot:
            return "refused", [], 0
        if tif == "gtt" and expires_at_ms <= now_ms:
            return "refused", [], 0
        need_asset, need = (self.cash, price * quantity // self.scale) if side == BUY else (self.isin, quantity)
        if self.balance(need_asset, owner)[0] < need:
            return "refused", [], 0
        order = ModelOrder(self.next_id, owner, side, price, quantity, quantity, tif, expires_at_ms)
        self.next_id += 1
        before = copy.deepcopy((self.balances, self.resting))
        fills = self._match(order, now_ms)
        if tif == "fok" and order.remaining:
            self.balances, self.resting = before
            return "killed", [], order.order_id
        if order.remaining == 0:
            return "filled", fills, order.order_id
        if tif in ("ioc", "fok"):
            return "cancelled", fills, order.order_id
        asset, amount = self._held(order)
        self._lock(asset, owner, amount)
        self.resting.append(order)
        return "rested", fills, order.order_id

    def _match(self, taker: ModelOrder, now_ms: int) -> list[Fill]:
        fills = []
        opposite = SELL if taker.side == BUY else BUY
        for maker in self.priority(opposite):
            if taker.remaining == 0:
                break
            if (maker.price > taker.price) if taker.side == BUY else (maker.price < taker.price):
                break
            if maker.expired(now_ms) or maker.owner == taker.owner:
                self._drop(maker)  # expired, or self-trade prevention: the resting order goes
                continue
            quantity = min(taker.remaining, maker.remaining)
            amount = maker.price * quantity // self.scale
            buy, sell = (taker, maker) if taker.side == BUY else (maker, taker)
            self._move(self.isin, sell.owner, buy.owner, quantity, from_locked=sell is maker)
            self._move(self.cash, buy.owner, sell.owner, amount, from_locked=buy is maker)
            taker.remaining -= quantity
            maker.remaining -= quantity
            if maker.remaining == 0:
                self.resting.remove(maker)
            fills.append(Fill(buy.order_id, sell.order_id, maker.price, quantity))
        return fills

    def cancel(self, owner: str, order_id: int) -> bool:
        for order in self.resting:
            if order.order_id == order_id and order.owner == owner:
                self._drop(order)
                return True
        return False

    def expire(self, now_ms: int) -> list[int]:
        """The block-start sweep: every resting order due by now."""
        due = [o for o in self.resting if o.expired(now_ms)]
        for order in due:
            self._drop(order)
        return [o.order_id for o in due]
