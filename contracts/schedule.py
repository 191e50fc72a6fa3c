"""The deterministic schedule: work a contract must do at a block time, without a transaction.

Part of contracts/. Items are keyed by (owner, due time, sequence) in the state, so every node
finds them in the same order; the owner's begin_block runs the due ones within a work budget,
and an item whose work is not finished stays in place (holding back its lane) and continues in
the next block.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from contracts.base import Context
from ledger.reasons import ContractError
from ledger.state import prefix_of, state_key

MAX_DUE_ITEMS_PER_BLOCK = 64
# Items of blocked lanes are passed over without running; how many a block may pass over, so
# that one asset's backlog (an unfinished item with many due behind it) does not hide the
# other assets' items from the 64 that run. Reading a passed-over key costs one iterator step.
MAX_SKIPPED_ITEMS_PER_BLOCK = 4_096


@dataclass(frozen=True)
class DueItem:
    owner: str
    due_ms: int
    seq: int
    kind: str
    ref: int


@dataclass(frozen=True)
class Progress:
    """What a handler did with an item this block: `done`, and the work units it spent."""

    done: bool
    work: int


Handler = Callable[[Context, DueItem, int], Progress]


def _item_key(owner: str, due_ms: int, seq: int) -> bytes:
    return state_key("sched", owner, due_ms, seq)


def _seq_key(owner: str) -> bytes:
    return state_key("sched_seq", owner)


def add(ctx: Context, owner: str, due_ms: int, kind: str, ref: int) -> DueItem:
    """Schedule `kind` for object `ref`; same-time items run in the order they were added."""
    seq = (ctx.get(_seq_key(owner)) or 0) + 1
    ctx.put(_seq_key(owner), seq)
    ctx.put(_item_key(owner, due_ms, seq), [kind, ref])
    return DueItem(owner, due_ms, seq, kind, ref)


def remove(ctx: Context, item: DueItem) -> None:
    ctx.delete(_item_key(item.owner, item.due_ms, item.seq))


def pending(ctx: Context, owner: str, limit: int) -> list[DueItem]:
    """The owner's first `limit` items, earliest first (due or not)."""
    return list(pending_lazily(ctx, owner, limit))


def pending_lazily(ctx: Context, owner: str, limit: int) -> Iterator[DueItem]:
    """pending(), read one item at a time (run_due stops early, so most of `limit` is never read)."""
    prefix = prefix_of("sched", owner)
    for key, value in ctx.scan(prefix, limit):
        rest = key[len(prefix):]
        due_ms = int.from_bytes(rest[:8], "big")
        seq = int.from_bytes(rest[9:17], "big")
        yield DueItem(owner, due_ms, seq, value[0], value[1])


def next_due_ms(ctx: Any, owner: str) -> int | None:
    """The earliest due time; an unfinished item keeps its (past) due time, so it reads as due now."""
    head = pending(ctx, owner, 1)
    return head[0].due_ms if head else None


@dataclass(frozen=True)
class Lanes:
    """How a queue's items may pass each other: strict order inside a lane, lanes independent.

    `lane_of` names an item's lane (corporate actions: the asset). `unbudgeted` kinds are O(1)
    steps that must run at their time (fixing a record): they run when they reach the head of
    their lane even if other lanes have spent the block's budget.
    """

    lane_of: Callable[[Context, DueItem], str]
    unbudgeted: frozenset[str]


def run_due(ctx: Context, owner: str, handlers: dict[str, Handler], budget: int,
            lanes: Lanes | None = None) -> None:
    """Run due items in (time, sequence) order within the budget.

    An item that is unfinished, or that the budget did not reach, holds back the items behind
    it in its lane, so an object's actions never overtake each other (a split finishes before a
    later dividend's record snapshot opens). Without `lanes` the whole queue is one lane.
    """
    blocked: set[str] = set()
    looked_at = 0
    for item in pending_lazily(ctx, owner, MAX_DUE_ITEMS_PER_BLOCK + MAX_SKIPPED_ITEMS_PER_BLOCK):
        if item.due_ms > ctx.block.time_ms:
            return
        lane = "" if lanes is None else lanes.lane_of(ctx, item)
        if lane in blocked:
            continue  # passed over: counts toward the skip bound only (the scan's limit)
        looked_at += 1
        if looked_at > MAX_DUE_ITEMS_PER_BLOCK:
            return
        if budget > 0 or (lanes is not None and item.kind in lanes.unbudgeted):
            progress = handlers[item.kind](ctx, item, budget)
            budget = max(0, budget - max(1, progress.work))
            if progress.done:
                remove(ctx, item)
                continue
        blocked.add(lane)


def isolated(ctx: Context, work: Callable[[Context], None]) -> ContractError | None:
    """Run `work` on a child overlay: all of its changes and events, or none and the error.

    Scheduled work must not raise out of begin_block (that would roll back every other item
    of the block), so each piece of it succeeds or fails alone and the caller records why.
    """
    child = ctx.child()
    try:
        work(child)
    except ContractError as exc:
        return exc
    ctx.merge_child(child)
    return None
