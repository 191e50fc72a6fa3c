"""What the fourth session's shortcuts on the transfer path must keep true.

Argument types remember the texts they accepted, balances are kept by their encoded bytes,
receipts pack events whose attributes are already in key order as they are, and a block's
transactions reuse methods, keys and records the block read before. None of that may change
an answer: a refused text stays refused, and a change made by a transaction is seen by the
transactions after it in the same block.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import base
from contracts.base import ADDRESS, MethodTable
from contracts.cash import CURRENCY_CODE
from contracts.registry import default_registry
from ledger import codec
from ledger.executor import AppliedBlock, Executor
from ledger.genesis import Genesis
from ledger.keys import KeyPair
from ledger.reasons import ContractError, Reason
from ledger.sandbox import SANDBOX_CURRENCY, Sandbox, make_sandbox, seeded_key
from ledger.store import TX_INDEX_PREFIX, LedgerStore, index_transactions

# ---------------------------------------------------------------- remembered argument texts


def _method(**params: base.ArgType) -> base.Method:
    table = MethodTable()

    @table.method(**params)
    def call(ctx: Any, **_: Any) -> None:
        return None

    return table.methods["call"]


def test_a_refused_text_stays_refused_and_an_accepted_one_is_not_accepted_by_another_type() -> None:
    by_code = _method(currency=CURRENCY_CODE)
    by_address = _method(to=ADDRESS)
    by_code.check_args({"currency": "EUR"})
    by_code.check_args({"currency": "EUR"})  # remembered: passes again
    for _ in range(2):  # a refused text is never remembered
        with pytest.raises(ContractError) as refused:
            by_code.check_args({"currency": "eur"})
        assert refused.value.reason is Reason.BAD_ARGUMENTS
    with pytest.raises(ContractError):  # what CURRENCY_CODE accepted is no address
        by_address.check_args({"to": "EUR"})


def test_remembered_texts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "MAX_PASSED_TEXTS", 3)
    kind = base.ArgType("short", lambda v: isinstance(v, str) and len(v) < 4)
    method = _method(text=kind)
    for text in ("a", "b", "c", "d", "e"):
        method.check_args({"text": text})
    assert kind.passed == {"a", "b", "c"}
    method.check_args({"text": "e"})  # not remembered, still checked and accepted
    with pytest.raises(ContractError):
        method.check_args({"text": "toolong"})


# ---------------------------------------------------------------- events packed as they are

LEAF = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5) | st.binary(max_size=5)


@given(st.dictionaries(st.text(max_size=4), LEAF, max_size=6))
def test_a_map_counts_as_sorted_only_when_packing_it_as_it_is_gives_the_canonical_bytes(attrs: dict[str, Any]) -> None:
    # The empty key is refused too (conservatively: it takes leaf_map_normal's path).
    assert codec.is_leaf_map_sorted(attrs) == (list(attrs) == sorted(attrs) and "" not in attrs)
    if codec.is_leaf_map_sorted(attrs):
        assert codec.pack_normal(attrs) == codec.encode(attrs)


@given(st.dictionaries(st.text(min_size=1, max_size=4), st.lists(st.integers(0, 3), max_size=2) | st.dictionaries(
    st.text(max_size=2), st.integers(0, 3), max_size=2), min_size=1, max_size=3))
def test_a_map_with_a_container_value_is_never_packed_as_it_is(attrs: dict[str, Any]) -> None:
    assert not codec.is_leaf_map_sorted(attrs)


# ---------------------------------------------------------------- changes inside one block


def _network() -> tuple[Sandbox, KeyPair]:
    sandbox = make_sandbox(2, label="perf4")
    regulator = seeded_key("perf4/regulator")
    app_state = dict(sandbox.genesis.app_state)
    app_state["participants"] = [*app_state["participants"],
                                 {"address": regulator.address, "name": "Regulator", "roles": ["regulator"]}]
    genesis = dataclasses.replace(sandbox.genesis, app_state=app_state)
    assert isinstance(genesis, Genesis)
    return dataclasses.replace(sandbox, genesis=genesis), regulator


@pytest.fixture
def chain() -> Iterator[tuple[Sandbox, KeyPair, Executor]]:
    sandbox, regulator = _network()
    with tempfile.TemporaryDirectory(prefix="keiretsu-perf4-") as data_dir:
        store = LedgerStore(data_dir)
        try:
            executor = Executor(store, default_registry(), sandbox.genesis, verify_signatures=False)
            executor.init_genesis()
            mints = [sandbox.call(sandbox.agent, "cash", "mint", {"currency": SANDBOX_CURRENCY, "to": holder.address,
                                                                   "amount": 1_000, "deposit_ref": f"d{i}"}, nonce=i)
                     for i, holder in enumerate(sandbox.holders)]
            assert _reasons(executor.apply(sandbox.batch(mints), 1, 1)) == [Reason.OK, Reason.OK]
            yield sandbox, regulator, executor
        finally:
            store.close()


def _reasons(applied: AppliedBlock | None) -> list[Reason]:
    assert applied is not None and not applied.dropped
    return [receipt.reason for receipt in applied.block.receipts]


def test_a_suspension_and_a_freeze_bind_the_transfers_after_them_in_the_same_block(chain: Any) -> None:
    sandbox, regulator, executor = chain
    alice, bob = sandbox.holders
    nonce = iter(range(100, 200))

    def pay(amount: int) -> Any:
        return sandbox.call(alice, "cash", "transfer", {"currency": SANDBOX_CURRENCY, "to": bob.address,
                                                        "amount": amount}, nonce=next(nonce))

    def operator(method: str) -> Any:
        return sandbox.call(sandbox.operator, "participants", method, {"address": bob.address, "reason": "r"},
                            nonce=next(nonce))

    def regulate(method: str, **extra: Any) -> Any:
        return sandbox.call(regulator, "compliance", method, {"account": alice.address, "reason": "r", **extra},
                            nonce=next(nonce))

    block = [pay(1), operator("suspend"), pay(2), operator("reinstate"), pay(3),
             regulate("freeze", asset=SANDBOX_CURRENCY, amount=990), pay(10), pay(4),
             regulate("unfreeze", asset=SANDBOX_CURRENCY), pay(5), regulate("freeze"), pay(6)]
    assert _reasons(executor.apply(sandbox.batch(block), 2, 1)) == [
        Reason.OK, Reason.OK, Reason.PARTICIPANT_SUSPENDED, Reason.OK, Reason.OK,
        Reason.OK, Reason.ACCOUNT_FROZEN, Reason.OK, Reason.OK, Reason.OK, Reason.OK, Reason.ACCOUNT_FROZEN,
    ]
    # 1 + 3 + 4 + 5 moved; the next block still sees the whole-account freeze, then the lift.
    after = [pay(1), regulate("unfreeze"), pay(7)]
    assert _reasons(executor.apply(sandbox.batch(after), 3, 1)) == [Reason.ACCOUNT_FROZEN, Reason.OK, Reason.OK]
    bob_balance = executor.store.state.get(b"bal\x1f" + SANDBOX_CURRENCY.encode() + b"\x1f" + bob.address.encode())
    assert bob_balance is not None and codec.decode(bob_balance, max_bytes=64) == [1_000 + 1 + 3 + 4 + 5 + 7, 0]


# ---------------------------------------------------------------- the tx index entry


@given(st.integers(0, 2**64 - 1))
def test_a_tx_index_entry_is_the_encoding_of_height_and_position(height: int) -> None:
    index: dict[bytes, bytes] = {}
    count = 300
    ids = [position.to_bytes(32, "big") for position in range(count)]
    index_transactions(index, height, ids, [["acct"]] * count)
    for position, tx_id in enumerate(ids):
        assert index[TX_INDEX_PREFIX + tx_id] == codec.encode([height, position])
