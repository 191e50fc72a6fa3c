"""participants.admit_many: the same state and events as one admit per account, all or nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import participants
from ledger.reasons import Reason
from ledger.tx import MAX_TX_BYTES, TxBody, sign
from tests.contracts_world import CHAIN_ID, KYC, ExecWorld, World, addr, key

NAMES = [f"p{i}" for i in range(6)]


def entry(name: str, roles: list[str], qualified: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"address": addr(name), "name": name, "roles": roles, "kyc_hash": KYC}
    if qualified is not None:
        out["qualified"] = qualified
    return out


entries = st.builds(entry, st.sampled_from(NAMES),
                    st.lists(st.sampled_from(participants.ROLES), min_size=0, max_size=3),
                    st.one_of(st.none(), st.booleans()))


@settings(max_examples=60, deadline=None)
@given(before=st.lists(st.sampled_from(NAMES), max_size=2), accounts=st.lists(entries, min_size=1, max_size=6))
def test_admit_many_equals_admits_one_by_one(before: list[str], accounts: list[dict[str, Any]]) -> None:
    one_by_one, many = World(), World()
    for world in (one_by_one, many):
        for name in dict.fromkeys(before):
            world.admit(name, participants.INVESTOR)
    start = dict(many.state.writes)
    singles = [one_by_one.call("operator", "participants", "admit", **a) for a in accounts]
    bulk = many.call("operator", "participants", "admit_many", accounts=accounts)
    first_bad = next((i for i, out in enumerate(singles) if out.reason != Reason.OK), None)
    if first_bad is None:
        assert bulk.reason == Reason.OK
        assert many.state.writes == one_by_one.state.writes
        assert bulk.events == tuple(e for out in singles for e in out.events)
    else:
        assert bulk.reason == singles[first_bad].reason
        assert bulk.detail.startswith(f"account {first_bad}: ")
        assert many.state.writes == start, "a refused admit_many changed the state"


def test_bad_input_is_refused_with_stable_codes() -> None:
    world = World()
    ok = entry("alice", ["investor"])
    world.refused(Reason.UNAUTHORIZED, "alice", "participants", "admit_many", accounts=[ok])
    world.refused(Reason.BAD_ARGUMENTS, "operator", "participants", "admit_many", accounts=[])
    too_many = [entry(f"x{i}", ["investor"]) for i in range(participants.MAX_ADMITS_PER_TX + 1)]
    world.refused(Reason.BAD_ARGUMENTS, "operator", "participants", "admit_many", accounts=too_many)
    for bad in ({**ok, "address": "not-an-address"}, {**ok, "extra": 1}, {"address": ok["address"]},
                {**ok, "roles": ["king"]}, {**ok, "kyc_hash": b"short"}):
        world.refused(Reason.BAD_ARGUMENTS, "operator", "participants", "admit_many", accounts=[ok, bad])
    world.refused(Reason.ALREADY_EXISTS, "operator", "participants", "admit_many", accounts=[ok, ok])
    assert participants.get(world.view(), addr("alice")) is None  # all or nothing


def test_a_full_admit_many_fits_one_transaction_and_commits(tmp_path: Path) -> None:
    world = ExecWorld(tmp_path / "ledger", {"operators": [addr("operator")]})
    try:
        accounts = [entry(f"bulk{i}", ["investor"]) for i in range(participants.MAX_ADMITS_PER_TX)]
        for a in accounts:
            a["name"] = ""  # the bench's form
        body = TxBody(CHAIN_ID, "participants", "admit_many", {"accounts": accounts}, 1, 10**15,
                      (key("operator").public_key,))
        assert len(sign(body, [key("operator")]).raw) < MAX_TX_BYTES // 2
        receipt = world.submit([key("operator")], "participants", "admit_many", accounts=accounts)
        assert receipt.valid
        assert [e.attrs["address"] for e in receipt.events] == [a["address"] for a in accounts]
        found = participants.get(world.view(), accounts[-1]["address"])
        assert found is not None and found.active and found.roles == ("investor",)
    finally:
        world.close()
