"""Admission and the pool's limits (docs/NODE.md): expiry is settled by the ledger's time once a
transaction is handed off, admission refuses what block time has already expired, forwarded
frames are bounded before they are decoded, a resubmission racing its commit is a duplicate,
and one signer holds at most its share of the pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import keiretsu_node.node as node_module
from keiretsu_node import loadgen
from keiretsu_node.bootstrap import init_network
from keiretsu_node.client import KeyPair, build, call
from keiretsu_node.config import (
    MAX_FORWARDED_TXS_PER_FRAME,
    BatchingConfig,
    ConfigError,
    ConsensusConfig,
    MempoolConfig,
    NetworkSpec,
    NodeSpec,
    load_node,
    parse_network,
)
from keiretsu_node.mempool import Mempool, MempoolFull
from keiretsu_node.node import MAX_FORWARD_FRAME_BYTES, Node
from ledger import codec
from ledger.tx import SignedTx
from tests.cluster import free_ports

READY_POLLS = 500
HEIGHT_POLLS = 500
POLL_S = 0.01
SLOW_APPLY_S = 1.0  # a slow disk or a loaded leader: commit and apply take this long
SHORT_LIFETIME_MS = 400  # ordered at once, but expired by the clock before its block is applied
LEADER_SKEW_MS = 2 * 3600 * 1000
SLOW_VERIFY_S = 0.7
WAIT_S = 30
ANSWERED_WITHIN_S = 10  # far below WAIT_S: an answer by then came from the block, not the timeout
# Old code decoded a 16 MiB frame of nils whole before counting it: 176 MiB.
FORWARD_DECODE_PEAK_BYTES = 8 * 1024 * 1024
RAW_NETWORK = {"chain_id": "c", "nodes": [{"name": "n1", "host": "127.0.0.1", "p2p_port": 1, "api_port": 2}]}


@contextlib.asynccontextmanager
async def solo_node(folder: Path, mempool: MempoolConfig | None = None) -> AsyncIterator[Node]:
    """One node alone on 127.0.0.1, leading and ready; stopped on the way out."""
    p2p, api = free_ports(2)
    spec = NetworkSpec("limits-test", (NodeSpec("solo", "127.0.0.1", p2p, api),), ("operator",),
                       batching=BatchingConfig(max_txs=50, timeout_ms=5), mempool=mempool or MempoolConfig(),
                       consensus=ConsensusConfig(tick_ms=10, election_ticks=5))
    made = init_network(spec, folder / "net")
    n = Node(load_node(made.node_configs[0]))
    n.operator = KeyPair.load(made.operator_keys[0])  # type: ignore[attr-defined]
    await n.start()
    try:
        for _ in range(READY_POLLS):
            if n.readiness()[0]:
                break
            await asyncio.sleep(POLL_S)
        yield n
    finally:
        await n.stop()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with solo_node(tmp_path) as n:
        yield n


def admit(n: Node, signer: KeyPair | None = None, **build_options: Any) -> SignedTx:
    """A valid transaction signed by the operator (or `signer`, then valid in form only)."""
    return build(n.config.chain_id, call("participants", "admit", address=KeyPair.generate().address,
                                         name="investor", roles=["investor"], kyc_hash=bytes(32)),
                 [signer or n.operator], **build_options)  # type: ignore[attr-defined]


async def next_block(n: Node, height: int) -> None:
    for _ in range(HEIGHT_POLLS):
        if n.store.position.height > height:
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"no block after height {height}")


# ---------------------------------------------------------------- expiry: the ledger decides


async def test_a_transaction_ordered_before_its_expiry_is_answered_by_its_block_not_the_clock(node: Node) -> None:
    """It commits (its block's time is before its expiry) while applying is slow; the node's
    clock passes the expiry meanwhile. The client must hear 'committed', not 'dropped'."""
    real_apply = node.executor.apply

    def slow_apply(*args: Any, **kwargs: Any) -> Any:
        time.sleep(SLOW_APPLY_S)
        return real_apply(*args, **kwargs)

    node.executor.apply = slow_apply  # type: ignore[method-assign]
    tx = admit(node, expires_at_ms=int(time.time() * 1000) + SHORT_LIFETIME_MS)
    [outcome] = await node.submit([tx.raw])
    assert outcome.accepted, outcome
    status = await node.wait_for(tx.tx_id, WAIT_S)
    assert status["status"] == "committed", status
    assert status["receipt"]["result"] == "valid", status


async def test_a_handed_off_transaction_leaves_the_pool_when_block_time_passes_its_expiry(node: Node) -> None:
    """Past its expiry by this node's clock it stays (a leader's block may still hold it); the
    first block whose time is past its expiry removes it and answers its waiter 'dropped'."""
    for _ in range(READY_POLLS):  # housekeeping has seen this node lead (it requeues on a change)
        if node._last_leader == node.config.name:
            break
        await asyncio.sleep(POLL_S)
    now_ms = int(time.time() * 1000)
    tx = node.mempool.precheck(admit(node, expires_at_ms=now_ms + SHORT_LIFETIME_MS).raw, now_ms)
    node.mempool.add(tx, signatures_verified=False)
    assert [t.tx_id for t in node.mempool.take(now_ms, 1, 1 << 20)] == [tx.tx_id]  # as if forwarded
    waiting = asyncio.create_task(node.wait_for(tx.tx_id, WAIT_S))
    await asyncio.sleep(SHORT_LIFETIME_MS / 1000 + 3 * node_module.HOUSEKEEPING_INTERVAL_S)
    assert node.mempool.contains(tx.tx_id) and not waiting.done()
    height = node.store.position.height
    node._start_proposal([])  # a block of nothing, its time past the expiry
    await next_block(node, height)
    async with asyncio.timeout(ANSWERED_WITHIN_S):
        status = await waiting
    assert (status["status"], status["reason"]) == ("dropped", "EXPIRED"), status
    assert not node.mempool.contains(tx.tx_id)


def test_only_entries_never_handed_off_expire_by_the_local_clock() -> None:
    pool = Mempool("c", None, None, max_txs=10, max_bytes=1 << 20, verified_cache=None)  # type: ignore[arg-type]
    kept, sent = _fake_tx(1, 100), _fake_tx(2, 100)
    pool.add(kept, signatures_verified=False)
    pool.take(0, 1, 1 << 20)  # `kept` is handed off
    pool.add(sent, signatures_verified=False)
    pool.requeue_all()  # pending again, but it was handed off once: another node may order it
    assert pool.expire_unsent(200) == [sent.tx_id]
    assert pool.expire_unsent(300) == []
    assert pool.expire(300) == [kept.tx_id]


def _fake_tx(n: int, expires_at_ms: int, signer: bytes = b"k") -> Any:
    """What the pool reads of a transaction (as tests/test_mempool_housekeeping.py fakes it)."""
    tx_id = n.to_bytes(32, "big")
    return SimpleNamespace(tx_id=tx_id, raw=b"raw" + tx_id,
                           body=SimpleNamespace(expires_at_ms=expires_at_ms, signers=(signer,)))


# ---------------------------------------------------------------- a leader's clock ahead


async def test_block_time_ahead_of_the_clock_refuses_expiring_transactions_at_once_and_warns(
        node: Node, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real_now = node_module._now_ms
    with caplog.at_level(logging.WARNING, logger="keiretsu.node"):
        monkeypatch.setattr(node_module, "_now_ms", lambda: real_now() + LEADER_SKEW_MS)
        height = node.store.position.height
        node._start_proposal([])  # one block cut by a leader whose clock is 2 h fast
        await next_block(node, height)
        monkeypatch.setattr(node_module, "_now_ms", real_now)
        height = node.store.position.height
        node._start_proposal([])  # block time never goes backwards: still 2 h ahead
        await next_block(node, height)
    assert any("ahead of this node's clock" in r.getMessage() for r in caplog.records)
    ahead_s = node.metrics.registry.get_sample_value("keiretsu_block_time_ahead_seconds")
    assert ahead_s is not None and ahead_s > LEADER_SKEW_MS / 1000 / 2
    [outcome] = await node.submit([admit(node).raw])  # expires before block time: certain to be dropped
    assert (outcome.accepted, outcome.code) == (False, "EXPIRED"), outcome
    block_time_ms = node.store.position.time_ms
    [outcome] = await node.submit([admit(node, expires_at_ms=block_time_ms + 60_000).raw])
    assert outcome.accepted, outcome


# ---------------------------------------------------------------- forwarding bounds


def test_a_forward_batch_the_leader_would_discard_is_refused_at_the_door() -> None:
    at_bound = parse_network({**RAW_NETWORK, "mempool": {"forward_batch_txs": MAX_FORWARDED_TXS_PER_FRAME}})
    assert at_bound.mempool.forward_batch_txs == MAX_FORWARDED_TXS_PER_FRAME
    with pytest.raises(ConfigError, match=rf"mempool\.forward_batch_txs must be at most {MAX_FORWARDED_TXS_PER_FRAME}"):
        parse_network({**RAW_NETWORK, "mempool": {"forward_batch_txs": MAX_FORWARDED_TXS_PER_FRAME + 1}})


async def test_a_forwarded_frame_over_the_bounds_is_refused_before_it_is_decoded(node: Node) -> None:
    count = MAX_FORWARD_FRAME_BYTES - 64
    nils = b"\xdd" + count.to_bytes(4, "big") + b"\xc0" * count  # one array of 16 M nils
    good = admit(node)
    nested = codec.encode([good.raw, [b"x"] * 10])
    tracemalloc.start()
    try:
        node._on_forwarded("node2", nils)
        node._on_forwarded("node2", nested)  # refused whole: a follower only forwards byte strings
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak_bytes < FORWARD_DECODE_PEAK_BYTES, peak_bytes
    assert not node.mempool.contains(good.tx_id) and not node.store.has_tx(good.tx_id)
    node._on_forwarded("node2", codec.encode([good.raw]))  # a well-formed frame is still admitted
    assert node.mempool.contains(good.tx_id) or node.store.has_tx(good.tx_id)


# ---------------------------------------------------------------- a resubmission racing its commit


async def test_a_resubmission_committed_during_its_signature_check_is_a_duplicate(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    tx = admit(node)
    real_verify = node_module.verify_all

    def slow_verify(txs: list[SignedTx]) -> list[bool]:
        time.sleep(SLOW_VERIFY_S)  # a large request's signature checks
        return real_verify(txs)

    monkeypatch.setattr(node_module, "verify_all", slow_verify)
    submitting = asyncio.create_task(node.submit([tx.raw]))
    await asyncio.sleep(SLOW_VERIFY_S / 7)  # past precheck, in the signature check
    node._start_proposal([tx])  # the same transaction commits meanwhile, as if through another node
    [outcome] = await submitting
    assert node.store.has_tx(tx.tx_id)
    assert (outcome.accepted, outcome.code) == (False, "DUPLICATE"), outcome
    assert not node.mempool.contains(tx.tx_id)


async def test_a_waiter_on_a_copy_dropped_as_a_duplicate_of_a_committed_one_is_answered(node: Node) -> None:
    tx = admit(node)
    [outcome] = await node.submit([tx.raw])
    assert outcome.accepted and (await node.wait_for(tx.tx_id, WAIT_S))["status"] == "committed"
    node.mempool.add(tx, signatures_verified=False)  # pooled again (the race above, before its fix)
    waiting = asyncio.create_task(node.wait_for(tx.tx_id, WAIT_S))
    await asyncio.sleep(0)  # registered as a waiter
    node._start_proposal([tx])  # the executor drops this copy: DUPLICATE
    async with asyncio.timeout(ANSWERED_WITHIN_S):
        status = await waiting
    assert status["status"] == "committed", status
    assert not node.mempool.contains(tx.tx_id)


# ---------------------------------------------------------------- one signer's share of the pool


def test_one_signer_holds_at_most_its_share_and_others_still_get_in() -> None:
    pool = Mempool("c", None, None, max_txs=8, max_bytes=1 << 20, verified_cache=None)  # type: ignore[arg-type]
    assert pool.max_txs_per_signer == 2  # a quarter of max_txs by default
    first, second, third = (_fake_tx(n, 10**9, b"spammer") for n in range(3))
    pool.add(first, signatures_verified=False)
    pool.add(second, signatures_verified=False)
    with pytest.raises(MempoolFull, match="max_txs_per_signer"):
        pool.add(third, signatures_verified=False)
    assert pool.add(_fake_tx(10, 10**9, b"someone else"), signatures_verified=False)
    pool.remove([first.tx_id])
    assert pool.add(third, signatures_verified=False) and pool.held_by(b"spammer") == 2


async def test_a_signer_over_its_share_is_answered_busy_with_retry_after(tmp_path: Path) -> None:
    async with solo_node(tmp_path, MempoolConfig(max_txs=100, max_txs_per_signer=2)) as n:
        outcomes = await n.submit([admit(n).raw for _ in range(3)])  # added before any is cut
        assert [o.code for o in outcomes] == ["ACCEPTED", "ACCEPTED", "BUSY"], outcomes
        assert outcomes[2].retry_after_s >= 1
        [other] = await n.submit([admit(n, KeyPair.generate()).raw])  # another signer is not held back
        assert other.accepted, other


def test_the_per_signer_share_defaults_to_a_quarter_of_the_pool_and_fits_the_bench_seeding() -> None:
    assert parse_network({**RAW_NETWORK, "mempool": {"max_txs": 4_000}}).mempool.max_txs_per_signer == 1_000
    explicit = {"max_txs": 4_000, "max_txs_per_signer": 3_900}
    assert parse_network({**RAW_NETWORK, "mempool": explicit}).mempool.max_txs_per_signer == 3_900
    default = parse_network(RAW_NETWORK).mempool
    assert default.max_txs_per_signer == MempoolConfig().max_txs_per_signer == default.max_txs // 4
    # Seeding signs every admission with the operator and every funding with the treasury, with
    # at most this many in flight at once: never near one signer's share.
    assert loadgen.SEED_INFLIGHT_REQUESTS * loadgen.SEED_REQUEST_TXS * 4 <= default.max_txs_per_signer
