"""The Raft core: a deterministic, sans-IO state machine (ticks, messages, proposals in; Ready out).
No clocks, sockets, disks or global randomness: consensus/driver.py and the tests do the IO.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.config import MAX_PENDING_READS, RaftConfig
from consensus.errors import ProposalRefused, RefusalCode
from consensus.log import RaftLog, check
from consensus.membership import apply_conf_change, conf_change_of, quorum
from consensus.messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    SnapshotMeta,
)
from consensus.progress import FlowState, Progress
from consensus.ready import ReadState, Ready, Role, SoftState

MAX_ENTRY_BYTES = 8 * 1024 * 1024
CAMPAIGN_TRANSFER = b"transfer"  # vote context: a leadership transfer may break a leader lease

MT = MessageType


@dataclass(frozen=True)
class PersistentState:
    """What a node reloads from disk at start: enough to resume without breaking any promise."""

    hard_state: HardState
    snapshot: SnapshotMeta  # index 0 with the bootstrap membership on a fresh node
    entries: tuple[Entry, ...] = ()

    @staticmethod
    def bootstrap(voters: tuple[str, ...], learners: tuple[str, ...] = ()) -> PersistentState:
        return PersistentState(HardState(), SnapshotMeta(0, 0, ConfState(voters, learners)))


@dataclass
class _PendingRead:
    context: bytes  # the caller's, returned with the read; never matched against acks
    index: int
    requester: str  # our own id, or the follower that forwarded it
    round: int = 0  # the read round whose heartbeats confirm it (see _leader_read_index)


READ_ROUND_BYTES = 8  # a heartbeat's context: the leader's read round, big-endian


def _read_round_of(context: bytes) -> int | None:
    """The read round a heartbeat answer echoes, or None for one that carries none."""
    if len(context) != READ_ROUND_BYTES:
        return None
    return int.from_bytes(context, "big")


class Raft:
    def __init__(self, config: RaftConfig, state: PersistentState, applied: int = 0) -> None:
        config.validate()
        self.cfg = config
        self.id = config.node_id
        hs = state.hard_state
        self.log = RaftLog(state.snapshot, list(state.entries), hs.commit, applied)
        self.term = hs.term
        self.vote = hs.vote
        self.lead = ""
        self.role = Role.FOLLOWER
        # Membership as of what the core has handed to the application.
        self.conf = self.log.conf_at(self.log.applied, state.snapshot.conf)
        self.prs: dict[str, Progress] = {}
        self.votes: dict[str, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.pending_reads: list[_PendingRead] = []  # in increasing round order
        self.reads_before_commit: list[_PendingRead] = []
        # Read rounds: the leader numbers its read-index heartbeat rounds itself, so an answer
        # names the round it confirms whatever contexts callers chose (they may repeat across
        # nodes and restarts). Never reset while this core lives: a round id is never reused.
        self.read_round = 0
        self.read_round_acked: dict[str, int] = {}  # voter -> highest round it answered
        self.read_round_ticks = 0  # ticks since the latest round's heartbeats went out
        self.election_elapsed = 0
        self.randomized_timeout = config.election_ticks
        self.lead_transferee = ""
        self.pending_conf_index = 0
        self._proposals_unsent = False
        self._prev_hard = hs
        self._prev_soft = SoftState("", Role.FOLLOWER)
        self._reset_progress()
        self._reset_randomized_timeout()

    # ==== public API =========================================================================

    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def step(self, m: Message) -> None:
        """Feed one message from a peer. Stale and foreign messages are ignored, never fatal."""
        if m.to != self.id or m.frm == self.id:
            return
        if m.term > self.term:
            if not self._accept_higher_term(m):
                return
        elif m.term < self.term:
            self._respond_to_stale(m)
            return
        if m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(m)
        else:
            self._step_follower(m)

    def propose(self, data: bytes) -> int:
        """Append data to the log as leader; returns its index (not yet committed)."""
        self._check_can_propose(len(data))
        return self._append_local(EntryType.NORMAL, data)

    def propose_conf_change(self, cc: ConfChange) -> int:
        self._check_can_propose(0)
        if self.pending_conf_index > self.log.applied:
            raise ProposalRefused(RefusalCode.CONF_CHANGE_PENDING, self.lead)
        if not self._conf_change_is_valid(cc):
            raise ProposalRefused(RefusalCode.INVALID_CONF_CHANGE, self.lead)
        index = self._append_local(EntryType.CONF_CHANGE, cc.encode())
        self.pending_conf_index = index
        return index

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; answered later as a ReadState with this context."""
        if self.role == Role.LEADER:
            self._leader_read_index(context, self.id)
        elif self.lead:
            self._send(Message(MT.READ_INDEX, self.lead, self.id, self.term, context=context))
        else:
            raise ProposalRefused(RefusalCode.NOT_LEADER, "")

    def transfer_leader(self, to: str) -> None:
        if self.role != Role.LEADER:
            raise ProposalRefused(RefusalCode.NOT_LEADER, self.lead)
        if to == self.id or to not in self.conf.voters or to == self.lead_transferee:
            return
        self.lead_transferee = to
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        if self.prs[to].match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, to, self.id, self.term))
        else:
            self._send_append(to)

    def report_unreachable(self, peer: str) -> None:
        pr = self.prs.get(peer)
        if self.role == Role.LEADER and pr is not None and pr.state == FlowState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, peer: str, ok: bool) -> None:
        """The driver finished (or failed) streaming a snapshot to peer."""
        pr = self.prs.get(peer)
        if self.role != Role.LEADER or pr is None or pr.state != FlowState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for the follower's answer (or a heartbeat) before probing

    def compact(self, index: int) -> SnapshotMeta:
        """Forget log entries up to index, which the application has durably applied."""
        conf = self.log.conf_at(index, self.log.snapshot.conf)
        return self.log.compact(index, conf)

    def snapshot_meta_at(self, index: int) -> SnapshotMeta:
        """Metadata for an application snapshot taken at index (for sending to a follower)."""
        term = self.log.term(index)
        check(term is not None, "snapshot index outside the log")
        assert term is not None
        return SnapshotMeta(index, term, self.log.conf_at(index, self.log.snapshot.conf))

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def has_ready(self) -> bool:
        self._flush_proposals()
        log = self.log
        return bool(
            self.msgs or self.read_states or log.pending_snapshot is not None
            or log.stable_index < log.last_index() or self.hard_state() != self._prev_hard
            or self.soft_state() != self._prev_soft
            or (log.committed > log.applied and log.pending_snapshot is None))

    def ready(self) -> Ready:
        self._flush_proposals()
        hs, ss = self.hard_state(), self.soft_state()
        rd = Ready(
            hard_state=hs if hs != self._prev_hard else None,
            entries_to_persist=tuple(self.log.unstable_entries()),
            snapshot_to_install=self.log.pending_snapshot,
            messages=tuple(self.msgs),
            committed_entries=tuple(self.log.next_committed_entries(self.cfg.max_apply_bytes)),
            read_states=tuple(self.read_states),
            soft_state=ss if ss != self._prev_soft else None,
        )
        self.msgs = []
        self.read_states = []
        self._prev_soft = ss
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied rd."""
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        if rd.snapshot_to_install is not None:
            self.log.snapshot_installed(rd.snapshot_to_install)
        if rd.entries_to_persist:
            last = rd.entries_to_persist[-1]
            self.log.stable_to(last.index, last.term)
            self._leader_persisted()
        if rd.committed_entries:
            self.log.applied_to(rd.committed_entries[-1].index)
            for ent in rd.committed_entries:
                cc = conf_change_of(ent)
                if cc is not None:
                    self._apply_conf_change(cc)

    # ==== ticks ==============================================================================

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self._hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                self._become_follower(self.term, "")  # CheckQuorum: we lost our majority
                return
            self.lead_transferee = ""  # a transfer that did not finish in time is abandoned
        self._periodic_heartbeats()

    def _quorum_active(self) -> bool:
        active = 0
        for pid in self.conf.voters:
            pr = self.prs[pid]
            if pid == self.id or pr.recent_active:
                active += 1
            pr.recent_active = False
        return active >= quorum(len(self.conf.voters))

    # ==== term and vote handling ==============================================================

    def _accept_higher_term(self, m: Message) -> bool:
        """Decide what a message from a higher term does to us; False means drop it."""
        if m.type in (MT.VOTE, MT.PRE_VOTE):
            force = m.context == CAMPAIGN_TRANSFER
            in_lease = (self.cfg.check_quorum and self.lead != ""
                        and self.election_elapsed < self.cfg.election_ticks)
            if in_lease and not force:
                return False  # we heard from a live leader recently: do not let it be deposed
        if m.type == MT.PRE_VOTE or (m.type == MT.PRE_VOTE_RESP and not m.reject):
            return True  # pre-votes never change our term
        leader = m.frm if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT) else ""
        self._become_follower(m.term, leader)
        return True

    def _respond_to_stale(self, m: Message) -> None:
        if m.type in (MT.APPEND, MT.HEARTBEAT) and (self.cfg.check_quorum or self.cfg.pre_vote):
            # Tell a deposed leader about the new term, or it could stay stuck behind PreVote.
            self._send(Message(MT.APPEND_RESP, m.frm, self.id, self.term))
        elif m.type == MT.PRE_VOTE:
            self._send(Message(MT.PRE_VOTE_RESP, m.frm, self.id, self.term, reject=True))

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (self.vote == m.frm or (self.vote == "" and self.lead == "")
                    or (m.type == MT.PRE_VOTE and m.term > self.term))
        resp = MT.VOTE_RESP if m.type == MT.VOTE else MT.PRE_VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Raft §5.2/§5.4.1: grant at most one vote per term, only to an up-to-date log.
            self._send(Message(resp, m.frm, self.id, m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(Message(resp, m.frm, self.id, self.term, reject=True))

    def _hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER or not self._promotable():
            return
        if self._unapplied_conf_change():
            return  # membership may be about to change: campaigning now could split quorums
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre_vote=True, transfer=False)
        else:
            self._campaign(pre_vote=False, transfer=transfer)

    def _campaign(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            kind, term = MT.PRE_VOTE, self.term + 1
        else:
            self._become_candidate()
            kind, term = MT.VOTE, self.term
        if self._poll(self.id, True) == "won":  # a single-voter cluster
            if pre_vote:
                self._campaign(pre_vote=False, transfer=transfer)
            else:
                self._become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for pid in self.conf.voters:
            if pid != self.id:
                self._send(Message(kind, pid, self.id, term, log_term=self.log.last_term(),
                                   index=self.log.last_index(), context=ctx))

    def _poll(self, voter: str, granted: bool) -> str:
        self.votes.setdefault(voter, granted)
        # Only current voters count: a late answer from a removed node or a learner must not.
        counted = [g for v, g in self.votes.items() if v in self.conf.voters]
        yes = sum(1 for g in counted if g)
        no = len(counted) - yes
        need = quorum(len(self.conf.voters))
        if yes >= need:
            return "won"
        if no > len(self.conf.voters) - need:
            return "lost"
        return "pending"

    # ==== role transitions ===================================================================

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = ""
        self.lead = ""
        self.election_elapsed = 0
        self._reset_randomized_timeout()
        self.lead_transferee = ""
        self.votes = {}
        self._reset_progress()
        self.pending_conf_index = 0
        self.pending_reads = []
        self.reads_before_commit = []
        self.read_round_acked = {}
        self.read_round_ticks = 0

    def _become_follower(self, term: int, lead: str) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # Neither term nor vote changes: a pre-candidate that loses leaves no trace (Raft §9.6).
        self.votes = {}
        self.lead = ""
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        check(self.role == Role.CANDIDATE, "only a candidate becomes leader")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self.prs[self.id].become_replicate()
        # Any conf change in the uncommitted tail counts as pending until it is applied.
        self.pending_conf_index = self.log.last_index()
        # Raft §8: commit an entry of our own term so earlier entries commit with it.
        self._append_local(EntryType.NORMAL, b"")

    def _reset_progress(self) -> None:
        last = self.log.last_index()
        self.prs = {}
        for pid in self.conf.members():
            pr = Progress(last + 1, self.cfg.max_inflight_appends, pid in self.conf.learners)
            if pid == self.id:
                pr.match = self.log.stable_index  # only what is on our disk counts
            self.prs[pid] = pr

    def _reset_randomized_timeout(self) -> None:
        ticks = self.cfg.election_ticks
        self.randomized_timeout = ticks + self.cfg.rng.randrange(ticks)

    def _promotable(self) -> bool:
        return self.id in self.conf.voters and self.log.pending_snapshot is None

    def _unapplied_conf_change(self) -> bool:
        ents = self.log.slice(self.log.applied + 1, self.log.committed + 1, 1 << 62) or []
        return any(e.type == EntryType.CONF_CHANGE for e in ents)

    # ==== per-role step functions ============================================================

    def _step_leader(self, m: Message) -> None:
        if m.type == MT.READ_INDEX:
            self._leader_read_index(m.context, m.frm)
            return
        pr = self.prs.get(m.frm)
        if pr is None:
            return  # not a member (any more)
        pr.recent_active = True
        if m.type == MT.APPEND_RESP:
            self._handle_append_response(m, pr)
        elif m.type == MT.HEARTBEAT_RESP:
            pr.probe_sent = False
            if pr.state == FlowState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first()  # appends may be lost: let one through to find out
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._ack_read(m.context, m.frm)

    def _step_candidate(self, m: Message) -> None:
        if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self._become_follower(self.term, m.frm)  # a leader exists in our term
            self._step_follower(m)
            return
        expected = MT.PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type != expected:
            return
        outcome = self._poll(m.frm, not m.reject)
        if outcome == "won":
            if self.role == Role.PRE_CANDIDATE:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
                self._bcast_append()
        elif outcome == "lost":
            self._become_follower(self.term, "")

    def _step_follower(self, m: Message) -> None:
        if m.type in (MT.APPEND, MT.HEARTBEAT, MT.SNAPSHOT):
            self.election_elapsed = 0
            self.lead = m.frm
            if m.type == MT.APPEND:
                self._handle_append(m)
            elif m.type == MT.HEARTBEAT:
                self.log.commit_to(min(m.commit, self.log.last_index()))
                self._send(Message(MT.HEARTBEAT_RESP, m.frm, self.id, self.term,
                                   context=m.context))
            else:
                self._handle_snapshot(m)
        elif m.type == MT.TIMEOUT_NOW:
            self._hup(transfer=True)
        elif m.type == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    # ==== follower side of replication =======================================================

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._send(Message(MT.APPEND_RESP, m.frm, self.id, self.term,
                               index=self.log.committed))
            return
        last_new = self._maybe_append(m)
        if last_new is not None:
            self._send(Message(MT.APPEND_RESP, m.frm, self.id, self.term, index=last_new))
            return
        # Fast backtracking: tell the leader the last index whose term could still match.
        hint_index, hint_term = self.log.find_conflict_by_term(
            min(m.index, self.log.last_index()), m.log_term)
        self._send(Message(MT.APPEND_RESP, m.frm, self.id, self.term, index=m.index,
                           reject=True, reject_hint=hint_index, log_term=hint_term))

    def _maybe_append(self, m: Message) -> int | None:
        """Raft §5.3; a seam the simulator's deliberately broken variants override."""
        return self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is not None and self._restore(snap):
            self._send(Message(MT.APPEND_RESP, m.frm, self.id, self.term,
                               index=self.log.last_index()))
        else:
            self._send(Message(MT.APPEND_RESP, m.frm, self.id, self.term,
                               index=self.log.committed))

    def _restore(self, snap: SnapshotMeta) -> bool:
        if snap.index <= self.log.committed or self.id not in snap.conf.members():
            return False
        if self.log.match_term(snap.index, snap.term):
            self.log.commit_to(snap.index)  # we already have it: just learn the commit
            return False
        self.log.restore(snap)
        self.conf = snap.conf
        self._reset_progress()
        return True

    # ==== leader side of replication =========================================================

    def _check_can_propose(self, size_bytes: int) -> None:
        if self.role != Role.LEADER:
            raise ProposalRefused(RefusalCode.NOT_LEADER, self.lead)
        if self.lead_transferee:
            raise ProposalRefused(RefusalCode.LEADER_TRANSFER_IN_PROGRESS, self.lead)
        if size_bytes > MAX_ENTRY_BYTES:
            raise ProposalRefused(RefusalCode.ENTRY_TOO_LARGE, self.lead)

    def _append_local(self, kind: EntryType, data: bytes) -> int:
        # The leader's own match moves only once the entry is on its disk (advance), so the
        # driver may send these APPENDs while it is still writing them (thesis §10.2.1).
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index, kind, data)])
        self._proposals_unsent = True
        return index

    def _leader_persisted(self) -> None:
        if self.role != Role.LEADER:
            return
        if self.prs[self.id].maybe_update(self.log.stable_index) and self._maybe_commit():
            self._on_commit_advanced()
            self._bcast_append()

    def _flush_proposals(self) -> None:
        # Proposals are broadcast once per Ready, so many proposals share one APPEND.
        if self._proposals_unsent and self.role == Role.LEADER:
            self._proposals_unsent = False
            if self._maybe_commit():
                self._on_commit_advanced()
            self._bcast_append()

    def _maybe_commit(self) -> bool:
        matches = sorted((self.prs[v].match for v in self.conf.voters), reverse=True)
        candidate = matches[quorum(len(self.conf.voters)) - 1]
        return self.log.maybe_commit(candidate, self.term)

    def _on_commit_advanced(self) -> None:
        if self.reads_before_commit and self.log.term(self.log.committed) == self.term:
            waiting, self.reads_before_commit = self.reads_before_commit, []
            for req in waiting:
                self._leader_read_index(req.context, req.requester)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state == FlowState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == FlowState.PROBE:
            pr.become_replicate()
        elif pr.state == FlowState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == FlowState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._on_commit_advanced()
            self._bcast_append()
        elif was_paused:
            self._send_append(m.frm)
        for _ in range(self.cfg.max_inflight_appends):  # fill the window, bounded
            if not self._maybe_send_append(m.frm, send_if_empty=False):
                break
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send(Message(MT.TIMEOUT_NOW, m.frm, self.id, self.term))

    def _bcast_append(self) -> None:
        for pid in self.prs:
            if pid != self.id:
                self._send_append(pid)

    def _send_append(self, to: str) -> None:
        self._maybe_send_append(to, send_if_empty=True)

    def _maybe_send_append(self, to: str, send_if_empty: bool) -> bool:
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        ents = self.log.slice(pr.next, pr.next + (1 << 30), self.cfg.max_append_bytes)
        if prev_term is None or ents is None:
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self._send(Message(MT.APPEND, to, self.id, self.term, log_term=prev_term,
                           index=prev_index, entries=tuple(ents), commit=self.log.committed))
        pr.ticks_silent = 0
        if pr.state == FlowState.REPLICATE and ents:
            pr.optimistic_update(ents[-1].index)
            pr.inflights.add(ents[-1].index)
        elif pr.state == FlowState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: str, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # do not stream a snapshot to a node that may be down
        snap = self.log.snapshot
        self._send(Message(MT.SNAPSHOT, to, self.id, self.term, snapshot=snap))
        pr.become_snapshot(snap.index)
        return True

    def _periodic_heartbeats(self) -> None:
        """A heartbeat to each follower that has been sent nothing for heartbeat_ticks ticks.

        An APPEND resets a follower's election timer and carries the commit index just as a
        heartbeat does, and its answer marks the follower active (CheckQuorum) as a heartbeat's
        does; under load appends go out several times per heartbeat interval, so a heartbeat on
        top of them was two more messages through both nodes' loops for nothing. Counting ticks
        per follower since its last message keeps the longest silence a follower can hear at
        heartbeat_ticks, as when every interval had its heartbeat. A follower whose appends are
        paused (window full, probe unanswered) is sent none, so its heartbeat, whose answer
        unblocks it, comes heartbeat_ticks after the last APPEND. Read-index rounds always send
        theirs, and send them again while their reads wait (_resend_read_round).
        """
        if self.pending_reads:
            self.read_round_ticks += 1
            if self.read_round_ticks >= self.cfg.heartbeat_ticks:
                self._resend_read_round()
        for pid, pr in self.prs.items():
            if pid == self.id:
                continue
            pr.ticks_silent += 1
            if pr.ticks_silent >= self.cfg.heartbeat_ticks:
                # Sent after every pending read was registered, so its answer may confirm them.
                self._send_heartbeat(pid, pr, self._read_round_context())

    def _resend_read_round(self) -> None:
        """The latest read round's heartbeat again, every heartbeat_ticks while reads wait, to
        each voter that has not answered it, busy with APPENDs or not: an APPEND carries no
        round, so a lost round heartbeat would otherwise stall the reads for as long as writes
        keep the follower from falling silent."""
        self.read_round_ticks = 0
        context = self._read_round_context()
        for pid, pr in self.prs.items():
            if pid != self.id and pid in self.conf.voters and self.read_round_acked.get(pid, 0) < self.read_round:
                self._send_heartbeat(pid, pr, context)

    def _bcast_heartbeat(self, context: bytes) -> None:
        for pid, pr in self.prs.items():
            if pid != self.id:
                self._send_heartbeat(pid, pr, context)

    def _send_heartbeat(self, to: str, pr: Progress, context: bytes) -> None:
        """A heartbeat (the commit index the follower is known to hold), which restarts its silence."""
        pr.ticks_silent = 0
        self._send(Message(MT.HEARTBEAT, to, self.id, self.term, commit=min(pr.match, self.log.committed),
                           context=context))

    # ==== linearizable reads (Raft thesis §6.4) =============================================

    def _leader_read_index(self, context: bytes, requester: str) -> None:
        """Record the commit index for a read, then confirm leadership with a new read round.

        The heartbeats carry the round id (this core's own counter), not the caller's context:
        callers' contexts may collide (every driver once counted from 1), and an answer to an
        earlier round, matched by context, released a later read without any heartbeat sent
        after it (a deposed leader then served a stale read).
        """
        req = _PendingRead(context, self.log.committed, requester)
        if len(self.pending_reads) + len(self.reads_before_commit) >= MAX_PENDING_READS:
            if requester == self.id:
                raise ProposalRefused(RefusalCode.TOO_MANY_PENDING_READS, self.id)
            return
        if self.log.term(self.log.committed) != self.term:
            self.reads_before_commit.append(req)  # our commit index may still be stale
            return
        if len(self.conf.voters) == 1:
            self._release_read(req)
            return
        self.read_round += 1
        req.round = self.read_round
        self.pending_reads.append(req)
        self._bcast_heartbeat(self._read_round_context())
        self.read_round_ticks = 0

    def _read_round_context(self) -> bytes:
        """The heartbeat context: the latest read round while reads wait, else nothing."""
        if not self.pending_reads:
            return b""
        return self.read_round.to_bytes(READ_ROUND_BYTES, "big")

    def _ack_read(self, context: bytes, voter: str) -> None:
        """A voter answered a heartbeat of read round `context`: it confirms our leadership as
        of that heartbeat, so for every read registered at or before that round."""
        acked = _read_round_of(context)
        if acked is None or voter not in self.conf.voters:
            return
        if acked > self.read_round:
            return  # not a round this core sent: ignore, never trust it
        if acked <= self.read_round_acked.get(voter, 0):
            return
        self.read_round_acked[voter] = acked
        rounds = sorted((self.read_round if v == self.id else self.read_round_acked.get(v, 0)
                         for v in self.conf.voters), reverse=True)
        confirmed = rounds[quorum(len(self.conf.voters)) - 1]
        done = 0
        while done < len(self.pending_reads) and self.pending_reads[done].round <= confirmed:
            done += 1
        released, self.pending_reads = self.pending_reads[:done], self.pending_reads[done:]
        for r in released:
            self._release_read(r)

    def _release_read(self, req: _PendingRead) -> None:
        if req.requester == self.id:
            self.read_states.append(ReadState(req.index, req.context))
        else:
            self._send(Message(MT.READ_INDEX_RESP, req.requester, self.id, self.term,
                               index=req.index, context=req.context))

    # ==== membership =========================================================================

    def _conf_change_is_valid(self, cc: ConfChange) -> bool:
        members = self.conf.members()
        if cc.type == ConfChangeType.ADD_LEARNER:
            return cc.node_id not in members
        if cc.type == ConfChangeType.ADD_NODE:
            return cc.node_id not in self.conf.voters
        return cc.node_id in members and not (
            cc.node_id in self.conf.voters and len(self.conf.voters) == 1)

    def _apply_conf_change(self, cc: ConfChange) -> None:
        self.conf = apply_conf_change(self.conf, cc)
        last = self.log.last_index()
        for pid in self.conf.members():
            if pid not in self.prs:
                self.prs[pid] = Progress(last + 1, self.cfg.max_inflight_appends, False)
            self.prs[pid].is_learner = pid in self.conf.learners
        for pid in [p for p in self.prs if p not in self.conf.members()]:
            del self.prs[pid]
        if self.role != Role.LEADER:
            return
        if self.id not in self.conf.voters:
            self._become_follower(self.term, "")  # we removed ourselves: stop leading
            return
        if self.lead_transferee and self.lead_transferee not in self.conf.voters:
            self.lead_transferee = ""
        if self._maybe_commit():  # a smaller quorum may commit more
            self._on_commit_advanced()
        self._bcast_append()

    # ==== output ============================================================================

    def _send(self, m: Message) -> None:
        self.msgs.append(m)
