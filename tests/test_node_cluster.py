"""Real node processes on 127.0.0.1: agreement, leader failure, catch-up, refused strangers."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from keiretsu_node.client import KeyPair, build, call
from p2p.identity import NodeIdentity, PeerInfo
from p2p.transport import Transport
from tests.cluster import LocalCluster, free_ports


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(tmp_path)
    c.start_all()
    yield c
    c.stop_all()


async def _commit(client, chain_id, the_call, signers):
    status = await client.submit(build(chain_id, the_call, signers), wait=True, timeout_ms=20_000)
    assert status["status"] == "committed", status
    assert status["receipt"]["result"] == "valid", status["receipt"]
    return status


async def _setup_money(cluster: LocalCluster, via: str) -> tuple[KeyPair, KeyPair, KeyPair]:
    bank, ana, bruno = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    op, chain = cluster.operator, cluster.chain_id
    async with cluster.client(via) as c:
        for key, role in ((bank, "cash_agent"), (ana, "investor"), (bruno, "investor")):
            await _commit(c, chain, call("participants", "admit", address=key.address, name=role, roles=[role],
                                         kyc_hash=hashlib.sha256(key.public_key).digest()), [op])
        await _commit(c, chain, call("cash", "register_currency", currency="MXN", decimals=2, agent=bank.address), [op])
        await _commit(c, chain, call("cash", "mint", currency="MXN", to=ana.address, amount=100_000,
                                     deposit_ref="d1"), [bank])
    return bank, ana, bruno


async def test_three_nodes_agree_on_state_submitted_through_one(cluster: LocalCluster) -> None:
    await cluster.wait_ready()
    _, ana, bruno = await _setup_money(cluster, "node2")
    async with cluster.client("node3") as c:
        status = await _commit(c, cluster.chain_id, call("cash", "transfer", currency="MXN", to=bruno.address,
                                                         amount=2_500), [ana])
    height = status["height"]
    views = []
    for name in cluster.names:  # no waiting: a linearizable read reflects the acknowledged commit
        async with cluster.client(name) as c:
            views.append(((await c.account(ana.address, linearizable=True))["balances"],
                          (await c.account(bruno.address, linearizable=True))["balances"]))
    assert all(v == views[0] for v in views)
    assert views[0][0]["MXN"]["free"] == 97_500 and views[0][1]["MXN"]["free"] == 2_500
    hashes = [await cluster.block_hashes(n, height) for n in cluster.names]
    assert hashes[0] == hashes[1] == hashes[2]


@pytest.mark.slow
async def test_leader_killed_new_leader_elected_and_restarted_node_catches_up(cluster: LocalCluster) -> None:
    await cluster.wait_ready()
    _, ana, bruno = await _setup_money(cluster, "node1")
    old_leader = await cluster.leader()
    cluster.kill(old_leader)
    survivors = [n for n in cluster.names if n != old_leader]
    new_leader = await cluster.leader()
    assert new_leader in survivors
    async with cluster.client(survivors[0]) as c:
        for _ in range(5):
            status = await _commit(c, cluster.chain_id, call("cash", "transfer", currency="MXN", to=bruno.address,
                                                             amount=100), [ana])
    height = status["height"]
    cluster.start(old_leader)
    await cluster.wait_ready([old_leader])
    await cluster.wait_height(height, cluster.names, timeout_s=60)
    hashes = [await cluster.block_hashes(n, height) for n in cluster.names]
    assert hashes[0] == hashes[1] == hashes[2]
    async with cluster.client(old_leader) as c:
        assert (await c.account(bruno.address))["balances"]["MXN"]["free"] == 500


async def test_a_process_not_in_genesis_cannot_link_to_the_cluster(cluster: LocalCluster) -> None:
    await cluster.wait_ready()
    node1 = cluster.genesis.nodes[0]
    rogue = NodeIdentity.generate("node1")  # even claiming a real node's name, its key is not pinned
    peers = [PeerInfo(n.name, n.host, n.p2p_port, n.certificate_pem) for n in cluster.genesis.nodes[1:]]
    peers.append(rogue.peer_info("127.0.0.1", free_ports(1)[0]))
    transport = Transport(rogue, peers, "127.0.0.1", peers[-1].port, chain_id=cluster.chain_id)
    await transport.start()
    try:
        await asyncio.sleep(2)
        assert transport.connected_peers() == []
    finally:
        await transport.stop()
    async with cluster.client("node2") as c:
        status = await c.status()
    assert {p["name"]: p["connected"] for p in status["peers"]}[node1.name] is True

