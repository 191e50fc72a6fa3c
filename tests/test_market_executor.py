"""The venue through the real executor and LevelDB store: an order that matches settles in
the block that carries it, expiries run as block-start work, and the benchmark runs."""

from __future__ import annotations

from pathlib import Path

from contracts import market
from contracts.base import BlockContext, Context
from contracts.market_bench import (
    CURRENCY,
    _network,
    _setup,
    _Signer,
    run_market_bench,
)
from contracts.registry import default_registry
from ledger.executor import AppliedBlock, Executor
from ledger.keys import KeyPair
from ledger.state import Overlay
from ledger.store import LedgerStore
from ledger.tx import SignedTx


def _order(sign: _Signer, who: KeyPair, isin: str, side: str, price: int, **extra: object) -> SignedTx:
    return sign(who, "market", "place_order", {"isin": isin, "currency": CURRENCY, "side": side, "quantity": 10,
                                               "price": price, **extra})


def test_trade_and_settlement_share_one_block_and_expiry_is_block_start_work(tmp_path: Path) -> None:
    net = _network()
    sign = _Signer(net.sandbox)
    store = LedgerStore(tmp_path / "ledger")
    try:
        executor = Executor(store, default_registry(), net.sandbox.genesis, verify_signatures=False, sync=False)
        executor.init_genesis()
        isin, raft_index = _setup(executor, net, sign)
        maker, taker = net.makers[0], net.takers[0]
        start_ms = store.position.time_ms
        expires = start_ms + 10_000
        batch = [_order(sign, maker, isin, "sell", 500), _order(sign, taker, isin, "buy", 500),
                 _order(sign, maker, isin, "buy", 400, time_in_force="gtt", expires_at_ms=expires)]
        applied = executor.apply(net.sandbox.batch(batch, start_ms), raft_index + 1, 1)
        assert applied is not None and all(r.valid for r in applied.block.receipts)
        trade = [e for e in applied.block.receipts[1].events if e.kind == "trade"]
        assert [(t.attrs["seller"], t.attrs["buyer"], t.attrs["price"]) for t in trade] == \
            [(maker.address, taker.address, 500)]
        ctx = Context(Overlay(store.state), BlockContext(net.sandbox.chain_id, 0, start_ms), None, ())
        assert market.next_due_ms(ctx) == expires
        later = executor.apply(net.sandbox.batch([], expires), raft_index + 2, 1)
        assert later is not None
        assert [e.kind for e in later.block.system_events] == ["order_expired"]
        ctx = Context(Overlay(store.state), BlockContext(net.sandbox.chain_id, 0, expires), None, ())
        assert market.open_orders(ctx, maker.address) == []
        assert market.next_due_ms(ctx) is None
    finally:
        store.close()


def test_the_market_benchmark_runs_against_a_resting_book() -> None:
    result = run_market_bench(orders=200, resting=400, batch_size=100, sync=False)
    assert result["trades"] == 100  # every other order crosses and fills exactly one resting order
    assert result["orders_per_s"] > 0


def test_two_nodes_applying_the_same_order_flow_agree_on_every_block(tmp_path: Path) -> None:
    net = _network()
    sign = _Signer(net.sandbox)
    entries: list[tuple[bytes, int, int]] = []
    stores = [LedgerStore(tmp_path / "a"), LedgerStore(tmp_path / "b")]
    try:
        first, second = (Executor(s, default_registry(), net.sandbox.genesis, verify_signatures=False, sync=False)
                         for s in stores)
        for executor in (first, second):
            executor.init_genesis()
        real_apply = first.apply

        def recording_apply(batch: bytes, raft_index: int, raft_term: int) -> AppliedBlock | None:
            entries.append((batch, raft_index, raft_term))
            return real_apply(batch, raft_index, raft_term)

        first.apply = recording_apply  # type: ignore[method-assign, assignment]
        isin, raft_index = _setup(first, net, sign)
        start_ms = stores[0].position.time_ms
        flow = [_order(sign, net.makers[n % 3], isin, "sell" if n % 2 else "buy", 495 + n % 11,
                       time_in_force="gtt", expires_at_ms=start_ms + 1_000 * (1 + n % 4)) for n in range(60)]
        flow += [_order(sign, net.takers[n % 3], isin, "buy" if n % 2 else "sell", 500,
                        time_in_force=("ioc", "fok", "gtc")[n % 3]) for n in range(30)]
        for i in range(0, len(flow), 15):
            raft_index += 1
            first.apply(net.sandbox.batch(flow[i:i + 15], start_ms + 400 * i), raft_index, 1)
        for batch, index, term in entries:
            second.apply(batch, index, term)
        height = stores[0].position.height
        assert height == stores[1].position.height and height > 6
        blocks = [[store.block(h) for h in range(height + 1)] for store in stores]
        assert all(b is not None for b in blocks[0] + blocks[1])
        assert [b.hash() for b in blocks[0] if b] == [b.hash() for b in blocks[1] if b]
        trades = sum(1 for b in blocks[0] if b for r in b.receipts for e in r.events if e.kind == "trade")
        expired = sum(1 for b in blocks[0] if b for e in b.system_events if e.kind == "order_expired")
        assert trades > 0 and expired > 0
    finally:
        for store in stores:
            store.close()
