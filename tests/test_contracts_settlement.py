"""Settlement: DvP signed by both parties in one transaction, multi-leg batches, all legs or none."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import balances, settlement
from contracts.settlement import Leg
from ledger.reasons import ContractError, Reason
from tests.contracts_world import PROSPECTUS, ExecWorld, addr, key, market


def _dvp(isin: str, quantity: int = 100, amount: int = 250_000, **over: object) -> dict[str, object]:
    args: dict[str, object] = {"seller": addr("alice"), "buyer": addr("bob"), "isin": isin, "quantity": quantity,
                                   "currency": "MXN", "amount": amount}
    args.update(over)
    return args


def test_a_dvp_delivers_and_pays_in_one_transaction() -> None:
    world, isin = market()
    out = world.ok(("alice", "bob"), "settlement", "dvp", **_dvp(isin), reference="trade-1")
    assert out.kinds() == ["dvp_settled"]
    assert (world.bal(isin, "alice").free, world.bal(isin, "bob").free) == (900, 100)
    assert (world.bal("MXN", "alice").free, world.bal("MXN", "bob").free) == (1_250_000, 750_000)


def test_both_parties_must_sign_the_one_transaction() -> None:
    world, isin = market()
    out = world.refused(Reason.SIGNATURE_REQUIRED, "alice", "settlement", "dvp", **_dvp(isin))
    assert "buyer" in out.detail
    out = world.refused(Reason.SIGNATURE_REQUIRED, "bob", "settlement", "dvp", **_dvp(isin))
    assert "seller" in out.detail


def test_a_failing_delivery_leg_settles_neither_and_names_leg_0() -> None:
    world, isin = market()
    out = world.refused(Reason.INSUFFICIENT_FREE_BALANCE, ("alice", "bob"), "settlement", "dvp",
                        **_dvp(isin, quantity=1001))
    assert out.detail.startswith("leg 0:")


def test_a_failing_payment_leg_settles_neither_and_names_leg_1() -> None:
    world, isin = market()
    out = world.refused(Reason.INSUFFICIENT_FREE_BALANCE, ("alice", "bob"), "settlement", "dvp",
                        **_dvp(isin, amount=1_000_001))
    assert out.detail.startswith("leg 1:")
    world.ok("regulator", "compliance", "freeze", account=addr("bob"), asset="MXN", reason="x")
    out = world.refused(Reason.ACCOUNT_FROZEN, ("alice", "bob"), "settlement", "dvp", **_dvp(isin))
    assert out.detail.startswith("leg 1:")


def test_a_dvp_applies_the_security_rules_to_the_buyer() -> None:
    world, isin = market()
    out = world.refused(Reason.RECEIVER_NOT_ELIGIBLE, ("alice", "dave"), "settlement", "dvp",
                        **_dvp(isin, buyer=addr("dave")))
    assert out.detail.startswith("leg 0:")


def test_a_dvp_names_a_wrong_asset_and_refuses_self_trade() -> None:
    world, isin = market()
    out = world.refused(Reason.UNKNOWN_ASSET, ("alice", "bob"), "settlement", "dvp", **_dvp("MXN"))
    assert out.detail.startswith("leg 0:")
    out = world.refused(Reason.UNKNOWN_ASSET, ("alice", "bob"), "settlement", "dvp", **_dvp(isin, currency=isin))
    assert out.detail.startswith("leg 1:")
    world.refused(Reason.SELF_TRANSFER, "alice", "settlement", "dvp", **_dvp(isin, buyer=addr("alice")))


def _leg(asset: str, source: str, target: str, quantity: int) -> dict[str, object]:
    return {"asset": asset, "source": addr(source), "target": addr(target), "quantity": quantity}


def test_a_batch_moves_many_assets_between_many_parties_in_order() -> None:
    world, isin = market()
    legs = [_leg(isin, "alice", "bob", 50), _leg(isin, "bob", "carol", 50), _leg("MXN", "carol", "alice", 7),
            _leg("MXN", "bob", "alice", 3)]
    out = world.ok(("alice", "bob", "carol"), "settlement", "batch", legs=legs, reference="netting")
    assert out.kinds() == ["batch_settled"]
    assert (world.bal(isin, "alice").free, world.bal(isin, "bob").free, world.bal(isin, "carol").free) == (950, 0, 50)
    assert world.bal("MXN", "alice").free == 1_000_010


def test_every_giver_signs_a_batch_and_receivers_need_not() -> None:
    world, isin = market()
    legs = [_leg(isin, "alice", "bob", 5), _leg("MXN", "carol", "alice", 1)]
    out = world.refused(Reason.SIGNATURE_REQUIRED, ("alice",), "settlement", "batch", legs=legs)
    assert out.detail.startswith("leg 1:")
    world.ok(("alice", "carol"), "settlement", "batch", legs=legs)


def test_a_batch_with_one_bad_leg_moves_nothing() -> None:
    world, isin = market()
    legs = [_leg(isin, "alice", "bob", 5), _leg("MXN", "bob", "alice", 5), _leg("MXN", "carol", "dave", 10**9)]
    out = world.refused(Reason.INSUFFICIENT_FREE_BALANCE, ("alice", "bob", "carol"), "settlement", "batch",
                        legs=legs)
    assert out.detail.startswith("leg 2:")
    world.refused(Reason.BAD_ARGUMENTS, "alice", "settlement", "batch", legs=[])
    world.refused(Reason.BAD_ARGUMENTS, "alice", "settlement", "batch",
                  legs=[_leg(isin, "alice", "bob", 1)] * (settlement.MAX_BATCH_LEGS + 1))


def test_settle_legs_takes_locked_units_and_rolls_back_for_a_caller_that_catches() -> None:
    world, isin = market()
    ctx = world.context(())
    balances.lock(ctx, isin, addr("alice"), 100)
    balances.lock(ctx, "MXN", addr("bob"), 300)
    settlement.settle_legs(ctx, [Leg(isin, addr("alice"), addr("bob"), 100, from_locked=True),
                                 Leg("MXN", addr("bob"), addr("alice"), 300, from_locked=True)])
    assert balances.get(ctx, isin, addr("bob")).free == 100
    assert balances.get(ctx, "MXN", addr("bob")).locked == 0
    before = dict(ctx.state.writes)
    with pytest.raises(ContractError) as caught:
        settlement.settle_legs(ctx, [Leg(isin, addr("bob"), addr("carol"), 10),
                                     Leg("MXN", addr("carol"), addr("bob"), 1, from_locked=True)])
    assert caught.value.reason == Reason.INSUFFICIENT_LOCKED_BALANCE
    assert caught.value.detail.startswith("leg 1:")
    assert ctx.state.writes == before  # the first leg was undone although the caller caught the error


def test_settle_legs_is_bounded() -> None:
    world, isin = market()
    legs = [Leg(isin, addr("alice"), addr("bob"), 1)] * (settlement.MAX_SETTLEMENT_LEGS + 1)
    with pytest.raises(ContractError) as caught:
        settlement.settle_legs(world.context(()), legs)
    assert caught.value.reason == Reason.LIMIT_EXCEEDED


def test_a_dvp_through_the_executor_needs_both_real_signatures_and_fails_whole(tmp_path: Path) -> None:
    chain = ExecWorld.with_investors(tmp_path / "ledger", "alice", "bob")
    try:
        registered = chain.submit([key("issuer")], "securities", "register", name="Co", kind="equity",
                                  authorised_supply=100, prospectus_hash=PROSPECTUS, prospectus_uri="u")
        isin = registered.events[0].attrs["isin"]
        assert chain.submit([key("issuer")], "securities", "issue", isin=isin, to=addr("alice"), quantity=10).valid
        assert chain.submit([key("bank")], "cash", "mint", currency="MXN", to=addr("bob"), amount=500,
                            deposit_ref="d").valid

        def holdings() -> list[int]:
            view = chain.view()
            return [balances.get(view, a, addr(n)).total for a in (isin, "MXN") for n in ("alice", "bob")]

        before = holdings()
        too_dear = chain.submit([key("alice"), key("bob")], "settlement", "dvp", **_dvp(isin, quantity=10,
                                                                                       amount=501))
        assert too_dear.reason == Reason.INSUFFICIENT_FREE_BALANCE and too_dear.detail.startswith("leg 1:")
        assert holdings() == before
        # A signature for a key the body does not name is no signature: bob alone cannot sell for alice.
        assert chain.submit([key("bob")], "settlement", "dvp", **_dvp(isin, quantity=10, amount=500)).reason == (
            Reason.SIGNATURE_REQUIRED)
        assert chain.submit([key("alice"), key("bob")], "settlement", "dvp", **_dvp(isin, quantity=10,
                                                                                   amount=500)).valid
        assert holdings() == [0, 10, 500, 0]
    finally:
        chain.close()
