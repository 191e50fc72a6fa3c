"""Participants: admission, suspension and reinstatement, role updates, and lost-key recovery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts import balances, participants
from ledger.reasons import Reason
from tests.contracts_world import KYC, ExecWorld, World, addr, key, market

# ---------------------------------------------------------------- admission and status


def test_only_an_operator_admits_and_only_once() -> None:
    world = World()
    world.refused(Reason.UNAUTHORIZED, "alice", "participants", "admit", address=addr("alice"), name="a",
                  roles=["investor"], kyc_hash=KYC)
    world.admit("alice", "investor")
    world.refused(Reason.ALREADY_EXISTS, "operator", "participants", "admit", address=addr("alice"), name="a",
                  roles=["investor"], kyc_hash=KYC)
    world.refused(Reason.BAD_ARGUMENTS, "operator", "participants", "admit", address=addr("bob"), name="b",
                  roles=[], kyc_hash=KYC)
    world.refused(Reason.BAD_ARGUMENTS, "operator", "participants", "admit", address=addr("bob"), name="b",
                  roles=["investor", "investor"], kyc_hash=KYC)
    found = participants.get(world.view(), addr("alice"))
    assert found is not None and found.active and found.roles == ("investor",) and found.kyc_hash == KYC


def test_suspend_and_reinstate_follow_the_status_table() -> None:
    world, _ = market()
    world.refused(Reason.UNAUTHORIZED, "regulator", "participants", "suspend", address=addr("bob"), reason="x")
    world.refused(Reason.INVALID_STATE, "operator", "participants", "reinstate", address=addr("bob"), reason="x")
    out = world.ok("operator", "participants", "suspend", address=addr("bob"), reason="kyc expired")
    assert out.events[0].attrs == {"address": addr("bob"), "reason": "kyc expired", "by": addr("operator")}
    world.refused(Reason.INVALID_STATE, "operator", "participants", "suspend", address=addr("bob"), reason="x")
    world.refused(Reason.NOT_FOUND, "operator", "participants", "suspend", address=addr("stranger"), reason="x")
    world.ok("operator", "participants", "reinstate", address=addr("bob"), reason="renewed")
    assert set(participants.STATUS_TRANSITIONS.values()) == {participants.ACTIVE, participants.SUSPENDED}


def test_a_suspended_participant_can_neither_pay_nor_be_paid_nor_be_minted_to() -> None:
    world, _ = market()
    world.ok("operator", "participants", "suspend", address=addr("bob"), reason="x")
    world.refused(Reason.PARTICIPANT_SUSPENDED, "bob", "cash", "transfer", currency="MXN", to=addr("alice"),
                  amount=1)
    world.refused(Reason.PARTICIPANT_SUSPENDED, "alice", "cash", "transfer", currency="MXN", to=addr("bob"),
                  amount=1)
    world.refused(Reason.PARTICIPANT_SUSPENDED, "bank", "cash", "mint", currency="MXN", to=addr("bob"), amount=1,
                  deposit_ref="d")
    assert world.bal("MXN", "bob").free == 1_000_000  # holdings stay
    world.refused(Reason.RECEIVER_NOT_ELIGIBLE, "alice", "cash", "transfer", currency="MXN",
                  to=addr("stranger"), amount=1)


def test_cash_rules_that_only_a_direct_call_or_a_huge_mint_can_reach() -> None:
    world, _ = market()
    from contracts import cash
    from ledger.reasons import ContractError

    for args, reason in (((addr("alice"), addr("bob"), 0), Reason.INVALID_AMOUNT),
                         ((addr("alice"), addr("alice"), 1), Reason.SELF_TRANSFER)):
        with pytest.raises(ContractError) as caught:
            cash.check_transfer(world.context(()), "MXN", *args)
        assert caught.value.reason == reason
    world.refused(Reason.UNKNOWN_ASSET, "alice", "cash", "transfer", currency="USD", to=addr("bob"), amount=1)
    world.refused(Reason.SUPPLY_EXCEEDED, "bank", "cash", "mint", currency="MXN", to=addr("bob"),
                  amount=2**63 - 1, deposit_ref="d")
    world.ok("operator", "participants", "suspend", address=addr("bank"), reason="licence")
    world.refused(Reason.UNAUTHORIZED, "bank", "cash", "burn", currency="MXN", amount=1, withdrawal_ref="w")


def test_update_changes_roles_and_qualification() -> None:
    world, _ = market()
    world.refused(Reason.UNAUTHORIZED, "bob", "participants", "update", address=addr("bob"), qualified=True)
    world.ok("operator", "participants", "update", address=addr("bob"), qualified=True, roles=["investor", "issuer"])
    found = participants.get(world.view(), addr("bob"))
    assert found is not None and found.qualified and found.roles == ("investor", "issuer")
    world.refused(Reason.NOT_FOUND, "operator", "participants", "update", address=addr("nobody"), qualified=True)


# ---------------------------------------------------------------- lost-key recovery, through the executor


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[ExecWorld]:
    def entry(name: str, *roles: str) -> dict[str, object]:
        return {"address": addr(name), "name": name, "roles": list(roles)}

    app_state = {
        "operators": [addr("operator")],
        "participants": [entry("regulator", "regulator"), entry("bank", "cash_agent"), entry("alice", "investor"),
                         entry("bob", "investor")],
        "currencies": [{"code": "MXN", "decimals": 2, "agent": addr("bank")}],
    }
    world = ExecWorld(tmp_path / "ledger", app_state)
    receipt = world.submit([key("bank")], "cash", "mint", currency="MXN", to=addr("alice"), amount=500,
                           deposit_ref="dep-1")
    assert receipt.valid
    yield world
    world.close()


def _recover(chain: ExecWorld, signers: list[str], new_key: str, who: str = "alice"):  # type: ignore[no-untyped-def]
    return chain.submit([key(s) for s in signers], "participants", "recover_key", address=addr(who),
                        new_public_key=key(new_key).public_key, reason="phone lost, ticket 42")


def test_recovery_rebinds_the_account_to_a_new_key_and_revokes_the_old(chain: ExecWorld) -> None:
    assert _recover(chain, ["operator", "regulator"], "alice-new").valid
    old = chain.submit([key("alice")], "cash", "transfer", currency="MXN", to=addr("bob"), amount=1)
    assert old.reason == Reason.KEY_REVOKED
    new = chain.submit([key("alice-new")], "cash", "transfer", currency="MXN", to=addr("bob"), amount=1)
    assert new.valid and new.events[0].attrs["source"] == addr("alice")
    assert balances.get(chain.view(), "MXN", addr("alice")).free == 499  # the holdings never moved
    history = participants.recoveries(chain.view(), addr("alice"))
    assert [(r.sequence, r.old_key, r.new_key) for r in history] == [(1, None, key("alice-new").public_key)]
    assert history[0].operator == addr("operator") and history[0].regulator == addr("regulator")
    # The recovery is in the account's history, in order: genesis admission, mint, recovery,
    # the refused attempt with the old key, the payment with the new one.
    heights = [entry.height for entry in chain.store.history(addr("alice"))]
    assert heights == [0, 1, 2, 3, 4]


def test_a_second_recovery_revokes_the_first_new_key_and_can_restore_the_original(chain: ExecWorld) -> None:
    assert _recover(chain, ["operator", "regulator"], "alice-new").valid
    assert _recover(chain, ["operator", "regulator"], "alice-newer").valid
    assert chain.submit([key("alice-new")], "cash", "transfer", currency="MXN", to=addr("bob"),
                        amount=1).reason == Reason.KEY_REVOKED
    assert _recover(chain, ["operator", "regulator"], "alice").valid
    assert chain.submit([key("alice")], "cash", "transfer", currency="MXN", to=addr("bob"), amount=1).valid
    assert [r.sequence for r in participants.recoveries(chain.view(), addr("alice"))] == [1, 2, 3]


def test_recovery_needs_an_operator_and_a_distinct_regulator(chain: ExecWorld) -> None:
    assert _recover(chain, ["operator"], "alice-new").reason == Reason.SIGNATURE_REQUIRED
    assert _recover(chain, ["regulator"], "alice-new").reason == Reason.UNAUTHORIZED
    assert _recover(chain, ["bob", "regulator"], "alice-new").reason == Reason.UNAUTHORIZED
    assert chain.submit([key("alice")], "cash", "transfer", currency="MXN", to=addr("bob"), amount=1).valid


def test_recovery_refuses_a_key_in_use_and_an_unknown_account(chain: ExecWorld) -> None:
    assert _recover(chain, ["operator", "regulator"], "bob").reason == Reason.ALREADY_EXISTS
    assert _recover(chain, ["operator", "regulator"], "alice").reason == Reason.INVALID_STATE
    assert _recover(chain, ["operator", "regulator"], "x", who="stranger").reason == Reason.NOT_FOUND
    assert _recover(chain, ["operator", "regulator"], "alice-new").valid
    assert _recover(chain, ["operator", "regulator"], "alice-new", who="bob").reason == Reason.ALREADY_EXISTS
    # The new key's own address can no longer be admitted: that key signs for alice now.
    receipt = chain.submit([key("operator")], "participants", "admit", address=addr("alice-new"), name="x",
                           roles=["investor"], kyc_hash=KYC)
    assert receipt.reason == Reason.ALREADY_EXISTS
