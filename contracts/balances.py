"""Balances of every asset: a free and a locked part per account, and each asset's supply.

Part of contracts/. Every movement of cash or securities goes through these few functions, so
conservation (sum of balances == issued - retired) and non-negativity are enforced in one place.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgpack

from contracts import entitlements
from contracts.base import MAX_AMOUNT, Context
from ledger import codec
from ledger.reasons import ContractError, InvariantViolation, Reason
from ledger.state import KEY_CACHE_ENTRIES, prefix_of, state_key

MAX_HOLDERS_SCAN = 100_000


class Balance(NamedTuple):
    """A named tuple, not a dataclass: every transfer builds four, and a tuple is built in C."""

    free: int
    locked: int

    @property
    def total(self) -> int:
        return self.free + self.locked


ZERO = Balance(0, 0)
_new = tuple.__new__  # a Balance built in C, without the named tuple's Python-level __new__
_UNREAD = object()  # _set's watch argument when the caller did not read the watch
# Balances kept by their encoded record: a pure function of the bytes, so never stale (see
# Context.record). A transfer reads two balances; a hit skips the record memo's call and the
# named tuple's Python-level __new__. Cleared whole when full, like Context.record's memo.
MAX_BALANCES_KEPT = 16_384
_BALANCES: dict[bytes, Balance] = {}


# Cached: every movement composes these keys several times (a C-level cache hit is cheaper).
@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def balance_key(asset: str, account: str) -> bytes:
    return state_key("bal", asset, account)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def holding_key(account: str, asset: str) -> bytes:
    return state_key("holding", account, asset)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def supply_key(asset: str) -> bytes:
    return state_key("supply", asset)


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def holder_count_key(asset: str) -> bytes:
    return state_key("holders", asset)


def get(ctx: Context, asset: str, account: str) -> Balance:
    encoded = ctx.state.get(balance_key(asset, account))
    if encoded is None:
        return ZERO
    found = _BALANCES.get(encoded)
    if found is None:  # decoded here, not through ctx.record: a miss costs no second read
        # Only _write writes these keys, as the canonical msgpack of two ints, so the codec's
        # re-encoding check is skipped (as orderbook does for its records); a record of any
        # other shape fails the unpacking into two names, loudly. A trade misses four times.
        free, locked = msgpack.unpackb(encoded)
        found = _new(Balance, (free, locked))
        if len(_BALANCES) >= MAX_BALANCES_KEPT:
            _BALANCES.clear()
        _BALANCES[encoded] = found
    return found


def supply(ctx: Context, asset: str) -> tuple[int, int]:
    """(issued, retired): over the asset's life, or since issue last rebased them (see issue)."""
    raw = ctx.get(supply_key(asset))
    return (0, 0) if raw is None else (raw[0], raw[1])


def holder_count(ctx: Context, asset: str) -> int:
    """Accounts with a non-zero balance of the asset (free or locked): the cap table's rows."""
    return ctx.get(holder_count_key(asset)) or 0


def holder_count_besides(ctx: Context, asset: str, treasury: str) -> int:
    """holder_count without `treasury` (a security's issuer: its own units are no holding that a
    maximum of holders counts, securities.counted_holders)."""
    count = holder_count(ctx, asset)
    return count - 1 if get(ctx, asset, treasury).total else count


def _set(ctx: Context, asset: str, account: str, old: Balance, new: Balance, watch: Any = _UNREAD) -> None:
    """Write `new` over `old`, the balance the caller just read (nothing was written since).

    `watch`: the asset's entitlements watch record, if the caller read it (move reads it once
    for its two writes); otherwise the hook reads it.
    """
    _write(ctx, asset, account, old.free + old.locked, new.free, new.locked, watch)


def _write(ctx: Context, asset: str, account: str, old_total: int, free: int, locked: int,
           watch: Any = _UNREAD) -> None:
    """_set given the old total and the new parts as ints: move builds no Balance to write."""
    if free < 0 or locked < 0:
        raise InvariantViolation(f"negative balance of {asset} at {account}")
    new_total = free + locked
    # Record-time entitlements and conversion holds (contracts/entitlements.py, docs/LIFECYCLE.md).
    if watch is _UNREAD:
        entitlements.before_change(ctx, asset, account, old_total)
    elif watch is not None:
        entitlements.before_change_watched(ctx, watch, asset, account, old_total)
    state = ctx.state
    if new_total == 0:
        state.delete(balance_key(asset, account))
        state.delete(holding_key(account, asset))
    else:
        # Two exact ints (sums and differences of checked amounts): packed without the leaf
        # walk; encode_leaves only if the packer refuses one (it names the error).
        state.put(balance_key(asset, account), codec.pack_normal([free, locked]) or codec.encode_leaves([free, locked]))
    if old_total == 0:
        if new_total > 0:
            ctx.put(holding_key(account, asset), 1)
            ctx.put(holder_count_key(asset), holder_count(ctx, asset) + 1)
    elif new_total == 0:
        ctx.put(holder_count_key(asset), holder_count(ctx, asset) - 1)
    touched = ctx.touched  # ctx.touch twice, without its two calls (twice per transfer)
    touched.append(account)
    touched.append(asset)


def credit(ctx: Context, asset: str, account: str, amount: int) -> None:
    _positive(amount)
    old = get(ctx, asset, account)
    _set(ctx, asset, account, old, Balance(old.free + amount, old.locked))


def debit(ctx: Context, asset: str, account: str, amount: int) -> None:
    _positive(amount)
    old = get(ctx, asset, account)
    if old.free < amount:
        raise ContractError(Reason.INSUFFICIENT_FREE_BALANCE, f"{account} has {old.free} free {asset}, needs {amount}")
    _set(ctx, asset, account, old, Balance(old.free - amount, old.locked))


def lock(ctx: Context, asset: str, account: str, amount: int, *, source_balance: Balance | None = None) -> None:
    """Free to locked. `source_balance`: the account's balance as the caller just read it
    (nothing written since), as in move."""
    _positive(amount)
    old = get(ctx, asset, account) if source_balance is None else source_balance
    if old.free < amount:
        raise ContractError(Reason.INSUFFICIENT_FREE_BALANCE, f"{account} has {old.free} free {asset}, needs {amount}")
    _set(ctx, asset, account, old, Balance(old.free - amount, old.locked + amount))


def unlock(ctx: Context, asset: str, account: str, amount: int) -> None:
    _positive(amount)
    old = get(ctx, asset, account)
    if old.locked < amount:
        raise ContractError(Reason.INSUFFICIENT_LOCKED_BALANCE, f"{account} has {old.locked} locked {asset}")
    _set(ctx, asset, account, old, Balance(old.free + amount, old.locked - amount))


def debit_locked(ctx: Context, asset: str, account: str, amount: int) -> None:
    _positive(amount)
    old = get(ctx, asset, account)
    if old.locked < amount:
        raise ContractError(Reason.INSUFFICIENT_LOCKED_BALANCE, f"{account} has {old.locked} locked {asset}")
    _set(ctx, asset, account, old, Balance(old.free, old.locked - amount))


def move(ctx: Context, asset: str, source: str, target: str, amount: int, *,
         source_balance: Balance | None = None) -> None:
    """Free balance from source to target (the callers check eligibility first).

    `source_balance`: the source's balance as the caller just read it (nothing written since),
    so the hot path reads it once.
    """
    _move_out(ctx, asset, source, target, amount, source_balance, from_locked=False)


def move_locked(ctx: Context, asset: str, source: str, target: str, amount: int, *,
                source_balance: Balance | None = None) -> None:
    """Locked balance of source to the free balance of target (settling a locked order).

    debit_locked then credit, with move's shortcuts (the venue's fills run this once per trade).
    """
    _move_out(ctx, asset, source, target, amount, source_balance, from_locked=True)


def _move_out(ctx: Context, asset: str, source: str, target: str, amount: int,
              source_balance: Balance | None, *, from_locked: bool) -> None:
    """move and move_locked: source's free (or locked) balance to target's free balance, the
    source read once (or taken as the caller just read it) and the entitlements watch read once
    for both writes (the hook never writes it)."""
    if type(amount) is not int or amount <= 0:  # _positive's check, without its call for an int
        _positive(amount)
    free, locked = get(ctx, asset, source) if source_balance is None else source_balance
    if from_locked:
        if locked < amount:
            raise ContractError(Reason.INSUFFICIENT_LOCKED_BALANCE, f"{source} has {locked} locked {asset}")
        left_free, left_locked = free, locked - amount
    else:
        if free < amount:
            raise ContractError(Reason.INSUFFICIENT_FREE_BALANCE, f"{source} has {free} free {asset}, needs {amount}")
        left_free, left_locked = free - amount, locked
    watch = entitlements.watch_record(ctx, asset)
    _write(ctx, asset, source, free + locked, left_free, left_locked, watch)
    free, locked = get(ctx, asset, target)  # credit(), without checking the amount a second time
    _write(ctx, asset, target, free + locked, free + amount, locked, watch)


def issue(ctx: Context, asset: str, account: str, amount: int) -> None:
    """Create new units (mint cash, issue securities) and count them in the supply.

    The counters are totals since the asset's first issue until `issued` would pass MAX_AMOUNT
    (mint and burn cycles get there): then both are first reduced by `retired` and count from
    this issue on, so no record overflows and issued - retired, the outstanding supply, is kept.
    """
    issued, retired = supply(ctx, asset)
    if issued - retired + amount > MAX_AMOUNT:
        raise ContractError(Reason.SUPPLY_EXCEEDED, f"{asset} outstanding would exceed {MAX_AMOUNT}")
    credit(ctx, asset, account, amount)
    if issued + amount > MAX_AMOUNT:
        ctx.emit("supply_counters_rebased", asset=asset, issued=issued, retired=retired)
        issued, retired = issued - retired, 0
    ctx.put(supply_key(asset), [issued + amount, retired])


def retire(ctx: Context, asset: str, account: str, amount: int) -> None:
    """Destroy units from an account's free balance (burn cash, redeem securities)."""
    debit(ctx, asset, account, amount)
    issued, retired = supply(ctx, asset)
    if retired + amount > issued:  # retired never passes issued, so never MAX_AMOUNT
        raise InvariantViolation(f"{asset}: retiring {amount} more than was issued ({issued} - {retired})")
    ctx.put(supply_key(asset), [issued, retired + amount])


def holders(ctx: Context, asset: str, limit: int = MAX_HOLDERS_SCAN) -> Iterator[tuple[str, Balance]]:
    """Holders of an asset in address order (the cap table)."""
    prefix = prefix_of("bal", asset)
    for key, raw in ctx.scan(prefix, limit):
        yield key[len(prefix):].decode("ascii"), Balance(raw[0], raw[1])


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ContractError(Reason.INVALID_AMOUNT, "an amount is a positive integer")
