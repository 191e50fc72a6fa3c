"""A Keiretsu node: ledger, consensus, transport, mempool and HTTP API assembled and run.

Part of keiretsu_node/. The node holds no business rule: it admits transactions, lets the
leader cut them into batches that Raft orders, applies every committed batch through the
ledger executor, and tells clients what happened.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import plyvel
from aiohttp import web

from consensus.driver import DriverStopped
from consensus.log import LogInvariantError
from contracts.base import Context
from contracts.registry import default_registry
from keiretsu_node import api, memtrace
from keiretsu_node.allocator import Allocator
from keiretsu_node.blocktrace import TRACE
from keiretsu_node.config import MAX_FORWARDED_TXS_PER_FRAME, BatchingConfig, NodeConfig
from keiretsu_node.consensus_link import RAFT_LOG_DIR, ConsensusLink
from keiretsu_node.events import EventHub, NodeEvent
from keiretsu_node.jsonview import receipt_json
from keiretsu_node.ledger_app import LEDGER_DIR, LedgerApp, recover_dirs
from keiretsu_node.mempool import REFORWARD_AFTER_MS, REPROPOSE_AFTER_MS, Mempool, MempoolFull
from keiretsu_node.metrics import NodeMetrics
from keiretsu_node.waiters import BatchWait, Waiters
from ledger import codec
from ledger.batch import Batch
from ledger.executor import AppliedBlock, Executor, VerifiedCache, verify_all
from ledger.genesis import Genesis
from ledger.merkle import merkle_proof
from ledger.query import ReadContext
from ledger.reasons import Reason, TxRejected
from ledger.store import LedgerStore, StoreError
from ledger.tx import MAX_TX_BYTES, SignedTx
from p2p.identity import NodeIdentity, PeerInfo
from p2p.transport import Transport

log = logging.getLogger("keiretsu.node")

TX_CHANNEL = "tx"
HOUSEKEEPING_INTERVAL_S = 0.25
MAX_FORWARD_FRAME_BYTES = 16 * 1024 * 1024
# A block time this far ahead of the node's clock is logged at most once per interval.
CLOCK_WARNING_INTERVAL_S = 60.0
RECENT_DROPPED_ENTRIES = 100_000
READY_MAX_LAG_ENTRIES = 16
MAX_WAITERS = 100_000
# Transactions whose signatures admission checked, so the executor need not check them again. It
# only has to cover what waits between admission and execution (at most a few thousand under
# the bench's load); a miss costs a second check, never a wrong result. Full, 9.1 MiB (measured
# with tracemalloc), where the executor's default of 200,000 held ~22 MiB.
VERIFIED_TX_ENTRIES = 65_536
STOP_TASKS_TIMEOUT_S = 5
API_SHUTDOWN_TIMEOUT_S = 2  # in-flight requests (a client waiting for commit) get this long
# aiohttp's idle cut: also ends a connection that has not finished sending its request headers
# (slow-loris) this long after it opened; body reads have their own timeout in api.py.
API_IDLE_TIMEOUT_S = 15.0


class NodeError(RuntimeError):
    """The node cannot start with this configuration or data; the message says why."""


@dataclass(frozen=True)
class SubmitOutcome:
    tx_id: bytes | None
    accepted: bool
    code: str
    detail: str
    retry_after_s: int = 0

    @property
    def tx_id_hex(self) -> str | None:
        return self.tx_id.hex() if self.tx_id is not None else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tx_id": self.tx_id_hex, "accepted": self.accepted, "code": self.code}
        if self.detail:
            out["detail"] = self.detail
        if self.accepted:
            out["status"] = "pending"
        return out


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """True if the event was set within timeout_s.

    asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
    arrives as the inner wait completes, and a loop written with it then never stops.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        return False
    return True


def _now_ms() -> int:
    return int(time.time() * 1000)


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.allocator = Allocator()
        self.allocator.configure()  # before LevelDB and the thread pools start their threads
        self.genesis = self._load_genesis(config)
        TRACE.start(config.name)  # opt-in (KEIRETSU_BLOCKTRACE), for measuring only
        self.identity = self._load_identity(config)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        recover_dirs(config.data_dir)
        try:
            self.store = LedgerStore(config.data_dir / LEDGER_DIR)
        except StoreError as exc:
            raise NodeError(str(exc)) from exc
        self.registry = default_registry()
        self.verified_cache = VerifiedCache(max_entries=VERIFIED_TX_ENTRIES)
        self.executor = Executor(self.store, self.registry, self.genesis, verified_cache=self.verified_cache,
                                 sync=config.fsync)
        if TRACE.on:  # the ledger's synced write of each block, timed apart from its execution
            self.store.commit = TRACE.timed("ledgercommit", self.store.commit)  # type: ignore[method-assign]
        try:
            _verify_checksums(self.store.db, self.store.path)
            self.store.verify_blocks()
            self.executor.init_genesis()
            self.store.check_head()
        except StoreError as exc:
            self.store.close()
            raise NodeError(str(exc)) from exc
        self.mempool = Mempool(config.chain_id, self.registry, self.store, max_txs=config.mempool.max_txs,
                               max_bytes=config.mempool.max_bytes, verified_cache=self.verified_cache,
                               max_txs_per_signer=config.mempool.max_txs_per_signer)
        self.metrics = NodeMetrics()
        self._clock_warned_at_s = -CLOCK_WARNING_INTERVAL_S  # time.monotonic() of the last warning
        self.events = EventHub(config.api.max_event_subscribers)
        peers = [PeerInfo(n.name, n.host, n.p2p_port, n.certificate_pem) for n in self.genesis.nodes]
        self.transport = Transport(self.identity, peers, config.p2p_host, config.p2p_port,
                                   chain_id=config.chain_id)
        self.app = LedgerApp(self.executor, config.data_dir, self._on_block, self._on_store_replaced,
                             decoded=self.mempool.decoded)
        try:
            raft_dir = config.data_dir / RAFT_LOG_DIR
            if raft_dir.exists():
                with plyvel.DB(str(raft_dir), paranoid_checks=True) as raft_db:
                    _verify_checksums(raft_db, raft_dir)
            self.consensus = ConsensusLink(config, [n.name for n in self.genesis.nodes], self.transport, self.app)
        except (plyvel.Error, StoreError) as exc:
            self.store.close()
            raise NodeError(f"cannot open the raft log in {config.data_dir}: {_one_line(exc)}") from exc
        self._waiters = Waiters(MAX_WAITERS)
        self._dropped: OrderedDict[bytes, tuple[str, str]] = OrderedDict()
        self._tx_arrived = asyncio.Event()  # wakes the leader's cut loop
        self._forward_wakeup = asyncio.Event()  # wakes the follower's forward loop
        # Set when the leader should cut now rather than wait out batching.timeout_ms: the pool
        # holds a full batch, or the last proposal in flight finished (the pipeline is idle).
        self._cut_now = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()  # proposals not yet committed
        self._inflight_freed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self._last_leader = ""
        # Resolved (with the reason) if consensus stops under a running node, e.g. a write failed
        # on a full disk: the process must then exit rather than limp on serving a frozen ledger.
        self.failure: asyncio.Future[str] | None = None
        self.transport.register(TX_CHANNEL, self._on_forwarded)

    # ------------------------------------------------------------ assembly checks

    @staticmethod
    def _load_genesis(config: NodeConfig) -> Genesis:
        try:
            genesis = Genesis.load(config.genesis_path)
        except (OSError, ValueError) as exc:
            raise NodeError(f"cannot read genesis {config.genesis_path}: {exc}") from exc
        if genesis.chain_id != config.chain_id:
            raise NodeError(f"genesis is for chain {genesis.chain_id!r}, config says {config.chain_id!r}")
        if config.name not in [n.name for n in genesis.nodes]:
            raise NodeError(f"node {config.name!r} is not named in the genesis")
        return genesis

    def _load_identity(self, config: NodeConfig) -> NodeIdentity:
        try:
            identity = NodeIdentity.load(config.identity_dir)
        except Exception as exc:  # IdentityError or an unreadable file: either way, refuse to start
            raise NodeError(f"cannot load node identity from {config.identity_dir}: {exc}") from exc
        entry = next(n for n in self.genesis.nodes if n.name == config.name)
        if identity.name != config.name or identity.public_key_hex != entry.node_public_key:
            raise NodeError(f"the identity in {config.identity_dir} is not the one genesis names for {config.name}")
        return identity

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.failure = asyncio.get_running_loop().create_future()
        await self.transport.start()
        try:
            await self.consensus.start()
        except (LogInvariantError, RuntimeError) as exc:  # the driver refuses a log it cannot resume
            raise NodeError(f"the raft log in {self.config.data_dir} does not agree with the ledger beside it ({exc}); "
                            "restore this node's data directory or resync it from the cluster") from exc
        self._runner = web.AppRunner(api.make_app(self), access_log=None, keepalive_timeout=API_IDLE_TIMEOUT_S,
                                     shutdown_timeout=API_SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.api_host, self.config.api_port)
        await site.start()
        for coro, name in ((self._cut_loop(), "cutter"), (self._forward_loop(), "forwarder"),
                           (self._housekeeping_loop(), "housekeeping")):
            self._tasks.append(asyncio.create_task(coro, name=name))
        trace_to = memtrace.requested_path()
        if trace_to is not None:  # opt-in, for measuring where memory goes (docs/PERFORMANCE.md)
            trace_to = trace_to.with_name(f"{trace_to.name}-{self.config.name}")
            self._tasks.append(asyncio.create_task(memtrace.trace_loop(trace_to), name="memtrace"))
        if TRACE.on:
            self._tasks.append(asyncio.create_task(_loop_lag_probe(), name="lag-probe"))
        log.info("node %s started: api http://%s:%d p2p %s:%d height %d", self.config.name,
                 self.config.api_host, self.config.api_port, self.config.p2p_host, self.config.p2p_port,
                 self.store.position.height)

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._inflight]
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=STOP_TASKS_TIMEOUT_S)
            for task in stuck:  # a bug of ours; say so instead of hanging the shutdown
                log.error("task %s did not stop within %s s", task.get_name(), STOP_TASKS_TIMEOUT_S)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    if not isinstance(task.exception(), DriverStopped):  # node.failure already says why
                        log.error("task %s ended with %r", task.get_name(), task.exception())
        self._tasks.clear()
        self.events.close_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.consensus.stop()
        await self.transport.stop()
        self._waiters.cancel_all()
        self.store.close()
        TRACE.stop()

    # ------------------------------------------------------------ admission

    async def submit(self, raws: list[bytes]) -> list[SubmitOutcome]:
        """Admit transactions: cheap checks here, signatures on all cores, then the pool."""
        now = self._ledger_now_ms()
        outcomes: list[SubmitOutcome | None] = [None] * len(raws)
        checked: list[tuple[int, SignedTx]] = []
        seen: set[bytes] = set()
        for i, raw in enumerate(raws):
            try:
                tx = self.mempool.precheck(raw, now)
            except TxRejected as exc:
                outcomes[i] = SubmitOutcome(None, False, str(exc.reason), exc.detail)
                self.metrics.rejected.labels(str(exc.reason)).inc()
                continue
            if tx.tx_id in seen:
                outcomes[i] = SubmitOutcome(tx.tx_id, False, str(Reason.DUPLICATE), "twice in this batch")
                continue
            seen.add(tx.tx_id)
            checked.append((i, tx))
        verdicts = await asyncio.to_thread(verify_all, [tx for _, tx in checked])
        for (i, tx), ok in zip(checked, verdicts, strict=True):
            if not ok:
                outcomes[i] = SubmitOutcome(tx.tx_id, False, str(Reason.BAD_SIGNATURE), "a signature does not verify")
                self.metrics.rejected.labels(str(Reason.BAD_SIGNATURE)).inc()
                continue
            if self.store.has_tx(tx.tx_id):  # committed while its signatures were checked
                outcomes[i] = SubmitOutcome(tx.tx_id, False, str(Reason.DUPLICATE), "already in the ledger")
                continue
            try:
                added = self.mempool.add(tx, signatures_verified=True)
            except MempoolFull as exc:
                outcomes[i] = SubmitOutcome(tx.tx_id, False, "BUSY", str(exc), MempoolFull.retry_after_s)
                self.metrics.rejected.labels("BUSY").inc()
                continue
            if not added:
                outcomes[i] = SubmitOutcome(tx.tx_id, False, str(Reason.DUPLICATE), "already submitted")
                continue
            outcomes[i] = SubmitOutcome(tx.tx_id, True, "ACCEPTED", "")
        self._signal_arrivals()
        return [o for o in outcomes if o is not None]

    def _ledger_now_ms(self) -> int:
        """The earliest time the next block can have: the later of this node's clock and the
        last applied block's (block time never goes backwards). Admission checks expiry against
        it, so a transaction the executor would drop as expired is refused at once."""
        return max(_now_ms(), self.store.position.time_ms)

    def _signal_arrivals(self) -> None:
        self._tx_arrived.set()
        self._forward_wakeup.set()
        if self._pool_holds_a_batch(self.config.batching):
            self._cut_now.set()

    def _pool_holds_a_batch(self, batching: BatchingConfig) -> bool:
        """The pending transactions fill a batch, by count or by preferred bytes: cut now."""
        return (self.mempool.pending_count() >= batching.max_txs
                or self.mempool.pending_bytes() >= batching.preferred_bytes)

    def _on_forwarded(self, peer: str, payload: bytes) -> None:
        """Transactions a follower admitted and forwarded to us (the leader, as it believed)."""
        raws = decode_forwarded(payload)
        if raws is None:
            log.warning("bad forwarded-transactions frame from %s", peer)
            return
        now = self._ledger_now_ms()
        for raw in raws:
            try:
                tx = self.mempool.precheck(raw, now)
                # The peer verified signatures at its door; every node verifies again in the executor.
                self.mempool.add(tx, signatures_verified=False)
            except (TxRejected, MempoolFull):
                continue
        self._signal_arrivals()

    # ------------------------------------------------------------ leader: cutting batches

    async def _cut_loop(self) -> None:
        batching = self.config.batching
        while True:
            if not await wait_event(self._tx_arrived, HOUSEKEEPING_INTERVAL_S):
                if not self.mempool.pending_count():
                    await self._propose_scheduled_work()
                    continue
            self._tx_arrived.clear()
            if not self.consensus.is_leader():
                continue
            await self._gather_batch(batching)
            while len(self._inflight) >= batching.max_inflight_batches:
                self._inflight_freed.clear()
                await self._inflight_freed.wait()
            txs = self.mempool.take(_now_ms(), batching.max_txs, batching.preferred_bytes)
            if txs:
                self._start_proposal(txs)
            if self.mempool.pending_count():
                self._tx_arrived.set()

    async def _gather_batch(self, batching: BatchingConfig) -> None:
        """Wait, if it helps, for more transactions to join the batch about to be cut.

        With no proposal in flight the batch is cut at once: waiting would only add
        batching.timeout_ms to every transaction's latency at low and moderate load (it was
        the largest fixed wait on an order's path). While proposals are in flight the batch
        gathers until the last of them is applied, the pool holds a full batch, or the timeout
        passes, so a busy leader still cuts few large blocks (group commit).
        """
        self._cut_now.clear()
        if not self._inflight or self._pool_holds_a_batch(batching):
            return
        await wait_event(self._cut_now, batching.timeout_ms / 1000)

    def _start_proposal(self, txs: list[SignedTx]) -> None:
        """Propose a batch without waiting for it: up to max_inflight_batches are pipelined."""
        task = asyncio.create_task(self._propose(txs), name="propose")
        self._inflight.add(task)
        task.add_done_callback(self._proposal_done)

    def _proposal_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._inflight_freed.set()
        if not self._inflight:
            self._cut_now.set()  # the pipeline drained: what gathered meanwhile may go
        if not task.cancelled() and task.exception() is not None:
            log.error("proposal failed: %r", task.exception())

    async def _propose(self, txs: list[SignedTx]) -> None:
        data = Batch(_now_ms(), tuple(tx.raw for tx in txs)).encode()
        TRACE.event("cut", txs=len(txs), inflight=len(self._inflight), pending=self.mempool.pending_count())
        index = await self.consensus.propose(data)
        TRACE.event("committed", txs=len(txs), index=index)
        if index is None:
            # Not committed (leadership moved): the transactions go back to the pool and on
            # to whoever leads now; one that did commit after all is dropped as a duplicate.
            self.mempool.requeue([tx.tx_id for tx in txs])
            self._signal_arrivals()

    async def _propose_scheduled_work(self) -> None:
        """An empty batch when a contract has work due (a dividend, an offering close) and no traffic."""
        if not self.consensus.is_leader() or self._inflight or self.mempool.pending_count():
            return
        due = self.next_due_ms()
        if due is not None and due <= _now_ms():
            self._start_proposal([])

    def next_due_ms(self) -> int | None:
        ctx = self.read_context()
        dues = [c.next_due_ms(ctx) for c in self.registry.in_order() if c.next_due_ms is not None]
        known = [d for d in dues if d is not None]
        return min(known) if known else None

    # ------------------------------------------------------------ follower: forwarding

    async def _forward_loop(self) -> None:
        while True:
            await wait_event(self._forward_wakeup, HOUSEKEEPING_INTERVAL_S)
            self._forward_wakeup.clear()
            if not self.mempool.pending_count():
                continue
            leader = self.consensus.leader()
            if not leader or leader == self.config.name:
                continue  # no leader yet (or we lead: the cut loop proposes); retry on the next wake
            await asyncio.sleep(0.002)  # let a burst gather into one frame
            txs = self.mempool.take(_now_ms(), self.config.mempool.forward_batch_txs, MAX_FORWARD_FRAME_BYTES // 2)
            if not txs:
                continue
            if not self.transport.send(leader, TX_CHANNEL, codec.encode([tx.raw for tx in txs])):
                self.mempool.requeue([tx.tx_id for tx in txs])
                await asyncio.sleep(0.05)
            elif self.mempool.pending_count():
                self._forward_wakeup.set()

    # ------------------------------------------------------------ applied blocks

    def _on_block(self, applied: AppliedBlock | None, raft_index: int, seconds: float) -> None:
        self.metrics.block_apply.observe(seconds)
        if applied is None:
            return
        block = applied.block
        TRACE.event("on_block", height=block.height, txs=len(block.txs), waited=len(self._waiters))
        self.metrics.block_height.set(block.height)
        self.metrics.block_txs.observe(len(block.txs))
        done = [r.tx_id for r in block.receipts]
        receipts_out: list[tuple[frozenset[str], NodeEvent]] = []
        block_hash = block.hash().hex()
        # Under load most receipts have neither a waiter nor a subscriber: building their JSON
        # and scanning their events for accounts was most of this callback's cost (profiled).
        # The waited ones are picked in one comprehension over the ids: every node runs this
        # for every transaction, and a Python-level step per receipt showed in its call counts.
        publish = self.events.wants_receipts()
        waited = self._waiters.ids()
        wanted = range(len(done)) if publish else [i for i, tx_id in enumerate(done) if tx_id in waited]
        for index in wanted:
            receipt = block.receipts[index]
            result = receipt_json(receipt)
            status = {"tx_id": receipt.tx_id.hex(), "status": "committed", "height": block.height,
                      "index": index, "block_hash": block_hash, "receipt": result}
            self._resolve(receipt.tx_id, status)
            if publish:
                # The accounts and assets the history index lists this transaction under.
                receipts_out.append((frozenset(applied.subjects[index]), NodeEvent("receipt", status)))
        for drop in applied.dropped:
            if drop.tx_id is None:
                continue
            done.append(drop.tx_id)
            if drop.reason == Reason.DUPLICATE and self.store.has_tx(drop.tx_id):
                # A re-proposal of something already committed: the first one stands, and
                # whoever waits for it (a resubmission that raced the commit) is told so.
                if drop.tx_id in waited:
                    self._resolve(drop.tx_id, self.tx_status(drop.tx_id))
                continue
            self.metrics.dropped.labels(str(drop.reason)).inc()
            self._remember_dropped(drop.tx_id, drop.reason, drop.detail)
        self.mempool.remove(done)
        self._expire_by_block_time(block.header.time_ms)
        self._watch_block_clock(block.header.time_ms)
        self._count_committed(applied)
        self.events.publish_block(
            NodeEvent("block", {"height": block.height, "hash": block_hash, "time_ms": block.header.time_ms,
                                "tx_count": len(block.txs), "state_hash": block.header.state_hash.hex()}),
            receipts_out,
        )

    def _remember_dropped(self, tx_id: bytes, reason: Reason, detail: str) -> None:
        """Record a transaction that will never be in a block (for tx_status) and tell its waiters."""
        self._dropped[tx_id] = (str(reason), detail)
        if len(self._dropped) > RECENT_DROPPED_ENTRIES:
            self._dropped.popitem(last=False)
        self._resolve(tx_id, {"tx_id": tx_id.hex(), "status": "dropped", "reason": str(reason), "detail": detail})

    def _expire_by_block_time(self, block_time_ms: int) -> None:
        """Pooled transactions that expired before the ledger's time: no later block can hold
        them (block time never goes backwards), whoever they were handed off to."""
        for tx_id in self.mempool.expire(block_time_ms):
            self._remember_dropped(tx_id, Reason.EXPIRED, f"expired before block time {block_time_ms}")

    def _watch_block_clock(self, block_time_ms: int) -> None:
        """Warn when the ledger's time runs ahead of this node's clock (a leader's fast clock
        pins block time ahead, and every transaction expiring before it is refused): the nodes'
        clocks must agree (NTP; docs/NODE.md, "Clocks"). A leader with a fast clock cannot see
        it itself; its followers do."""
        ahead_ms = block_time_ms - _now_ms()
        self.metrics.block_time_ahead.set(ahead_ms / 1000)
        if ahead_ms <= self.config.batching.clock_ahead_warn_ms:
            return
        now_s = time.monotonic()
        if now_s - self._clock_warned_at_s >= CLOCK_WARNING_INTERVAL_S:
            self._clock_warned_at_s = now_s
            log.warning("block time is %d ms ahead of this node's clock (more than batching.clock_ahead_warn_ms "
                        "= %d): a clock is wrong, the leader's or this node's; transactions expiring before block "
                        "time are refused as EXPIRED", ahead_ms, self.config.batching.clock_ahead_warn_ms)

    def _count_committed(self, applied: AppliedBlock) -> None:
        """The committed-transactions metric, by contract and result, for one block."""
        txs, receipts = applied.txs, applied.block.receipts
        by_contract = Counter([tx.body.contract for tx in txs])
        invalid = Counter([tx.body.contract for tx, r in zip(txs, receipts, strict=True) if r.reason != Reason.OK])
        for contract, count in by_contract.items():
            bad = invalid.get(contract, 0)
            if count > bad:
                self.metrics.committed.labels(contract, "valid").inc(count - bad)
            if bad:
                self.metrics.committed.labels(contract, "invalid").inc(bad)

    def _on_store_replaced(self, store: LedgerStore) -> None:
        self.store = store
        self.mempool.store = store
        # The installed snapshot holds blocks this node never applied, so _on_block never
        # answered their transactions: those still pooled or waited on here are answered now.
        waited = self._waiters.ids()
        for tx_id in self.mempool.remove_committed():
            if tx_id in waited:
                self._resolve(tx_id, self.tx_status(tx_id))
        self._expire_by_block_time(store.position.time_ms)

    def _resolve(self, tx_id: bytes, status: dict[str, Any]) -> None:
        self._waiters.resolve(tx_id, status)

    # ------------------------------------------------------------ what clients ask

    async def wait_for(self, tx_id: bytes, timeout_s: float) -> dict[str, Any]:
        """One transaction's outcome, waiting up to timeout_s for it (wait_for_all of one)."""
        return (await self.wait_for_all([tx_id], timeout_s))[tx_id.hex()]

    async def wait_for_all(self, tx_ids: list[bytes], timeout_s: float) -> dict[str, dict[str, Any]]:
        """Each transaction's outcome, waiting up to timeout_s for those not yet known: one future
        and one timer for the whole request (waiters.py), where a future per transaction cost a
        scheduled callback each on the event loop. Those still unknown at the timeout get their
        status as it then stands."""
        out: dict[bytes, dict[str, Any]] = {}
        batch = BatchWait(asyncio.get_running_loop())
        registered: dict[bytes, None] = {}  # ordered, and the same id twice is waited for once
        for tx_id in tx_ids:
            if tx_id in out or tx_id in registered:
                continue
            # In the pool means not yet applied here, or applied but not yet reported to this
            # loop: either way _on_block resolves the waiter, and the ledger lookup tx_status
            # would make (one LevelDB read per transaction, nearly always a miss) is not needed.
            if not self.mempool.contains(tx_id) or self._waiters.full():
                status = self.tx_status(tx_id)
                if status["status"] not in ("pending", "unknown") or self._waiters.full():
                    out[tx_id] = status
                    continue
            self._waiters.add(tx_id, batch)
            registered[tx_id] = None
        batch.expect(len(registered))
        try:
            async with asyncio.timeout(timeout_s):
                await batch.done
        except TimeoutError:
            pass  # what is not answered by now is looked up below
        finally:
            if batch.remaining > 0:  # timed out or cancelled: forget what is still registered
                for tx_id in registered:
                    if tx_id not in batch.statuses:
                        self._waiters.discard(tx_id, batch)
        for tx_id in registered:
            found = batch.statuses.get(tx_id)
            out[tx_id] = found if found is not None else self.tx_status(tx_id)
        return {t.hex(): out[t] for t in tx_ids}

    def tx_status(self, tx_id: bytes) -> dict[str, Any]:
        location = self.store.tx_location(tx_id)
        if location is not None:
            height, index = location
            block = self.store.block(height)
            if block is not None:
                proof = merkle_proof(list(block.txs), index)
                return {"tx_id": tx_id.hex(), "status": "committed", "height": height, "index": index,
                        "block_hash": block.hash().hex(), "tx_root": block.header.tx_root.hex(),
                        "receipt": receipt_json(block.receipts[index]),
                        "proof": [{"left": left, "hash": h.hex()} for left, h in proof]}
        if self.mempool.contains(tx_id):
            return {"tx_id": tx_id.hex(), "status": "pending"}
        if tx_id in self._dropped:
            reason, detail = self._dropped[tx_id]
            return {"tx_id": tx_id.hex(), "status": "dropped", "reason": reason, "detail": detail}
        return {"tx_id": tx_id.hex(), "status": "unknown"}

    def read_context(self) -> Context:
        """A read-only view of committed state for queries (a write would raise: a bug of ours)."""
        return ReadContext.over(self.store, self.config.chain_id)

    def status(self) -> dict[str, Any]:
        raft = self.consensus.status()
        position = self.store.position
        connected = set(self.transport.connected_peers())
        peers = []
        for node in self.genesis.nodes:
            if node.name == self.config.name:
                continue
            match = raft.get("progress", {}).get(node.name, {}).get("match")
            peers.append({"name": node.name, "connected": node.name in connected, "match_index": match,
                          "lag": (raft.get("last_index", 0) - match) if match is not None else None})
        return {
            "node": self.config.name,
            "chain_id": self.config.chain_id,
            "role": raft.get("role"),
            "term": raft.get("term"),
            "leader": raft.get("leader") or None,
            "commit_index": raft.get("commit_index"),
            "applied_index": position.raft_index,
            "height": position.height,
            "block_hash": position.block_hash.hex(),
            "state_hash": position.state_hash.hex(),
            "block_time_ms": position.time_ms,
            "mempool_txs": len(self.mempool),
            "peers": peers,
        }

    @property
    def ledger_replacing(self) -> bool:
        """A snapshot install has closed the store and not yet handed over the new one: the API
        answers 503 instead of reading (docs/NODE.md)."""
        return self.store.closed

    def readiness(self) -> tuple[bool, str]:
        if self.ledger_replacing:
            return False, "replacing the ledger with a snapshot from the cluster"
        raft = self.consensus.status()
        if not raft.get("leader"):
            return False, "no leader known"
        lag = (raft.get("commit_index") or 0) - self.store.position.raft_index
        if lag > READY_MAX_LAG_ENTRIES:
            return False, f"{lag} committed entries not yet applied"
        return True, "caught up"

    def _consensus_failed(self) -> bool:
        """True once the raft loop has stopped by itself (the driver logged why, CRITICAL)."""
        try:
            self.consensus.driver.status()
        except DriverStopped:
            if self.failure is not None and not self.failure.done():
                self.failure.set_result("consensus stopped (the CRITICAL line above says why, e.g. a full "
                                        "disk); the node exits rather than serve a ledger that no longer advances")
            return True
        return False

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL_S)
            if self._consensus_failed():
                return
            self.allocator.maybe_trim(time.monotonic())
            now = _now_ms()
            leader = self.consensus.leader()
            if leader != self._last_leader:
                if self._last_leader:
                    self.metrics.leader_changes.inc()
                self._last_leader = leader
                self.mempool.requeue_all()
            stale_ms = REPROPOSE_AFTER_MS if leader == self.config.name else REFORWARD_AFTER_MS
            if self.mempool.requeue_stale(now, stale_ms):
                self._signal_arrivals()
            # Only what no other node was given expires by this clock; the rest by block time.
            for tx_id in self.mempool.expire_unsent(now):
                self._remember_dropped(tx_id, Reason.EXPIRED, "expired before it was proposed or forwarded")
            raft = self.consensus.status()
            self.metrics.raft_term.set(raft.get("term") or 0)
            self.metrics.is_leader.set(1 if leader == self.config.name else 0)
            self.metrics.mempool_txs.set(len(self.mempool))
            self.metrics.mempool_bytes.set(self.mempool.size_bytes)
            self.metrics.peers.set(len(self.transport.connected_peers()))
            TRACE.flush()


LAG_PROBE_INTERVAL_S = 0.01
LAG_PROBE_REPORT_MS = 5.0


async def _loop_lag_probe() -> None:
    """With a block trace on: how late the event loop wakes a 10 ms sleeper (a stall's size)."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(LAG_PROBE_INTERVAL_S)
        late_ms = (time.perf_counter() - started - LAG_PROBE_INTERVAL_S) * 1000
        if late_ms >= LAG_PROBE_REPORT_MS:
            TRACE.event("lag", ms=f"{late_ms:.1f}")


def decode_forwarded(payload: bytes) -> list[bytes] | None:
    """The raw transactions of a forwarded frame, or None unless it is one array of at most
    MAX_FORWARDED_TXS_PER_FRAME byte strings of at most MAX_TX_BYTES each.

    Its header is read, then one item at a time, and the unpacker builds no container
    (max_array_len=0, as the snapshot reader's): a frame over the bounds costs at most one
    transaction's decode (a 16 MiB array of nils stalled the event loop 0.57 s and took 176 MiB
    when the whole frame was decoded first). Each transaction's own encoding is checked at
    admission (precheck).
    """
    if len(payload) > MAX_FORWARD_FRAME_BYTES:
        return None
    # Read from a view of the payload, not fed to the unpacker: feed would copy all of it first.
    unpacker = msgpack.Unpacker(io.BytesIO(payload), max_array_len=0, max_bin_len=MAX_TX_BYTES, max_str_len=0,
                                max_map_len=0, max_ext_len=0)
    raws: list[bytes] = []
    try:
        count = unpacker.read_array_header()  # max_array_len does not apply here
        if count > MAX_FORWARDED_TXS_PER_FRAME:
            return None
        for _ in range(count):
            raw = unpacker.unpack()
            if type(raw) is not bytes:
                return None
            raws.append(raw)
    except (ValueError, msgpack.UnpackException):
        return None
    return raws if unpacker.tell() == len(payload) else None


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return " ".join(str(text).split())


def _verify_checksums(db: Any, path: Path) -> None:
    """Read every record once with checksums on. LevelDB does not check them on ordinary reads,
    so a damaged table would otherwise be served (or applied on) as if it were data. The cost is
    one sequential read of the store at startup."""
    try:
        with db.iterator(verify_checksums=True, fill_cache=False) as records:
            for _ in records:
                pass
    except plyvel.Error as exc:
        raise StoreError(f"{path}: damaged: {_one_line(exc)}") from exc

