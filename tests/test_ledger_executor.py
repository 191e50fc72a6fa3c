"""The executor: committed batches become hash-linked blocks; a bad transaction changes nothing."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.registry import default_registry
from ledger import codec
from ledger.batch import Batch
from ledger.block import Block
from ledger.executor import MAX_TX_LIFETIME_MS, Executor, VerifiedCache
from ledger.genesis import Genesis
from ledger.reasons import Reason
from ledger.sandbox import SANDBOX_CURRENCY as EUR
from ledger.sandbox import Sandbox, make_sandbox
from ledger.store import STATE_PREFIX, HistoryEntry, LedgerStore, StoreError
from ledger.tx import TxBody, sign

SANDBOX = make_sandbox(4)
AGENT = SANDBOX.agent
H = SANDBOX.holders
T0 = SANDBOX.genesis.genesis_time_ms


@contextmanager
def ledger(sandbox: Sandbox = SANDBOX, **options) -> Iterator[Executor]:
    with tempfile.TemporaryDirectory(prefix="keiretsu-test-") as data_dir:
        store = LedgerStore(data_dir)
        try:
            executor = Executor(store, default_registry(), sandbox.genesis, sync=False, **options)
            executor.init_genesis()
            yield executor
        finally:
            store.close()


def mint(to, amount, nonce, key=AGENT):
    return SANDBOX.call(key, "cash", "mint", {"currency": EUR, "to": to.address, "amount": amount,
                                               "deposit_ref": "dep"}, nonce=nonce)


def transfer(source, target, amount, nonce):
    return SANDBOX.call(source, "cash", "transfer", {"currency": EUR, "to": target.address, "amount": amount},
                        nonce=nonce)


def burn(amount, nonce, key=AGENT):
    return SANDBOX.call(key, "cash", "burn", {"currency": EUR, "amount": amount, "withdrawal_ref": "w"},
                        nonce=nonce)


def state_items(store: LedgerStore) -> dict[bytes, bytes]:
    with store.db.iterator(prefix=STATE_PREFIX) as it:
        return dict(it)


def apply_next(executor: Executor, txs, time_ms: int = T0):
    index = executor.store.position.raft_index + 1
    return executor.apply(SANDBOX.batch(txs, time_ms), index, 1)


def eur_totals(store: LedgerStore) -> tuple[int, int, int]:
    """(sum of free + locked over all accounts, issued, retired), straight from the state."""
    prefix = b"bal\x1f" + EUR.encode() + b"\x1f"
    total = 0
    for _, raw in store.state.iter_prefix(prefix):
        free, locked = codec.decode(raw, max_bytes=64)
        assert free >= 0 and locked >= 0
        total += free + locked
    supply = store.state.get(b"supply\x1f" + EUR.encode())
    issued, retired = codec.decode(supply, max_bytes=64) if supply else (0, 0)
    return total, issued, retired


# ---------------------------------------------------------------- blocks


def test_blocks_are_hash_linked_and_record_their_consensus_position():
    with ledger() as executor:
        store = executor.store
        apply_next(executor, [mint(H[0], 100, 1)])
        apply_next(executor, [transfer(H[0], H[1], 40, 2)], T0 + 5)
        apply_next(executor, [], T0 + 9)
        assert store.position.height == 3 and store.position.raft_index == 3
        for height in range(1, 4):
            block, parent = store.block(height), store.block(height - 1)
            assert block.header.prev_hash == parent.hash()
            assert block.header.raft_index == height
            assert Block.decode(block.encode()) == block
        assert store.position.block_hash == store.block(3).hash()
        assert store.block_header(3) == store.block(3).header


def test_block_time_never_goes_backwards():
    with ledger() as executor:
        apply_next(executor, [], T0 + 1_000)
        applied = apply_next(executor, [], T0 + 10)  # a new leader with a slower clock
        assert applied.block.header.time_ms == T0 + 1_000


def test_invalid_transaction_stays_in_the_block_with_its_reason_and_changes_nothing():
    with ledger() as executor, ledger() as twin:
        for ex in (executor, twin):
            apply_next(ex, [mint(H[0], 100, 1)])
        overdraft = transfer(H[0], H[1], 1_000, 2)
        applied = apply_next(executor, [overdraft])
        apply_next(twin, [])  # the same block without the failing transaction
        receipt = applied.block.receipts[0]
        assert applied.block.txs == (overdraft.raw,)
        assert receipt.tx_id == overdraft.tx_id and not receipt.valid
        assert receipt.reason == Reason.INSUFFICIENT_FREE_BALANCE and receipt.events == ()
        assert state_items(executor.store) == state_items(twin.store)
        assert executor.store.position.state_hash == twin.store.position.state_hash
        assert executor.store.tx_location(overdraft.tx_id) == (2, 0)


def test_a_failing_transaction_is_rolled_back_alone():
    with ledger() as executor:
        apply_next(executor, [mint(H[0], 100, 1)])
        applied = apply_next(executor, [transfer(H[0], H[1], 60, 2), transfer(H[0], H[2], 60, 3),
                                        transfer(H[0], H[3], 40, 4)])
        assert [r.reason for r in applied.block.receipts] == [Reason.OK, Reason.INSUFFICIENT_FREE_BALANCE,
                                                              Reason.OK]
        total, issued, retired = eur_totals(executor.store)
        assert (total, issued, retired) == (100, 100, 0)


def _rejected_calls() -> list[tuple[object, Reason]]:
    """Signed calls the contracts refuse, each with the reason a client will switch on."""
    call = SANDBOX.call
    return [
        (call(H[0], "nosuch", "transfer", {}, nonce=50), Reason.UNKNOWN_CONTRACT),
        (call(H[0], "cash", "nosuch", {}, nonce=51), Reason.UNKNOWN_METHOD),
        (call(H[0], "cash", "transfer", {"currency": EUR, "to": H[1].address, "amount": "5"}, nonce=52),
         Reason.BAD_ARGUMENTS),
        (call(H[0], "cash", "transfer", {"currency": EUR, "to": "kx-not-an-address", "amount": 5}, nonce=53),
         Reason.BAD_ARGUMENTS),
        (call(H[0], "cash", "transfer", {"currency": EUR, "to": H[1].address}, nonce=54), Reason.BAD_ARGUMENTS),
        (call(H[0], "cash", "transfer", {"currency": EUR, "to": H[1].address, "amount": 5, "x": 1}, nonce=55),
         Reason.BAD_ARGUMENTS),
        (call(H[0], "cash", "transfer", {"currency": EUR, "to": H[1].address, "amount": 0}, nonce=56),
         Reason.BAD_ARGUMENTS),
        (mint(H[1], 5, 57, key=H[0]), Reason.UNAUTHORIZED),
        (transfer(H[0], H[0], 5, 58), Reason.SELF_TRANSFER),
    ]


@pytest.mark.parametrize("index", range(len(_rejected_calls())))
def test_contract_refusals_have_stable_codes_and_change_no_state(index):
    tx, reason = _rejected_calls()[index]
    with ledger() as executor, ledger() as twin:
        for ex in (executor, twin):
            apply_next(ex, [mint(H[0], 100, 1)])
        applied = apply_next(executor, [tx])
        apply_next(twin, [])
        assert [r.reason for r in applied.block.receipts] == [reason]
        assert state_items(executor.store) == state_items(twin.store)


# ---------------------------------------------------------------- admission inside the executor


def test_expired_too_far_wrong_chain_duplicate_and_forged_are_dropped_before_the_block():
    other_chain = make_sandbox(4, chain_id="another-network")
    forged_body = TxBody(SANDBOX.chain_id, "cash", "transfer", {"currency": EUR, "to": H[1].address, "amount": 1},
                         99, T0 + 1_000, (H[0].public_key,))
    forged = sign(forged_body, [H[0]])
    forged_raw = codec.encode([forged_body.to_wire(), [H[1].sign(b"not the message")]])
    cases = [
        (SANDBOX.call(H[0], "cash", "transfer", {"currency": EUR, "to": H[1].address, "amount": 1},
                      nonce=3, time_ms=T0 - 2 * 60 * 60 * 1000).raw, Reason.EXPIRED),
        (sign(TxBody(SANDBOX.chain_id, "cash", "transfer", {}, 4, T0 + MAX_TX_LIFETIME_MS + 1,
                     (H[0].public_key,)), [H[0]]).raw, Reason.EXPIRY_TOO_FAR),
        (other_chain.call(other_chain.holders[0], "cash", "transfer", {}, nonce=5).raw, Reason.WRONG_CHAIN),
        (forged_raw, Reason.BAD_SIGNATURE),
        (b"\xc1garbage", Reason.MALFORMED),
    ]
    assert forged.verify_signatures()
    with ledger() as executor, ledger() as twin:
        first = mint(H[0], 100, 1)
        apply_next(executor, [first])
        apply_next(twin, [first])
        applied = apply_next(executor, [raw for raw, _ in cases] + [first.raw])
        apply_next(twin, [])
        assert applied.block.txs == ()
        assert [d.reason for d in applied.dropped] == [reason for _, reason in cases] + [Reason.DUPLICATE]
        assert applied.dropped[-1].tx_id == first.tx_id
        assert state_items(executor.store) == state_items(twin.store)
        assert executor.store.position.block_hash == twin.store.position.block_hash


def test_a_forged_copy_placed_first_does_not_shadow_the_genuine_transaction():
    genuine = mint(H[0], 100, 1)
    forged = codec.encode([genuine.body.to_wire(), [bytes(64)]])
    with ledger() as executor:
        applied = apply_next(executor, [forged, genuine])
        assert applied.block.txs == (genuine.raw,)
        assert [(d.tx_id, d.reason) for d in applied.dropped] == [(genuine.tx_id, Reason.BAD_SIGNATURE)]


def test_a_transaction_repeated_in_one_batch_runs_once():
    with ledger() as executor:
        once = mint(H[0], 100, 1)
        applied = apply_next(executor, [once, once])
        assert len(applied.block.txs) == 1 and [d.reason for d in applied.dropped] == [Reason.DUPLICATE]
        assert eur_totals(executor.store) == (100, 100, 0)


def test_one_account_keeps_many_transactions_in_flight():
    with ledger() as executor:
        apply_next(executor, [mint(H[0], 100, 1)])
        # Nonces need not be sequential; order of arrival does not matter.
        applied = apply_next(executor, [transfer(H[0], H[1], 1, n) for n in (900, 17, 5, 400)])
        assert all(r.valid for r in applied.block.receipts) and len(applied.block.receipts) == 4


def test_verified_cache_skips_rechecking_but_unchecked_forgeries_still_fail():
    cache = VerifiedCache(max_entries=2)
    good = mint(H[0], 100, 1)
    cache.add(good)
    assert cache.contains(good)
    with ledger(verified_cache=cache) as executor:
        applied = apply_next(executor, [good])
        assert applied.block.receipts[0].valid
    for n in range(3):
        cache.add(mint(H[0], 1, 100 + n))
    assert not cache.contains(good)  # bounded: the oldest entry went first


def test_a_batch_too_many_for_one_block_is_refused_at_encoding():
    with pytest.raises(ValueError):
        Batch(T0, tuple(b"x" for _ in range(10_001))).encode()


def test_bytes_that_are_not_a_batch_advance_the_position_without_a_block():
    with ledger() as executor:
        before = executor.store.position
        assert executor.apply(b"\xc1", 1, 1) is None
        after = executor.store.position
        assert after.raft_index == 1 and after.height == before.height and after.block_hash == before.block_hash


# ---------------------------------------------------------------- replay and genesis


def test_reapplying_an_applied_raft_index_is_a_no_op():
    with ledger() as executor:
        batch = SANDBOX.batch([mint(H[0], 100, 1)])
        assert executor.apply(batch, 1, 1) is not None
        position = executor.store.position
        assert executor.apply(batch, 1, 1) is None
        assert executor.apply(SANDBOX.batch([mint(H[0], 5, 2)]), 1, 1) is None
        assert executor.store.position == position
        assert eur_totals(executor.store) == (100, 100, 0)


def test_reopening_keeps_the_position_and_genesis_check(tmp_path):
    store = LedgerStore(tmp_path / "data")
    executor = Executor(store, default_registry(), SANDBOX.genesis, sync=True)
    executor.init_genesis()
    executor.apply(SANDBOX.batch([mint(H[0], 100, 1)]), 1, 1)
    position = store.position
    store.close()
    store = LedgerStore(tmp_path / "data")
    try:
        assert store.position == position
        Executor(store, default_registry(), SANDBOX.genesis).init_genesis()  # same network: fine
        other = Genesis("another-network", T0, (), SANDBOX.genesis.app_state)
        with pytest.raises(StoreError):
            Executor(store, default_registry(), other).init_genesis()
        assert store.position == position
    finally:
        store.close()


def test_a_store_of_another_format_is_refused(tmp_path):
    store = LedgerStore(tmp_path / "data")
    store.db.put(b"m:format", b"999")
    store.close()
    with pytest.raises(StoreError):
        LedgerStore(tmp_path / "data")
    with pytest.raises(StoreError):
        LedgerStore(tmp_path / "missing", create=False)


# ---------------------------------------------------------------- history


def test_history_lists_every_transaction_touching_an_account_in_order_and_pages():
    with ledger() as executor:
        store = executor.store
        apply_next(executor, [mint(H[0], 100, 1), mint(H[1], 100, 2)])
        apply_next(executor, [transfer(H[0], H[1], 5, 3), transfer(H[2], H[3], 5, 4),
                              transfer(H[1], H[0], 500, 5)])
        tx_entries = [e for e in store.history(H[0].address) if e.height > 0]
        # H[1]'s failed payment to H[0] is in H[1]'s history (the receipt says why), not H[0]'s:
        # a failed transaction touched no one but its signers.
        assert tx_entries == [HistoryEntry(1, 0, 0), HistoryEntry(2, 0, 0)]
        assert HistoryEntry(2, 0, 2) in store.history(H[1].address)
        assert HistoryEntry(2, 0, 1) in store.history(H[2].address)
        everything = store.history(H[1].address, limit=1000)
        paged, after = [], None
        for _ in range(len(everything) + 1):
            page = store.history(H[1].address, after=after, limit=2)
            if not page:
                break
            paged += page
            after = page[-1]
        assert paged == everything
        assert store.history(EUR, limit=1000)  # assets have a history too


# ---------------------------------------------------------------- properties


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("mint"), st.integers(0, 3), st.integers(1, 1_000)),
        st.tuples(st.just("transfer"), st.integers(0, 3), st.integers(0, 3), st.integers(1, 400)),
        st.tuples(st.just("burn"), st.integers(1, 600)),
        st.tuples(st.just("mint_by_stranger"), st.integers(0, 3), st.integers(1, 1_000)),
        st.tuples(st.just("bad_amount"), st.integers(0, 3)),
        st.tuples(st.just("to_agent"), st.integers(0, 3), st.integers(1, 300)),
    ),
    min_size=1,
    max_size=30,
)


def _signed_ops(ops) -> list:
    txs = []
    for nonce, op in enumerate(ops):
        kind = op[0]
        if kind == "mint":
            txs.append(mint(H[op[1]], op[2], nonce))
        elif kind == "transfer":
            txs.append(transfer(H[op[1]], H[op[2]], op[3], nonce))
        elif kind == "burn":
            txs.append(burn(op[1], nonce))
        elif kind == "mint_by_stranger":
            txs.append(mint(H[op[1]], op[2], nonce, key=H[op[1]]))
        elif kind == "bad_amount":
            txs.append(SANDBOX.call(H[op[1]], "cash", "transfer",
                                    {"currency": EUR, "to": AGENT.address, "amount": -1}, nonce=nonce))
        else:
            txs.append(transfer(H[op[1]], AGENT, op[2], nonce))
    return txs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS, st.integers(1, 4))
def test_supply_is_conserved_and_no_balance_goes_negative(ops, batches):
    txs = _signed_ops(ops)
    minted = burned = 0
    with ledger() as executor:
        size = -(-len(txs) // batches)
        for start in range(0, len(txs), size):
            applied = apply_next(executor, txs[start:start + size], T0 + start)
            for receipt in applied.block.receipts:
                for event in receipt.events:
                    if event.kind == "cash_minted":
                        minted += event.attrs["amount"]
                    elif event.kind == "cash_burned":
                        burned += event.attrs["amount"]
            total, issued, retired = eur_totals(executor.store)  # also asserts no negative balance
            assert total == minted - burned == issued - retired


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS, st.integers(1, 3))
def test_same_batches_on_two_stores_give_identical_blocks_and_state(ops, batches):
    txs = _signed_ops(ops)
    size = -(-len(txs) // batches)
    with ledger() as one, ledger(verify_signatures=False) as two:
        for start in range(0, len(txs), size):
            batch = SANDBOX.batch(txs[start:start + size], T0 + start)
            index = one.store.position.raft_index + 1
            a, b = one.apply(batch, index, 3), two.apply(batch, index, 3)
            assert a.block.encode() == b.block.encode()
        assert one.store.position == two.store.position
        assert state_items(one.store) == state_items(two.store)


def test_state_hash_streams_the_canonical_encoding_of_any_number_of_writes() -> None:
    """The hash covers exactly codec.encode(sorted pairs), and a block may write > 10,000 keys."""
    import hashlib

    from ledger import codec as _codec
    from ledger.executor import STATE_HASH_DOMAIN, state_hash_after

    for count in (0, 1, 15, 16, 300, 10_000):
        writes = {i.to_bytes(4, "big"): (None if i % 7 == 0 else b"v%d" % i) for i in range(count)}
        expected = hashlib.sha256(STATE_HASH_DOMAIN + bytes(32) + (5).to_bytes(8, "big")
                                  + _codec.encode([[k, writes[k]] for k in sorted(writes)])).digest()
        assert state_hash_after(bytes(32), 5, writes) == expected
    big = {i.to_bytes(4, "big"): b"x" for i in range(70_000)}
    assert len(state_hash_after(bytes(32), 1, big)) == 32
