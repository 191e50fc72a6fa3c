"""Corporate actions, supply and freezes at the codec's limits: nothing stored or emitted may pass
2**64 - 1 from inputs within the documented bounds, or every node's executor halts on the block.

Each test here failed before its fix (docs/LIFECYCLE.md, docs/CONTRACTS.md state the decisions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import balances, compliance, corporate_actions, securities
from contracts.base import MAX_AMOUNT
from ledger import codec
from ledger.reasons import Reason
from ledger.state import state_key
from tests.contracts_world import ExecWorld, World, addr, key, market
from tests.test_corporate_actions import DAY_MS, YEAR_MS, bond_world, holders_world, units_of
from tests.test_offerings import run_until_idle


def register_bond(world: World, face: int, rate_bps: int, dates: list[int], supply: int = 10**6) -> str:
    out = world.ok("issuer", "securities", "register", name="Bono", kind="bond", authorised_supply=supply,
                   prospectus_hash=bytes(32), prospectus_uri="u", face_value_minor=face, currency="MXN",
                   coupon_rate_bps=rate_bps, coupon_schedule_ms=dates, maturity_ms=dates[-1])
    return str(out.events[0].attrs["isin"])


def chain_of(path: Path, *investors: str) -> ExecWorld:
    return ExecWorld.with_investors(path, *investors)


def all_encodable(events: Any) -> bool:
    for event in events:
        codec.encode(dict(event.attrs))  # raises CodecError past 2**64 - 1
    return True


# ---------------------------------------------------------------- 1. coupon terms


def test_an_ordinary_bond_with_an_annual_coupon_registers_and_pays_it_exactly() -> None:
    """face 10,000.00, 6 %, a coupon a year out: face * rate * accrual_ms is ~1.9e19 > 2**64 - 1."""
    world, _isin, names = holders_world([3, 4])
    start = world.time_ms
    dates = [start + 365 * DAY_MS, start + 2 * 365 * DAY_MS + 7]
    bond = register_bond(world, 1_000_000, 600, dates)
    for name, units in zip(names, (3, 4), strict=True):
        world.ok("issuer", "securities", "issue", isin=bond, to=addr(name), quantity=units)
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10**9, deposit_ref="d")
    run_until_idle(world, dates[0])
    assert [world.bal("MXN", n).total - 1_000_000 for n in names] == [3 * 60_000, 4 * 60_000]
    run_until_idle(world, dates[1])
    second = [u * 1_000_000 * 600 * (dates[1] - dates[0]) // (10_000 * YEAR_MS) for u in (3, 4)]
    assert [world.bal("MXN", n).total - 1_000_000 for n in names] == [
        u * 60_000 + s + u * 1_000_000 for u, s in zip((3, 4), second, strict=True)]


def test_registering_a_bond_with_a_large_coupon_product_does_not_halt_the_executor(tmp_path: Path) -> None:
    chain = chain_of(tmp_path / "ledger")
    try:
        t = chain.time_ms + 1000
        receipt = chain.submit([key("issuer")], "securities", "register", name="Bono", kind="bond",
                               authorised_supply=1000, prospectus_hash=bytes(32), prospectus_uri="u",
                               face_value_minor=1_000_000, currency="MXN", coupon_rate_bps=600,
                               coupon_schedule_ms=[t + 365 * DAY_MS], maturity_ms=t + 365 * DAY_MS)
        assert receipt.valid
        assert [e.kind for e in receipt.events] == ["security_registered", "bond_service_scheduled"]
    finally:
        chain.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(face=st.integers(1, MAX_AMOUNT), rate_bps=st.integers(1, securities.MAX_COUPON_RATE_BPS),
       accrual_ms=st.integers(1, 50 * YEAR_MS), units=st.integers(1, MAX_AMOUNT))
def test_any_bond_terms_within_bounds_register_and_a_coupon_is_the_documented_formula(
    face: int, rate_bps: int, accrual_ms: int, units: int
) -> None:
    world, _ = market()
    due_ms = world.time_ms + accrual_ms
    bond = register_bond(world, face, rate_bps, [due_ms])
    view = world.view()
    for action_id in range(1, view.get(state_key("ca_seq")) + 1):
        action = corporate_actions.require_action(view, action_id)
        if action.kind == corporate_actions.COUPON and action.isin == bond:
            assert corporate_actions.due_minor(view, action, units) == (
                units * face * rate_bps * accrual_ms // (10_000 * YEAR_MS))
            return
    raise AssertionError("no coupon scheduled")


# ---------------------------------------------------------------- 2. split of authorised supply


def test_a_split_keeps_the_authorised_supply_within_max_amount() -> None:
    for supply, ratio in ((MAX_AMOUNT, 3), (2**62 + 2**61, 2)):
        world, isin = market(supply=supply)
        world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=ratio, ratio_from=1,
                 effective_ms=world.time_ms + DAY_MS)
        events = run_until_idle(world, world.time_ms + DAY_MS)
        assert world.bal(isin, "alice").total == 1000 * ratio
        assert securities.require_instrument(world.view(), isin).authorised_supply == MAX_AMOUNT
        assert all_encodable(events)


def test_a_split_of_the_largest_authorised_supply_does_not_halt_the_executor(tmp_path: Path) -> None:
    chain = chain_of(tmp_path / "ledger", "alice")
    try:
        reg = chain.submit([key("issuer")], "securities", "register", name="Co", kind="equity",
                           authorised_supply=MAX_AMOUNT, prospectus_hash=bytes(32), prospectus_uri="u")
        isin = reg.events[0].attrs["isin"]
        assert chain.submit([key("issuer")], "securities", "issue", isin=isin, to=addr("alice"), quantity=10).valid
        assert chain.submit([key("issuer")], "corporate_actions", "declare_split", isin=isin, ratio_to=3,
                            ratio_from=1, effective_ms=chain.time_ms + 1500).valid
        chain.submit_raw([])
        chain.submit_raw([])  # the conversion ran in one of these blocks' begin_block
        assert balances.get(chain.view(), isin, addr("alice")).total == 30
    finally:
        chain.close()


# ---------------------------------------------------------------- 4. supply counters


def test_mint_and_burn_cycles_never_overflow_the_supply_counters() -> None:
    world = World()
    world.admit("bank", "cash_agent")
    world.ok("operator", "cash", "register_currency", currency="MXN", decimals=8, agent=addr("bank"))
    big = 2**62
    rebased = 0
    for cycle in range(5):
        out = world.ok("bank", "cash", "mint", currency="MXN", to=addr("bank"), amount=big + cycle,
                       deposit_ref="d")
        rebased += out.kinds().count("supply_counters_rebased")
        issued, retired = balances.supply(world.view(), "MXN")
        assert issued <= MAX_AMOUNT and issued - retired == big + cycle == world.bal("MXN", "bank").total
        world.ok("bank", "cash", "burn", currency="MXN", amount=big + cycle, withdrawal_ref="w")
        issued, retired = balances.supply(world.view(), "MXN")
        assert issued == retired <= MAX_AMOUNT
    assert rebased >= 2
    # the outstanding bound is unchanged: MAX_AMOUNT at once, not one unit more
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("bank"), amount=MAX_AMOUNT, deposit_ref="d")
    world.refused(Reason.SUPPLY_EXCEEDED, "bank", "cash", "mint", currency="MXN", to=addr("bank"), amount=1,
                  deposit_ref="d")


# ---------------------------------------------------------------- 5. amounts in failure events


def test_a_dividend_that_fails_beyond_max_amount_reports_it_capped_and_the_block_is_built(tmp_path: Path) -> None:
    chain = chain_of(tmp_path / "ledger", "alice", "bob")
    try:
        reg = chain.submit([key("issuer")], "securities", "register", name="Co", kind="equity",
                           authorised_supply=MAX_AMOUNT, prospectus_hash=bytes(32), prospectus_uri="u")
        isin = reg.events[0].attrs["isin"]
        assert chain.submit([key("issuer")], "securities", "issue", isin=isin, to=addr("alice"),
                            quantity=1000).valid
        assert chain.submit([key("bank")], "cash", "mint", currency="MXN", to=addr("issuer"), amount=1_000_000,
                            deposit_ref="d").valid
        record = chain.time_ms + 3500
        assert chain.submit([key("issuer")], "corporate_actions", "declare_dividend", isin=isin, currency="MXN",
                            per_unit_minor=1000, record_ms=record, payment_ms=record + 10_000).valid
        assert chain.submit([key("issuer")], "securities", "issue", isin=isin, to=addr("bob"),
                            quantity=2 * 10**16).valid  # 1000 per unit of 2e16 units: 2e19 minor due
        for _ in range(3):
            chain.submit_raw([])
        blocks = [chain.store.block(h) for h in range(1, chain.store.position.height + 1)]
        failed = [e for b in blocks if b is not None for e in b.system_events if e.kind == "dividend_failed"]
        assert len(failed) == 1 and failed[0].attrs["due_minor"] == MAX_AMOUNT
        assert balances.get(chain.view(), "MXN", addr("issuer")) == balances.Balance(1_000_000, 0)
    finally:
        chain.close()


def test_a_bond_default_beyond_max_amount_reports_it_capped() -> None:
    world, _isin, names = holders_world([5])
    dates = [world.time_ms + 30 * DAY_MS, world.time_ms + 60 * DAY_MS]
    bond = register_bond(world, MAX_AMOUNT // 2, 0, dates)
    world.ok("issuer", "securities", "issue", isin=bond, to=addr(names[0]), quantity=5)
    events = run_until_idle(world, dates[-1])
    (default,) = [e for e in events if e.kind == "bond_defaulted"]
    assert default.attrs["payment"] == "redemption" and default.attrs["due_minor"] == MAX_AMOUNT
    assert all_encodable(events)


# ---------------------------------------------------------------- 6. every coupon date is paid


def test_every_coupon_date_up_to_max_coupons_is_scheduled_and_more_are_refused() -> None:
    world, _ = market()
    n = securities.MAX_COUPONS
    dates = [world.time_ms + (k + 1) * 30 * DAY_MS for k in range(n + 1)]
    world.refused(Reason.BAD_ARGUMENTS, "issuer", "securities", "register", name="Bono", kind="bond",
                  authorised_supply=1000, prospectus_hash=bytes(32), prospectus_uri="u", face_value_minor=1000,
                  currency="MXN", coupon_rate_bps=100, coupon_schedule_ms=dates, maturity_ms=dates[-1])
    bond = register_bond(world, 1000, 100, dates[:n])
    view = world.view()
    coupons = [a for a in (corporate_actions.require_action(view, i)
                           for i in range(1, view.get(state_key("ca_seq")) + 1))
               if a.kind == corporate_actions.COUPON and a.isin == bond]
    assert [a.payment_ms for a in coupons] == dates[:n]


# ---------------------------------------------------------------- 7. funding a redeemed bond


def test_fund_bond_is_refused_once_the_redemption_completed_and_allowed_before() -> None:
    world, bond, names, dates = bond_world([10, 5], coupons=1)
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10**7, deposit_ref="d")
    world.ok("issuer", "corporate_actions", "fund_bond", isin=bond, amount=1_000)
    run_until_idle(world, dates[-1])
    assert units_of(world, bond, names) == [0, 0]
    assert world.bal("MXN", "issuer").locked == 0, "the redemption released the reserve"
    world.refused(Reason.INVALID_STATE, "issuer", "corporate_actions", "fund_bond", isin=bond, amount=5_000)


def test_fund_bond_still_serves_a_defaulted_redemption() -> None:
    world, bond, _names, dates = bond_world([5], coupons=1, rate_bps=0, face=1_000_000)
    events = run_until_idle(world, dates[0])
    (default,) = [e for e in events if e.kind == "bond_defaulted"]
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=4_000_000, deposit_ref="d")
    world.ok("issuer", "corporate_actions", "fund_bond", isin=bond, amount=5_000_000)
    world.ok("issuer", "corporate_actions", "cure_default", action_id=default.attrs["action_id"])
    run_until_idle(world, world.time_ms + 1)
    world.refused(Reason.INVALID_STATE, "issuer", "corporate_actions", "fund_bond", isin=bond, amount=1)


# ---------------------------------------------------------------- 8. partial freezes and splits


def freeze(world: World, name: str, isin: str, amount: int) -> None:
    world.ok("regulator", "compliance", "freeze", account=addr(name), reason="court order", asset=isin,
             amount=amount)


def test_a_split_converts_a_partial_freeze_so_the_frozen_value_stays_frozen() -> None:
    world, isin, names = holders_world([5, 100])
    freeze(world, names[1], isin, 100)
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=10, ratio_from=1,
             effective_ms=world.time_ms + DAY_MS)
    events = run_until_idle(world, world.time_ms + DAY_MS)
    assert world.bal(isin, names[1]).total == 1000
    assert compliance.frozen_amount(world.view(), addr(names[1]), isin) == 1000
    world.refused(Reason.ACCOUNT_FROZEN, names[1], "securities", "transfer", isin=isin, to=addr(names[0]),
                  quantity=1)
    (converted,) = [e for e in events if e.kind == "partial_freeze_converted"]
    assert (converted.attrs["amount_before"], converted.attrs["amount_after"]) == (100, 1000)
    # a reverse split rounds the frozen amount up: 1000 frozen of 1000 -> 34 frozen of 33
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=1, ratio_from=30,
             effective_ms=world.time_ms + DAY_MS)
    run_until_idle(world, world.time_ms + DAY_MS)
    assert world.bal(isin, names[1]).total == 33
    assert compliance.frozen_amount(world.view(), addr(names[1]), isin) == 34
    assert compliance.spendable(world.view(), addr(names[1]), isin) == 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holdings=st.lists(st.integers(0, 5_000), min_size=2, max_size=5),
       frozen=st.lists(st.integers(0, 6_000), min_size=3, max_size=3),
       ratio_to=st.integers(1, 12), ratio_from=st.integers(1, 12))
def test_a_split_conserves_units_and_keeps_every_partial_freeze_at_least_its_value(
    holdings: list[int], frozen: list[int], ratio_to: int, ratio_from: int
) -> None:
    if ratio_to == ratio_from:
        ratio_to += 1
    world, isin, names = holders_world(holdings)
    frozen_accounts = [*names[:2], "issuer"]
    for name, amount in zip(frozen_accounts, frozen, strict=True):
        if amount:
            freeze(world, name, isin, amount)
    total = sum(world.bal(isin, n).total for n in [*names, "issuer"])
    held = {name: name == "issuer" or world.bal(isin, name).total > 0 for name in frozen_accounts}  # the issuer: always
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=ratio_to, ratio_from=ratio_from,
             effective_ms=world.time_ms + 1)
    events = run_until_idle(world, world.time_ms + 1)
    assert all_encodable(events)
    issued, retired = balances.supply(world.view(), isin)
    target = total * ratio_to // ratio_from
    assert issued - retired == target == sum(world.bal(isin, n).total for n in [*names, "issuer"])
    for name, before in zip(frozen_accounts, frozen, strict=True):
        after = compliance.frozen_amount(world.view(), addr(name), isin)
        if before and held[name]:  # rounded up, by less than one new unit
            assert before * ratio_to <= after * ratio_from < before * ratio_to + ratio_from
        else:  # none, or on an account holding none of it: not found, left as it was (LIFECYCLE.md)
            assert after == before
