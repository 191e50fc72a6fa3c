"""Securities: registration, issuance, redemption, and every transfer rule with its reason code."""

from __future__ import annotations

from typing import Any

from contracts import isin as isin_codes
from contracts import securities
from ledger.reasons import Reason
from tests.contracts_world import PROSPECTUS, START_MS, Outcome, World, addr, market

BOND_TERMS: dict[str, Any] = {"face_value_minor": 100_000, "currency": "MXN", "coupon_rate_bps": 850,
                  "coupon_schedule_ms": [START_MS + 10**9, START_MS + 2 * 10**9], "maturity_ms": START_MS + 2 * 10**9}


def _register(world: World, signer: str = "issuer", **args: Any) -> Outcome:
    base = {"name": "Bono Verde", "kind": "bond", "authorised_supply": 5000, "prospectus_hash": PROSPECTUS,
                "prospectus_uri": "ipfs://x"}
    base.update(args)
    return world.call(signer, "securities", "register", **base)


# ---------------------------------------------------------------- registration


def test_registering_an_equity_assigns_a_valid_isin_and_records_every_field() -> None:
    world, isin = market(qualified_only=False, max_holders=10, lockup_until_ms=START_MS - 1)
    assert isin.startswith("MX") and isin_codes.is_valid(isin)
    found = securities.get_instrument(world.view(), isin)
    assert found is not None
    assert (found.issuer, found.kind, found.decimals, found.authorised_supply) == (
        addr("issuer"), "equity", 0, 1_000_000)
    assert (found.max_holders, found.paused, found.prospectus_hash) == (10, False, PROSPECTUS)
    assert found.face_value_minor is None and found.coupon_schedule_ms == ()


def test_a_bond_records_its_terms() -> None:
    world, _ = market()
    out = _register(world, **BOND_TERMS)
    assert out.reason == Reason.OK
    bond = securities.require_instrument(world.view(), out.events[0].attrs["isin"])
    assert bond.kind == "bond" and bond.coupon_rate_bps == 850 and bond.currency == "MXN"
    assert bond.coupon_schedule_ms == tuple(BOND_TERMS["coupon_schedule_ms"])


def test_only_an_active_issuer_registers() -> None:
    world, _ = market()
    assert _register(world, "alice", **BOND_TERMS).reason == Reason.UNAUTHORIZED
    world.ok("operator", "participants", "suspend", address=addr("issuer"), reason="audit")
    assert _register(world, "issuer", **BOND_TERMS).reason == Reason.UNAUTHORIZED


def test_bond_terms_are_validated() -> None:
    world, _ = market()
    cases = [
        dict(BOND_TERMS, currency="USD"),  # unknown currency
        {k: v for k, v in BOND_TERMS.items() if k != "maturity_ms"},
        dict(BOND_TERMS, maturity_ms=START_MS - 5),
        dict(BOND_TERMS, coupon_schedule_ms=[START_MS + 10**9, START_MS + 10**9]),
        dict(BOND_TERMS, coupon_schedule_ms=[START_MS + 3 * 10**9]),
        dict(BOND_TERMS, coupon_rate_bps=securities.MAX_COUPON_RATE_BPS + 1),
    ]
    reasons = [_register(world, **case).reason for case in cases]
    assert reasons == [Reason.UNKNOWN_ASSET] + [Reason.BAD_ARGUMENTS] * 5
    assert _register(world, kind="equity", **BOND_TERMS).reason == Reason.BAD_ARGUMENTS


# ---------------------------------------------------------------- issuance and redemption


def test_issue_counts_supply_and_stops_at_the_authorised_supply() -> None:
    world, isin = market(supply=1500)
    world.ok("issuer", "securities", "issue", isin=isin, to=addr("bob"), quantity=500)
    world.refused(Reason.SUPPLY_EXCEEDED, "issuer", "securities", "issue", isin=isin, to=addr("bob"), quantity=1)
    view = securities.get_instrument(world.view(), isin)
    assert view is not None and world.bal(isin, "bob").free == 500


def test_only_the_issuer_issues_and_only_to_an_eligible_holder() -> None:
    world, isin = market()
    world.refused(Reason.SIGNATURE_REQUIRED, "alice", "securities", "issue", isin=isin, to=addr("bob"), quantity=1)
    world.refused(Reason.RECEIVER_NOT_ELIGIBLE, "issuer", "securities", "issue", isin=isin, to=addr("dave"),
                  quantity=1)
    world.refused(Reason.UNKNOWN_ASSET, "issuer", "securities", "issue", isin="MX0000000000", to=addr("bob"),
                  quantity=1)


def test_redeem_needs_issuer_and_holder_and_pays_atomically() -> None:
    world, isin = market()
    args = {"isin": isin, "holder": addr("alice"), "quantity": 100, "currency": "MXN", "amount": 50_000}
    world.refused(Reason.SIGNATURE_REQUIRED, "issuer", "securities", "redeem", **args)
    world.refused(Reason.SIGNATURE_REQUIRED, "alice", "securities", "redeem", **args)
    world.ok(("issuer", "alice"), "securities", "redeem", **args)
    assert world.bal(isin, "alice").free == 900
    assert world.bal("MXN", "alice").free == 1_050_000
    assert world.bal("MXN", "issuer").free == 950_000
    # The payment cannot be made: the units stay too.
    world.refused(Reason.INSUFFICIENT_FREE_BALANCE, ("issuer", "alice"), "securities", "redeem",
                  **dict(args, amount=10**9))


def test_redeemed_units_make_room_under_the_authorised_supply() -> None:
    world, isin = market(supply=1000)
    world.refused(Reason.SUPPLY_EXCEEDED, "issuer", "securities", "issue", isin=isin, to=addr("bob"), quantity=1)
    world.ok(("issuer", "alice"), "securities", "redeem", isin=isin, holder=addr("alice"), quantity=10)
    world.ok("issuer", "securities", "issue", isin=isin, to=addr("bob"), quantity=10)


# ---------------------------------------------------------------- transfer rules, one per reason


def _transfer(world: World, isin: str, reason: Reason, source: str = "alice", to: str = "bob",
              quantity: int = 10) -> None:
    if reason == Reason.OK:
        world.ok(source, "securities", "transfer", isin=isin, to=addr(to), quantity=quantity)
    else:
        world.refused(reason, source, "securities", "transfer", isin=isin, to=addr(to), quantity=quantity)


def test_a_transfer_moves_free_units_between_investors() -> None:
    world, isin = market()
    _transfer(world, isin, Reason.OK)
    assert (world.bal(isin, "alice").free, world.bal(isin, "bob").free) == (990, 10)


def test_unknown_asset_and_self_transfer() -> None:
    world, isin = market()
    _transfer(world, "MX123", Reason.UNKNOWN_ASSET)
    _transfer(world, isin, Reason.SELF_TRANSFER, to="alice")


def test_only_the_free_part_can_be_transferred() -> None:
    world, isin = market()
    from contracts import balances

    ctx = world.context(())
    balances.lock(ctx, isin, addr("alice"), 995)
    ctx.state.merge_into(world.state)
    _transfer(world, isin, Reason.INSUFFICIENT_FREE_BALANCE)
    _transfer(world, isin, Reason.OK, quantity=5)


def test_receiver_must_be_an_admitted_active_investor() -> None:
    world, isin = market()
    _transfer(world, isin, Reason.RECEIVER_NOT_ELIGIBLE, to="dave")  # admitted, not an investor
    _transfer(world, isin, Reason.RECEIVER_NOT_ELIGIBLE, to="stranger")  # never admitted
    world.ok("operator", "participants", "suspend", address=addr("bob"), reason="kyc expired")
    _transfer(world, isin, Reason.PARTICIPANT_SUSPENDED)


def test_a_suspended_holder_keeps_its_units_but_cannot_send() -> None:
    world, isin = market()
    world.ok("operator", "participants", "suspend", address=addr("alice"), reason="kyc expired")
    _transfer(world, isin, Reason.PARTICIPANT_SUSPENDED)
    assert world.bal(isin, "alice").free == 1000
    world.ok("operator", "participants", "reinstate", address=addr("alice"), reason="kyc renewed")
    _transfer(world, isin, Reason.OK)


def test_a_non_participant_sender_is_refused() -> None:
    world, isin = market()
    _transfer(world, isin, Reason.SENDER_NOT_ELIGIBLE, source="stranger")


def test_qualified_only() -> None:
    world, _ = market()
    isin = world.register_equity(qualified_only=True)
    world.refused(Reason.QUALIFIED_ONLY, "issuer", "securities", "issue", isin=isin, to=addr("alice"), quantity=9)
    world.ok("issuer", "securities", "issue", isin=isin, to=addr("carol"), quantity=9)
    _transfer(world, isin, Reason.QUALIFIED_ONLY, source="carol", to="bob", quantity=1)
    world.ok("operator", "participants", "update", address=addr("bob"), qualified=True)
    _transfer(world, isin, Reason.OK, source="carol", to="bob", quantity=1)


def test_max_holders_counts_new_holders_and_frees_a_slot_when_one_leaves() -> None:
    world, isin = market(max_holders=2)
    _transfer(world, isin, Reason.OK, to="bob")
    _transfer(world, isin, Reason.MAX_HOLDERS_REACHED, to="carol")
    _transfer(world, isin, Reason.OK, to="bob", quantity=5)  # bob already holds: not a new holder
    # bob hands over everything: carol takes his place, the count stays at 2.
    _transfer(world, isin, Reason.OK, source="bob", to="carol", quantity=15)
    assert world.bal(isin, "bob").total == 0 and world.bal(isin, "carol").total == 15


def test_lock_up_until_a_time() -> None:
    world, isin = market(lockup_until_ms=START_MS + 5000)
    _transfer(world, isin, Reason.LOCKED_UP)
    world.time_ms = START_MS + 5000
    _transfer(world, isin, Reason.OK)


def test_paused_and_frozen() -> None:
    world, isin = market()
    world.ok("regulator", "compliance", "pause", isin=isin, reason="investigation")
    _transfer(world, isin, Reason.ASSET_PAUSED)
    world.refused(Reason.ASSET_PAUSED, "issuer", "securities", "issue", isin=isin, to=addr("bob"), quantity=1)
    world.ok("regulator", "compliance", "resume", isin=isin, reason="closed")
    world.ok("regulator", "compliance", "freeze", account=addr("alice"), reason="court order")
    _transfer(world, isin, Reason.ACCOUNT_FROZEN)


def test_check_transfer_moves_nothing_and_transfer_checked_moves_locked_units() -> None:
    world, isin = market()
    from contracts import balances

    ctx = world.context(())
    securities.check_transfer(ctx, isin, addr("alice"), addr("bob"), 10)
    assert ctx.state.writes == {}
    balances.lock(ctx, isin, addr("alice"), 50)
    securities.transfer_checked(ctx, isin, addr("alice"), addr("bob"), 50, from_locked=True)
    assert balances.get(ctx, isin, addr("alice")) == balances.Balance(950, 0)
    assert balances.get(ctx, isin, addr("bob")) == balances.Balance(50, 0)
