"""The node hands the executor the transactions its mempool already decoded: same blocks, one decode."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from contracts.registry import default_registry
from keiretsu_node.mempool import Mempool
from ledger.executor import Executor, VerifiedCache
from ledger.sandbox import SANDBOX_CURRENCY as EUR
from ledger.sandbox import make_sandbox
from ledger.store import LedgerStore
from ledger.tx import SignedTx

SANDBOX = make_sandbox(3)
AGENT, H = SANDBOX.agent, SANDBOX.holders
T0 = SANDBOX.genesis.genesis_time_ms


@contextmanager
def executor() -> Iterator[Executor]:
    with tempfile.TemporaryDirectory(prefix="keiretsu-test-") as data_dir:
        store = LedgerStore(data_dir)
        try:
            ex = Executor(store, default_registry(), SANDBOX.genesis, sync=False)
            ex.init_genesis()
            yield ex
        finally:
            store.close()


def blocks() -> list[list[SignedTx]]:
    mints = [SANDBOX.call(AGENT, "cash", "mint", {"currency": EUR, "to": h.address, "amount": 1_000,
                                                  "deposit_ref": "d"}, nonce=i) for i, h in enumerate(H)]
    moves = [SANDBOX.call(H[i % 3], "cash", "transfer", {"currency": EUR, "to": H[(i + 1) % 3].address,
                                                         "amount": 400}, nonce=100 + i) for i in range(6)]
    return [mints, [*moves, moves[0]]]  # the second block overdraws and repeats a transaction


def test_reusing_decoded_transactions_gives_the_same_blocks_and_state_as_decoding_them() -> None:
    known = {tx.raw: tx for txs in blocks() for tx in txs[::2]}  # a node holds some, not all
    asked: list[bytes] = []

    def decoded(raw: bytes) -> SignedTx | None:
        asked.append(raw)
        return known.get(raw)

    with executor() as plain, executor() as reusing:
        for index, txs in enumerate(blocks(), start=1):
            batch = SANDBOX.batch(txs, T0)
            a = plain.apply(batch, index, 1)
            b = reusing.apply(batch, index, 1, decoded=decoded)
            assert a is not None and b is not None
            assert a.block.hash() == b.block.hash()
            assert a.dropped == b.dropped
            assert [tx.raw for tx in a.txs] == [tx.raw for tx in b.txs]
            reused = [tx for tx in b.txs if tx.raw in known]
            assert reused and all(tx is known[tx.raw] for tx in reused)  # used, not decoded again
        assert plain.store.position == reusing.store.position
    assert len(asked) == sum(len(txs) for txs in blocks())


def test_the_mempool_answers_by_bytes_while_it_holds_a_transaction() -> None:
    with executor() as ex:
        pool = Mempool(SANDBOX.chain_id, default_registry(), ex.store, max_txs=10, max_bytes=1 << 20,
                       verified_cache=VerifiedCache(max_entries=10))
        tx = blocks()[1][0]
        assert pool.decoded(tx.raw) is None
        pool.add(pool.precheck(tx.raw, T0), signatures_verified=False)
        held = pool.decoded(bytes(bytearray(tx.raw)))  # equal bytes, another object (as a batch decodes them)
        assert held is not None and held.tx_id == tx.tx_id
        pool.remove([tx.tx_id])
        assert pool.decoded(tx.raw) is None
