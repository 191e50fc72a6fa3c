"""The leader's batch cut: an idle leader proposes at once instead of waiting out the timeout."""

from __future__ import annotations

import asyncio

import pytest

from keiretsu_node.bootstrap import init_network
from keiretsu_node.client import KeyPair, build, call
from keiretsu_node.config import BatchingConfig, ConsensusConfig, NetworkSpec, NodeSpec, load_node
from keiretsu_node.node import Node
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
