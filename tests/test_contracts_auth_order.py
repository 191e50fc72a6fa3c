"""Who signs, in any order, and which code wins when several rules fail (docs/CONTRACTS.md).

Each test ties one promise of the document to the code: "who signs" names a party that may be
anywhere among the signers, "Re-binding to a key the address had before ... is allowed, as often
as needed", and "Where several rules fail at once, the first in the listed order wins".
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts import balances, participants, securities
from ledger.block import Receipt
from ledger.keys import is_public_key
from ledger.reasons import Reason
from tests.contracts_world import PROSPECTUS, START_MS, ExecWorld, World, addr, key, market

BOND_TERMS: dict[str, Any] = {"face_value_minor": 100_000, "currency": "MXN", "coupon_rate_bps": 850,
                              "coupon_schedule_ms": [START_MS + 10**9], "maturity_ms": START_MS + 2 * 10**9}


# ---------------------------------------------------------------- lost-key recovery


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[ExecWorld]:
    def entry(name: str, *roles: str) -> dict[str, Any]:
        return {"address": addr(name), "name": name, "roles": list(roles)}

    world = ExecWorld(tmp_path / "ledger", {
        "operators": [addr("operator")],
        "participants": [entry("regulator", "regulator"), entry("bank", "cash_agent"),
                         entry("alice", "investor"), entry("bob", "investor")],
        "currencies": [{"code": "MXN", "decimals": 2, "agent": addr("bank")}],
    })
    assert world.submit([key("bank")], "cash", "mint", currency="MXN", to=addr("alice"), amount=500,
                        deposit_ref="d").valid
    yield world
    world.close()


def _recover(chain: ExecWorld, new_key: str, who: str = "alice") -> Receipt:
    return chain.submit([key("operator"), key("regulator")], "participants", "recover_key", address=addr(who),
                        new_public_key=key(new_key).public_key, reason="phone lost")


def _pays(chain: ExecWorld, signer: str) -> Reason:
    return chain.submit([key(signer)], "cash", "transfer", currency="MXN", to=addr("bob"), amount=1).reason


def test_the_original_key_can_be_restored_more_than_once(chain: ExecWorld) -> None:
    for new_key in ("alice-new", "alice", "alice-newer", "alice"):
        receipt = _recover(chain, new_key)
        assert receipt.valid, f"recovery to {new_key}: {receipt.reason} {receipt.detail}"
    assert _pays(chain, "alice") == Reason.OK
    assert _pays(chain, "alice-newer") == Reason.KEY_REVOKED
    assert [r.sequence for r in participants.recoveries(chain.view(), addr("alice"))] == [1, 2, 3, 4]


def test_a_key_the_account_had_before_can_be_given_back_but_not_another_accounts(chain: ExecWorld) -> None:
    assert _recover(chain, "alice-new").valid
    assert _recover(chain, "alice-newer").valid
    assert _recover(chain, "bob-new", who="bob").valid
    assert _recover(chain, "bob-new").reason == Reason.ALREADY_EXISTS  # bound to bob: in use
    assert _recover(chain, "alice-new").valid  # bound to alice before: restored
    assert _pays(chain, "alice-new") == Reason.OK
    assert _pays(chain, "alice-newer") == Reason.KEY_REVOKED


def test_a_recovery_to_bytes_that_are_no_public_key_is_refused_and_the_account_keeps_its_key() -> None:
    good = key("alice-new").public_key
    mistyped = next(k for k in (bytes([i]) + good[1:] for i in range(256)) if not is_public_key(k))
    world = World(operators=("operator",))
    world.admit("regulator", participants.REGULATOR)
    world.admit("alice", participants.INVESTOR)
    world.refused(Reason.BAD_ARGUMENTS, ("operator", "regulator"), "participants", "recover_key",
                  address=addr("alice"), new_public_key=mistyped, reason="lost")
    assert participants.recoveries(world.view(), addr("alice")) == []
    world.ok(("operator", "regulator"), "participants", "recover_key", address=addr("alice"),
             new_public_key=good, reason="lost")


def test_recovery_accepts_an_operator_and_a_different_regulator_in_any_order() -> None:
    # "authority" is an operator and an active regulator: it can be either side of the pair.
    for order in itertools.permutations(("authority", "operator")):
        world = World(operators=("operator", "authority"))
        world.admit("authority", participants.REGULATOR)
        world.admit("alice", participants.INVESTOR)
        out = world.call(order, "participants", "recover_key", address=addr("alice"),
                         new_public_key=key("alice-new").public_key, reason="lost")
        assert out.reason == Reason.OK, f"signers {order}: {out.reason} {out.detail}"
        (recovery,) = participants.recoveries(world.view(), addr("alice"))
        assert (recovery.operator, recovery.regulator) == (addr("operator"), addr("authority"))
    # Alone, the operator that is a regulator is still one party: no different regulator signed.
    world.refused(Reason.SIGNATURE_REQUIRED, "authority", "participants", "recover_key", address=addr("alice"),
                  new_public_key=key("alice-other").public_key, reason="lost")


# ---------------------------------------------------------------- the agent and the issuer sign anywhere


def test_mint_and_burn_accept_the_agent_anywhere_among_the_signers() -> None:
    world, _ = market()
    world.ok(("alice", "bank"), "cash", "mint", currency="MXN", to=addr("bank"), amount=70, deposit_ref="d")
    world.ok(("alice", "bank"), "cash", "burn", currency="MXN", amount=30, withdrawal_ref="w")
    assert world.bal("MXN", "bank").free == 40 and world.bal("MXN", "alice").free == 1_000_000
    world.refused(Reason.UNAUTHORIZED, ("alice", "bob"), "cash", "mint", currency="MXN", to=addr("alice"),
                  amount=1, deposit_ref="d")
    world.refused(Reason.UNAUTHORIZED, ("alice", "bob"), "cash", "burn", currency="MXN", amount=1,
                  withdrawal_ref="w")


def test_register_takes_the_active_issuer_wherever_it_signs() -> None:
    world, _ = market()
    out = world.ok(("alice", "issuer"), "securities", "register", name="Nopal SA", kind="equity",
                   authorised_supply=10, prospectus_hash=PROSPECTUS, prospectus_uri="ipfs://x")
    instrument = securities.require_instrument(world.view(), str(out.events[0].attrs["isin"]))
    assert instrument.issuer == addr("issuer") and out.events[0].attrs["issuer"] == addr("issuer")
    world.refused(Reason.UNAUTHORIZED, ("alice", "bob"), "securities", "register", name="Nopal SA",
                  kind="equity", authorised_supply=10, prospectus_hash=PROSPECTUS, prospectus_uri="ipfs://x")


def test_the_issuers_corporate_actions_and_offerings_accept_it_anywhere_among_the_signers() -> None:
    world, isin = market()
    world.ok("bank", "cash", "mint", currency="MXN", to=addr("issuer"), amount=10**6, deposit_ref="d")
    dividend = world.ok(("alice", "issuer"), "corporate_actions", "declare_dividend", isin=isin, currency="MXN",
                        per_unit_minor=1, record_ms=START_MS + 10**6, payment_ms=START_MS + 2 * 10**6)
    action_id = dividend.events[-1].attrs["action_id"]
    world.refused(Reason.UNAUTHORIZED, ("alice", "bob"), "corporate_actions", "cancel", action_id=action_id)
    world.ok(("bob", "issuer"), "corporate_actions", "cancel", action_id=action_id)
    world.ok(("alice", "issuer"), "corporate_actions", "declare_split", isin=isin, ratio_to=2, ratio_from=1,
             effective_ms=START_MS + 10**6)
    world.refused(Reason.UNAUTHORIZED, ("alice", "bob"), "corporate_actions", "declare_split", isin=isin,
                  ratio_to=2, ratio_from=1, effective_ms=START_MS + 10**6)
    offering = world.ok(("alice", "issuer"), "offerings", "open_offering", isin=isin, currency="MXN", price_minor=10,
                        min_units=1, max_units=100, min_per_investor=1, max_per_investor=100,
                        opens_ms=START_MS, closes_ms=START_MS + 10**7)
    offering_id = offering.events[-1].attrs["offering_id"]
    world.refused(Reason.UNAUTHORIZED, ("alice", "bob"), "offerings", "cancel_offering", offering_id=offering_id)
    world.ok(("alice", "issuer"), "offerings", "cancel_offering", offering_id=offering_id)


# ---------------------------------------------------------------- the first failing rule wins


def test_redeem_asks_for_a_missing_signature_before_the_issuers_status() -> None:
    # redeem: UNKNOWN_ASSET, SIGNATURE_REQUIRED, UNAUTHORIZED, ...
    world, isin = market()
    world.ok("operator", "participants", "suspend", address=addr("issuer"), reason="audit")
    world.refused(Reason.SIGNATURE_REQUIRED, "issuer", "securities", "redeem", isin=isin, holder=addr("alice"),
                  quantity=1)
    world.refused(Reason.UNAUTHORIZED, ("issuer", "alice"), "securities", "redeem", isin=isin,
                  holder=addr("alice"), quantity=1)


def test_register_currency_refuses_an_agent_that_is_no_cash_agent_first() -> None:
    # register_currency: UNAUTHORIZED (not operator, or agent not an active cash agent), ALREADY_EXISTS, BAD_ARGUMENTS
    world, _ = market()
    for currency, decimals in (("MXN", 2), ("USD", 9), ("MXN", 9)):
        world.refused(Reason.UNAUTHORIZED, "operator", "cash", "register_currency", currency=currency,
                      decimals=decimals, agent=addr("alice"))
    world.refused(Reason.ALREADY_EXISTS, "operator", "cash", "register_currency", currency="MXN", decimals=9,
                  agent=addr("bank"))
    world.refused(Reason.BAD_ARGUMENTS, "operator", "cash", "register_currency", currency="USD", decimals=9,
                  agent=addr("bank"))


def test_a_receiver_without_the_investor_role_is_not_eligible_before_it_is_suspended() -> None:
    # Rule 8: RECEIVER_NOT_ELIGIBLE (never admitted, or not an investor) / PARTICIPANT_SUSPENDED / ...
    world, isin = market()
    world.ok("operator", "participants", "suspend", address=addr("dave"), reason="x")  # dave: no investor role
    world.ok("operator", "participants", "suspend", address=addr("bob"), reason="x")  # bob: an investor
    for to, expected in ((addr("dave"), Reason.RECEIVER_NOT_ELIGIBLE), (addr("bob"), Reason.PARTICIPANT_SUSPENDED)):
        world.refused(expected, "alice", "securities", "transfer", isin=isin, to=to, quantity=1)
        world.refused(expected, "issuer", "securities", "issue", isin=isin, to=to, quantity=1)
        world.refused(expected, "regulator", "compliance", "forced_transfer", asset=isin, source=addr("alice"),
                      target=to, quantity=1, reason="court order")
    assert balances.get(world.view(), isin, addr("alice")).free == 1000


def test_register_names_an_unknown_currency_before_bad_terms() -> None:
    # register: UNAUTHORIZED, UNKNOWN_ASSET (the named currency), BAD_ARGUMENTS
    world, _ = market()
    base = {"kind": "bond", "authorised_supply": 10, "prospectus_hash": PROSPECTUS, "prospectus_uri": "ipfs://x"}
    bond = {**base, **BOND_TERMS, "name": "Bono", "currency": "USD"}
    cases: list[dict[str, Any]] = [
        {**bond, "name": ""},  # empty name
        {**base, "name": "Bono", "currency": "USD"},  # missing terms
        {**bond, "maturity_ms": START_MS - 5},  # maturity passed
    ]
    for case in cases:
        world.refused(Reason.UNKNOWN_ASSET, "issuer", "securities", "register", **case)
        world.refused(Reason.UNAUTHORIZED, "alice", "securities", "register", **case)
        world.refused(Reason.BAD_ARGUMENTS, "issuer", "securities", "register", **dict(case, currency="MXN"))
