"""The query side: what the API and SDK read — blocks, receipts with proofs, history, balances."""

from __future__ import annotations

import json

import pytest

from contracts import balances
from contracts.registry import default_registry
from ledger import query
from ledger.executor import Executor
from ledger.merkle import verify_proof
from ledger.reasons import InvariantViolation, Reason
from ledger.sandbox import SANDBOX_CURRENCY as EUR
from ledger.sandbox import make_sandbox
from ledger.state import prefix_of
from ledger.store import LedgerStore

SANDBOX = make_sandbox(3, label="query")
H = SANDBOX.holders
T0 = SANDBOX.genesis.genesis_time_ms


@pytest.fixture
def store(tmp_path):
    store = LedgerStore(tmp_path / "data")
    executor = Executor(store, default_registry(), SANDBOX.genesis, sync=False)
    executor.init_genesis()
    agent = SANDBOX.agent
    mints = [SANDBOX.call(agent, "cash", "mint", {"currency": EUR, "to": h.address, "amount": 1_000,
                                                  "deposit_ref": f"d{i}"}, nonce=i) for i, h in enumerate(H)]
    executor.apply(SANDBOX.batch(mints), 1, 1)
    pays = [SANDBOX.call(H[0], "cash", "transfer", {"currency": EUR, "to": H[1].address, "amount": n}, nonce=10 + n)
            for n in range(1, 6)]
    pays.append(SANDBOX.call(H[2], "cash", "transfer", {"currency": EUR, "to": H[0].address, "amount": 10**6},
                             nonce=99))
    executor.apply(SANDBOX.batch(pays, T0 + 1_000), 2, 1)
    yield store
    store.close()


def test_blocks_by_height_and_latest(store):
    latest = query.latest_block(store)
    assert latest.height == 2 and latest.block_hash == store.position.block_hash
    assert query.block_at(store, 1).header.height == 1
    assert query.block_at(store, 3) is None and query.block_at(store, -1) is None
    view = json.loads(json.dumps(latest.to_json()))
    assert view["header"]["prev_hash"] == query.block_at(store, 1).block_hash.hex()
    assert [r["reason"] for r in view["receipts"]] == ["OK"] * 5 + ["INSUFFICIENT_FREE_BALANCE"]


def test_a_transaction_by_id_comes_with_its_receipt_and_a_proof_that_it_is_in_the_block(store):
    block = store.block(2)
    for index, raw in enumerate(block.txs):
        tx_id = block.receipts[index].tx_id
        view = query.transaction(store, tx_id)
        assert (view.height, view.index, view.raw) == (2, index, raw)
        assert view.tx_root == block.header.tx_root and view.block_hash == block.hash()
        assert verify_proof(view.raw, list(view.proof), view.tx_root)
        out = json.loads(json.dumps(view.to_json()))
        assert out["tx"]["signer_addresses"] == [H[0].address if index < 5 else H[2].address]
    failed = json.loads(json.dumps(query.transaction(store, block.receipts[5].tx_id).to_json()))
    assert failed["receipt"]["valid"] is False and failed["receipt"]["reason"] == Reason.INSUFFICIENT_FREE_BALANCE
    assert query.transaction(store, bytes(32)) is None


def test_history_pages_with_a_cursor_until_the_end(store):
    first = query.history(store, H[0].address, limit=3)
    assert len(first.items) == 3 and first.next_cursor is not None
    items, after = list(first.items), first.next_cursor
    for _ in range(10):
        if after is None:
            break
        page = query.history(store, H[0].address, after=after, limit=3)
        items += page.items
        after = page.next_cursor
    assert after is None
    everything = query.history(store, H[0].address, limit=1000)
    assert [i.cursor for i in items] == [i.cursor for i in everything.items]
    tx_heights = [(i.height, i.index) for i in everything.items if i.tx_id is not None]
    assert tx_heights == [(1, 0)] + [(2, n) for n in range(5)]
    json.dumps(everything.to_json())
    with pytest.raises(ValueError):
        query.history(store, H[0].address, after="not-a-cursor")


def test_account_balances_from_the_holding_index(store):
    view = query.account_balances(store, H[1].address)
    assert [(b.asset, b.free, b.locked, b.total) for b in view.balances] == [(EUR, 1_015, 0, 1_015)]
    assert query.account_balances(store, SANDBOX.operator.address).balances == ()
    assert json.loads(json.dumps(view.to_json()))["balances"][0]["total"] == 1_015


def test_raw_state_get_and_bounded_scan(store):
    key = balances.balance_key(EUR, H[0].address)
    entry = query.state_get(store, key)
    assert entry.value == [1_000 - 15, 0]
    assert query.state_get(store, b"no such key") is None
    rows = query.state_scan(store, prefix_of("bal", EUR), limit=2)
    assert len(rows) == 2 and rows[0].key < rows[1].key
    assert len(query.state_scan(store, prefix_of("bal", EUR), limit=100)) == 3
    assert json.dumps([r.to_json() for r in rows])


def test_read_context_lets_contract_code_read_but_never_write(store):
    ctx = query.read_context(store)
    assert ctx.block.chain_id == SANDBOX.chain_id and ctx.block.height == 2 and ctx.block.time_ms == T0 + 1_000
    assert balances.get(ctx, EUR, H[2].address).free == 1_000
    assert [addr for addr, _ in balances.holders(ctx, EUR)] == sorted(h.address for h in H)
    with pytest.raises(InvariantViolation):
        ctx.put(b"x", 1)
    with pytest.raises(InvariantViolation):
        ctx.delete(balances.balance_key(EUR, H[2].address))
    assert balances.get(ctx, EUR, H[2].address).free == 1_000


def test_json_safe_turns_bytes_into_hex_everywhere():
    assert query.json_safe({"a": [b"\x01", (b"\xff", 2)], "b": None}) == {"a": ["01", ["ff", 2]], "b": None}
