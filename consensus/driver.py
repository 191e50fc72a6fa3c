"""The thin asyncio driver around the Raft core: a tick timer, the disk, the transport, the app.
Every decision stays in consensus/raft.py; this module only does IO, in the order Raft demands.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import secrets
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from consensus.apply_stage import ApplyStage
from consensus.config import RaftConfig
from consensus.errors import ProposalRefused, RefusalCode
from consensus.messages import (
    ConfChange,
    ConfState,
    Entry,
    Message,
    MessageDecodeError,
    MessageType,
    SnapshotChunk,
    SnapshotMeta,
    decode,
)
from consensus.raft import Raft
from consensus.ready import Ready, Role
from consensus.snapshot_transfer import SnapshotSpool, SpooledSnapshot, chunk_stream
from consensus.storage import LogStore

log = logging.getLogger(__name__)

RAFT_CHANNEL = "raft"
MAX_INBOX_MESSAGES = 10_000  # beyond this, peer messages are dropped (Raft tolerates loss)
MAX_PENDING_COMMANDS = 100_000  # proposals/reads waiting for the loop
MAX_STEPS_PER_ROUND = 1_000  # inbox messages stepped before the next Ready is handled
SNAPSHOT_SEND_RETRIES = 50
SNAPSHOT_RETRY_DELAY_MS = 20
READ_NONCE_BYTES = 8  # a read context is this nonce plus an 8-byte counter (16 bytes)


class Transport(Protocol):
    def send(self, peer_id: str, channel: str, payload: bytes) -> bool: ...


class Application(Protocol):
    """The ledger side. apply() and install_snapshot() run in a worker thread (they do disk IO),
    one call at a time, in log order, while the Raft loop goes on; snapshot() and
    applied_index() run on the event loop, possibly while an apply() is running."""

    def apply(self, entries: list[Entry]) -> None: ...

    def applied_index(self) -> int: ...

    def snapshot(self) -> tuple[int, int, Iterator[bytes]]: ...

    def install_snapshot(self, index: int, term: int, chunks: Iterator[bytes]) -> None: ...


class NotLeader(Exception):
    def __init__(self, leader_hint: str, code: RefusalCode = RefusalCode.NOT_LEADER) -> None:
        super().__init__(f"{code.name}; leader hint: {leader_hint or 'unknown'}")
        self.leader_hint = leader_hint
        self.code = code


class ProposalLost(Exception):
    """The entry was overwritten by a new leader: it was never committed; safe to resubmit."""


class ProposalCovered(Exception):
    """A snapshot installed here covers the entry's index, and the snapshot does not say which
    entry committed there: the proposal may or may not have committed. Resubmitting is safe
    where the application drops duplicates (the ledger does)."""


class DriverStopped(Exception):
    pass


class Overloaded(Exception):
    pass


@dataclass(frozen=True)
class PeerProgress:
    match: int
    next: int
    state: str


@dataclass(frozen=True)
class RaftStatus:
    node_id: str
    role: str
    term: int
    leader_id: str
    commit_index: int
    applied_index: int
    progress: Mapping[str, PeerProgress] = field(default_factory=dict)
    last_index: int = 0  # this node's last log index (may run ahead of commit_index)


@dataclass(frozen=True)
class DriverConfig:
    node_id: str
    voters: tuple[str, ...]
    snapshot_dir: Path  # where an incoming snapshot is spooled
    learners: tuple[str, ...] = ()
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    compact_after_entries: int = 10_000  # compact once this many applied entries are kept
    compact_keep_entries: int = 1_000  # keep a tail so slow followers need no snapshot
    # The same two bounds in bytes (Entry.size_bytes): entries can be 8 B or 8 MiB, so a count
    # alone does not bound memory. Compaction starts when either "after" bound is reached and
    # keeps a tail within both "keep" bounds.
    compact_after_bytes: int = 16 * 1024 * 1024
    compact_keep_bytes: int = 4 * 1024 * 1024
    seed: int | None = None  # election jitter seed; None draws one from the OS

    def __post_init__(self) -> None:
        # A tail as large as the trigger would make every round try to compact and find nothing.
        if not 0 <= self.compact_keep_bytes < self.compact_after_bytes:
            raise ValueError("compact_keep_bytes must be below compact_after_bytes")
        if self.compact_keep_entries < 0 or self.compact_after_entries < 1:
            raise ValueError("compact_after_entries must be >= 1 and compact_keep_entries >= 0")


class RaftDriver:
    def __init__(self, config: DriverConfig, store: LogStore, transport: Transport,
                 app: Application) -> None:
        self.config = config
        self.store = store
        self.transport = transport
        self.app = app
        self._spool = SnapshotSpool(config.snapshot_dir)
        self._inbox: deque[Message] = deque()
        self._commands: deque[Callable[[], None]] = deque()
        self._wakeup = asyncio.Event()
        self._ticks_due = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._proposals: dict[int, tuple[int, asyncio.Future[int]]] = {}
        self._reads: dict[bytes, asyncio.Future[int]] = {}
        self._read_waits: list[tuple[int, asyncio.Future[int]]] = []
        # Read contexts are unique per driver run: a random nonce drawn at construction plus a
        # counter. The leader's core no longer relies on them (it numbers its own read rounds),
        # but this node matches READ_INDEX_RESP answers to its waiting reads by context, and an
        # answer sent to an earlier run of this node (before a restart) must match nothing.
        self._read_nonce = secrets.token_bytes(READ_NONCE_BYTES)
        self._read_ids = itertools.count(1)
        self._running = False
        self._core: Raft | None = None
        self._stage: ApplyStage | None = None
        self._synced_term_vote: tuple[int, str] = (0, "")
        self.decode_errors = 0

    # ==== lifecycle ==========================================================================

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        state, pending = await loop.run_in_executor(
            None, self.store.load, ConfState(self.config.voters, self.config.learners))
        if pending is not None:
            # A crash interrupted a snapshot install: finish it if the app got that far.
            done = self.app.applied_index() >= pending.index
            await loop.run_in_executor(None, self._finish_interrupted_install, pending, done)
            state, _ = await loop.run_in_executor(
                None, self.store.load, ConfState(self.config.voters, self.config.learners))
        applied = self.app.applied_index()
        if applied < state.snapshot.index:
            raise RuntimeError(f"app applied {applied} is behind the log's compaction point "
                               f"{state.snapshot.index}: refusing to start with a gap")
        rng = random.Random(self.config.seed)
        cfg = RaftConfig(node_id=self.config.node_id, rng=rng,
                         election_ticks=self.config.election_ticks,
                         heartbeat_ticks=self.config.heartbeat_ticks)
        self._core = Raft(cfg, state, applied=applied)
        self._stage = ApplyStage(self.app, self._core.log.applied, self._on_applied)
        self._synced_term_vote = (state.hard_state.term, state.hard_state.vote)
        self._running = True
        self._tasks = [asyncio.create_task(self._run_loop(), name=f"raft-{self.config.node_id}"),
                       asyncio.create_task(self._run_applier(), name="raft-apply"),
                       asyncio.create_task(self._run_ticker(), name="raft-ticker")]

    def _finish_interrupted_install(self, pending: SnapshotMeta, done: bool) -> None:
        if done:
            self.store.save(None, [], pending)
        else:
            self.store.mark_snapshot_pending(None)

    async def stop(self) -> None:
        self._running = False
        self._wakeup.set()
        if not self._tasks:
            self.store.close()
            return
        loop_task, apply_task, others = self._tasks[0], self._tasks[1], self._tasks[2:]
        # Neither the loop nor the apply stage is cancelled: either may be inside a disk write
        # running in a thread, and closing a store under that thread would corrupt it. The
        # loop exits after this round, the stage after its app call in progress.
        assert self._stage is not None
        self._stage.stop_soon()
        for task in others:
            task.cancel()
        await asyncio.wait([loop_task, apply_task])
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # the loop that failed already logged it
                log.debug("raft task ended with %r", exc)
        self._tasks = []
        self._fail_waiters(DriverStopped())
        self.store.close()

    def _fail_waiters(self, exc: BaseException) -> None:
        futures = [f for _, f in self._proposals.values()] + list(self._reads.values())
        futures += [f for _, f in self._read_waits]
        for fut in futures:
            if not fut.done():
                fut.set_exception(exc)
        self._proposals.clear()
        self._reads.clear()
        self._read_waits.clear()

    # ==== inputs =============================================================================

    def on_message(self, peer_id: str, payload: bytes) -> None:
        """Registered by the node for channel "raft"; never raises on a peer's bad bytes."""
        try:
            msg = decode(payload)
        except MessageDecodeError as exc:
            self.decode_errors += 1
            log.warning("dropping bad raft frame from %s: %s", peer_id, exc.code.name)
            return
        if msg.frm != peer_id:
            self.decode_errors += 1  # an authenticated link speaks only for its own peer
            return
        if isinstance(msg, SnapshotChunk):
            self._spool.accept(msg)
            return
        if msg.type == MessageType.SNAPSHOT and msg.snapshot is not None:
            if not self._spool.is_complete(msg.frm, msg.snapshot.index):
                return  # metadata without its data: wait for the leader to stream again
        if len(self._inbox) >= MAX_INBOX_MESSAGES:
            return
        self._inbox.append(msg)
        self._wakeup.set()

    async def propose(self, data: bytes) -> int:
        """Replicate data; returns its log index once committed and applied here."""
        core = self._require_core()
        if core.role != Role.LEADER:
            raise NotLeader(core.lead)
        return await self._proposal(core, lambda: core.propose(data))

    async def propose_conf_change(self, change: ConfChange) -> int:
        core = self._require_core()
        return await self._proposal(core, lambda: core.propose_conf_change(change))

    async def _proposal(self, core: Raft, append: Callable[[], int]) -> int:
        """Run `append` (a core proposal) in the loop; resolves with its index once committed."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def command() -> None:
            try:
                index = append()
            except ProposalRefused as exc:
                fut.set_exception(NotLeader(exc.leader_hint, exc.code))
                return
            self._proposals[index] = (core.term, fut)

        self._enqueue(command)
        return await fut

    async def read_index(self) -> int:
        """A linearizable barrier: returns once this node has applied every earlier commit."""
        core = self._require_core()
        context = self._read_nonce + next(self._read_ids).to_bytes(8, "big")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def command() -> None:
            try:
                core.read_index(context)
            except ProposalRefused as exc:
                fut.set_exception(NotLeader(exc.leader_hint, exc.code))
                return
            self._reads[context] = fut

        self._enqueue(command)
        # A forwarded request can be dropped (lost message, stale term): bound the wait so the
        # caller retries instead of hanging. Two election timeouts cover a leader change.
        timeout_s = 2 * self.config.election_ticks * self.config.tick_ms / 1000
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            self._reads.pop(context, None)
            raise NotLeader(core.lead) from None

    def transfer_leadership(self, to: str) -> None:
        core = self._require_core()
        if core.role != Role.LEADER:
            raise NotLeader(core.lead)
        self._enqueue(lambda: core.transfer_leader(to))

    def status(self) -> RaftStatus:
        core = self._require_core()
        progress = {}
        if core.role == Role.LEADER:
            progress = {pid: PeerProgress(pr.match, pr.next, pr.state.value)
                        for pid, pr in core.prs.items()}
        return RaftStatus(core.id, core.role.value, core.term, core.lead, core.log.committed,
                          self.app.applied_index(), progress, core.log.last_index())

    def applied_index(self) -> int:
        """The last log index the apply stage has finished (entries the app never sees count)."""
        return self._stage.applied if self._stage is not None else 0

    def log_size_bytes(self) -> int:
        """Bytes of Raft log entries held in memory (what compact_after_bytes bounds)."""
        return self._core.log.size_bytes() if self._core is not None else 0

    def _require_core(self) -> Raft:
        if self._core is None or not self._running:
            raise DriverStopped()
        return self._core

    def _enqueue(self, command: Callable[[], None]) -> None:
        if len(self._commands) >= MAX_PENDING_COMMANDS:
            raise Overloaded()
        self._commands.append(command)
        self._wakeup.set()

    # ==== the loop ===========================================================================

    async def _run_ticker(self) -> None:
        while self._running:
            await asyncio.sleep(self.config.tick_ms / 1000)
            self._ticks_due += 1
            self._wakeup.set()

    async def _run_loop(self) -> None:
        try:
            await self._loop_rounds(self._require_core())
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._stopped_by(exc, "raft loop")
            raise

    async def _run_applier(self) -> None:
        assert self._stage is not None
        try:
            await self._stage.run()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._stopped_by(exc, "apply stage")
            raise

    def _stopped_by(self, exc: BaseException, where: str) -> None:
        # A broken invariant or a failing app is a bug of ours: stop loudly rather than limp on.
        log.critical("%s of %s stopped: %r", where, self.config.node_id, exc)
        self._running = False
        if self._stage is not None:
            self._stage.stop_soon()
        self._wakeup.set()
        self._fail_waiters(exc)

    async def _loop_rounds(self, core: Raft) -> None:
        while self._running:
            await self._wakeup.wait()
            self._wakeup.clear()
            for _ in range(min(len(self._inbox), MAX_STEPS_PER_ROUND)):
                msg = self._inbox.popleft()
                if self._snapshot_unavailable(msg):
                    continue
                core.step(msg)
            while self._commands:
                self._commands.popleft()()
            ticks, self._ticks_due = self._ticks_due, 0
            for _ in range(min(ticks, core.cfg.election_ticks)):
                core.tick()
            while core.has_ready():
                rd = core.ready()
                await self._handle_ready(core, rd)
                core.advance(rd)
                self._resolve_reads()
            if self._inbox:
                self._wakeup.set()
            if self._running:
                await self._maybe_compact(core)

    def _snapshot_unavailable(self, msg: Message) -> bool:
        """A SNAPSHOT whose stream the spool no longer holds complete (a newer stream replaced
        it while the message waited in the inbox) must not reach the core: the core would
        decide to install a snapshot whose bytes are gone. The leader sends it again."""
        return (msg.type == MessageType.SNAPSHOT and msg.snapshot is not None
                and not self._spool.is_complete(msg.frm, msg.snapshot.index))

    def _may_send_before_persisting(self, core: Raft, rd: Ready) -> bool:
        """A leader's APPENDs may overlap its own disk write (Raft thesis §10.2.1): the core
        counts the leader's entries toward a commit only once advance() reports them stable.
        Term and vote must already be on disk, as everything a leader sends depends on them."""
        hs = rd.hard_state
        return (core.role == Role.LEADER and rd.snapshot_to_install is None
                and (hs is None or (hs.term, hs.vote) == self._synced_term_vote))

    async def _handle_ready(self, core: Raft, rd: Ready) -> None:
        loop = asyncio.get_running_loop()
        sent_early = self._may_send_before_persisting(core, rd)
        if sent_early:
            for m in rd.messages:
                self._send(core, m)
        if rd.snapshot_to_install is not None:
            assert self._stage is not None
            # Set aside before the first await: chunks that arrive from now on (a leader may
            # stream again while we install) go to other files and cannot change these bytes.
            spooled = self._spool.take(rd.snapshot_to_install.index)
            try:
                await self._stage.install(
                    functools.partial(self._install_snapshot, rd, spooled),
                    rd.snapshot_to_install.index)
            finally:
                self._spool.finish_install(spooled)
            self._settle_covered_proposals(rd.snapshot_to_install)
        elif rd.hard_state is not None or rd.entries_to_persist:
            # Raft's durability rule: on disk (fsync) before any message that depends on it.
            # A Ready that only moves the commit index needs no fsync: commit is a hint that
            # restart rebuilds (it is at least the app's applied index), and Raft promises
            # nothing to peers based on it.
            hs = rd.hard_state
            sync = bool(rd.entries_to_persist) or (
                hs is not None and (hs.term, hs.vote) != self._synced_term_vote)
            if sync:
                await loop.run_in_executor(None, self.store.save, hs, rd.entries_to_persist,
                                           None, sync)
            else:
                # Only the commit index moved (about once per block on every node): one small
                # unsynced put, written here rather than handed to a worker thread, whose
                # wake-up and GIL hand-off cost more than the write itself.
                self.store.save(hs, rd.entries_to_persist, None, sync)
            if hs is not None and sync:
                self._synced_term_vote = (hs.term, hs.vote)
        if not sent_early:
            for m in rd.messages:
                self._send(core, m)
        if rd.committed_entries:
            # Applied by the stage, in order, while this loop goes on replicating; proposals
            # and reads on these entries resolve once the stage reports them applied.
            assert self._stage is not None
            await self._stage.put(rd.committed_entries)
        for rs in rd.read_states:
            fut = self._reads.pop(rs.context, None)
            if fut is not None and not fut.done():
                self._read_waits.append((rs.index, fut))
        if rd.soft_state is not None and self._reads:
            # A leadership change drops reads the core was still confirming; the caller
            # retries against the new leader instead of waiting forever.
            for fut in self._reads.values():
                if not fut.done():
                    fut.set_exception(NotLeader(rd.soft_state.leader_id))
            self._reads.clear()

    def _install_snapshot(self, rd: Ready, spooled: SpooledSnapshot) -> None:
        meta = rd.snapshot_to_install
        assert meta is not None
        self.store.mark_snapshot_pending(meta)
        self.app.install_snapshot(meta.index, meta.term, spooled.chunks())
        self.store.save(rd.hard_state, rd.entries_to_persist, meta)

    def _send(self, core: Raft, m: Message) -> None:
        if m.type == MessageType.SNAPSHOT:
            self._tasks = [t for t in self._tasks if not t.done()]
            self._tasks.append(asyncio.create_task(self._stream_snapshot(core, m.to)))
            return
        if not self.transport.send(m.to, RAFT_CHANNEL, m.encode()):
            # Internal reports bypass the API bound: at most one per message of a Ready.
            self._commands.append(functools.partial(core.report_unreachable, m.to))

    async def _stream_snapshot(self, core: Raft, to: str) -> None:
        index, _term, chunks = self.app.snapshot()
        meta = core.snapshot_meta_at(index)
        ok = True
        for chunk in chunk_stream(core.id, to, core.term, index, chunks):
            for _ in range(SNAPSHOT_SEND_RETRIES):
                if self.transport.send(to, RAFT_CHANNEL, chunk.encode()):
                    break
                await asyncio.sleep(SNAPSHOT_RETRY_DELAY_MS / 1000)
            else:
                ok = False
                break
        if ok:
            snap_msg = Message(MessageType.SNAPSHOT, to, core.id, core.term, snapshot=meta)
            ok = self.transport.send(to, RAFT_CHANNEL, snap_msg.encode())
        self._commands.append(functools.partial(core.report_snapshot, to, ok))
        self._wakeup.set()

    def _on_applied(self, entries: list[Entry]) -> None:
        """The stage finished a run: what waited on it may go, and the log may compact."""
        self._resolve_proposals(entries)
        self._resolve_reads()
        self._wakeup.set()

    def _resolve_proposals(self, committed: list[Entry]) -> None:
        for e in committed:
            pending = self._proposals.pop(e.index, None)  # (term proposed in, future)
            if pending is None:
                continue
            term, fut = pending
            if fut.done():
                continue
            if e.term == term:
                fut.set_result(e.index)
            else:
                fut.set_exception(ProposalLost(f"index {e.index} taken by term {e.term}"))

    def _settle_covered_proposals(self, meta: SnapshotMeta) -> None:
        """Answer the proposals whose entries an installed snapshot covers: the stage will never
        apply those indexes here, so without this they waited for their caller's timeout.

        If the snapshot's last entry has the term a proposal was made in, the proposal
        committed: entries of a term are made only by that term's leader (this node, then), so
        the committed log up to meta.index is its log, which held the proposal at its index
        (Log Matching). Otherwise which entry committed at that index is not known here.
        """
        for index in [i for i in self._proposals if i <= meta.index]:
            term, fut = self._proposals.pop(index)
            if fut.done():
                continue
            if term == meta.term:
                fut.set_result(index)
            else:
                fut.set_exception(ProposalCovered(f"index {index} is inside a snapshot to "
                                                  f"{meta.index} (term {meta.term})"))

    def _resolve_reads(self) -> None:
        if not self._read_waits:
            return
        applied = self.applied_index()
        still = []
        for index, fut in self._read_waits:
            if fut.done():
                continue
            if index <= applied:
                fut.set_result(index)
            else:
                still.append((index, fut))
        self._read_waits = still

    async def _maybe_compact(self, core: Raft) -> None:
        """Forget applied entries once they pass either bound (entries or bytes), never beyond
        what the app has durably applied: a restart replays the log from the app's index."""
        cfg, log_ = self.config, core.log
        applied = max(log_.snapshot.index,
                      min(self.app.applied_index(), self.applied_index(), log_.stable_index))
        over_count = (applied - cfg.compact_keep_entries - log_.snapshot.index
                      >= cfg.compact_after_entries)
        if not over_count and log_.bytes_through(applied) < cfg.compact_after_bytes:
            return
        target = log_.compaction_target(applied, cfg.compact_keep_entries,
                                        cfg.compact_keep_bytes)
        if target <= log_.snapshot.index:
            return
        meta = core.compact(target)
        await asyncio.get_running_loop().run_in_executor(None, self.store.compact, meta)
