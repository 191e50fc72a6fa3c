"""Market data of the venue: the trade tape, last price and daily open/high/low/close bars.

Part of contracts/ (the venue). Written by matching.py and negotiated.py as trades happen,
read by the pure query functions in market.py. Days are UTC days of the block time.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import msgpack

from contracts.base import Context
from ledger.codec import MAX_INT
from ledger.state import KEY_CACHE_ENTRIES, prefix_of, state_key

MAX_TAPE_TRADES = 1_000  # per book: the tape is a ring, older trades live on in block events
MS_PER_DAY = 86_400_000
# A day bar's volume and turnover saturate here, the largest integer the codec stores: wash
# trades can move the same units back and forth without limit, each trade within every bound,
# and a sum that could not be stored would stop every node. Every other number of the market
# data is one trade's (price, quantity, amount: at most MAX_AMOUNT each) or a count of trades,
# which one transaction per (at most MAX_MATCH_STEPS) trades cannot bring near 2**64.
MAX_STATISTIC = MAX_INT
ON_BOOK = "book"
NEGOTIATED = "negotiated"
_pack = msgpack.Packer(use_bin_type=True).pack  # msgpack.packb's bytes, without a Packer per call
# Records built with tuple.__new__ (a C call), not through a NamedTuple's Python-level
# constructor: every trade builds three. Only this module writes them, so the fields fit.
_new = tuple.__new__


class Trade(NamedTuple):
    """One execution: `price` is currency minor units per whole security unit, `quantity`
    security minor units, `amount` the cash paid (minor units)."""

    trade_id: int
    isin: str
    currency: str
    price: int
    quantity: int
    amount: int
    buyer: str
    seller: str
    buy_order: int  # order id, or proposal id for a negotiated trade
    sell_order: int
    aggressor: str  # "buy" | "sell" | "" (negotiated)
    venue: str  # ON_BOOK | NEGOTIATED
    time_ms: int

    def to_json(self) -> dict[str, object]:
        return self._asdict()


class DayBar(NamedTuple):
    """`volume` and `turnover` saturate at MAX_STATISTIC (they stay there for the day)."""

    day: int  # days since 1970-01-01 UTC
    open: int
    high: int
    low: int
    close: int
    volume: int  # security minor units
    turnover: int  # currency minor units
    trades: int

    def to_json(self) -> dict[str, object]:
        return self._asdict()


class BookStats(NamedTuple):
    trade_count: int  # every trade in this security and currency, also the last trade id
    last_price: int  # 0 until the first on-book trade
    last_time_ms: int


NO_STATS = BookStats(0, 0, 0)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def stats_key(isin: str, currency: str) -> bytes:
    return state_key("mkt", "stats", isin, currency)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def tape_prefix(isin: str, currency: str) -> bytes:
    return prefix_of("mkt", "tape", isin, currency)


def day_key(isin: str, currency: str, day: int) -> bytes:
    return state_key("mkt", "day", isin, currency, day)


def day_of(time_ms: int) -> int:
    return time_ms // MS_PER_DAY


def _unpack(raw: bytes | None) -> list[int] | None:
    return None if raw is None else msgpack.unpackb(raw, raw=False)


def stats(ctx: Context, isin: str, currency: str) -> BookStats:
    raw = _unpack(ctx.state.get(stats_key(isin, currency)))
    return NO_STATS if raw is None else _new(BookStats, raw)


def day_bar(ctx: Context, isin: str, currency: str, day: int) -> DayBar | None:
    raw = _unpack(ctx.state.get(day_key(isin, currency, day)))
    return None if raw is None else _new(DayBar, raw)


def tape(ctx: Context, isin: str, currency: str, limit: int) -> list[Trade]:
    """The latest trades, newest first, at most min(limit, MAX_TAPE_TRADES)."""
    count = stats(ctx, isin, currency).trade_count
    prefix = tape_prefix(isin, currency)
    out = []
    for trade_id in range(count, max(0, count - min(limit, MAX_TAPE_TRADES)), -1):
        raw = ctx.state.get(prefix + (trade_id % MAX_TAPE_TRADES).to_bytes(8, "big"))
        if raw is not None:
            out.append(Trade._make(msgpack.unpackb(raw, raw=False)))
    return out


class TradeRecorder:
    """Numbers and records the trades of one call, then writes stats and the day bar once.

    One call may make many fills; reading and writing the counters once per call, not once
    per fill, keeps a sweep through many resting orders cheap.
    """

    def __init__(self, ctx: Context, isin: str, currency: str) -> None:
        self.ctx = ctx
        self.isin = isin
        self.currency = currency
        self._stats: BookStats | None = None  # read at the first trade: most orders make none
        self.day = day_of(ctx.block.time_ms)
        self.bar: DayBar | None = None
        self.bar_loaded = False
        self.prefix = tape_prefix(isin, currency)
        self.dirty = False

    @property
    def stats(self) -> BookStats:
        if self._stats is None:
            self._stats = stats(self.ctx, self.isin, self.currency)
        return self._stats

    @stats.setter
    def stats(self, value: BookStats) -> None:
        self._stats = value

    def record(self, price: int, quantity: int, amount: int, buyer: str, seller: str, buy_order: int,
               sell_order: int, aggressor: str, venue: str = ON_BOOK) -> Trade:
        time_ms = self.ctx.block.time_ms
        trade_id = self.stats.trade_count + 1
        self.dirty = True
        trade = _new(Trade, (trade_id, self.isin, self.currency, price, quantity, amount, buyer, seller,
                             buy_order, sell_order, aggressor, venue, time_ms))
        self.ctx.state.put(self.prefix + (trade_id % MAX_TAPE_TRADES).to_bytes(8, "big"),
                           _pack(trade))
        if venue == ON_BOOK:
            self.stats = _new(BookStats, (trade_id, price, time_ms))
            self._add_to_bar(price, quantity, amount)
        else:
            self.stats = self.stats._replace(trade_count=trade_id)
        return trade

    def _add_to_bar(self, price: int, quantity: int, amount: int) -> None:
        if not self.bar_loaded:
            self.bar = day_bar(self.ctx, self.isin, self.currency, self.day)
            self.bar_loaded = True
        bar = self.bar
        if bar is None:
            self.bar = _new(DayBar, (self.day, price, price, price, price, quantity, amount, 1))
        else:
            volume = bar.volume + quantity
            turnover = bar.turnover + amount
            self.bar = _new(DayBar, (self.day, bar.open, max(bar.high, price), min(bar.low, price), price,
                                     volume if volume <= MAX_STATISTIC else MAX_STATISTIC,
                                     turnover if turnover <= MAX_STATISTIC else MAX_STATISTIC, bar.trades + 1))

    def flush(self) -> None:
        if not self.dirty:
            return
        self.ctx.state.put(stats_key(self.isin, self.currency), _pack(self.stats))
        if self.bar is not None:
            self.ctx.state.put(day_key(self.isin, self.currency, self.day), _pack(self.bar))
