"""The venue benchmark: orders matched and settled per second through the real executor,
against a book holding `resting` orders.

Part of contracts/ (the venue). `python -m contracts.market_bench` runs it in-process on one
core with signature checks off; `keiretsu bench market` adds the network latency half.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.registry import default_registry
from ledger import gc_policy
from ledger.batch import MAX_BATCH_TXS
from ledger.executor import Executor
from ledger.genesis import Genesis
from ledger.keys import KeyPair
from ledger.sandbox import SANDBOX_CHAIN_ID, SANDBOX_GENESIS_TIME_MS, Sandbox, seeded_key
from ledger.store import LedgerStore
from ledger.tx import SignedTx

DEFAULT_ORDERS = 20_000
DEFAULT_RESTING = 10_000
DEFAULT_BATCH_SIZE = 1_000
MAX_BENCH_ORDERS = 1_000_000
TRADERS_PER_SIDE = 200  # makers and takers are different accounts, so no order self-trades
CURRENCY = "EUR"
LOT = 10  # every bench order is one lot: a crossing order fills exactly one resting order
PRICE_LEVELS = 500  # bids rest on 500..999, asks on 1001..1500 (EUR cents per share)
BID_TOP = 999
ASK_BOTTOM = 1001
CASH_EACH = 10**13
SHARES_EACH = 10**9


@dataclass(frozen=True)
class BenchNetwork:
    sandbox: Sandbox
    issuer: KeyPair
    makers: tuple[KeyPair, ...]
    takers: tuple[KeyPair, ...]


def _network() -> BenchNetwork:
    operator, agent, issuer = (seeded_key("market-bench/" + n) for n in ("operator", "agent", "issuer"))
    makers = tuple(seeded_key("market-bench/maker", i) for i in range(TRADERS_PER_SIDE))
    takers = tuple(seeded_key("market-bench/taker", i) for i in range(TRADERS_PER_SIDE))
    people = [{"address": agent.address, "roles": ["cash_agent"]}, {"address": issuer.address, "roles": ["issuer"]}]
    people += [{"address": k.address, "roles": ["investor"]} for k in makers + takers]
    app_state = {"operators": [operator.address], "participants": people,
                 "currencies": [{"code": CURRENCY, "decimals": 2, "agent": agent.address}]}
    genesis = Genesis(SANDBOX_CHAIN_ID, SANDBOX_GENESIS_TIME_MS, (), app_state)
    return BenchNetwork(Sandbox(genesis, operator, agent, makers + takers), issuer, makers, takers)


class _Signer:
    """Signs calls with fresh nonces (every transaction id differs)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.nonce = 0

    def __call__(self, keys: KeyPair, contract: str, method: str, args: dict[str, Any]) -> SignedTx:
        self.nonce += 1
        return self.sandbox.call(keys, contract, method, args, nonce=self.nonce)


def _order(sign: _Signer, isin: str, who: KeyPair, side: str, price: int, tif: str = "gtc") -> SignedTx:
    return sign(who, "market", "place_order", {"isin": isin, "currency": CURRENCY, "side": side,
                                               "quantity": LOT, "price": price, "time_in_force": tif})


def resting_orders(sign: _Signer, isin: str, net: BenchNetwork, count: int) -> list[SignedTx]:
    """Half bids, half asks, spread over PRICE_LEVELS levels each side, all from makers."""
    txs = []
    for n in range(count):
        maker = net.makers[n % len(net.makers)]
        level = (n // 2) % PRICE_LEVELS
        if n % 2 == 0:
            txs.append(_order(sign, isin, maker, "buy", BID_TOP - level))
        else:
            txs.append(_order(sign, isin, maker, "sell", ASK_BOTTOM + level))
    return txs


def flow(sign: _Signer, isin: str, net: BenchNetwork, count: int) -> list[SignedTx]:
    """A steady book: a taker buy lifts the best ask, a maker sell replaces it (rests), a taker
    sell hits the best bid, a maker buy replaces it. Half the orders trade, half rest."""
    txs = []
    for n in range(count):
        taker = net.takers[n % len(net.takers)]
        maker = net.makers[(n * 7) % len(net.makers)]
        level = (n // 4) % PRICE_LEVELS
        step = n % 4
        if step == 0:
            txs.append(_order(sign, isin, taker, "buy", ASK_BOTTOM + PRICE_LEVELS, "ioc"))
        elif step == 1:
            txs.append(_order(sign, isin, maker, "sell", ASK_BOTTOM + level))
        elif step == 2:
            txs.append(_order(sign, isin, taker, "sell", BID_TOP - PRICE_LEVELS, "ioc"))
        else:
            txs.append(_order(sign, isin, maker, "buy", BID_TOP - level))
    return txs


def _apply_all(executor: Executor, sandbox: Sandbox, txs: list[SignedTx], batch_size: int,
               raft_index: int) -> tuple[int, int, int]:
    """Apply in batches; (raft index reached, trades made, refused transactions)."""
    trades = refused = 0
    for start in range(0, len(txs), batch_size):
        raft_index += 1
        applied = executor.apply(sandbox.batch(txs[start:start + batch_size]), raft_index, 1)
        if applied is None or applied.dropped:
            raise RuntimeError("a benchmark batch was dropped: the benchmark is broken")
        for receipt in applied.block.receipts:
            refused += not receipt.valid
            trades += sum(1 for event in receipt.events if event.kind == "trade")
    return raft_index, trades, refused


def _setup(executor: Executor, net: BenchNetwork, sign: _Signer) -> tuple[str, int]:
    """Register and issue the equity, fund everyone, open the book; (isin, raft index)."""
    sandbox = net.sandbox
    register = sign(net.issuer, "securities", "register", {
        "name": "Bench SME", "kind": "equity", "authorised_supply": 10**15, "prospectus_hash": bytes(32),
        "prospectus_uri": "https://example.org/bench"})
    applied = executor.apply(sandbox.batch([register]), 1, 1)
    if applied is None or not applied.block.receipts[0].valid:
        raise RuntimeError("registering the bench equity failed")
    isin = applied.block.receipts[0].events[0].attrs["isin"]
    funding = []
    for trader in net.makers + net.takers:
        funding.append(sign(sandbox.agent, "cash", "mint", {"currency": CURRENCY, "to": trader.address,
                                                            "amount": CASH_EACH, "deposit_ref": "bench"}))
        funding.append(sign(net.issuer, "securities", "issue", {"isin": isin, "to": trader.address,
                                                                "quantity": SHARES_EACH}))
    funding.append(sign(sandbox.operator, "market", "open_book", {"isin": isin, "currency": CURRENCY,
                                                                  "tick_size": 1, "lot_size": 1}))
    raft_index, _, refused = _apply_all(executor, sandbox, funding, DEFAULT_BATCH_SIZE, 1)
    if refused:
        raise RuntimeError("funding the bench traders failed")
    return isin, raft_index


def run_market_bench(orders: int = DEFAULT_ORDERS, resting: int = DEFAULT_RESTING, *,
                     batch_size: int = DEFAULT_BATCH_SIZE, sync: bool = True) -> dict[str, Any]:
    """Orders/s through Executor.apply (signature checks off) against `resting` resting orders."""
    if not 0 < orders <= MAX_BENCH_ORDERS or not 0 <= resting <= MAX_BENCH_ORDERS:
        raise ValueError(f"orders 1..{MAX_BENCH_ORDERS}, resting 0..{MAX_BENCH_ORDERS}")
    net = _network()
    sign = _Signer(net.sandbox)
    with tempfile.TemporaryDirectory(prefix="keiretsu-market-bench-") as data_dir:
        store = LedgerStore(data_dir)
        try:
            executor = Executor(store, default_registry(), net.sandbox.genesis, verify_signatures=False, sync=sync)
            executor.init_genesis()
            isin, raft_index = _setup(executor, net, sign)
            raft_index, _, refused = _apply_all(executor, net.sandbox, resting_orders(sign, isin, net, resting),
                                                batch_size, raft_index)
            measured = flow(sign, isin, net, orders)
            started, started_cpu = time.perf_counter(), time.process_time()
            raft_index, trades, refused = _apply_all(executor, net.sandbox, measured, batch_size, raft_index)
            seconds = time.perf_counter() - started
            # CPU seconds of this process: on a shared machine wall time also counts others' work.
            cpu_seconds = time.process_time() - started_cpu
        finally:
            store.close()
    if refused:
        raise RuntimeError(f"{refused} benchmark orders were refused: the benchmark is broken")
    return {"orders": orders, "resting": resting, "batch_size": batch_size, "synced_commits": sync,
            "verify_signatures": False, "trades": trades, "seconds": round(seconds, 4),
            "cpu_seconds": round(cpu_seconds, 4), "orders_per_s": int(orders / seconds),
            "trades_per_s": int(trades / seconds), "orders_per_cpu_s": int(orders / max(cpu_seconds, 1e-9))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keiretsu bench market", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS)
    parser.add_argument("--resting", type=int, default=DEFAULT_RESTING)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    for name, value, low, high in (("--orders", args.orders, 1, MAX_BENCH_ORDERS),
                                   ("--resting", args.resting, 0, MAX_BENCH_ORDERS),
                                   ("--batch-size", args.batch_size, 1, MAX_BATCH_TXS)):
        if not low <= value <= high:
            parser.error(f"{name} must be {low:,}..{high:,}")  # a usage line, not a traceback
    gc_policy.tune_for_blocks()  # as a node runs (keiretsu_node/node.py)
    result = run_market_bench(args.orders, args.resting, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['orders_per_s']:,} orders/s ({result['orders_per_cpu_s']:,} per CPU second), "
              f"{result['trades_per_s']:,} trades/s "
              f"({result['orders']:,} orders, {result['trades']:,} trades, {result['resting']:,} resting, "
              f"batches of {result['batch_size']:,}, signatures off, synced commits)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
