"""After a snapshot install the mempool lets go of what the installed ledger already committed."""

from __future__ import annotations

from contracts.registry import default_registry
from keiretsu_node.mempool import Mempool
from ledger.executor import VerifiedCache
from tests.test_node_decoded_handoff import SANDBOX, T0, blocks, executor


def test_transactions_the_installed_store_committed_leave_the_pool_and_the_rest_stay() -> None:
    mints = blocks()[0]
    with executor() as behind, executor() as ahead:
        pool = Mempool(SANDBOX.chain_id, default_registry(), behind.store, max_txs=10, max_bytes=1 << 20,
                       verified_cache=VerifiedCache(max_entries=10), max_txs_per_signer=10)  # one agent signs them
        for tx in mints:
            pool.add(pool.precheck(tx.raw, T0), signatures_verified=False)
        assert pool.remove_committed() == []  # nothing of these is in this node's own ledger
        applied = ahead.apply(SANDBOX.batch(mints[:2], T0), 1, 1)  # the ledger a snapshot brings
        assert applied is not None and len(applied.block.txs) == 2
        pool.store = ahead.store  # what Node._on_store_replaced does at an install
        assert sorted(pool.remove_committed()) == sorted(tx.tx_id for tx in mints[:2])
        assert [pool.contains(tx.tx_id) for tx in mints] == [False, False, True]
        assert len(pool) == 1 and pool.take(T0, 10, 1 << 20)[0].tx_id == mints[2].tx_id
