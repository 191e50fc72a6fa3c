"""Corporate actions: bonds are serviced from registration, and frozen issuer cash funds nothing.

A regulator's freeze must hold against the ledger's own payments too: an issuer whose cash is
(partly) frozen cannot fund a dividend, a bond reserve or a coupon from the frozen part.
"""

from __future__ import annotations

from contracts import corporate_actions
from ledger.reasons import Reason
from tests.contracts_world import World, addr
from tests.test_corporate_actions import DAY_MS, holders_world
from tests.test_offerings import run_until_idle


def register_bond(world: World, dates: list[int]) -> str:
    out = world.ok("issuer", "securities", "register", name="Bono", kind="bond", authorised_supply=10**6,
                   prospectus_hash=bytes(32), prospectus_uri="ipfs://b", face_value_minor=100_000,
                   currency="MXN", coupon_rate_bps=850, coupon_schedule_ms=dates, maturity_ms=dates[-1])
    assert out.kinds()[:2] == ["security_registered", "bond_service_scheduled"]
    return str(out.events[0].attrs["isin"])


def test_registering_a_bond_schedules_its_coupons_and_redemption() -> None:
    world, _, names = holders_world([0])
    dates = [world.time_ms + 100 * DAY_MS, world.time_ms + 200 * DAY_MS]
    bond = register_bond(world, dates)
    world.ok("issuer", "securities", "issue", isin=bond, to=addr(names[0]), quantity=2)
    world.refused(Reason.ALREADY_EXISTS, names[0], "corporate_actions", "service_bond", isin=bond)
    cash_before = world.bal("MXN", names[0]).total
    run_until_idle(world, dates[-1])
    assert world.bal(bond, names[0]).total == 0, "redeemed at maturity without anyone asking"
    assert world.bal("MXN", names[0]).total > cash_before + 2 * 100_000, "principal and coupons were paid"


def test_an_equity_registration_schedules_nothing() -> None:
    world, isin, _ = holders_world([1])
    world.refused(Reason.BAD_ARGUMENTS, "issuer", "corporate_actions", "service_bond", isin=isin)


def freeze_part(world: World, name: str, amount: int) -> None:
    world.ok("regulator", "compliance", "freeze", account=addr(name), reason="court order", asset="MXN",
             amount=amount)


def test_a_partly_frozen_issuer_cannot_fund_a_dividend_from_frozen_cash() -> None:
    world, isin, _ = holders_world([100])
    free = world.bal("MXN", "issuer").free
    freeze_part(world, "issuer", free - 50)  # 50 spendable; the dividend needs 100 units x 1
    world.refused(Reason.ACCOUNT_FROZEN, "issuer", "corporate_actions", "declare_dividend", isin=isin,
                  currency="MXN", per_unit_minor=1, record_ms=world.time_ms + DAY_MS,
                  payment_ms=world.time_ms + 2 * DAY_MS)
    world.ok("regulator", "compliance", "unfreeze", account=addr("issuer"), reason="lifted", asset="MXN")
    world.ok("issuer", "corporate_actions", "declare_dividend", isin=isin, currency="MXN", per_unit_minor=1,
             record_ms=world.time_ms + DAY_MS, payment_ms=world.time_ms + 2 * DAY_MS)


def test_a_partly_frozen_issuer_cannot_lock_frozen_cash_into_a_bond_reserve() -> None:
    world, _, _ = holders_world([0])
    bond = register_bond(world, [world.time_ms + 100 * DAY_MS])
    free = world.bal("MXN", "issuer").free
    freeze_part(world, "issuer", free - 10)
    world.refused(Reason.ACCOUNT_FROZEN, "issuer", "corporate_actions", "fund_bond", isin=bond, amount=11)
    world.ok("issuer", "corporate_actions", "fund_bond", isin=bond, amount=10)
    assert corporate_actions.reserve_minor(world.view(), bond) == 10


def test_a_coupon_due_from_frozen_cash_is_a_default_not_a_payment() -> None:
    world, _, names = holders_world([0])
    dates = [world.time_ms + 100 * DAY_MS, world.time_ms + 200 * DAY_MS]
    bond = register_bond(world, dates)
    world.ok("issuer", "securities", "issue", isin=bond, to=addr(names[0]), quantity=5)
    freeze_part(world, "issuer", world.bal("MXN", "issuer").free)
    events = run_until_idle(world, dates[0])
    defaults = [e for e in events if e.kind == "bond_defaulted"]
    assert defaults and defaults[0].attrs["reason"] == str(Reason.ACCOUNT_FROZEN)
    assert world.bal("MXN", "issuer").locked == 0
