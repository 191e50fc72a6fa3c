"""A follower stopped long enough to fall behind the leader's compaction point catches up
through a snapshot in a live 3-node cluster (real processes, TCP, LevelDB), and ends with the
same blocks. A small byte bound on the Raft log makes the leader compact after a few batches.
"""

from __future__ import annotations

import hashlib

import pytest

from keiretsu_node.client import KeyPair, build, call
from keiretsu_node.config import ConsensusConfig
from tests.cluster import LocalCluster

SMALL_LOG = ConsensusConfig(tick_ms=20, election_ticks=10, compact_after_bytes=32 * 1024,
                            compact_keep_bytes=4 * 1024)
# The leader keeps streaming APPENDs to a peer it believes in (up to max_inflight_appends, 64)
# and the transport queues them for the reconnect, so the follower must miss more entries than
# that; 80 batches of ~2.2 KB also pass the 32 KiB bound five times.
BATCHES_WHILE_DOWN = 80
TRANSFERS_PER_BATCH = 10


async def _commit(client, chain_id, the_call, signers) -> dict:
    status = await client.submit(build(chain_id, the_call, signers), wait=True, timeout_ms=20_000)
    assert status["status"] == "committed", status
    return status


@pytest.mark.slow
async def test_a_follower_behind_the_compaction_point_catches_up_by_snapshot(tmp_path) -> None:
    cluster = LocalCluster(tmp_path, consensus=SMALL_LOG)
    cluster.start_all()
    try:
        await cluster.wait_ready()
        leader = await cluster.leader()
        bank, ana, bruno = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
        chain, op = cluster.chain_id, cluster.operator
        async with cluster.client(leader) as c:
            for key, role in ((bank, "cash_agent"), (ana, "investor"), (bruno, "investor")):
                await _commit(c, chain, call("participants", "admit", address=key.address, name=role,
                                             roles=[role], kyc_hash=hashlib.sha256(key.public_key).digest()), [op])
            await _commit(c, chain, call("cash", "register_currency", currency="MXN", decimals=2,
                                         agent=bank.address), [op])
            await _commit(c, chain, call("cash", "mint", currency="MXN", to=ana.address, amount=10**9,
                                         deposit_ref="d1"), [bank])
        follower = next(n for n in cluster.names if n != leader)
        cluster.kill(follower)
        async with cluster.client(leader) as c:
            for _ in range(BATCHES_WHILE_DOWN):
                txs = [build(chain, call("cash", "transfer", currency="MXN", to=bruno.address, amount=1), [ana])
                       for _ in range(TRANSFERS_PER_BATCH)]
                results = await c.submit_batch(txs, wait=True, timeout_ms=20_000)
                assert all(r["status"] == "committed" for r in results), results
            height = (await c.status())["height"]
        cluster.start(follower)
        await cluster.wait_ready([follower])
        await cluster.wait_height(height, [follower], timeout_s=60)
        assert "installed a snapshot of the ledger" in cluster.log_tail(follower, 200)
        assert await cluster.block_hashes(follower, height) == await cluster.block_hashes(leader, height)
        async with cluster.client(follower) as c:  # and it goes on from the snapshot
            status = await _commit(c, chain, call("cash", "transfer", currency="MXN", to=bruno.address,
                                                  amount=1), [ana])
        await cluster.wait_height(status["height"], cluster.names)
    finally:
        cluster.stop_all()
