"""Compliance controls: freezes (whole account, one asset, part of a balance), forced transfers, pauses."""

from __future__ import annotations

from contracts import balances, compliance
from ledger.reasons import Reason
from tests.contracts_world import addr, market


def _pay(world, source: str, to: str, amount: int, reason: Reason = Reason.OK):  # type: ignore[no-untyped-def]
    if reason == Reason.OK:
        return world.ok(source, "cash", "transfer", currency="MXN", to=addr(to), amount=amount)
    return world.refused(reason, source, "cash", "transfer", currency="MXN", to=addr(to), amount=amount)


def test_only_an_active_regulator_applies_controls() -> None:
    world, isin = market()
    for signer in ("operator", "issuer", "alice"):
        world.refused(Reason.UNAUTHORIZED, signer, "compliance", "freeze", account=addr("bob"), reason="x")
        world.refused(Reason.UNAUTHORIZED, signer, "compliance", "pause", isin=isin, reason="x")
        world.refused(Reason.UNAUTHORIZED, signer, "compliance", "forced_transfer", asset=isin,
                      source=addr("alice"), target=addr("bob"), quantity=1, reason="x")
    world.ok("operator", "participants", "suspend", address=addr("regulator"), reason="x")
    world.refused(Reason.UNAUTHORIZED, "regulator", "compliance", "freeze", account=addr("bob"), reason="x")


def test_a_whole_account_freeze_stops_every_asset_in_and_out_until_unfrozen() -> None:
    world, isin = market()
    out = world.ok("regulator", "compliance", "freeze", account=addr("alice"), reason="court order 12/2026")
    assert out.events[0].attrs["by"] == addr("regulator")
    _pay(world, "alice", "bob", 1, Reason.ACCOUNT_FROZEN)
    _pay(world, "bob", "alice", 1, Reason.ACCOUNT_FROZEN)
    world.refused(Reason.ACCOUNT_FROZEN, "bank", "cash", "mint", currency="MXN", to=addr("alice"), amount=1,
                  deposit_ref="d")
    world.refused(Reason.ACCOUNT_FROZEN, "alice", "securities", "transfer", isin=isin, to=addr("bob"), quantity=1)
    world.ok("regulator", "compliance", "unfreeze", account=addr("alice"), reason="order lifted")
    _pay(world, "alice", "bob", 1)


def test_a_freeze_of_one_asset_leaves_the_others_free() -> None:
    world, isin = market()
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), asset=isin, reason="dispute")
    world.refused(Reason.ACCOUNT_FROZEN, "alice", "securities", "transfer", isin=isin, to=addr("bob"), quantity=1)
    world.refused(Reason.ACCOUNT_FROZEN, "issuer", "securities", "issue", isin=isin, to=addr("alice"), quantity=1)
    _pay(world, "alice", "bob", 1)
    # Lifting a freeze of another scope is refused: scopes are exact.
    world.refused(Reason.NOT_FOUND, "regulator", "compliance", "unfreeze", account=addr("alice"), reason="x")


def test_a_partial_freeze_keeps_that_many_free_units_from_leaving() -> None:
    world, _ = market()
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), asset="MXN", amount=600_000,
             reason="garnishment")
    view = world.view()
    assert compliance.frozen_amount(view, addr("alice"), "MXN") == 600_000
    assert compliance.spendable(view, addr("alice"), "MXN") == 400_000
    assert not compliance.is_frozen(view, addr("alice"), "MXN")
    _pay(world, "alice", "bob", 400_001, Reason.ACCOUNT_FROZEN)
    _pay(world, "alice", "bob", 2_000_000, Reason.INSUFFICIENT_FREE_BALANCE)
    _pay(world, "alice", "bob", 400_000)
    _pay(world, "alice", "bob", 1, Reason.ACCOUNT_FROZEN)
    _pay(world, "bob", "alice", 10)  # receiving is allowed; above the frozen amount it is spendable
    _pay(world, "alice", "bob", 10)
    # Freezing more than the balance: incoming units fill the frozen part first.
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), asset="MXN", amount=600_005, reason="x")
    _pay(world, "bob", "alice", 7)
    assert compliance.spendable(world.view(), addr("alice"), "MXN") == 2
    _pay(world, "alice", "bob", 3, Reason.ACCOUNT_FROZEN)
    _pay(world, "alice", "bob", 2)
    # A new freeze of the same scope replaces the amount.
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), asset="MXN", amount=1, reason="reduced")
    _pay(world, "alice", "bob", 600_004)
    assert world.bal("MXN", "alice").free == 1
    _pay(world, "alice", "bob", 1, Reason.ACCOUNT_FROZEN)


def test_a_partial_freeze_needs_an_asset_and_a_freeze_needs_a_participant_and_a_known_asset() -> None:
    world, _ = market()
    world.refused(Reason.BAD_ARGUMENTS, "regulator", "compliance", "freeze", account=addr("alice"), amount=5,
                  reason="x")
    world.refused(Reason.NOT_FOUND, "regulator", "compliance", "freeze", account=addr("stranger"), reason="x")
    world.refused(Reason.UNKNOWN_ASSET, "regulator", "compliance", "freeze", account=addr("alice"), asset="USD",
                  reason="x")
    world.refused(Reason.BAD_ARGUMENTS, "regulator", "compliance", "freeze", account=addr("alice"), reason="")


def test_a_forced_transfer_overrides_freeze_pause_lockup_and_suspension_and_names_its_author() -> None:
    world, isin = market()
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), asset=isin, amount=300, reason="seize")
    world.ok("regulator", "compliance", "pause", isin=isin, reason="halt")
    world.ok("operator", "participants", "suspend", address=addr("alice"), reason="fraud")
    out = world.ok("regulator", "compliance", "forced_transfer", asset=isin, source=addr("alice"),
                   target=addr("bob"), quantity=200, reason="court order 7")
    assert out.events[-1].kind == "forced_transfer"
    assert out.events[-1].attrs["by"] == addr("regulator") and out.events[-1].attrs["reason"] == "court order 7"
    assert (world.bal(isin, "alice").free, world.bal(isin, "bob").free) == (800, 200)
    # The seized units came out of the frozen part.
    assert compliance.frozen_amount(world.view(), addr("alice"), isin) == 100


def test_a_forced_transfer_still_needs_an_eligible_target_a_reason_and_free_units() -> None:
    world, isin = market()
    args = {"asset": isin, "source": addr("alice"), "quantity": 1, "reason": "order"}
    world.refused(Reason.RECEIVER_NOT_ELIGIBLE, "regulator", "compliance", "forced_transfer", target=addr("dave"),
                  **args)
    world.refused(Reason.BAD_ARGUMENTS, "regulator", "compliance", "forced_transfer", target=addr("bob"),
                  **dict(args, reason=""))
    world.refused(Reason.SELF_TRANSFER, "regulator", "compliance", "forced_transfer", target=addr("alice"), **args)
    world.refused(Reason.INSUFFICIENT_FREE_BALANCE, "regulator", "compliance", "forced_transfer",
                  target=addr("bob"), **dict(args, quantity=1001))
    world.refused(Reason.UNKNOWN_ASSET, "regulator", "compliance", "forced_transfer", target=addr("bob"),
                  **dict(args, asset="USD"))
    world.ok("regulator", "compliance", "forced_transfer", target=addr("bob"), **dict(args, asset="MXN"))


def test_pause_and_resume_are_a_two_state_table() -> None:
    world, isin = market()
    world.refused(Reason.INVALID_STATE, "regulator", "compliance", "resume", isin=isin, reason="x")
    world.ok("regulator", "compliance", "pause", isin=isin, reason="x")
    world.refused(Reason.INVALID_STATE, "regulator", "compliance", "pause", isin=isin, reason="x")
    world.refused(Reason.ASSET_PAUSED, ("issuer", "alice"), "securities", "redeem", isin=isin,
                  holder=addr("alice"), quantity=1)
    world.ok("regulator", "compliance", "resume", isin=isin, reason="x")
    world.refused(Reason.UNKNOWN_ASSET, "regulator", "compliance", "pause", isin="MX0", reason="x")


def test_check_spendable_is_what_lock_callers_use() -> None:
    world, _ = market()
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), asset="MXN", amount=999_999, reason="x")
    ctx = world.context(())
    compliance.check_spendable(ctx, addr("alice"), "MXN", 1)
    balances.lock(ctx, "MXN", addr("alice"), 1)
    assert compliance.spendable(ctx, addr("alice"), "MXN") == 0
    assert [f.amount for f in compliance.freezes(ctx, addr("alice"))] == [999_999]
