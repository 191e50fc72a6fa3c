"""The order book's state: price levels in priority order, each a queue of resting orders.

Part of contracts/ (the venue). market.py and matching.py store, find and remove orders only
through this module; it also holds the order lifecycle as one transition table.

Layout (docs/MARKET.md): per book side a pointer to the best price; one record per price
level, keyed so that a forward scan meets the best level first (bids by MAX_PRICE - price,
asks by price), holding the level's first and last order and its totals; one record per order
linked to its neighbours in the level's time queue. Matching, resting and cancelling are then
point reads and writes; only emptying the best level scans, to find the next one.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import NamedTuple

import msgpack

from contracts.base import MAX_AMOUNT, Context
from ledger.reasons import ContractError, InvariantViolation, Reason
from ledger.state import KEY_CACHE_ENTRIES, prefix_of, state_key

BUY = "buy"
SELL = "sell"
SIDES = (BUY, SELL)

GTC = "gtc"  # good till cancelled
GTT = "gtt"  # good till a block time
IOC = "ioc"  # immediate or cancel
FOK = "fok"  # fill or kill
TIMES_IN_FORCE = (GTC, GTT, IOC, FOK)
RESTING_TIFS = (GTC, GTT)

MAX_PRICE = MAX_AMOUNT
# One packer for every record of the book: the same bytes as msgpack.packb, without building a
# Packer per call (a third of a small record's packing time). pack() holds the GIL throughout.
_pack = msgpack.Packer(use_bin_type=True).pack
# When the best level empties, the nearest prices on the book's tick grid are read one by one
# (a point read each) before falling back to scanning for the next level: a scan costs about as
# much as twenty point reads, and in a busy book the next level is usually a tick or two away.
MAX_BEST_PROBES = 8
# Records are rebuilt from decoded lists with tuple.__new__, a C call: a NamedTuple's own
# constructor and _make are Python functions, and the book builds several records per order.
# Only this module writes these records, so their field count is known to be right.
_new = tuple.__new__
NO_EXPIRY = 0
NO_ORDER = 0  # order ids start at 1
ID_BYTES = 8

# ---------------------------------------------------------------- lifecycle (STYLE.md §6)

NEW = "new"  # entered, being matched as the taker
OPEN = "open"  # resting, nothing filled
PARTIAL = "partial"  # resting or matching, something filled
FILLED = "filled"
CANCELLED = "cancelled"
EXPIRED = "expired"
KILLED = "killed"

FILL_SOME = "fill_some"
FILL_ALL = "fill_all"
REST = "rest"
CANCEL = "cancel"
EXPIRE = "expire"
KILL = "kill"

TRANSITIONS: dict[tuple[str, str], str] = {
    (NEW, FILL_SOME): PARTIAL,
    (NEW, FILL_ALL): FILLED,
    (NEW, REST): OPEN,
    (NEW, CANCEL): CANCELLED,  # IOC/market remainder, or the match step bound
    (NEW, KILL): KILLED,  # FOK that could not fill completely
    (PARTIAL, FILL_SOME): PARTIAL,
    (PARTIAL, FILL_ALL): FILLED,
    (PARTIAL, REST): PARTIAL,
    (PARTIAL, CANCEL): CANCELLED,
    (PARTIAL, EXPIRE): EXPIRED,
    (OPEN, FILL_SOME): PARTIAL,
    (OPEN, FILL_ALL): FILLED,
    (OPEN, CANCEL): CANCELLED,
    (OPEN, EXPIRE): EXPIRED,
}
RESTING_STATUSES = (OPEN, PARTIAL)


def advance(status: str, event: str) -> str:
    """The next status; a pair outside the table is a bug of ours (users cannot reach one)."""
    found = TRANSITIONS.get((status, event))
    if found is None:
        raise InvariantViolation(f"order cannot go from {status} on {event}")
    return found


# ---------------------------------------------------------------- records


class Order(NamedTuple):
    """One order. Prices are currency minor units per whole security unit; quantities are
    security minor units; `remaining` is what is still open (for a resting buy, exactly
    notional(price, remaining) cash is locked; for a resting sell, `remaining` securities).
    `prev_id`/`next_id` link a resting order to its neighbours in its price level's queue."""

    order_id: int
    isin: str
    currency: str
    side: str
    owner: str
    price: int
    quantity: int
    remaining: int
    tif: str
    expires_at_ms: int
    status: str
    client_ref: str
    prev_id: int = NO_ORDER
    next_id: int = NO_ORDER

    def pack(self) -> bytes:
        # Plain msgpack of ints and strs is byte-identical to codec.encode; only this module
        # writes these keys, so reads skip the codec's re-encoding check (the hot path).
        return _pack(self)

    @classmethod
    def unpack(cls, raw: bytes) -> Order:
        return _new(cls, msgpack.unpackb(raw, raw=False))

    # Copies with a few fields changed, by position: _replace costs several times more, and
    # these run for every order and fill.
    def linked(self, prev_id: int, next_id: int) -> Order:
        """The same order with other queue neighbours."""
        return _new(Order, self[:12] + (prev_id, next_id))

    def with_status(self, status: str) -> Order:
        return _new(Order, self[:10] + (status,) + self[11:])

    def filled_to(self, remaining: int, status: str) -> Order:
        """The order after a fill: what is still open, and its status."""
        return _new(Order, self[:7] + (remaining,) + self[8:10] + (status,) + self[11:])

    def expired_at(self, time_ms: int) -> bool:
        return self.expires_at_ms != NO_EXPIRY and time_ms >= self.expires_at_ms

    def to_json(self) -> dict[str, object]:
        public = self._asdict()
        del public["prev_id"], public["next_id"]
        return public


class Level(NamedTuple):
    """A price level: its queue ends (oldest first) and what rests there."""

    head_id: int
    tail_id: int
    quantity: int
    orders: int


# ---------------------------------------------------------------- keys


# Cached like balances' keys: the same few books' keys are composed several times per order.
@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def side_prefix(isin: str, currency: str, side: str) -> bytes:
    return prefix_of("mkt", "bid" if side == BUY else "ask", isin, currency)


def level_key(prefix: bytes, side: str, price: int) -> bytes:
    rank = MAX_PRICE - price if side == BUY else price
    return prefix + rank.to_bytes(8, "big")


def price_of_level_key(key: bytes, prefix: bytes, side: str) -> int:
    rank = int.from_bytes(key[len(prefix):], "big")
    return MAX_PRICE - rank if side == BUY else rank


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def best_key(isin: str, currency: str, side: str) -> bytes:
    return state_key("mkt", "best", isin, currency, side)


ORDER_PREFIX = prefix_of("mkt", "ord")
EXPIRY_PREFIX = prefix_of("mkt", "exp")
SEQUENCE_KEY = state_key("mkt", "seq")


def order_key(order_id: int) -> bytes:
    return ORDER_PREFIX + order_id.to_bytes(ID_BYTES, "big")


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def account_prefix(owner: str) -> bytes:
    return prefix_of("mkt", "acct", owner)


def account_key(owner: str, order_id: int) -> bytes:
    return account_prefix(owner) + order_id.to_bytes(ID_BYTES, "big")


def expiry_key(expires_at_ms: int, order_id: int) -> bytes:
    return EXPIRY_PREFIX + expires_at_ms.to_bytes(8, "big") + order_id.to_bytes(ID_BYTES, "big")


def _int(raw: bytes | None) -> int | None:
    return None if raw is None else msgpack.unpackb(raw)


_ONE = _pack(1)


# ---------------------------------------------------------------- reads


def next_order_id(ctx: Context) -> int:
    """Order ids come from one counter: deterministic, and their order is time priority."""
    order_id = (_int(ctx.state.get(SEQUENCE_KEY)) or 0) + 1
    ctx.state.put(SEQUENCE_KEY, _pack(order_id))
    return order_id


def get_order(ctx: Context, order_id: int) -> Order | None:
    raw = ctx.state.get(order_key(order_id))
    return None if raw is None else Order.unpack(raw)


def linked(ctx: Context, order_id: int) -> Order:
    """An order the book's links point at: missing would be a bug of ours, not a user's."""
    found = get_order(ctx, order_id)
    if found is None:
        raise InvariantViolation(f"order {order_id} is linked from its level but missing")
    return found


def find(ctx: Context, owner: str, order_id: int) -> Order:
    """An owner's resting order; NOT_FOUND if it is not resting (filled, ended, or not theirs)."""
    found = get_order(ctx, order_id)
    if found is None or found.owner != owner:
        raise ContractError(Reason.NOT_FOUND, f"no open order {order_id} of {owner}")
    return found


def best_price(ctx: Context, isin: str, currency: str, side: str) -> int | None:
    return _int(ctx.state.get(best_key(isin, currency, side)))


def get_level(ctx: Context, isin: str, currency: str, side: str, price: int) -> Level | None:
    raw = ctx.state.get(level_key(side_prefix(isin, currency, side), side, price))
    return None if raw is None else _new(Level, msgpack.unpackb(raw))


def best_order(ctx: Context, isin: str, currency: str, side: str) -> Order | None:
    """The order with priority on one side: oldest at the best price."""
    price = best_price(ctx, isin, currency, side)
    return None if price is None else head_order(ctx, isin, currency, side, price)


def head_order(ctx: Context, isin: str, currency: str, side: str, price: int) -> Order:
    """The oldest order at a price level that exists."""
    return head_of_level(ctx, isin, currency, side, price)[1]


def head_of_level(ctx: Context, isin: str, currency: str, side: str, price: int) -> tuple[Level, Order]:
    """A price level that exists and its oldest order; matching hands the level on to
    remove/reduce, which would otherwise read and decode it again."""
    level = get_level(ctx, isin, currency, side, price)
    if level is None:
        raise InvariantViolation(f"{side} price {price} has no level")
    return level, linked(ctx, level.head_id)


def levels(ctx: Context, isin: str, currency: str, side: str) -> Iterator[tuple[int, Level]]:
    """(price, level) best first. Callers bound it."""
    prefix = side_prefix(isin, currency, side)
    for key, raw in ctx.state.iter_prefix(prefix):
        yield price_of_level_key(key, prefix, side), _new(Level, msgpack.unpackb(raw))


def level_orders(ctx: Context, level: Level, limit: int) -> Iterator[Order]:
    """A level's orders, oldest first, at most `limit`."""
    order_id = level.head_id
    for _ in range(limit):
        if order_id == NO_ORDER:
            return
        order = linked(ctx, order_id)
        yield order
        order_id = order.next_id


def account_orders(ctx: Context, owner: str, limit: int) -> Iterator[Order]:
    """An account's resting orders, oldest first, at most `limit` (to read: a record read
    here is stale once a neighbour of it leaves the book; see account_order_ids)."""
    for order_id in account_order_ids(ctx, owner, limit):
        yield linked(ctx, order_id)


def account_order_ids(ctx: Context, owner: str, limit: int) -> list[int]:
    """The ids of an account's resting orders, oldest first, at most `limit`."""
    prefix = account_prefix(owner)
    ids = []
    for key, _ in ctx.state.iter_prefix(prefix):
        if len(ids) >= limit:
            break
        ids.append(int.from_bytes(key[len(prefix):], "big"))
    return ids


def due_expiries(ctx: Context, time_ms: int, limit: int) -> list[int]:
    """Ids of up to `limit` resting orders whose expiry is at or before time_ms, soonest first."""
    due: list[int] = []
    start = len(EXPIRY_PREFIX)
    for key, _ in ctx.state.iter_prefix(EXPIRY_PREFIX):
        if len(due) >= limit or int.from_bytes(key[start:start + 8], "big") > time_ms:
            break
        due.append(int.from_bytes(key[start + 8:], "big"))
    return due


def next_expiry_ms(ctx: Context) -> int | None:
    for key, _ in ctx.state.iter_prefix(EXPIRY_PREFIX):
        return int.from_bytes(key[len(EXPIRY_PREFIX):len(EXPIRY_PREFIX) + 8], "big")
    return None


# ---------------------------------------------------------------- writes


def _put_level(ctx: Context, key: bytes, level: tuple[int, int, int, int]) -> None:
    """A Level's fields (head_id, tail_id, quantity, orders): packed as a plain tuple, the same bytes."""
    ctx.state.put(key, _pack(level))


def rest(ctx: Context, order: Order) -> Order:
    """Append an order to the back of its price level; index it by owner and expiry time."""
    state = ctx.state
    prefix = side_prefix(order.isin, order.currency, order.side)
    key = level_key(prefix, order.side, order.price)
    raw = state.get(key)
    if raw is None:
        order = order.linked(NO_ORDER, NO_ORDER)
        _put_level(ctx, key, (order.order_id, order.order_id, order.remaining, 1))
        best = best_price(ctx, order.isin, order.currency, order.side)
        if best is None or (order.price > best if order.side == BUY else order.price < best):
            state.put(best_key(order.isin, order.currency, order.side), _pack(order.price))
    else:
        level = _new(Level, msgpack.unpackb(raw))
        if level.quantity + order.remaining > MAX_AMOUNT:
            raise ContractError(Reason.LIMIT_EXCEEDED, f"the level at {order.price} cannot hold more")
        tail = linked(ctx, level.tail_id)
        state.put(order_key(tail.order_id), _pack(tail.linked(tail.prev_id, order.order_id)))
        order = order.linked(level.tail_id, NO_ORDER)
        _put_level(ctx, key, (level.head_id, order.order_id, level.quantity + order.remaining, level.orders + 1))
    state.put(order_key(order.order_id), _pack(order))
    state.put(account_key(order.owner, order.order_id), _ONE)
    if order.expires_at_ms != NO_EXPIRY:
        state.put(expiry_key(order.expires_at_ms, order.order_id), _ONE)
    return order


def _level_of(ctx: Context, order: Order, key: bytes) -> Level:
    raw = ctx.state.get(key)
    if raw is None:
        raise InvariantViolation(f"order {order.order_id} rests at a missing level")
    return _new(Level, msgpack.unpackb(raw))


def reduce(ctx: Context, order: Order, filled: int, status: str, level: Level | None = None) -> Order:
    """A resting order after a partial fill: it keeps its place in the queue. `level`: its
    level as the caller just read it (nothing written to the book since), or None to read it."""
    key = level_key(side_prefix(order.isin, order.currency, order.side), order.side, order.price)
    if level is None:
        level = _level_of(ctx, order, key)
    _put_level(ctx, key, (level.head_id, level.tail_id, level.quantity - filled, level.orders))
    reduced = order.filled_to(order.remaining - filled, status)
    ctx.state.put(order_key(order.order_id), _pack(reduced))
    return reduced


def remove(ctx: Context, order: Order, tick_size: int = 0, level: Level | None = None,
           at_best: bool = False) -> None:
    """Unlink an order from its level (dropping the level, and moving the best price, if it
    empties) and from the owner and expiry indexes. `tick_size`: the book's (0 if unknown).

    From matching, which has just read them with nothing written to the book since: `level`,
    the order's level record, and `at_best`, true when that level is the side's best.
    """
    state = ctx.state
    prefix = side_prefix(order.isin, order.currency, order.side)
    key = level_key(prefix, order.side, order.price)
    if level is None:
        level = _level_of(ctx, order, key)
    head, tail = level.head_id, level.tail_id
    if order.prev_id == NO_ORDER:
        head = order.next_id
    else:
        before = linked(ctx, order.prev_id)
        state.put(order_key(before.order_id), _pack(before.linked(before.prev_id, order.next_id)))
    if order.next_id == NO_ORDER:
        tail = order.prev_id
    else:
        after = linked(ctx, order.next_id)
        state.put(order_key(after.order_id), _pack(after.linked(order.prev_id, after.next_id)))
    if level.orders == 1:
        state.delete(key)
        if at_best or best_price(ctx, order.isin, order.currency, order.side) == order.price:
            _move_best(ctx, order, prefix, key, tick_size)
    else:
        _put_level(ctx, key, (head, tail, level.quantity - order.remaining, level.orders - 1))
    state.delete(order_key(order.order_id))
    state.delete(account_key(order.owner, order.order_id))
    if order.expires_at_ms != NO_EXPIRY:
        state.delete(expiry_key(order.expires_at_ms, order.order_id))


def _move_best(ctx: Context, order: Order, prefix: bytes, emptied: bytes, tick_size: int) -> None:
    """The best level emptied: the next level in key order (its key is already deleted) is best.

    Every resting price is a multiple of the book's tick (checked at entry; set_book_params
    changes the tick only while the book is empty), so no level lies between two grid prices
    and the first level found by probing the next MAX_BEST_PROBES grid prices, worse first
    from the emptied one, is the one a scan would find. The scan starts at the emptied level's
    key: no level sorts before the best one, so this finds the same level without walking the
    levels this block already emptied.
    """
    key = best_key(order.isin, order.currency, order.side)
    step = -tick_size if order.side == BUY else tick_size
    price = order.price
    for _ in range(MAX_BEST_PROBES if tick_size > 0 else 0):
        price += step
        if not 0 < price <= MAX_PRICE:
            break
        if ctx.state.get(level_key(prefix, order.side, price)) is not None:
            ctx.state.put(key, _pack(price))
            return
    for level_at, _ in ctx.state.iter_prefix(prefix, emptied):
        ctx.state.put(key, _pack(price_of_level_key(level_at, prefix, order.side)))
        return
    ctx.state.delete(key)


def check_side(side: str) -> None:
    if side not in SIDES:
        raise ContractError(Reason.BAD_ARGUMENTS, f"side must be one of {SIDES}")
