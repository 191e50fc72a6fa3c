"""Primary offerings: subscriptions lock cash, the ledger closes on block time, allocation rules."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import balances, offerings, participants
from contracts.base import BlockContext, Context
from contracts.offerings import Subscription, allocate
from ledger.block import Event
from ledger.reasons import Reason
from ledger.state import Overlay
from tests.contracts_world import CHAIN_ID, World, addr, market

MINUTE_MS = 60_000


def run_block(world: World, time_ms: int) -> list[Event]:
    """Advance block time and run every contract's begin_block as the executor does (an escaping
    ContractError is a test failure here: our hooks handle their own failures)."""
    world.time_ms = max(world.time_ms, time_ms)
    world.height += 1
    events: list[Event] = []
    for contract in world.registry.in_order():
        if contract.begin_block is None:
            continue
        overlay = Overlay(world.state)
        ctx = Context(overlay, BlockContext(CHAIN_ID, world.height, world.time_ms), None, ())
        contract.begin_block(ctx)
        overlay.merge_into(world.state)
        events.extend(ctx.events)
    return events


def run_until_idle(world: World, time_ms: int, max_blocks: int = 100) -> list[Event]:
    """Blocks at `time_ms` until no scheduled work is due (bounded)."""
    events = run_block(world, time_ms)
    for _ in range(max_blocks):
        due = [c.next_due_ms(world.view()) for c in world.registry.in_order() if c.next_due_ms is not None]
        if not any(d is not None and d <= world.time_ms for d in due):
            return events
        events += run_block(world, world.time_ms)
    raise AssertionError(f"scheduled work still due after {max_blocks} blocks")


def offering_world(investors: int = 3, **rules: object) -> tuple[World, str, list[str]]:
    """market() plus investors inv0.. each holding 1_000_000 MXN."""
    world, isin = market(**rules)
    names = [f"inv{i}" for i in range(investors)]
    for name in names:
        world.admit(name, participants.INVESTOR)
        world.ok("bank", "cash", "mint", currency="MXN", to=addr(name), amount=1_000_000, deposit_ref="d")
    return world, isin, names


def open_offering(world: World, isin: str, **overrides: int) -> int:
    args = {"isin": isin, "currency": "MXN", "price_minor": 100, "min_units": 10, "max_units": 100,
            "min_per_investor": 1, "max_per_investor": 100, "opens_ms": world.time_ms,
            "closes_ms": world.time_ms + MINUTE_MS}
    args.update(overrides)
    out = world.ok("issuer", "offerings", "open_offering", **args)
    return int(out.events[0].attrs["offering_id"])


def conserved(world: World, assets: list[str], names: list[str]) -> dict[str, int]:
    """Sum of balances over the given holders per asset (all holders, in these tests)."""
    return {a: sum(world.bal(a, n).total for n in names) for a in assets}


# ---------------------------------------------------------------- examples


def test_undersubscribed_offering_sells_nothing_and_releases_all_cash() -> None:
    world, isin, _names = offering_world()
    oid = open_offering(world, isin, min_units=50)
    world.ok("inv0", "offerings", "subscribe", offering_id=oid, units=20)
    assert world.bal("MXN", "inv0").locked == 2000
    events = run_until_idle(world, world.time_ms + MINUTE_MS)
    assert "offering_undersubscribed" in [e.kind for e in events]
    assert world.bal("MXN", "inv0") == balances.Balance(1_000_000, 0)
    assert world.bal(isin, "inv0").total == 0
    assert offerings.require_offering(world.view(), oid).status == offerings.UNDERSUBSCRIBED


def test_fully_subscribed_offering_settles_dvp_at_the_close_and_refunds_nothing() -> None:
    world, isin, _names = offering_world()
    oid = open_offering(world, isin)
    world.ok("inv0", "offerings", "subscribe", offering_id=oid, units=30)
    world.ok("inv1", "offerings", "subscribe", offering_id=oid, units=20)
    issuer_cash = world.bal("MXN", "issuer").total
    run_until_idle(world, world.time_ms + MINUTE_MS - 1)
    assert world.bal(isin, "inv0").total == 0, "nothing happens before the window ends"
    events = run_until_idle(world, world.time_ms + 1)
    receipts = {e.attrs["investor"]: e.attrs["allocated_units"] for e in events if e.kind == "offering_allocation"}
    assert receipts == {addr("inv0"): 30, addr("inv1"): 20}
    assert world.bal(isin, "inv0").total == 30 and world.bal(isin, "inv1").total == 20
    assert world.bal("MXN", "inv0") == balances.Balance(1_000_000 - 3000, 0)
    assert world.bal("MXN", "issuer").total == issuer_cash + 5000


def test_oversubscribed_offering_allocates_pro_rata_with_largest_remainder() -> None:
    world, isin, names = offering_world()
    oid = open_offering(world, isin, max_units=10)
    for name, units in (("inv0", 10), ("inv1", 10), ("inv2", 10)):
        world.ok(name, "offerings", "subscribe", offering_id=oid, units=units)
    run_until_idle(world, world.time_ms + MINUTE_MS)
    got = [world.bal(isin, n).total for n in names]
    # 3.33 each: 3 + 3 + 3, and the one unit left goes to the earliest subscriber.
    assert got == [4, 3, 3]
    assert [world.bal("MXN", n) for n in names] == [balances.Balance(1_000_000 - 100 * g, 0) for g in got]


def test_issuer_cancels_before_the_close_and_every_subscriber_is_refunded() -> None:
    world, isin, _names = offering_world()
    oid = open_offering(world, isin)
    world.ok("inv0", "offerings", "subscribe", offering_id=oid, units=30)
    world.refused(Reason.UNAUTHORIZED, "inv0", "offerings", "cancel_offering", offering_id=oid)
    world.ok("issuer", "offerings", "cancel_offering", offering_id=oid)
    assert world.bal("MXN", "inv0") == balances.Balance(1_000_000, 0)
    run_until_idle(world, world.time_ms + MINUTE_MS)
    assert world.bal(isin, "inv0").total == 0
    world.refused(Reason.INVALID_STATE, "inv1", "offerings", "subscribe", offering_id=oid, units=5)


def test_subscriptions_are_refused_outside_the_rules() -> None:
    world, _, _names = offering_world()
    isin = world.register_equity(qualified_only=True)
    oid = open_offering(world, isin, min_per_investor=5, max_per_investor=20)
    world.refused(Reason.QUALIFIED_ONLY, "inv0", "offerings", "subscribe", offering_id=oid, units=10)
    world.refused(Reason.RECEIVER_NOT_ELIGIBLE, "dave", "offerings", "subscribe", offering_id=oid, units=10)
    world.refused(Reason.INVALID_AMOUNT, "carol", "offerings", "subscribe", offering_id=oid, units=4)
    world.refused(Reason.INVALID_AMOUNT, "carol", "offerings", "subscribe", offering_id=oid, units=21)
    world.ok("carol", "offerings", "subscribe", offering_id=oid, units=20)
    world.refused(Reason.INVALID_AMOUNT, "carol", "offerings", "subscribe", offering_id=oid, units=1)
    world.refused(Reason.UNAUTHORIZED, "alice", "offerings", "open_offering", isin=isin, currency="MXN",
                  price_minor=1, min_units=1, max_units=1, min_per_investor=1, max_per_investor=1,
                  opens_ms=world.time_ms, closes_ms=world.time_ms + 1)
    world.refused(Reason.SUPPLY_EXCEEDED, "issuer", "offerings", "open_offering", isin=isin, currency="MXN",
                  price_minor=1, min_units=1, max_units=10**7, min_per_investor=1, max_per_investor=1,
                  opens_ms=world.time_ms, closes_ms=world.time_ms + 1)


def test_an_investor_frozen_before_the_close_gets_nothing_and_keeps_its_cash() -> None:
    world, isin, _names = offering_world()
    oid = open_offering(world, isin, max_units=30)
    world.ok("inv0", "offerings", "subscribe", offering_id=oid, units=30)
    world.ok("inv1", "offerings", "subscribe", offering_id=oid, units=30)
    world.ok("regulator", "compliance", "freeze", account=addr("inv0"), reason="court order")
    run_until_idle(world, world.time_ms + MINUTE_MS)
    assert world.bal(isin, "inv0").total == 0 and world.bal("MXN", "inv0") == balances.Balance(1_000_000, 0)
    assert world.bal(isin, "inv1").total == 30


# ---------------------------------------------------------------- properties


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=40), st.integers(1, 5000))
def test_allocation_never_exceeds_the_maximum_nor_a_request_and_rounds_fairly(units: list[int], max_units: int) -> None:
    subs = [Subscription(f"a{i:03d}", u, i) for i, u in enumerate(units)]
    out = allocate(subs, max_units)
    total = sum(units)
    assert sum(a.allocated for a in out) == min(total, max_units)
    for sub, a in zip(subs, out, strict=True):
        assert 0 <= a.allocated <= sub.units
        if total > max_units:  # within one unit of the exact pro-rata share, never below its floor
            assert a.allocated - sub.units * max_units // total in (0, 1)
        else:
            assert a.allocated == sub.units


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.lists(st.tuples(st.integers(0, 5), st.integers(1, 60)), min_size=1, max_size=12),
    max_units=st.integers(1, 150),
    min_units=st.integers(1, 150),
    frozen=st.sets(st.integers(0, 5), max_size=2),
)
def test_offering_never_over_allocates_nor_to_the_ineligible_and_conserves(
    requests: list[tuple[int, int]], max_units: int, min_units: int, frozen: set[int]
) -> None:
    world, isin, names = offering_world(investors=6)
    everyone = names + ["issuer", "alice", "bob", "carol", "dave"]
    min_units = min(min_units, max_units)
    oid = open_offering(world, isin, max_units=max_units, min_units=min_units, max_per_investor=max_units)
    before = conserved(world, ["MXN"], everyone)
    supply_before = balances.supply(world.view(), isin)
    for who, units in requests:
        world.call(names[who], "offerings", "subscribe", offering_id=oid, units=units)
    for who in sorted(frozen):
        world.ok("regulator", "compliance", "freeze", account=addr(names[who]), reason="r", asset=isin)
    run_until_idle(world, world.time_ms + MINUTE_MS)
    sold = [world.bal(isin, n).total for n in names]
    assert sum(sold) <= max_units
    assert all(sold[i] == 0 for i in frozen)
    assert sum(sold) == 0 or sum(sold) >= min_units
    issued, _retired = balances.supply(world.view(), isin)
    assert issued - supply_before[0] == sum(sold)
    assert conserved(world, ["MXN"], everyone) == before
    for i, name in enumerate(names):
        assert world.bal("MXN", name) == balances.Balance(1_000_000 - 100 * sold[i], 0), "no cash stays locked"
    assert world.bal("MXN", "issuer").total == 1_000_000 + 100 * sum(sold)
    assert offerings.require_offering(world.view(), oid).status != offerings.OPEN


def test_an_offering_and_its_subscriptions_are_queryable() -> None:
    world, isin, _names = offering_world()
    oid = open_offering(world, isin)
    world.ok("inv0", "offerings", "subscribe", offering_id=oid, units=30)
    view = offerings.QUERIES["offering"](world.view(), str(oid))
    assert view.offering.subscribed_units == 30 and view.subscriptions[0].investor == addr("inv0")
    assert offerings.QUERIES["offering"](world.view(), "99") is None


def test_a_paused_security_takes_no_subscriptions() -> None:
    world, isin, _names = offering_world()
    oid = open_offering(world, isin)
    world.ok("regulator", "compliance", "pause", isin=isin, reason="halt")
    world.refused(Reason.ASSET_PAUSED, "inv0", "offerings", "subscribe", offering_id=oid, units=30)
