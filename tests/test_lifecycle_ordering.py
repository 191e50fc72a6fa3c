"""Corporate actions on block time: what runs when, and what the issuer may still change.

Each test states a sentence of docs/LIFECYCLE.md ("Time and order", "Cash dividends", "Bonds")
and failed before the rule it checks was kept: a flood of orders held a split (and every action
queued behind it) forever; a record waited behind another issuer's payments and was taken late;
a dividend was cancelled after its record time; a cured coupon ran after the redemption and paid
nobody.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import corporate_actions, entitlements, schedule
from ledger.block import Event
from ledger.reasons import Reason
from tests.contracts_world import World, addr
from tests.test_corporate_actions import DAY_MS, bond_world, holders_world
from tests.test_offerings import run_block, run_until_idle


def _status(world: World, action_id: int) -> str:
    return corporate_actions.require_action(world.view(), action_id).status


def _dave_security(world: World, holdings: dict[str, int]) -> str:
    """dave, a second issuer, registers an equity and issues it to `holdings`."""
    out = world.ok("dave", "securities", "register", name="Dave SA", kind="equity", authorised_supply=10**6,
                   prospectus_hash=bytes(32), prospectus_uri="ipfs://d")
    isin = str(out.events[0].attrs["isin"])
    for name, units in holdings.items():
        world.ok("dave", "securities", "issue", isin=isin, to=addr(name), quantity=units)
    return isin


def _declare(world: World, issuer: str, isin: str, per_unit: int, record_ms: int, payment_ms: int) -> int:
    out = world.ok(issuer, "corporate_actions", "declare_dividend", isin=isin, currency="MXN",
                   per_unit_minor=per_unit, record_ms=record_ms, payment_ms=payment_ms)
    return int(out.events[-1].attrs["action_id"])


def _declare_split(world: World, isin: str, effective_ms: int) -> int:
    out = world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=2, ratio_from=1,
                   effective_ms=effective_ms)
    return int(out.events[-1].attrs["action_id"])


def _buy(world: World, trader: str, isin: str) -> Reason:
    return world.call(trader, "market", "place_order", isin=isin, currency="MXN", side="buy", quantity=1,
                      price=1).reason


def _propose(world: World, proposer: str, counterparty: str, isin: str) -> Reason:
    return world.call(proposer, "negotiated", "propose", counterparty=addr(counterparty), side="buy", isin=isin,
                      currency="MXN", quantity=1, price=1, expires_at_ms=world.time_ms + 10 * DAY_MS).reason


def _paid(events: list[Event], action_id: int) -> dict[str, int]:
    return {str(e.attrs["account"]): int(e.attrs["amount"]) for e in events
            if e.kind == "dividend_paid" and e.attrs["action_id"] == action_id}


# ---------------------------------------------------------------- F1: a split's withdrawal ends


def test_from_a_splits_first_step_no_order_is_taken_so_a_flood_cannot_hold_it_or_the_queue(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """LIFECYCLE.md "Hold": from the split's first withdrawal step new orders and proposals on
    the security are refused (ASSET_PAUSED), so its bounded withdrawal ends; other issuers'
    actions run on time meanwhile."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 2)
    world, isin, names = holders_world([10, 20])
    world.ok("operator", "market", "open_book", isin=isin, currency="MXN", tick_size=1, lot_size=1)
    isin2 = _dave_security(world, {"alice": 10})
    split_at = world.time_ms + 1000
    split = _declare_split(world, isin, split_at)
    other = _declare(world, "dave", isin2, 5, record_ms=split_at + 2000, payment_ms=split_at + 3000)
    for _ in range(5):  # more than a step's budget rests when the split is due
        assert _buy(world, "bob", isin) == Reason.OK
    run_block(world, split_at)
    assert _status(world, split) == "declared", "withdrawing: 2 of 5 orders per block"
    assert entitlements.held_by(world.view(), isin) is None, "balances are not held yet"
    assert _buy(world, "bob", isin) == Reason.ASSET_PAUSED
    assert _propose(world, "carol", names[0], isin) == Reason.ASSET_PAUSED
    world.ok(names[0], "securities", "transfer", isin=isin, to=addr(names[1]), quantity=1)  # only trading waits
    for _ in range(10):  # the flood goes on, refused, until the split has converted the units
        if _status(world, split) == "completed":
            break
        assert [_buy(world, "bob", isin) for _ in range(3)] == [Reason.ASSET_PAUSED] * 3
        run_block(world, world.time_ms + 1000)
    assert _status(world, split) == "completed"
    run_until_idle(world, split_at + 3000)
    assert _status(world, other) == "completed"
    assert world.bal("MXN", "bob").locked == 0
    assert _buy(world, "bob", isin) == Reason.OK, "in the new units trading goes on"


def test_a_withdrawal_step_cancels_at_most_its_budget_of_orders_and_proposals_together(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """LIFECYCLE.md "Bounded work per block": the proposals get what the orders left of the
    step's budget (a step that found orders resting leaves them none)."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 3)
    world, isin, names = holders_world([10, 20])
    world.ok("operator", "market", "open_book", isin=isin, currency="MXN", tick_size=1, lot_size=1)
    split = _declare_split(world, isin, world.time_ms + 1000)
    for _ in range(2):
        assert _buy(world, "bob", isin) == Reason.OK
    for _ in range(3):
        assert _propose(world, "carol", names[0], isin) == Reason.OK
    cancelled_per_block = []
    for _ in range(4):
        events = run_block(world, world.time_ms + 1000)
        cancelled_per_block.append(sum(e.kind in ("order_cancelled", "proposal_cancelled") for e in events))
    assert max(cancelled_per_block) <= 3, cancelled_per_block
    assert sum(cancelled_per_block) == 5
    assert _status(world, split) == "completed"
    assert world.bal("MXN", "bob").locked == 0 and world.bal("MXN", "carol").locked == 0


# ---------------------------------------------------------------- F2: a record is taken at its time


def _big_dividend_paying(monkeypatch: pytest.MonkeyPatch) -> tuple[World, str, str, int]:
    """The issuer's 5-holder dividend pays 1 holder per block from `start + DAY_MS`."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 1)
    world, isin, _ = holders_world([5, 5, 5, 5, 5])
    isin2 = _dave_security(world, {"alice": 10})
    start = world.time_ms
    _declare(world, "issuer", isin, 3, record_ms=start + DAY_MS, payment_ms=start + DAY_MS)
    return world, isin, isin2, start


def test_another_issuers_payments_never_delay_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """LIFECYCLE.md "Time and order": a transaction in a block at or after the record time comes
    after the record, even while another issuer's distribution still pays in chunks."""
    world, _, isin2, start = _big_dividend_paying(monkeypatch)
    other = _declare(world, "dave", isin2, 7, record_ms=start + DAY_MS + 1000, payment_ms=start + 3 * DAY_MS)
    run_block(world, start + DAY_MS)  # the big dividend records and starts paying, 1 holder a block
    run_block(world, start + DAY_MS + 2000)  # dave's record is due: taken, though the queue is busy
    assert _status(world, other) == "recorded"
    world.ok("alice", "securities", "transfer", isin=isin2, to=addr("bob"), quantity=10)
    events = run_until_idle(world, start + 3 * DAY_MS)
    assert _paid(events, other) == {addr("alice"): 70}


def test_one_assets_backlog_does_not_hide_another_issuers_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unfinished item with many due items of its asset behind it filled the 64 items a block
    looked at, so another asset's record, further on, ran late (and a transfer after its record
    time moved the entitlement). Items of a held-back lane are passed over without counting."""
    world, isin, isin2, start = _big_dividend_paying(monkeypatch)  # budget 1: the first pays for blocks
    for i in range(schedule.MAX_DUE_ITEMS_PER_BLOCK // 2):  # two due items each, all behind it
        _declare(world, "issuer", isin, 1, record_ms=start + DAY_MS + 100 + i, payment_ms=start + DAY_MS + 100 + i)
    other = _declare(world, "dave", isin2, 7, record_ms=start + DAY_MS + 1000, payment_ms=start + 3 * DAY_MS)
    run_block(world, start + DAY_MS)
    run_block(world, start + DAY_MS + 2000)  # dave's record is due: taken now
    world.ok("alice", "securities", "transfer", isin=isin2, to=addr("bob"), quantity=10)
    events = run_until_idle(world, start + 3 * DAY_MS, max_blocks=400)
    assert _paid(events, other) == {addr("alice"): 70}


def test_a_slow_split_holds_back_its_own_assets_record_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same-asset order is kept (a split's conversion before a later record on that asset, in
    the new units), while another asset's record is taken at its time."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 1)
    world, isin, names = holders_world([5, 5, 5, 5])
    isin2 = _dave_security(world, {"alice": 10})
    start = world.time_ms
    split = _declare_split(world, isin, start + DAY_MS)
    after_split = _declare(world, "issuer", isin, 1, record_ms=start + DAY_MS + 1000,
                           payment_ms=start + 2 * DAY_MS)
    other = _declare(world, "dave", isin2, 7, record_ms=start + DAY_MS + 1000, payment_ms=start + 2 * DAY_MS)
    run_block(world, start + DAY_MS)  # the split starts converting, 1 holder a block
    run_block(world, start + DAY_MS + 2000)
    assert _status(world, split) == "paying"
    assert _status(world, after_split) == "declared", "waits for the split of its own asset"
    assert _status(world, other) == "recorded", "another asset's record is not held back"
    world.ok("alice", "securities", "transfer", isin=isin2, to=addr("bob"), quantity=10)
    events = run_until_idle(world, start + 2 * DAY_MS)
    assert _status(world, split) == "completed"
    assert _paid(events, other) == {addr("alice"): 70}
    assert _paid(events, after_split) == {addr(n): 10 for n in names[1:]} | {addr(names[0]): 2010}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(budget=st.integers(1, 2),
       record_offsets=st.tuples(st.integers(1, 8), st.integers(1, 8)),
       pay_delays=st.tuples(st.integers(0, 3), st.integers(0, 3)),
       moves=st.lists(st.tuples(st.integers(1, 12), st.booleans(), st.integers(0, 5), st.integers(0, 5),
                                st.integers(1, 4)), max_size=12))
def test_each_dividend_pays_exactly_the_holders_at_its_record_time(
        monkeypatch: pytest.MonkeyPatch, budget: int, record_offsets: tuple[int, int],
        pay_delays: tuple[int, int], moves: list[tuple[int, bool, int, int, int]]) -> None:
    """Two issuers' dividends and transfers interleaved at random, payments a holder or two per
    block: each dividend pays every account its units after the last block before its record
    time (treasury units earn nothing)."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", budget)
    world, isin, names = holders_world([3, 0, 5, 2, 4, 1])
    isin2 = _dave_security(world, {names[1]: 4, names[2]: 6, names[3]: 1, names[5]: 3})
    step_ms, start = 1000, world.time_ms
    dividends = []
    for issuer, asset, offset, delay in zip(("issuer", "dave"), (isin, isin2), record_offsets, pay_delays,
                                            strict=True):
        record_ms = start + offset * step_ms
        action = _declare(world, issuer, asset, 3, record_ms=record_ms, payment_ms=record_ms + delay * step_ms)
        dividends.append((action, asset, record_ms))
    expected: dict[int, dict[str, int]] = {}
    events: list[Event] = []
    for tick in range(1, 15):
        time_ms = start + tick * step_ms
        for action, asset, record_ms in dividends:  # holdings after every block with a time < record_ms
            if action not in expected and record_ms <= time_ms:
                units = {addr(n): world.bal(asset, n).total for n in names}
                expected[action] = {a: u * 3 for a, u in units.items() if u}
        events += run_block(world, time_ms)
        for _, first_asset, sender, receiver, quantity in (m for m in moves if m[0] == tick):
            asset = isin if first_asset else isin2
            if sender != receiver and world.bal(asset, names[sender]).free >= quantity:
                world.ok(names[sender], "securities", "transfer", isin=asset, to=addr(names[receiver]),
                         quantity=quantity)
    events += run_until_idle(world, start + 20 * step_ms)
    for action, _, _ in dividends:
        assert _status(world, action) == "completed"
        assert _paid(events, action) == expected[action]


# ---------------------------------------------------------------- F3: no cancel after the record time


def test_a_dividend_or_split_past_its_record_time_cannot_be_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    """LIFECYCLE.md "Cash dividends": cancel by the issuer *before the record time* (a split:
    before its effective time), even while its step still waits in the queue."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 1)
    world, isin, _ = holders_world([5, 5, 5, 5])
    world.ok("operator", "market", "open_book", isin=isin, currency="MXN", tick_size=1, lot_size=1)
    start = world.time_ms
    split = _declare_split(world, isin, start + DAY_MS)
    dividend = _declare(world, "issuer", isin, 1, record_ms=start + DAY_MS + 1000, payment_ms=start + 2 * DAY_MS)
    for _ in range(3):
        assert _buy(world, "bob", isin) == Reason.OK
    run_block(world, start + DAY_MS)  # the split withdraws the orders, one per block
    assert _status(world, split) == "declared"
    world.refused(Reason.INVALID_STATE, "issuer", "corporate_actions", "cancel", action_id=split)
    run_block(world, start + DAY_MS + 2000)
    assert _status(world, dividend) == "declared", "its record waits for the split"
    locked = world.bal("MXN", "issuer").locked
    world.refused(Reason.INVALID_STATE, "issuer", "corporate_actions", "cancel", action_id=dividend)
    assert world.bal("MXN", "issuer").locked == locked
    run_until_idle(world, start + 2 * DAY_MS)
    assert (_status(world, split), _status(world, dividend)) == ("completed", "completed")


# ---------------------------------------------------------------- F4: coupons are cured before the redemption


def _defaulted_bond() -> tuple[World, str, list[str], int, int]:
    """A bond whose issuer had no cash: its first coupon and its redemption defaulted."""
    world, bond, names, dates = bond_world([5], coupons=2, rate_bps=1000, face=100_000)
    world.ok("issuer", "cash", "transfer", currency="MXN", to=addr("bob"), amount=1_000_000)
    events = run_until_idle(world, dates[-1])
    defaults = {(e.attrs["payment"], e.attrs["due_ms"]): int(e.attrs["action_id"]) for e in events
                if e.kind == "bond_defaulted"}
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10**8, deposit_ref="d")
    return world, bond, names, defaults[("coupon", dates[0])], defaults[("redemption", dates[-1])]


def test_coupons_are_cured_before_the_redemption_and_refused_after_it() -> None:
    """LIFECYCLE.md "Cure": a coupon cured before the redemption runs first and is paid; one
    cured after it would run after it and find no holder, so it is refused (INVALID_STATE) from
    the redemption's cure on, never "completed" paying nobody."""
    world, bond, names, coupon, redemption = _defaulted_bond()
    world.ok("operator", "market", "open_book", isin=bond, currency="MXN", tick_size=1, lot_size=1)
    assert _buy(world, "bob", bond) == Reason.OK, "a defaulted redemption leaves the bond tradable"
    world.ok("issuer", "corporate_actions", "cure_default", action_id=redemption)
    world.refused(Reason.INVALID_STATE, "issuer", "corporate_actions", "cure_default", action_id=coupon)
    run_until_idle(world, world.time_ms + 1)
    assert (_status(world, redemption), _status(world, coupon)) == ("completed", "defaulted")

    world, _, names, coupon, redemption = _defaulted_bond()
    before = world.bal("MXN", names[0]).total
    world.ok("issuer", "corporate_actions", "cure_default", action_id=coupon)
    world.ok("issuer", "corporate_actions", "cure_default", action_id=redemption)
    events = run_until_idle(world, world.time_ms + 1)
    [completed] = [e for e in events if e.kind == "coupon_completed" and e.attrs["action_id"] == coupon]
    coupon_minor = 5 * 100_000 * 1000 * 182 * DAY_MS // (10_000 * corporate_actions.YEAR_MS)
    assert completed.attrs["paid_minor"] == coupon_minor
    assert world.bal("MXN", names[0]).total == before + coupon_minor + 5 * 100_000
