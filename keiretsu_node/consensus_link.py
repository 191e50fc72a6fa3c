"""The node's side of consensus: build the Raft driver over its durable log and the transport.

Part of keiretsu_node/. Maps the node's TOML onto the driver's settings and answers the few
questions the node asks (am I leader, who leads, propose this batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from consensus.driver import (
    RAFT_CHANNEL,
    DriverConfig,
    DriverStopped,
    NotLeader,
    Overloaded,
    ProposalCovered,
    ProposalLost,
    RaftDriver,
)
from consensus.messages import Entry, HardState, SnapshotMeta
from consensus.storage import LevelDBLogStore
from keiretsu_node.blocktrace import TRACE
from keiretsu_node.config import NodeConfig
from keiretsu_node.ledger_app import LedgerApp
from p2p.transport import Transport

log = logging.getLogger("keiretsu.node")
RAFT_LOG_DIR = "raft"
SNAPSHOT_SPOOL_DIR = "snapshot-spool"
PROPOSE_TIMEOUT_S = 10


class TracedLogStore(LevelDBLogStore):
    """The durable Raft log, each save timed into the block trace (only built when it is on)."""

    def save(self, hard_state: HardState | None, entries: Sequence[Entry],
             snapshot: SnapshotMeta | None, sync: bool = True) -> None:
        started = time.perf_counter()
        super().save(hard_state, entries, snapshot, sync)
        TRACE.event("raftlog", ms=f"{(time.perf_counter() - started) * 1000:.2f}", entries=len(entries),
                    sync=int(sync), first=entries[0].index if entries else 0)

    def compact(self, meta: SnapshotMeta) -> None:
        started = time.perf_counter()
        super().compact(meta)
        TRACE.event("raftcompact", ms=f"{(time.perf_counter() - started) * 1000:.2f}", index=meta.index)


class ConsensusLink:
    def __init__(self, config: NodeConfig, voters: list[str], transport: Transport, app: LedgerApp) -> None:
        self.config = config
        self.app = app
        store_type = TracedLogStore if TRACE.on else LevelDBLogStore
        self.log_store = store_type(config.data_dir / RAFT_LOG_DIR)
        self.driver = RaftDriver(
            DriverConfig(
                node_id=config.name,
                voters=tuple(voters),
                snapshot_dir=config.data_dir / SNAPSHOT_SPOOL_DIR,
                tick_ms=config.consensus.tick_ms,
                election_ticks=config.consensus.election_ticks,
                heartbeat_ticks=config.consensus.heartbeat_ticks,
                compact_after_entries=config.consensus.compact_after_entries,
                compact_keep_entries=config.consensus.compact_keep_entries,
                compact_after_bytes=config.consensus.compact_after_bytes,
                compact_keep_bytes=config.consensus.compact_keep_bytes,
            ),
            self.log_store,
            transport,
            app,
        )
        transport.register(RAFT_CHANNEL, self.driver.on_message)
        self._started = False

    async def start(self) -> None:
        self.app.bind(asyncio.get_running_loop())
        await self.driver.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.driver.stop()

    def is_leader(self) -> bool:
        return self._started and self.driver.status().role == "leader"

    def leader(self) -> str:
        if not self._started:
            return ""
        return self.driver.status().leader_id

    async def propose(self, data: bytes) -> int | None:
        """The index at which the batch committed (and was applied here), or None if it was not
        known to commit within PROPOSE_TIMEOUT_S (after a change of leader, an entry whose index
        is never reused would otherwise keep its proposer waiting for ever). None is safe to
        retry: a batch that did commit after all has its transactions dropped as duplicates."""
        try:
            async with asyncio.timeout(PROPOSE_TIMEOUT_S):
                return await self.driver.propose(data)
        except (NotLeader, ProposalLost, ProposalCovered, Overloaded, DriverStopped, TimeoutError) as exc:
            log.info("proposal not known to have committed: %r", exc)
            return None

    async def read_barrier(self, timeout_s: float) -> bool:
        """Raft's read index: True once this node has applied every commit acknowledged before
        the call (a linearizable read may then be served from local state)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.driver.read_index()
        except (NotLeader, Overloaded, DriverStopped, TimeoutError):
            return False
        return True

    def status(self) -> dict[str, Any]:
        if not self._started:
            return {}
        s = self.driver.status()
        return {
            "role": s.role,
            "term": s.term,
            "leader": s.leader_id,
            "commit_index": s.commit_index,
            "applied_index": s.applied_index,
            "last_index": s.last_index,
            "progress": {peer: {"match": p.match, "next": p.next, "state": p.state} for peer, p in s.progress.items()},
        }
