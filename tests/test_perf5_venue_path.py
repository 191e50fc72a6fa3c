"""The venue's shortcuts of the fifth session answer what the general calls answer.

compliance.freeze_states reads an account's whole-account freeze once for two assets;
balances.move_locked and balances.lock take the balance their caller has just read and read
the entitlements watch once. Here each is compared with the calls it replaces, on every
combination of freezes and on balances under an open record snapshot (whose hook must still
record both accounts' holdings before they change).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from contracts import balances, compliance, entitlements
from contracts.base import BlockContext, Context
from ledger.reasons import ContractError
from ledger.state import MemoryState, Overlay

ACCOUNT = "acc-a"
OTHER = "acc-b"
SECURITY = "EQ"
CASH = "EUR"
# Per scope: no freeze, a whole freeze of the scope, a partial freeze of 3 units (per asset only).
SCOPE_FREEZES = (None, {"amount": None}, {"amount": 3})


def _ctx() -> Context:
    return Context(Overlay(MemoryState()), BlockContext("perf5", 1, 1), b"tx", (ACCOUNT,))


def _freeze(ctx: Context, scope: str, record: dict[str, Any] | None) -> None:
    if record is not None:
        ctx.put(compliance.freeze_key(ACCOUNT, scope), {**record, "reason": "r", "by": "x", "height": 1})


@pytest.mark.parametrize("whole, security, cash",
                         list(itertools.product(SCOPE_FREEZES[:2], SCOPE_FREEZES, SCOPE_FREEZES)))
def test_freeze_states_equal_two_freeze_state_calls(whole: dict[str, Any] | None, security: dict[str, Any] | None,
                                                     cash: dict[str, Any] | None) -> None:
    ctx = _ctx()
    _freeze(ctx, compliance.WHOLE_ACCOUNT, whole)
    _freeze(ctx, SECURITY, security)
    _freeze(ctx, CASH, cash)
    expected = (compliance.freeze_state(ctx, ACCOUNT, SECURITY), compliance.freeze_state(ctx, ACCOUNT, CASH))
    assert compliance.freeze_states(ctx, ACCOUNT, SECURITY, CASH) == expected
    assert compliance.freeze_states(ctx, ACCOUNT, CASH, SECURITY) == expected[::-1]


def _funded(snapshot: bool) -> Context:
    ctx = _ctx()
    balances.credit(ctx, SECURITY, ACCOUNT, 10)
    balances.lock(ctx, SECURITY, ACCOUNT, 6)
    balances.credit(ctx, SECURITY, OTHER, 4)
    if snapshot:
        entitlements.open_snapshot(ctx, SECURITY, "div-1")
    return ctx


@pytest.mark.parametrize("snapshot", [False, True])
@pytest.mark.parametrize("target", [OTHER, "acc-c", ACCOUNT])
def test_move_locked_with_the_callers_balance_writes_what_two_calls_wrote(snapshot: bool, target: str) -> None:
    general, shortcut = _funded(snapshot), _funded(snapshot)
    balances.debit_locked(general, SECURITY, ACCOUNT, 6)
    balances.credit(general, SECURITY, target, 6)
    balances.move_locked(shortcut, SECURITY, ACCOUNT, target, 6,
                         source_balance=balances.get(shortcut, SECURITY, ACCOUNT))
    assert shortcut.state.writes == general.state.writes
    assert shortcut.touched == general.touched


def test_move_locked_refuses_more_than_is_locked_as_debit_locked_does() -> None:
    ctx = _funded(False)
    with pytest.raises(ContractError) as general:
        balances.debit_locked(ctx, SECURITY, ACCOUNT, 7)
    with pytest.raises(ContractError) as shortcut:
        balances.move_locked(ctx, SECURITY, ACCOUNT, OTHER, 7, source_balance=balances.get(ctx, SECURITY, ACCOUNT))
    assert (shortcut.value.reason, shortcut.value.detail) == (general.value.reason, general.value.detail)


@pytest.mark.parametrize("snapshot", [False, True])
def test_lock_with_the_callers_balance_writes_what_lock_wrote(snapshot: bool) -> None:
    general, shortcut = _funded(snapshot), _funded(snapshot)
    balances.lock(general, SECURITY, ACCOUNT, 3)
    balances.lock(shortcut, SECURITY, ACCOUNT, 3, source_balance=balances.get(shortcut, SECURITY, ACCOUNT))
    assert shortcut.state.writes == general.state.writes
