"""The venue's fast paths against the generic code they replaced: same outcomes, same state.

Part of tests/. matching settles a fill through settlement.settle_fill, which skips the rules
the taker's entry checks and the maker eligibility check already decided for the transaction,
and orderbook finds the next best level by probing nearby ticks before scanning. Here one flow
of orders, cancels, freezes (whole account, per asset, partial), suspensions, role and
qualification changes, halts, pauses, holder limits, tampered locks and passing time runs
twice: as shipped, and with settle_fill replaced by settle_legs of the two legs (the code
before) and the probe off. Every outcome (reason code, detail, events) and the final state
must be identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import balances, orderbook, settlement
from ledger.reasons import ContractError, Reason
from tests.market_world import CURRENCY, World, key

TICK = 5
LOT = 10
INVESTORS = 4
NEWCOMERS = 2  # admitted with cash and no shares: new holders under a holder limit
CASH_EACH = 500_000
SHARES_EACH = 300
FREEZE_SCOPES = ("whole", "isin", "currency")


def _generic_fill(ctx: Any, terms: settlement.FillTerms, seller: str, buyer: str, quantity: int, amount: int,
                  maker_sells: bool) -> None:
    """What matching._fill did before settle_fill: both legs under every rule of their asset."""
    settlement.settle_legs(ctx, [settlement.Leg(terms.isin, seller, buyer, quantity, maker_sells),
                                 settlement.Leg(terms.currency, buyer, seller, amount, not maker_sells)])


@contextmanager
def _generic_paths() -> Iterator[None]:
    saved = settlement.settle_fill, orderbook.MAX_BEST_PROBES
    settlement.settle_fill, orderbook.MAX_BEST_PROBES = _generic_fill, 0
    try:
        yield
    finally:
        settlement.settle_fill, orderbook.MAX_BEST_PROBES = saved


class Venue:
    """A World with newcomers, and the flow's actions as calls; records every outcome."""

    def __init__(self, max_holders: int | None, qualified_only: bool) -> None:
        self.world = World(INVESTORS, cash_each=CASH_EACH, shares_each=SHARES_EACH, tick_size=TICK, lot_size=LOT,
                           max_holders=max_holders, qualified_only=qualified_only)
        world = self.world
        self.traders = list(world.investors)
        for i in range(NEWCOMERS):
            address = key(f"newcomer/{i}").address
            world.must(world.operator, "participants", "admit", address=address, name=f"n{i}", roles=["investor"],
                       kyc_hash=bytes(32), qualified=i == 0)
            world.must(world.agent, "cash", "mint", currency=CURRENCY, to=address, amount=CASH_EACH,
                       deposit_ref="opening")
            self.traders.append(address)
        self.outcomes: list[tuple[Any, ...]] = []

    def run(self, action: tuple[Any, ...]) -> None:
        world = self.world
        kind, who = action[0], self.traders[action[1] % len(self.traders)]
        if kind == "order":
            _, _, side, lots, ticks, tif = action
            extra = {"time_in_force": tif} if tif != "gtt" else {"time_in_force": "gtt",
                                                                  "expires_at_ms": world.time_ms + 2_000}
            done = world.order(who, side, lots * LOT, 100 + ticks * TICK, **extra)
        elif kind == "off_tick":
            done = world.order(who, action[2], LOT + action[3], 101)
        elif kind == "cancel":
            ctx = world.query_ctx()
            mine = list(orderbook.account_orders(ctx, who, 50))
            if not mine:
                return
            done = world.call(who, "market", "cancel_order", order_id=mine[action[2] % len(mine)].order_id)
        elif kind == "tamper":
            self.outcomes.append((action, self._tamper(who, action[2], action[3])))
            return
        elif kind == "block":
            try:  # expiring an order whose lock was tampered with fails, as the executor would report
                events = world.begin_block(world.time_ms + action[2] * 1_000)
            except ContractError as exc:
                self.outcomes.append((action, exc.reason, exc.detail, []))
                return
            self.outcomes.append((action, Reason.OK, "", [e.to_wire() for e in events]))
            return
        else:
            done = self._control(kind, who, action)
        self.outcomes.append((action, done.reason, done.detail, [e.to_wire() for e in done.events]))

    def _control(self, kind: str, who: str, action: tuple[Any, ...]) -> Any:
        world = self.world
        if kind in ("freeze", "unfreeze"):
            scope = action[2]
            args: dict[str, Any] = {"account": who, "reason": "test"}
            if scope != "whole":
                args["asset"] = world.isin if scope == "isin" else CURRENCY
            if kind == "freeze" and scope != "whole" and action[3]:
                args["amount"] = action[3]
            return world.call(world.regulator, "compliance", kind, **args)
        if kind in ("suspend", "reinstate"):
            return world.call(world.operator, "participants", kind, address=who, reason="test")
        if kind == "update":
            roles = ["investor"] if action[2] else ["issuer"]
            return world.call(world.operator, "participants", "update", address=who, roles=roles,
                              qualified=action[3] > 0)
        if kind in ("halt_trading", "resume_trading"):
            return world.call(world.regulator, "market", kind, isin=world.isin, reason="test")
        assert kind in ("pause", "resume")
        return world.call(world.regulator, "compliance", kind, isin=world.isin, reason="test")

    def _tamper(self, who: str, asset_pick: int, units: int) -> int:
        """Take units out of a locked balance behind the contracts' back: a fill that needs them
        must be refused (INSUFFICIENT_LOCKED_BALANCE) the same way on both paths."""
        world = self.world
        asset = world.isin if asset_pick else CURRENCY
        held = world.balance(asset, who)
        taken = min(units, held.locked)
        ctx = world.query_ctx()
        if taken:
            ctx.put(balances.balance_key(asset, who), [held.free, held.locked - taken])
        return taken


def _replay(actions: list[tuple[Any, ...]], max_holders: int | None,
            qualified_only: bool) -> tuple[list[tuple[Any, ...]], dict[bytes, bytes | None]]:
    venue = Venue(max_holders, qualified_only)
    for action in actions:
        venue.run(action)
    return venue.outcomes, dict(venue.world.state.writes)


def assert_same_on_both_paths(actions: list[tuple[Any, ...]], max_holders: int | None = None,
                              qualified_only: bool = False) -> list[tuple[Any, ...]]:
    fast = _replay(actions, max_holders, qualified_only)
    with _generic_paths():
        generic = _replay(actions, max_holders, qualified_only)
    for got, want in zip(fast[0], generic[0], strict=True):
        assert got == want
    assert fast[1] == generic[1]
    return fast[0]


trader = st.integers(0, INVESTORS + NEWCOMERS - 1)
order = st.tuples(st.just("order"), trader, st.sampled_from(["buy", "sell"]), st.integers(1, 4), st.integers(2, 6),
                  st.sampled_from(["gtc", "gtc", "gtt", "ioc", "fok"]))
controls = st.one_of(
    st.tuples(st.just("off_tick"), trader, st.sampled_from(["buy", "sell"]), st.integers(0, 3)),
    st.tuples(st.just("cancel"), trader, st.integers(0, 50)),
    st.tuples(st.sampled_from(["freeze", "unfreeze", "unfreeze"]), trader, st.sampled_from(FREEZE_SCOPES),
              st.sampled_from([0, 0, 10, 295, 100_000, 499_000])),
    st.tuples(st.sampled_from(["suspend", "reinstate", "reinstate"]), trader),
    st.tuples(st.just("update"), trader, st.booleans(), st.integers(0, 2)),
    st.tuples(st.sampled_from(["halt_trading", "resume_trading", "resume_trading", "pause", "resume", "resume"]),
              trader),
    st.tuples(st.just("tamper"), trader, st.integers(0, 1), st.sampled_from([1, 10, 10_000])),
    st.tuples(st.just("block"), trader, st.integers(0, 3)),
)
# Mostly orders, so that controls land between orders resting and orders crossing them.
actions = st.integers(0, 9).flatmap(lambda roll: order if roll < 8 else controls)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=st.lists(actions, min_size=10, max_size=40),
       flavour=st.sampled_from([(None, False), (5, False), (None, True)]))
def test_random_flows_end_identically_on_both_paths(flow: list[tuple[Any, ...]],
                                                     flavour: tuple[int | None, bool]) -> None:
    assert_same_on_both_paths(flow, *flavour)


maker_orders = st.lists(st.tuples(st.just("order"), st.just(0), st.sampled_from(["buy", "sell"]), st.integers(1, 3),
                                  st.integers(3, 5), st.just("gtc")), min_size=1, max_size=3)
on_parties = st.one_of(
    st.tuples(st.just("freeze"), st.integers(0, 1), st.sampled_from(FREEZE_SCOPES), st.sampled_from([0, 0, 295])),
    st.tuples(st.sampled_from(["suspend", "update", "block"]), st.integers(0, 1), st.booleans(), st.integers(0, 2)),
    st.tuples(st.just("tamper"), st.just(0), st.integers(0, 1), st.sampled_from([1, 10])),
)
# Each taker sends a buy above and a sell below every resting price: both cross whatever rests.
takers = st.lists(st.tuples(st.integers(1, INVESTORS + NEWCOMERS - 1), st.integers(1, 6),
                            st.sampled_from(["ioc", "fok", "gtc"])), min_size=1, max_size=2).map(
    lambda found: [("order", who, side, lots, ticks, tif) for who, lots, tif in found
                   for side, ticks in (("buy", 6), ("sell", 2))])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resting=maker_orders, controls=st.lists(on_parties, min_size=1, max_size=3), crossing=takers,
       flavour=st.sampled_from([(None, False), (5, False), (None, True)]))
def test_whatever_happens_between_resting_and_crossing_ends_identically(
        resting: list[tuple[Any, ...]], controls: list[tuple[Any, ...]], crossing: list[tuple[Any, ...]],
        flavour: tuple[int | None, bool]) -> None:
    """The window the flat path relies on: a maker's order rests, then the maker (trader 0) or
    the first taker is frozen, suspended, re-roled, its locks tampered with, or time passes,
    then takers cross."""
    assert_same_on_both_paths(resting + controls + crossing, *flavour)


def _reasons(outcomes: list[tuple[Any, ...]]) -> list[Reason]:
    return [outcome[1] for outcome in outcomes]


def _whys(outcomes: list[tuple[Any, ...]]) -> list[str]:
    return [event[1].get("why", "") for outcome in outcomes for event in outcome[3]]


REST_SELL = ("order", 0, "sell", 2, 4, "gtc")
REST_BUY = ("order", 0, "buy", 2, 4, "gtc")
TAKE_BUY = ("order", 1, "buy", 2, 4, "ioc")
TAKE_SELL = ("order", 1, "sell", 2, 4, "ioc")


@pytest.mark.parametrize("control", [("freeze", 0, "whole", 0), ("freeze", 0, "isin", 0),
                                     ("freeze", 0, "currency", 0), ("suspend", 0)])
@pytest.mark.parametrize("resting, taking", [(REST_SELL, TAKE_BUY), (REST_BUY, TAKE_SELL)])
def test_a_maker_frozen_or_suspended_after_resting_is_cancelled_on_both_paths(
        control: tuple[Any, ...], resting: tuple[Any, ...], taking: tuple[Any, ...]) -> None:
    outcomes = assert_same_on_both_paths([resting, control, taking])
    assert _reasons(outcomes) == [Reason.OK] * 3
    assert "maker_ineligible" in _whys(outcomes)


@pytest.mark.parametrize("control, refused", [
    (("freeze", 1, "whole", 0), Reason.ACCOUNT_FROZEN),
    (("freeze", 1, "currency", 499_000), Reason.ACCOUNT_FROZEN),  # a partial freeze of the taker's cash
    (("suspend", 1), Reason.PARTICIPANT_SUSPENDED),
    (("halt_trading", 0), Reason.TRADING_HALTED),
    (("pause", 0), Reason.ASSET_PAUSED),
])
def test_a_taker_refused_at_entry_is_refused_alike(control: tuple[Any, ...], refused: Reason) -> None:
    outcomes = assert_same_on_both_paths([REST_SELL, control, TAKE_BUY])
    assert _reasons(outcomes) == [Reason.OK, Reason.OK, refused]


def test_off_tick_and_off_lot_orders_are_refused_alike() -> None:
    outcomes = assert_same_on_both_paths([REST_SELL, ("off_tick", 1, "buy", 0), ("off_tick", 1, "buy", 3)])
    assert _reasons(outcomes)[1:] == [Reason.OFF_TICK, Reason.OFF_TICK]


@pytest.mark.parametrize("resting, taking, asset_pick", [(REST_SELL, TAKE_BUY, 1), (REST_BUY, TAKE_SELL, 0)])
def test_insufficient_locks_refuse_the_fill_with_the_same_leg_and_detail(
        resting: tuple[Any, ...], taking: tuple[Any, ...], asset_pick: int) -> None:
    outcomes = assert_same_on_both_paths([resting, ("tamper", 0, asset_pick, 1), taking])
    assert outcomes[-1][1] == Reason.INSUFFICIENT_LOCKED_BALANCE
    assert outcomes[-1][2].startswith("leg 0: " if asset_pick else "leg 1: ")


def test_a_holder_limit_cancels_the_resting_buyer_it_shuts_out_on_both_paths() -> None:
    # Four holders under a limit of five; newcomer 0 (trader 4) rests a buy, newcomer 1 (trader
    # 5) buys first and becomes the fifth holder, so the resting newcomer would be a sixth.
    flow = [("order", 4, "buy", 1, 4, "gtc"), ("order", 5, "buy", 1, 6, "gtc"),
            ("order", 0, "sell", 1, 6, "ioc"), ("order", 1, "sell", 1, 4, "ioc")]
    outcomes = assert_same_on_both_paths(flow, max_holders=5)
    assert _reasons(outcomes) == [Reason.OK] * 4
    assert "maker_ineligible" in _whys(outcomes)
