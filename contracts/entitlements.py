"""Entitlements at a record time: copy-on-write snapshots of holdings, and conversion holds.

Part of contracts/. balances calls `before_change` ahead of every balance write; that one hook
lets a distribution paid over many blocks read each holder's balance as it was at the record
time, and keeps transactions off an asset while a split or redemption converts it in chunks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

from contracts.base import Context
from ledger.reasons import ContractError, Reason, require
from ledger.state import KEY_CACHE_ENTRIES, prefix_of, state_key

MAX_OPEN_SNAPSHOTS_PER_ASSET = 16
_START = ""  # sorts before every address: nothing is paid yet


@dataclass(frozen=True)
class Watch:
    """An asset's open record snapshots (id -> last account paid), its conversion hold, and
    the conversion about to hold it (withdrawing the orders and proposals on it first)."""

    snapshots: dict[str, str]
    held_by: str | None
    pending_by: str | None = None

    @property
    def empty(self) -> bool:
        return not self.snapshots and self.held_by is None and self.pending_by is None


@dataclass(frozen=True)
class Holding:
    """An account's current balance of an asset (free and locked), as a conversion sees it."""

    account: str
    free: int
    locked: int

    @property
    def total(self) -> int:
        return self.free + self.locked


@dataclass(frozen=True)
class Entitlement:
    account: str
    units: int  # the account's total (free + locked) holding at the record time


@functools.lru_cache(maxsize=KEY_CACHE_ENTRIES)
def _watch_key(asset: str) -> bytes:
    return state_key("ent", "watch", asset)


def _record_key(asset: str, snapshot: str, account: str) -> bytes:
    return state_key("ent", "rec", asset, snapshot, account)


def get_watch(ctx: Context, asset: str) -> Watch:
    raw = ctx.get(_watch_key(asset))
    if raw is None:
        return Watch({}, None)
    return Watch(dict(raw["snapshots"]), raw["held_by"], raw.get("pending_by"))


def _save_watch(ctx: Context, asset: str, watch: Watch) -> None:
    if watch.empty:
        ctx.delete(_watch_key(asset))
        return
    record: dict[str, Any] = {"snapshots": watch.snapshots, "held_by": watch.held_by}
    if watch.pending_by is not None:
        # Stored only while set: a watch without a pending conversion keeps the record (and the
        # state hash) it always had.
        record["pending_by"] = watch.pending_by
    ctx.put(_watch_key(asset), record)


def before_change(ctx: Context, asset: str, account: str, old_total: int) -> None:
    """The balances hook: keep the record-time holding of an account not yet paid; refuse
    transactions on an asset being converted (they would mix old and new units)."""
    raw = ctx.record(_watch_key(asset))
    if raw is not None:  # None, the common case: no open snapshot, no conversion
        before_change_watched(ctx, raw, asset, account, old_total)


def watch_record(ctx: Context, asset: str) -> Any:
    """The asset's watch as stored (None, the common case, if nothing watches it), for a caller
    that changes several balances of the asset in a row: the hook never writes the watch, so
    one read serves them all (balances.move: two balance writes, one read)."""
    key = _watch_key(asset)
    return None if ctx.state.get(key) is None else ctx.record(key)  # absent: no record memo call


def before_change_watched(ctx: Context, raw: Any, asset: str, account: str, old_total: int) -> None:
    """before_change, given the asset's watch record (not None) read since the last watch write."""
    if raw["held_by"] is not None and not ctx.is_system:
        raise ContractError(Reason.ASSET_PAUSED, f"{asset} is held while {raw['held_by']} converts it")
    for snapshot, cursor in raw["snapshots"].items():
        if account > cursor and not ctx.exists(_record_key(asset, snapshot, account)):
            ctx.put(_record_key(asset, snapshot, account), old_total)


# ---------------------------------------------------------------- record snapshots


def open_snapshot(ctx: Context, asset: str, snapshot: str) -> None:
    """Fix every holding of `asset` as of now, in O(1): later writes copy the old value first."""
    watch = get_watch(ctx, asset)
    if len(watch.snapshots) >= MAX_OPEN_SNAPSHOTS_PER_ASSET:
        raise ContractError(Reason.LIMIT_EXCEEDED, f"{asset} has {MAX_OPEN_SNAPSHOTS_PER_ASSET} open snapshots")
    require(snapshot not in watch.snapshots, f"snapshot {snapshot} opened twice")
    _save_watch(ctx, asset, replace(watch, snapshots={**watch.snapshots, snapshot: _START}))


def next_entitled(ctx: Context, asset: str, snapshot: str, limit: int) -> list[Entitlement]:
    """The next `limit` accounts after the cursor, in address order, with their record holding.

    Accounts are those holding now or recorded (holders who sold since); a zero means the
    account bought after the record time.
    """
    cursor = get_watch(ctx, asset).snapshots[snapshot]
    balance_prefix = prefix_of("bal", asset)
    record_prefix = prefix_of("ent", "rec", asset, snapshot)
    current = _accounts_after(ctx, balance_prefix, cursor, limit)
    recorded = _accounts_after(ctx, record_prefix, cursor, limit)
    accounts = sorted(set(current) | set(recorded))[:limit]
    out = []
    for account in accounts:
        if account in recorded:
            units = recorded[account]
        else:
            units = current[account][0] + current[account][1]
        out.append(Entitlement(account, units))
    return out


def _accounts_after(ctx: Context, prefix: bytes, cursor: str, limit: int) -> dict[str, Any]:
    # Start the scan past the cursor, so a chunk costs O(limit), not O(accounts already paid).
    after = prefix + cursor.encode("ascii") + b"\x00" if cursor else prefix
    out: dict[str, Any] = {}
    for key, value in ctx.scan(prefix, limit, after):
        out[key[len(prefix):].decode("ascii")] = value
    return out


def mark_paid(ctx: Context, asset: str, snapshot: str, account: str) -> None:
    """Move the cursor past `account`; its record is no longer needed."""
    watch = get_watch(ctx, asset)
    require(account > watch.snapshots[snapshot], "snapshot accounts are paid in address order")
    ctx.delete(_record_key(asset, snapshot, account))
    _save_watch(ctx, asset, replace(watch, snapshots={**watch.snapshots, snapshot: account}))


def close_snapshot(ctx: Context, asset: str, snapshot: str, limit: int) -> bool:
    """Drop the snapshot once its records are gone (at most `limit` deleted per call)."""
    prefix = prefix_of("ent", "rec", asset, snapshot)
    keys = [key for key, _ in ctx.scan(prefix, limit)]
    for key in keys:
        ctx.delete(key)
    if len(keys) == limit:
        return False
    watch = get_watch(ctx, asset)
    snapshots = {k: v for k, v in watch.snapshots.items() if k != snapshot}
    _save_watch(ctx, asset, replace(watch, snapshots=snapshots))
    return True


# ---------------------------------------------------------------- conversion holds


def holders_after(ctx: Context, asset: str, cursor: str, limit: int) -> list[Holding]:
    """Current holders of `asset` after `cursor` in address order (for a conversion under hold)."""
    found = _accounts_after(ctx, prefix_of("bal", asset), cursor, limit)
    return [Holding(account, raw[0], raw[1]) for account, raw in found.items()]


def mark_pending(ctx: Context, asset: str, action: str) -> None:
    """`action` will hold `asset` once the orders and proposals on it are withdrawn.

    From then on no new order or proposal on it is taken (market.require_not_converting), so
    the withdrawal, bounded per block, ends however many are sent. Balances are not held yet.
    """
    watch = get_watch(ctx, asset)
    if watch.pending_by == action:
        return
    require(watch.pending_by is None and watch.held_by is None, f"{asset} converted by two actions at once")
    _save_watch(ctx, asset, replace(watch, pending_by=action))


def clear_pending(ctx: Context, asset: str) -> None:
    """The pending conversion will not run (a split above the largest amount, a defaulted redemption)."""
    watch = get_watch(ctx, asset)
    if watch.pending_by is not None:
        _save_watch(ctx, asset, replace(watch, pending_by=None))


def hold(ctx: Context, asset: str, action: str) -> None:
    """Refuse transactions that touch `asset` until `release` (a split or redemption runs)."""
    watch = get_watch(ctx, asset)
    require(watch.held_by is None, f"{asset} held twice")
    require(watch.pending_by in (None, action), f"{asset} held by {action} while {watch.pending_by} is pending")
    _save_watch(ctx, asset, replace(watch, held_by=action, pending_by=None))


def release(ctx: Context, asset: str) -> None:
    watch = get_watch(ctx, asset)
    _save_watch(ctx, asset, replace(watch, held_by=None))


def held_by(ctx: Context, asset: str) -> str | None:
    return get_watch(ctx, asset).held_by


def converting(ctx: Context, asset: str) -> str | None:
    """The split or redemption holding `asset`, or about to (withdrawing its orders), or None."""
    watch = get_watch(ctx, asset)
    return watch.held_by or watch.pending_by
