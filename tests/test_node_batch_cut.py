"""The leader's batch cut: an idle leader proposes at once instead of waiting out the timeout."""

from __future__ import annotations

import asyncio
import random

import pytest

from consensus.config import RaftConfig
from consensus.errors import ProposalRefused
from consensus.raft import MAX_ENTRY_BYTES, PersistentState, Raft
from consensus.ready import Role
from keiretsu_node.bootstrap import init_network
from keiretsu_node.client import KeyPair, build, call
from keiretsu_node.config import (
    MAX_BATCH_TXS_LIMIT,
    MAX_PREFERRED_BATCH_BYTES,
    BatchingConfig,
    ConfigError,
    ConsensusConfig,
    NetworkSpec,
    NodeSpec,
    load_node,
    parse_network,
)
from keiretsu_node.node import Node
from ledger.batch import Batch
from tests.cluster import free_ports

# Far longer than the wait below: a transaction that commits did not wait for the timeout.
BATCH_TIMEOUT_MS = 600_000
COMMIT_WAIT_S = 30
READY_POLLS = 500


@pytest.fixture
async def node(tmp_path):
    p2p, api = free_ports(2)
    spec = NetworkSpec("cut-test", (NodeSpec("solo", "127.0.0.1", p2p, api),), ("operator",),
                       batching=BatchingConfig(max_txs=50, timeout_ms=BATCH_TIMEOUT_MS),
                       consensus=ConsensusConfig(tick_ms=10, election_ticks=5))
    made = init_network(spec, tmp_path / "net")
    n = Node(load_node(made.node_configs[0]))
    n.operator = KeyPair.load(made.operator_keys[0])
    await n.start()
    for _ in range(READY_POLLS):
        if n.readiness()[0]:
            break
        await asyncio.sleep(0.01)
    yield n
    await n.stop()


async def test_an_idle_leader_proposes_a_lone_transaction_without_waiting_for_the_batch_timeout(node) -> None:
    key = KeyPair.generate()
    tx = build(node.config.chain_id, call("participants", "admit", address=key.address, name="investor",
                                          roles=["investor"], kyc_hash=bytes(32)), [node.operator])
    [outcome] = await node.submit([tx.raw])
    assert outcome.accepted, outcome
    status = await node.wait_for(tx.tx_id, COMMIT_WAIT_S)
    assert status["status"] == "committed", status
    assert status["receipt"]["result"] == "valid", status


def test_a_preferred_batch_size_raft_would_refuse_is_refused_at_the_door() -> None:
    """A batch is one Raft entry; a leader cutting batches Raft refuses would retry them for ever."""
    raw = {"chain_id": "c", "nodes": [{"name": "n1", "host": "127.0.0.1", "p2p_port": 1, "api_port": 2}]}
    at_bound = {**raw, "batching": {"preferred_bytes": MAX_PREFERRED_BATCH_BYTES, "max_txs": MAX_BATCH_TXS_LIMIT}}
    assert parse_network(at_bound).batching.preferred_bytes == MAX_PREFERRED_BATCH_BYTES
    with pytest.raises(ConfigError, match=r"batching\.preferred_bytes must be at most"):
        parse_network({**raw, "batching": {"preferred_bytes": MAX_PREFERRED_BATCH_BYTES + 1}})


def test_the_largest_batch_the_configuration_allows_is_one_raft_accepts() -> None:
    """MAX_BATCH_TXS_LIMIT transactions of MAX_PREFERRED_BATCH_BYTES together (the mempool never
    hands out more), framed as the leader frames them, fit in MAX_ENTRY_BYTES."""
    size = MAX_PREFERRED_BATCH_BYTES // MAX_BATCH_TXS_LIMIT
    txs = tuple(bytes([i % 256]) * size for i in range(MAX_BATCH_TXS_LIMIT))
    data = Batch(2**63 - 1, txs).encode()
    assert len(data) <= MAX_ENTRY_BYTES
    core = Raft(RaftConfig(node_id="solo", rng=random.Random(1)), PersistentState.bootstrap(("solo",)))
    for _ in range(10 * core.cfg.election_ticks):
        core.tick()
        while core.has_ready():
            core.advance(core.ready())
        if core.role == Role.LEADER:
            break
    assert core.role == Role.LEADER
    assert core.propose(data) > 0
    with pytest.raises(ProposalRefused):
        core.propose(data + bytes(MAX_ENTRY_BYTES - len(data) + 1))
