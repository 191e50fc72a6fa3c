"""The decoded-record memos (Context.record, participants, instruments) never answer stale.

They key a decoded value by its encoded bytes, so whatever overlay a read goes through, and
whichever overlays were dropped (a refused transaction, a failed settlement leg), a read returns
what decoding the bytes now visible would return. These tests drive random writes, rollbacks and
merges over stacked overlays and compare every typed read with a fresh decode.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import balances, compliance, participants
from contracts.base import BlockContext, Context
from ledger import codec
from ledger.state import MemoryState, Overlay

ACCOUNTS = ("acc-a", "acc-b")
ASSET = "EQ"
BLOCK = BlockContext("memo", 1, 1)

BALANCE = st.tuples(st.integers(0, 3), st.integers(0, 2)).map(list)  # few values: records repeat
PARTICIPANT = st.builds(lambda status, qualified: {"name": "n", "roles": ["investor"], "status": status,
                                                   "kyc_hash": bytes(32), "qualified": qualified},
                        st.sampled_from(["active", "suspended"]), st.booleans())
FREEZE = st.none() | st.integers(1, 3)
STEP = st.one_of(
    st.tuples(st.just("balance"), st.sampled_from(ACCOUNTS), BALANCE),
    st.tuples(st.just("participant"), st.sampled_from(ACCOUNTS), PARTICIPANT),
    st.tuples(st.just("freeze"), st.sampled_from(ACCOUNTS), FREEZE),
    st.tuples(st.just("unfreeze"), st.sampled_from(ACCOUNTS)),
    st.tuples(st.just("open")),  # a child overlay (a transaction, a settlement)
    st.tuples(st.just("rollback")),  # drop the top overlay
    st.tuples(st.just("merge")),  # merge the top overlay into its parent
)


def fresh(state: Overlay, key: bytes) -> Any:
    raw = state.get(key)
    return None if raw is None else codec.decode(raw, max_bytes=1 << 20)


def write(ctx: Context, step: tuple[Any, ...]) -> None:
    kind, account = step[0], step[1]
    if kind == "balance":
        ctx.put(balances.balance_key(ASSET, account), step[2])
    elif kind == "participant":
        ctx.put(participants.participant_key(account), step[2])
    elif kind == "freeze":
        ctx.put(compliance.freeze_key(account, ASSET), {"amount": step[2], "reason": "r", "by": "x", "height": 1})
    else:
        ctx.delete(compliance.freeze_key(account, ASSET))


def check_reads(ctx: Context) -> None:
    for account in ACCOUNTS:
        raw = fresh(ctx.state, balances.balance_key(ASSET, account))
        assert balances.get(ctx, ASSET, account) == (balances.ZERO if raw is None else balances.Balance(*raw))
        raw = fresh(ctx.state, participants.participant_key(account))
        found = participants.get(ctx, account)
        if raw is None:
            assert found is None
        else:
            assert found is not None and (found.status, found.qualified) == (raw["status"], raw["qualified"])
        raw = fresh(ctx.state, compliance.freeze_key(account, ASSET))
        expected = (False, 0) if raw is None else ((True, 0) if raw["amount"] is None else (False, raw["amount"]))
        assert tuple(compliance.freeze_state(ctx, account, ASSET)) == expected


@settings(max_examples=150)
@given(st.lists(STEP, max_size=40))
def test_typed_reads_equal_a_fresh_decode_through_writes_rollbacks_and_merges(steps: list[tuple[Any, ...]]) -> None:
    stack = [Overlay(MemoryState())]
    for step in steps:
        if step[0] == "open":
            stack.append(Overlay(stack[-1]))
        elif step[0] == "rollback":
            if len(stack) > 1:
                stack.pop()
        elif step[0] == "merge":
            if len(stack) > 1:
                stack.pop().merge_into(stack[-1])
        else:
            write(Context(stack[-1], BLOCK, b"\x01" * 32, ()), step)
        for level in stack:  # every level, not only the top: a parent must not see a child's writes
            check_reads(Context(level, BLOCK, None, ()))
