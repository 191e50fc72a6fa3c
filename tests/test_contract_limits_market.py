"""The venue and offerings at their limits: statistics that cannot outgrow the codec, no order
in old units during a split's conversion, and an issuer's own problem failing its offering.

Each test is a defect a review found; docs/MARKET.md (the venue) and docs/LIFECYCLE.md (offerings)
say what was decided.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import corporate_actions, entitlements, market, offerings
from contracts.base import MAX_AMOUNT
from contracts.market_data import day_of
from ledger.codec import MAX_INT
from ledger.reasons import Reason
from tests.contracts_world import ExecWorld, addr, key
from tests.test_corporate_actions import DAY_MS, holders_world
from tests.test_offerings import MINUTE_MS, offering_world, open_offering, run_block, run_until_idle

# ---------------------------------------------------------------- market statistics


def test_wash_trades_saturate_the_day_bar_and_every_trade_still_settles(tmp_path: Path) -> None:
    """Each trade of 2**62 units at price 1 is within every bound; the day's volume and
    turnover passed 2**64 - 1 at the fourth and the block could not be applied on any node."""
    units = 2**62
    trades = 6
    assert trades * units > MAX_INT

    chain = ExecWorld.with_investors(tmp_path / "ledger", "alice", "bob")
    try:
        reg = chain.submit([key("issuer")], "securities", "register", name="Co", kind="equity",
                           authorised_supply=MAX_AMOUNT, prospectus_hash=bytes(32), prospectus_uri="u")
        isin = reg.events[0].attrs["isin"]
        assert chain.submit([key("issuer")], "securities", "issue", isin=isin, to=addr("alice"),
                            quantity=units).valid
        assert chain.submit([key("bank")], "cash", "mint", currency="MXN", to=addr("bob"), amount=units,
                            deposit_ref="d").valid
        assert chain.submit([key("operator")], "market", "open_book", isin=isin, currency="MXN", tick_size=1,
                            lot_size=1).valid
        holder, other = "alice", "bob"  # the holder has the units, the other the cash
        for _ in range(trades):  # one block a second: all in one UTC day
            resting = chain.submit([key(other)], "market", "place_order", isin=isin, currency="MXN", side="buy",
                                   quantity=units, price=1)
            taking = chain.submit([key(holder)], "market", "place_order", isin=isin, currency="MXN",
                                  side="sell", quantity=units, price=1)
            assert resting.reason == Reason.OK and taking.reason == Reason.OK, (resting, taking)
            assert [e.kind for e in taking.events].count("trade") == 1
            holder, other = other, holder
        view = chain.view()
        day = day_of(chain.time_ms)
        [bar] = market.daily_bars(view, isin, "MXN", day, day)
        assert (bar.volume, bar.turnover, bar.trades) == (MAX_INT, MAX_INT, trades)  # saturated
        assert (bar.open, bar.high, bar.low, bar.close) == (1, 1, 1, 1)
        assert market.last_price(view, isin, "MXN") == 1
        assert [t.quantity for t in market.trades(view, isin, "MXN", 10)] == [units] * trades
    finally:
        chain.close()


# ---------------------------------------------------------------- a split's conversion hold


def test_no_order_or_proposal_is_taken_while_a_split_converts_the_security(monkeypatch: pytest.MonkeyPatch) -> None:
    """A buy locks only cash, so the hold's balance hook never refused it: it rested through the
    split, priced and sized in units that no longer existed (docs/LIFECYCLE.md)."""
    monkeypatch.setattr(corporate_actions, "MAX_PAYMENTS_PER_BLOCK", 2)  # convert over several blocks
    world, isin, names = holders_world([3, 4, 5, 6, 7])
    world.ok("operator", "market", "open_book", isin=isin, currency="MXN", tick_size=1, lot_size=1)
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=10, ratio_from=1,
             effective_ms=world.time_ms + DAY_MS)
    run_block(world, world.time_ms + DAY_MS)
    assert entitlements.held_by(world.view(), isin) is not None, "the conversion is under way"
    expires = world.time_ms + DAY_MS
    for side, trader in (("buy", "bob"), ("sell", names[1])):
        world.refused(Reason.ASSET_PAUSED, trader, "market", "place_order", isin=isin, currency="MXN", side=side,
                      quantity=5, price=1000)
    for side, trader in (("buy", "carol"), ("sell", names[2])):
        world.refused(Reason.ASSET_PAUSED, trader, "negotiated", "propose", counterparty=addr(names[3]), side=side,
                      isin=isin, currency="MXN", quantity=5, price=1000, expires_at_ms=expires)
    run_until_idle(world, world.time_ms)
    assert entitlements.held_by(world.view(), isin) is None, "the split is done"
    assert market.open_orders(world.view(), addr("bob")) == []
    assert world.bal("MXN", "bob").locked == 0 and world.bal("MXN", "carol").locked == 0
    # In the new units, trading goes on.
    world.ok("bob", "market", "place_order", isin=isin, currency="MXN", side="buy", quantity=5, price=100)


# ---------------------------------------------------------------- offerings


def test_an_issuer_whose_cash_is_frozen_fails_its_offering_and_every_subscriber_is_refunded() -> None:
    """The eligibility pre-check counted the issuer's freeze against every investor, so the
    offering ended undersubscribed with no reason instead of failed (docs/LIFECYCLE.md)."""
    world, isin, names = offering_world()
    oid = open_offering(world, isin)
    for name in names:
        world.ok(name, "offerings", "subscribe", offering_id=oid, units=20)
    world.ok("regulator", "compliance", "freeze", account=addr("issuer"), reason="aml", asset="MXN")
    events = run_until_idle(world, world.time_ms + MINUTE_MS)
    assert offerings.require_offering(world.view(), oid).status == offerings.FAILED
    [failed] = [e for e in events if e.kind == "offering_failed"]
    assert failed.attrs["reason"] == str(Reason.ACCOUNT_FROZEN)
    for name in names:
        assert world.bal("MXN", name).locked == 0 and world.bal("MXN", name).free == 1_000_000
        assert world.bal(isin, name).total == 0


def test_a_subscription_whose_cost_exceeds_the_largest_amount_is_refused_as_such() -> None:
    world, isin, _names = offering_world()
    oid = open_offering(world, isin, price_minor=2, max_units=10, max_per_investor=MAX_AMOUNT)
    world.refused(Reason.INVALID_AMOUNT, "inv0", "offerings", "subscribe", offering_id=oid, units=2**62)
    world.ok("inv0", "offerings", "subscribe", offering_id=oid, units=10)
