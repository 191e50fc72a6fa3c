"""Corporate actions on block time: dividends, splits, coupons, redemption, defaults, receipts."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import balances, corporate_actions, entitlements, participants, securities
from ledger.reasons import Reason
from tests.contracts_world import World, addr, market
from tests.test_offerings import run_block, run_until_idle

DAY_MS = 24 * 60 * 60 * 1000
YEAR_MS = corporate_actions.YEAR_MS


def holders_world(holdings: list[int], cash_each: int = 1_000_000) -> tuple[World, str, list[str]]:
    """market() plus investors h0.. holding the given units (alice's 1000 go back to the issuer)."""
    world, isin = market()
    names = [f"h{i:03d}" for i in range(len(holdings))]
    for name, units in zip(names, holdings, strict=True):
        world.admit(name, participants.INVESTOR)
        world.ok("bank", "cash", "mint", currency="MXN", to=addr(name), amount=cash_each, deposit_ref="d")
        if units:
            world.ok("issuer", "securities", "issue", isin=isin, to=addr(name), quantity=units)
    world.ok("alice", "securities", "transfer", isin=isin, to=addr(names[0]), quantity=1000)
    return world, isin, names


def declare_dividend(world: World, isin: str, per_unit: int, record_in_ms: int = DAY_MS,
                     pay_in_ms: int = 2 * DAY_MS) -> int:
    out = world.ok("issuer", "corporate_actions", "declare_dividend", isin=isin, currency="MXN",
                   per_unit_minor=per_unit, record_ms=world.time_ms + record_in_ms,
                   payment_ms=world.time_ms + pay_in_ms)
    return int(out.events[-1].attrs["action_id"])


def units_of(world: World, isin: str, names: list[str]) -> list[int]:
    return [world.bal(isin, n).total for n in names]


def cash_of(world: World, names: list[str]) -> list[int]:
    return [world.bal("MXN", n).total for n in names]


# ---------------------------------------------------------------- dividends


def test_dividend_locks_cash_at_declaration_and_pays_on_the_payment_block_with_receipts() -> None:
    world, isin, names = holders_world([10, 20, 0])
    start = world.time_ms
    action_id = declare_dividend(world, isin, per_unit=7)
    outstanding = 1030
    assert world.bal("MXN", "issuer").locked == 7 * outstanding
    run_until_idle(world, start + DAY_MS)
    assert cash_of(world, names) == [1_000_000] * 3, "recorded, not yet paid"
    events = run_until_idle(world, start + 2 * DAY_MS)
    assert cash_of(world, names) == [1_000_000 + 7 * 1010, 1_000_000 + 7 * 20, 1_000_000]
    receipts = {e.attrs["account"]: e.attrs["amount"] for e in events if e.kind == "dividend_paid"}
    assert receipts == {addr("h000"): 7070, addr("h001"): 140}
    assert world.bal("MXN", "issuer") == balances.Balance(1_000_000 - 7 * outstanding, 0)
    assert corporate_actions.require_action(world.view(), action_id).status == "completed"


def test_a_transfer_after_the_record_time_does_not_move_the_entitlement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 2)  # pay over several blocks
    world, isin, names = holders_world([5, 5, 5, 5, 5])
    start = world.time_ms
    declare_dividend(world, isin, per_unit=3, pay_in_ms=DAY_MS)
    run_block(world, start + DAY_MS)  # record, and the first chunk of payments
    paid_first = [world.bal("MXN", n).total > 1_000_000 for n in names]
    assert 0 < sum(paid_first) < len(names), "the payment is spread over blocks"
    last, first = names[-1], names[0]
    world.ok(last, "securities", "transfer", isin=isin, to=addr(first), quantity=5)  # seller not yet paid
    world.ok("issuer", "securities", "issue", isin=isin, to=addr(names[1]), quantity=100)  # new units: no dividend
    run_until_idle(world, world.time_ms)
    assert cash_of(world, names) == [1_000_000 + 3 * 1005] + [1_000_000 + 15] * 4
    assert world.bal("MXN", "issuer").locked == 0


def test_a_dividend_that_cannot_be_paid_cannot_be_declared() -> None:
    world, isin, _names = holders_world([10])
    world.refused(Reason.INSUFFICIENT_FREE_BALANCE, "issuer", "corporate_actions", "declare_dividend", isin=isin,
                  currency="MXN", per_unit_minor=10_000, record_ms=world.time_ms + 1, payment_ms=world.time_ms + 1)
    world.refused(Reason.UNAUTHORIZED, "h000", "corporate_actions", "declare_dividend", isin=isin,
                  currency="MXN", per_unit_minor=1, record_ms=world.time_ms + 1, payment_ms=world.time_ms + 1)
    world.refused(Reason.BAD_ARGUMENTS, "issuer", "corporate_actions", "declare_dividend", isin=isin,
                  currency="MXN", per_unit_minor=1, record_ms=world.time_ms + 5, payment_ms=world.time_ms + 1)


def test_units_issued_before_the_record_that_the_issuer_cannot_fund_fail_the_dividend() -> None:
    world, isin, _names = holders_world([10])
    declare_dividend(world, isin, per_unit=900)  # 1010 units * 900 = 909_000 of the issuer's 1_000_000
    world.ok("issuer", "securities", "issue", isin=isin, to=addr("h000"), quantity=500)
    events = run_until_idle(world, world.time_ms + 2 * DAY_MS)
    assert "dividend_failed" in [e.kind for e in events]
    assert world.bal("MXN", "issuer") == balances.Balance(1_000_000, 0)
    assert world.bal("MXN", "h000").total == 1_000_000


def test_issuer_cancels_a_dividend_before_the_record_and_gets_its_cash_back() -> None:
    world, isin, _names = holders_world([10])
    action_id = declare_dividend(world, isin, per_unit=5)
    world.ok("issuer", "corporate_actions", "cancel", action_id=action_id)
    assert world.bal("MXN", "issuer") == balances.Balance(1_000_000, 0)
    run_until_idle(world, world.time_ms + 2 * DAY_MS)
    assert world.bal("MXN", "h000").total == 1_000_000
    world.refused(Reason.INVALID_STATE, "issuer", "corporate_actions", "cancel", action_id=action_id)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holdings=st.lists(st.integers(0, 500), min_size=1, max_size=8), per_unit=st.integers(1, 97),
       moves=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 8), st.integers(1, 50)), max_size=6),
       budget=st.integers(1, 4))
def test_dividend_pays_exactly_units_at_record_times_amount_and_accounts_for_the_rest(
    holdings: list[int], per_unit: int, moves: list[tuple[int, int, int]], budget: int
) -> None:
    corporate_actions_budget = corporate_actions.MAX_PAYMENTS_PER_BLOCK
    corporate_actions.MAX_PAYMENTS_PER_BLOCK = budget
    try:
        world, isin, names = holders_world(holdings)
        start = world.time_ms
        action_id = declare_dividend(world, isin, per_unit=per_unit, pay_in_ms=DAY_MS)
        run_block(world, start + DAY_MS)
        at_record = [corporate_actions.require_action(world.view(), action_id).status]
        record_units = [holdings[0] + 1000] + holdings[1:]
        for src, dst, qty in moves:  # trading goes on while the payment runs; bob buys after the record
            target = addr(names[dst]) if dst < len(names) else addr("bob")
            if src < len(names):
                world.call(names[src], "securities", "transfer", isin=isin, to=target, quantity=qty)
            run_block(world, world.time_ms)
        run_until_idle(world, world.time_ms)
    finally:
        corporate_actions.MAX_PAYMENTS_PER_BLOCK = corporate_actions_budget
    assert at_record != ["declared"]
    assert cash_of(world, names) == [1_000_000 + u * per_unit for u in record_units]
    assert world.bal("MXN", "bob").total == 1_000_000, "units bought after the record earn nothing"
    action = corporate_actions.require_action(world.view(), action_id)
    assert action.status == "completed" and action.paid_minor == per_unit * sum(record_units)
    assert world.bal("MXN", "issuer") == balances.Balance(1_000_000 - action.paid_minor, 0)
    assert entitlements.get_watch(world.view(), isin).empty, "the snapshot is gone"


# ---------------------------------------------------------------- splits


def test_a_split_converts_every_holder_and_holds_transfers_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 2)
    world, isin, names = holders_world([3, 4, 5, 6, 7])
    out = world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=3, ratio_from=2,
                   effective_ms=world.time_ms + DAY_MS)
    assert out.events[-1].kind == "split_declared"
    run_block(world, world.time_ms + DAY_MS)
    world.refused(Reason.ASSET_PAUSED, names[4], "securities", "transfer", isin=isin, to=addr(names[3]), quantity=1)
    run_until_idle(world, world.time_ms)
    # floor(3/2 * units): 1003, 5 and 7 leave three halves; outstanding becomes floor(1025 * 3/2),
    # so the issuer takes the one whole unit they make.
    assert units_of(world, isin, names) == [1504, 6, 7, 9, 10]
    assert world.bal(isin, "issuer").total == 1
    issued, retired = balances.supply(world.view(), isin)
    assert issued - retired == 1025 * 3 // 2
    world.ok(names[4], "securities", "transfer", isin=isin, to=addr(names[3]), quantity=1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holdings=st.lists(st.integers(0, 10_000), min_size=1, max_size=8), ratio_to=st.integers(1, 12),
       ratio_from=st.integers(1, 12))
def test_a_split_preserves_every_holders_proportion_up_to_a_unit_and_the_issuer_takes_the_rest(
    holdings: list[int], ratio_to: int, ratio_from: int
) -> None:
    if ratio_to == ratio_from:
        ratio_to += 1
    world, isin, names = holders_world(holdings)
    before = units_of(world, isin, names)
    total = sum(before)
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=ratio_to, ratio_from=ratio_from,
             effective_ms=world.time_ms + 1)
    run_until_idle(world, world.time_ms + 1)
    after = units_of(world, isin, names)
    for old, new in zip(before, after, strict=True):
        assert new * ratio_from <= old * ratio_to < (new + 1) * ratio_from
    issued, retired = balances.supply(world.view(), isin)
    assert issued - retired == total * ratio_to // ratio_from
    assert world.bal(isin, "issuer").total == total * ratio_to // ratio_from - sum(after)
    assert world.bal(isin, "issuer").total < len(names)


def test_a_split_scales_locked_units_too() -> None:
    world, isin, _names = holders_world([10, 7])
    balances.lock(world.view(), isin, addr("h001"), 5)  # units pledged elsewhere (an order, say)
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=1, ratio_from=2,
             effective_ms=world.time_ms + 1)
    run_until_idle(world, world.time_ms + 1)
    assert world.bal(isin, "h001") == balances.Balance(1, 2)
    assert world.bal(isin, "h000") == balances.Balance(505, 0)
    assert world.bal(isin, "issuer").total == 1017 // 2 - 505 - 3


def test_an_offering_closing_during_a_split_waits_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The close waits for the split's hold; then, the unit having changed since the offering
    opened, it fails and refunds everyone (docs/LIFECYCLE.md). It used to sell the 50 units,
    priced in the old unit, as 50 new units (h002 ended with 58 for the same cash)."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 1)
    world, isin, names = holders_world([4, 4, 4])
    out = world.ok("issuer", "offerings", "open_offering", isin=isin, currency="MXN", price_minor=10, min_units=1,
                   max_units=50, min_per_investor=1, max_per_investor=50, opens_ms=world.time_ms,
                   closes_ms=world.time_ms + 2 * DAY_MS)
    offering_id = out.events[0].attrs["offering_id"]
    world.ok("h002", "offerings", "subscribe", offering_id=offering_id, units=50)
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=2, ratio_from=1,
             effective_ms=world.time_ms + DAY_MS)
    run_block(world, world.time_ms + DAY_MS)  # the split starts converting, one holder per block
    events = run_block(world, world.time_ms + DAY_MS)
    assert not [e for e in events if e.kind in ("offering_settled", "offering_failed")], "held: the close waits"
    events = run_until_idle(world, world.time_ms)
    assert [e.kind for e in events].index("split_completed") < [e.kind for e in events].index("offering_failed")
    assert units_of(world, isin, names) == [2008, 8, 8]
    assert world.bal("MXN", "h002") == balances.Balance(1_000_000, 0)


# ---------------------------------------------------------------- bonds


def bond_world(holdings: list[int], coupons: int = 2, rate_bps: int = 850,
               face: int = 100_000) -> tuple[World, str, list[str], list[int]]:
    world, _, names = holders_world(holdings)
    dates = [world.time_ms + (k + 1) * 182 * DAY_MS for k in range(coupons)]
    out = world.ok("issuer", "securities", "register", name="Bono", kind="bond", authorised_supply=10**6,
                   prospectus_hash=bytes(32), prospectus_uri="ipfs://b", face_value_minor=face, currency="MXN",
                   coupon_rate_bps=rate_bps, coupon_schedule_ms=dates, maturity_ms=dates[-1])
    bond = str(out.events[0].attrs["isin"])
    for name, units in zip(names, holdings, strict=True):
        if units:
            world.ok("issuer", "securities", "issue", isin=bond, to=addr(name), quantity=units)
    # register scheduled the service already; asking again is refused
    world.refused(Reason.ALREADY_EXISTS, names[0], "corporate_actions", "service_bond", isin=bond)
    return world, bond, names, dates


def coupon_due(units: int, face: int, rate_bps: int, accrual_ms: int) -> int:
    return units * face * rate_bps * accrual_ms // (10_000 * YEAR_MS)


def test_bond_pays_each_coupon_on_its_date_and_redeems_at_maturity() -> None:
    world, bond, names, dates = bond_world([3, 1])
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10_000_000, deposit_ref="d")
    registered = world.time_ms
    world.ok("issuer", "corporate_actions", "fund_bond", isin=bond, amount=50_000)
    run_until_idle(world, dates[0] - 1)
    assert cash_of(world, names) == [1_000_000, 1_000_000]
    run_until_idle(world, dates[0])
    first = [coupon_due(u, 100_000, 850, dates[0] - registered) for u in (3, 1)]
    assert cash_of(world, names) == [1_000_000 + c for c in first]
    events = run_until_idle(world, dates[1])
    second = [coupon_due(u, 100_000, 850, dates[1] - dates[0]) for u in (3, 1)]
    expected = [1_000_000 + a + b + 100_000 * u for a, b, u in zip(first, second, (3, 1), strict=True)]
    assert cash_of(world, names) == expected
    assert units_of(world, bond, names) == [0, 0]
    assert balances.supply(world.view(), bond) == (4, 4), "redeemed tokens are retired"
    kinds = [e.kind for e in events]
    assert kinds.index("coupon_completed") < kinds.index("redemption_started")
    assert world.bal("MXN", "issuer").locked == 0 and corporate_actions.reserve_minor(world.view(), bond) == 0


def test_redemption_retires_locked_units_and_pays_for_them() -> None:
    world, bond, names, dates = bond_world([4], coupons=1, rate_bps=0)
    balances.lock(world.view(), bond, addr(names[0]), 3)
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10**6, deposit_ref="d")
    run_until_idle(world, dates[-1])
    assert world.bal(bond, names[0]) == balances.Balance(0, 0)
    assert world.bal("MXN", names[0]).total == 1_000_000 + 4 * 100_000


def test_an_issuer_that_cannot_pay_defaults_on_the_ledger_and_holders_keep_their_bonds() -> None:
    world, bond, names, dates = bond_world([5], rate_bps=1000, face=1_000_000)
    world.ok("issuer", "cash", "transfer", currency="MXN", to=addr("bob"), amount=1_000_000)  # issuer has none
    events = run_until_idle(world, dates[0])
    defaults = [e for e in events if e.kind == "bond_defaulted"]
    assert len(defaults) == 1 and defaults[0].attrs["payment"] == "coupon"
    assert defaults[0].attrs["reason"] == str(Reason.INSUFFICIENT_FREE_BALANCE)
    events = run_until_idle(world, dates[1])
    assert [e.attrs["payment"] for e in events if e.kind == "bond_defaulted"] == ["coupon", "redemption"]
    assert units_of(world, bond, names) == [5]
    assert world.call(names[0], "securities", "transfer", isin=bond, to=addr("bob"), quantity=1).reason == Reason.OK


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holdings=st.lists(st.integers(0, 40), min_size=1, max_size=6), rate_bps=st.integers(1, 2000),
       coupons=st.integers(1, 4))
def test_coupons_and_redemption_pay_exactly_the_schedule(holdings: list[int], rate_bps: int, coupons: int) -> None:
    world, bond, names, dates = bond_world(holdings, coupons=coupons, rate_bps=rate_bps)
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10**9, deposit_ref="d")
    registered = securities.require_instrument(world.view(), bond).registered_at_ms
    issuer_before = world.bal("MXN", "issuer").total
    run_until_idle(world, dates[-1])
    accruals = [b - a for a, b in zip([registered] + dates[:-1], dates, strict=True)]
    expected = [sum(coupon_due(u, 100_000, rate_bps, ms) for ms in accruals) + 100_000 * u for u in holdings]
    assert cash_of(world, names) == [1_000_000 + e for e in expected]
    assert world.bal("MXN", "issuer") == balances.Balance(issuer_before - sum(expected), 0)
    assert units_of(world, bond, names) == [0] * len(names)



def test_an_issuer_cures_a_default_and_the_payment_runs_in_the_next_block() -> None:
    world, bond, names, dates = bond_world([5], coupons=1, rate_bps=0, face=1_000_000)
    events = run_until_idle(world, dates[0])
    (default,) = [e for e in events if e.kind == "bond_defaulted"]
    assert default.attrs["payment"] == "redemption" and units_of(world, bond, names) == [5]
    world.refused(Reason.UNAUTHORIZED, names[0], "corporate_actions", "cure_default",
                  action_id=default.attrs["action_id"])
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=4_000_000, deposit_ref="d")
    world.ok("issuer", "corporate_actions", "fund_bond", isin=bond, amount=5_000_000)
    world.ok("issuer", "corporate_actions", "cure_default", action_id=default.attrs["action_id"])
    events = run_until_idle(world, world.time_ms + 1)
    assert "redemption_completed" in [e.kind for e in events]
    assert units_of(world, bond, names) == [0] and world.bal("MXN", names[0]).total == 6_000_000
    assert world.bal("MXN", "issuer") == balances.Balance(0, 0)


def test_a_split_first_cancels_resting_orders_and_releases_their_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Orders priced and sized in old units must not survive a split (docs/LIFECYCLE.md)."""
    from contracts import market as venue

    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 2)  # withdraw in several steps
    world, isin, names = holders_world([10, 20, 30])
    world.ok("operator", "market", "open_book", isin=isin, currency="MXN", tick_size=1, lot_size=1)
    for i, name in enumerate(names):
        world.ok(name, "market", "place_order", isin=isin, currency="MXN", side="sell", quantity=3, price=500 + i)
        world.ok(name, "market", "place_order", isin=isin, currency="MXN", side="buy", quantity=2, price=100 + i)
    assert world.bal(isin, names[2]).locked == 3 and world.bal("MXN", names[2]).locked == 2 * 102
    assert len(venue.open_orders(world.view(), addr(names[2]))) == 2
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=2, ratio_from=1,
             effective_ms=world.time_ms + 1)
    run_until_idle(world, world.time_ms + 1)
    view = world.view()
    for name in names:
        assert world.bal("MXN", name).locked == 0 and world.bal(isin, name).locked == 0
        assert venue.open_orders(view, addr(name)) == []
    assert units_of(world, isin, names) == [2 * 1010, 40, 60]
