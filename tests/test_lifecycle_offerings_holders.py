"""An offering outliving its bond or its unit, and a split's fractions in the issuer's treasury.

docs/LIFECYCLE.md (primary offerings: the opening's bond rule, the close's failed outcomes;
splits: the fractions go to the treasury) and docs/CONTRACTS.md (who may hold what: the issuer's
treasury counts towards no maximum of holders and needs no investor role).
"""

from __future__ import annotations

import pytest

from contracts import balances, offerings, queries, securities
from ledger.block import Event
from ledger.reasons import Reason
from tests.contracts_world import World, addr, market
from tests.test_corporate_actions import DAY_MS, bond_world, holders_world
from tests.test_offerings import run_block, run_until_idle

FACE = 100_000


def _offer(world: World, isin: str, closes_ms: int, price_minor: int = 10, max_units: int = 50) -> int:
    out = world.ok("issuer", "offerings", "open_offering", isin=isin, currency="MXN", price_minor=price_minor,
                   min_units=1, max_units=max_units, min_per_investor=1, max_per_investor=max_units,
                   opens_ms=world.time_ms, closes_ms=closes_ms)
    return int(out.events[0].attrs["offering_id"])


def _ends(events: list[Event], offering_id: int) -> list[Event]:
    return [e for e in events if e.kind.startswith("offering_") and e.kind != "offering_allocation"
            and e.attrs["offering_id"] == offering_id]


# ---------------------------------------------------------------- F5: a bond's offering and its maturity


def _funded_bond() -> tuple[World, str, list[str], int]:
    world, bond, names, dates = bond_world([1], coupons=1, rate_bps=0, face=FACE)
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10**7, deposit_ref="d")
    return world, bond, names, dates[-1]


def test_a_bond_offering_closes_by_maturity_and_one_closing_at_it_sells_before_the_redemption() -> None:
    world, bond, _, maturity = _funded_bond()
    world.refused(Reason.BAD_ARGUMENTS, "issuer", "offerings", "open_offering", isin=bond, currency="MXN",
                  price_minor=90_000, min_units=1, max_units=10, min_per_investor=1, max_per_investor=10,
                  opens_ms=world.time_ms, closes_ms=maturity + 1)
    offering_id = _offer(world, bond, maturity, price_minor=90_000, max_units=10)
    world.ok("carol", "offerings", "subscribe", offering_id=offering_id, units=10)
    events = run_until_idle(world, maturity)
    kinds = [e.kind for e in events]
    assert kinds.index("offering_settled") < kinds.index("redemption_completed"), "offerings run first"
    assert world.bal(bond, "carol").total == 0, "the bonds sold at maturity are redeemed with the rest"
    assert world.bal("MXN", "carol").total == 1_000_000 - 10 * 90_000 + 10 * FACE


def test_an_offering_close_delayed_past_the_redemption_fails_and_refunds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(offerings, "MAX_SETTLEMENTS_PER_BLOCK", 2)  # one close of one investor per block
    world, bond, _, maturity = _funded_bond()
    first = _offer(world, bond, maturity, price_minor=90_000, max_units=10)
    late = _offer(world, bond, maturity, price_minor=90_000, max_units=10)
    world.ok("alice", "offerings", "subscribe", offering_id=first, units=1)
    world.ok("carol", "offerings", "subscribe", offering_id=late, units=10)
    events = run_block(world, maturity)  # the first close, then the whole redemption
    assert "redemption_completed" in [e.kind for e in events] and not _ends(events, late)
    events = run_until_idle(world, world.time_ms)
    (end,) = _ends(events, late)
    assert end.kind == "offering_failed" and end.attrs["reason"] == str(Reason.INVALID_STATE)
    assert "redeemed" in str(end.attrs["detail"])
    assert world.bal(bond, "carol").total == 0
    assert world.bal("MXN", "carol") == balances.Balance(1_000_000, 0), "every unit of cash released"
    issued, retired = balances.supply(world.view(), bond)
    assert issued == retired, "no bond outstanding that nothing will redeem"


def test_a_redeemed_bond_is_never_issued_again() -> None:
    world, bond, _, maturity = _funded_bond()
    assert "redemption_completed" in [e.kind for e in run_until_idle(world, maturity)]
    world.refused(Reason.INVALID_STATE, "issuer", "securities", "issue", isin=bond, to=addr("carol"), quantity=1)


# ---------------------------------------------------------------- F6: an offering across a change of unit


@pytest.mark.parametrize(("ratio_to", "ratio_from"), [(2, 1), (1, 2)])
def test_an_offering_whose_unit_a_split_changed_fails_at_its_close_and_refunds_everyone(
        monkeypatch: pytest.MonkeyPatch, ratio_to: int, ratio_from: int) -> None:
    world, isin, names = holders_world([4, 4, 4])
    closes_ms = world.time_ms + 2 * DAY_MS
    offering_id = _offer(world, isin, closes_ms)
    world.ok("carol", "offerings", "subscribe", offering_id=offering_id, units=50)
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=ratio_to, ratio_from=ratio_from,
             effective_ms=world.time_ms + DAY_MS)
    run_until_idle(world, world.time_ms + DAY_MS)
    assert [world.bal(isin, n).total for n in names] == [u * ratio_to // ratio_from for u in (1004, 4, 4)]
    # its terms are in the old unit: no more subscriptions, and the close sells nothing
    world.refused(Reason.INVALID_STATE, "bob", "offerings", "subscribe", offering_id=offering_id, units=5)
    (end,) = _ends(run_until_idle(world, closes_ms), offering_id)
    assert end.kind == "offering_failed" and end.attrs["reason"] == str(Reason.INVALID_STATE)
    assert "split" in str(end.attrs["detail"])
    assert world.bal(isin, "carol").total == 0
    assert world.bal("MXN", "carol") == balances.Balance(1_000_000, 0)
    # an offering opened in the new unit sells in it; a regulator's pause and resume change no unit
    second = _offer(world, isin, world.time_ms + DAY_MS)
    world.ok("carol", "offerings", "subscribe", offering_id=second, units=50)
    world.ok("regulator", "compliance", "pause", isin=isin, reason="r")
    world.ok("regulator", "compliance", "resume", isin=isin, reason="r")
    (end,) = _ends(run_until_idle(world, world.time_ms + DAY_MS), second)
    assert end.kind == "offering_settled"
    assert world.bal(isin, "carol").total == 50


# ---------------------------------------------------------------- F7: a split's fractions and max_holders


def _split_to_fractions(max_holders: int = 2) -> tuple[World, str]:
    """alice and bob hold; a 1-for-3 reverse split leaves the issuer 1 unit of fractions."""
    world, isin = market(max_holders=max_holders)  # alice holds 1000
    world.ok("issuer", "securities", "issue", isin=isin, to=addr("bob"), quantity=11)
    world.ok("issuer", "corporate_actions", "declare_split", isin=isin, ratio_to=1, ratio_from=3,
             effective_ms=world.time_ms + 1)
    run_until_idle(world, world.time_ms + 1)
    assert [world.bal(isin, n).total for n in ("alice", "bob", "issuer")] == [333, 3, 1]  # fractions -> issuer
    return world, isin


def test_the_issuers_fractions_count_towards_no_maximum_and_a_full_sale_still_goes_through() -> None:
    world, isin = _split_to_fractions()
    world.ok("alice", "securities", "transfer", isin=isin, to=addr("carol"), quantity=333)
    view = world.view()
    instrument = securities.require_instrument(view, isin)
    assert securities.counted_holders(view, instrument) == 2 == instrument.max_holders
    table = queries.cap_table(view, isin)
    assert table is not None and table.holder_count == len(table.holders) == 3, "the cap table lists the treasury"
    # the treasury frees no counted slot: handing all of it to a third holder is still refused
    world.refused(Reason.MAX_HOLDERS_REACHED, "issuer", "securities", "transfer", isin=isin, to=addr("alice"),
                  quantity=1)
    world.refused(Reason.MAX_HOLDERS_REACHED, "regulator", "compliance", "forced_transfer", asset=isin,
                  source=addr("issuer"), target=addr("alice"), quantity=1, reason="r")
    world.ok("issuer", "securities", "transfer", isin=isin, to=addr("bob"), quantity=1)


def test_the_venue_counts_holders_as_a_transfer_does_after_a_split() -> None:
    world, isin = _split_to_fractions(max_holders=3)  # two holders and the treasury: room for one
    world.ok("operator", "market", "open_book", isin=isin, currency="MXN", tick_size=1, lot_size=1)
    world.ok("carol", "market", "place_order", isin=isin, currency="MXN", side="buy", quantity=5, price=5)
    world.ok("alice", "market", "place_order", isin=isin, currency="MXN", side="sell", quantity=5, price=5)
    assert (world.bal(isin, "alice").total, world.bal(isin, "carol").total) == (328, 5), "the fill settled"
