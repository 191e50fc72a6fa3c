"""Seeded deterministic simulation of Raft clusters (TigerBeetle VOPR / FoundationDB style).
Drives consensus.raft cores through a faulty network and disk; checks Raft's safety after every step.
"""

from __future__ import annotations

import heapq
import os
import random
from dataclasses import dataclass, field

from consensus.config import RaftConfig
from consensus.errors import ProposalRefused
from consensus.log import LogInvariantError
from consensus.membership import quorum
from consensus.messages import (
    ConfChange,
    ConfChangeType,
    Entry,
    HardState,
    Message,
    MessageType,
    SnapshotMeta,
)
from consensus.raft import PersistentState, Raft
from consensus.ready import ReadState, Ready, Role

ELECTION_TICKS = 10
MAX_DELAY_UNITS = 8  # a message is delivered 1..this many time units after it is sent
# Some seeds deliver a few messages late, up to this many units after they were sent: longer
# than an election even on the slowest clock (20 ticks x 6 units), as a transport queue that
# held a message over a reconnect can. An answer to a heartbeat sent before a read began can
# then reach a leader deposed in the meantime, the history that stale reads need.
LATE_DELAY_UNITS = 150
FAULT_PHASE_UNITS = 1200
HEAL_BOUND_UNITS = 2500  # liveness: after healing, a leader commits within this many units
COMPACT_KEEP_ENTRIES = 8
TORN_CRASH_P = 0.001  # per Ready: crash after the core changed state, before persisting it


class SafetyViolation(AssertionError):
    pass


class LivenessViolation(AssertionError):
    pass


@dataclass
class SimDisk:
    """What survives a crash: synced Raft state plus the application's applied entries."""

    hard_state: HardState
    snapshot: SnapshotMeta
    entries: list[Entry] = field(default_factory=list)
    app: list[tuple[int, bytes]] = field(default_factory=list)  # (term, data) per index
    # The driver fsyncs a hard state only when term or vote changed (or entries were
    # written); a commit-only update may be lost in a crash, as modelled here.
    synced_hard_state: HardState = field(default_factory=HardState)


class SimNode:
    def __init__(self, node_id: str, disk: SimDisk, period: int, seed: int,
                 raft_cls: type[Raft], append_bytes: int) -> None:
        self.id = node_id
        self.disk = disk
        self.period = period  # ticks once every `period` time units: skewed clocks
        self.phase = 0
        self.alive = True
        self.raft_cls = raft_cls
        self.append_bytes = append_bytes
        self.rng = random.Random(seed)
        # Read contexts as a driver once made them: a counter from 1 on every node, so the
        # same context is in use on several nodes at once. It survives a restart here, as the
        # driver's per-run nonce keeps one node's contexts unique across its restarts.
        self.read_ids = 0
        self.raft = self._boot()
        self.checked_commit = self.raft.log.committed

    def _boot(self) -> Raft:
        cfg = RaftConfig(node_id=self.id, rng=self.rng, election_ticks=ELECTION_TICKS,
                         max_inflight_appends=4, max_append_bytes=self.append_bytes)
        state = PersistentState(self.disk.hard_state, self.disk.snapshot,
                                tuple(self.disk.entries))
        return self.raft_cls(cfg, state, applied=len(self.disk.app))

    def restart(self) -> None:
        self.disk.hard_state = self.disk.synced_hard_state
        self.alive = True
        self.raft = self._boot()
        self.checked_commit = self.raft.log.committed


class Checker:
    """Raft's safety properties (Raft paper figure 3), checked incrementally."""

    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self.entries: dict[tuple[int, int], tuple[bytes, int, int]] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.applied: dict[int, tuple[int, bytes]] = {}

    def fail(self, what: str) -> None:
        raise SafetyViolation(what)

    def on_leader(self, node: SimNode) -> None:
        r = node.raft
        prev = self.leaders.setdefault(r.term, node.id)
        if prev != node.id:
            self.fail(f"Election Safety: {prev} and {node.id} both lead term {r.term}")
        for index, (term, data) in self.committed.items():
            if index > r.log.snapshot.index:
                got = r.log.term(index)
                if got != term or r.log.entries[index - r.log.first_index()].data != data:
                    self.fail(f"Leader Completeness: leader {node.id} term {r.term} lacks "
                              f"committed entry {index} (term {term}); has term {got}")

    def on_persist(self, node: SimNode, entries: tuple[Entry, ...]) -> None:
        for e in entries:
            prev_term = node.raft.log.term(e.index - 1)
            assert prev_term is not None
            seen = self.entries.setdefault((e.index, e.term), (e.data, int(e.type), prev_term))
            if seen != (e.data, int(e.type), prev_term):
                self.fail(f"Log Matching: entry ({e.index},{e.term}) on {node.id} differs "
                          f"from one seen elsewhere")

    def on_commit(self, node: SimNode) -> None:
        log = node.raft.log
        for index in range(node.checked_commit + 1, log.committed + 1):
            term = log.term(index)
            if term is None:
                continue  # inside a just-installed snapshot
            data = log.entries[index - log.first_index()].data if index > log.snapshot.index \
                else None
            known = self.committed.get(index)
            if known is None:
                if data is not None:
                    self.committed[index] = (term, data)
            elif known[0] != term or (data is not None and known[1] != data):
                self.fail(f"committed entry {index} differs on {node.id}: {known[0]} vs {term}")
        node.checked_commit = max(node.checked_commit, log.committed)

    def on_read(self, node: SimNode, rs: ReadState, needed: int,
                terms_then: dict[str, int]) -> None:
        """ReadIndex (thesis §6.4): the read point covers every commit made before the read
        began, and a leader serving its own read had a quorum that was still in its term when
        the read began (so no newer leader could have been elected yet)."""
        if rs.index < needed:
            self.fail(f"Linearizable read: {node.id} read at {rs.index} but {needed} "
                      f"was already committed when the read began")
        r = node.raft
        if r.role != Role.LEADER:
            return
        with_us = [v for v in r.conf.voters if terms_then.get(v, 0) <= r.term]
        if len(with_us) < quorum(len(r.conf.voters)):
            self.fail(f"Linearizable read: leader {node.id} (term {r.term}) served a read "
                      f"although only {with_us} of {r.conf.voters} were at or below its term "
                      f"when the read began: a newer leader may have existed")

    def on_apply(self, node: SimNode, term: int, data: bytes) -> None:
        index = len(node.disk.app) + 1
        known = self.applied.setdefault(index, (term, data))
        if known != (term, data):
            self.fail(f"State Machine Safety: {node.id} applied a different entry at {index}")


class Simulation:
    def __init__(self, seed: int, n_nodes: int, raft_cls: type[Raft] = Raft,
                 membership: bool | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self.ids = [f"n{i + 1}" for i in range(n_nodes)]
        boot = PersistentState.bootstrap(tuple(self.ids))
        # Small APPENDs stretch replication over many round trips, widening the windows in
        # which leader churn exposes ordering bugs.
        append_bytes = self.rng.choice((1, 1, 100, 1000))
        self.nodes = {
            nid: SimNode(nid, SimDisk(boot.hard_state, boot.snapshot), self.rng.choice((3, 4, 5)),
                         self.rng.getrandbits(32), raft_cls, append_bytes)
            for nid in self.ids
        }
        self.net: list[tuple[int, int, Message]] = []
        self.seq = 0
        self.blocked: set[tuple[str, str]] = set()
        self.drop_p = 0.0
        self.dup_p = 0.0
        self.membership = self.rng.random() < 0.4 if membership is None else membership
        # Swarm testing: each seed draws its own fault mix, so some seeds churn leaders
        # violently (where figure-8 style bugs live) while others stay mostly calm.
        self.churn_p = self.rng.choice((0.002, 0.005, 0.02, 0.05))
        self.late_p = self.rng.choice((0.0, 0.0, 0.005, 0.02))  # per message, fault phase only
        self.read_p = self.rng.choice((0.01, 0.05))  # per unit: a read-index request
        self.check = Checker()
        self.snap_data: dict[int, list[tuple[int, bytes]]] = {}  # app state by index
        self.proposed = 0
        # (node, read context) -> (the highest commit any node knew when the read began, each
        # node's durable term then)
        self.reads: dict[tuple[str, bytes], tuple[int, dict[str, int]]] = {}
        self.stats = {"delivered": 0, "dropped": 0, "crashes": 0, "snapshots": 0,
                      "conf_changes": 0, "leaders": 0, "reads": 0, "transfers": 0}

    # ---- running -----------------------------------------------------------------------------

    def run(self) -> dict[str, int]:
        try:
            for _ in range(FAULT_PHASE_UNITS):
                self._faults()
                self._unit()
            self._heal()
            self._await_liveness()
        except (SafetyViolation, LivenessViolation, LogInvariantError) as exc:
            raise type(exc)(f"{exc}\n  seed={self.seed}; replay with "
                            f"KEIRETSU_SIM_SEED={self.seed}") from exc
        return self.stats

    def _unit(self) -> None:
        self.now += 1
        for node in self.nodes.values():
            if node.alive and (self.now + node.phase) % node.period == 0:
                node.raft.tick()
                self._process(node)
        while self.net and self.net[0][0] <= self.now:
            _, _, m = heapq.heappop(self.net)
            node = self.nodes[m.to]
            if node.alive:
                self.stats["delivered"] += 1
                node.raft.step(m)
                self._process(node)

    def _process(self, node: SimNode) -> None:
        r = node.raft
        for _ in range(8):  # bounded: each Ready usually settles the core
            if not r.has_ready():
                return
            rd = r.ready()
            self._handle_ready(node, rd)
            if not node.alive:
                return

    def _handle_ready(self, node: SimNode, rd: Ready) -> None:
        r, disk = node.raft, node.disk
        hs, synced = rd.hard_state, disk.synced_hard_state
        # As the driver does: a leader sends before its own write if term/vote are on disk.
        early = (r.role == Role.LEADER and rd.snapshot_to_install is None
                 and (hs is None or (hs.term, hs.vote) == (synced.term, synced.vote)))
        if early:
            for m in rd.messages:
                self._send(node, m)
        if self.rng.random() < TORN_CRASH_P and self.now < FAULT_PHASE_UNITS:
            # Crash at the worst instant: the core decided (a leader may even have sent),
            # nothing reached the disk.
            node.alive = False
            self.stats["crashes"] += 1
            return
        if rd.soft_state is not None and rd.soft_state.role == Role.LEADER:
            self.stats["leaders"] += 1
            self.check.on_leader(node)
        if rd.snapshot_to_install is not None:
            snap = rd.snapshot_to_install
            data = self.snap_data[snap.index]
            disk.snapshot, disk.entries = snap, []
            disk.app = list(data)
            for i, (term, d) in enumerate(data, start=1):
                if self.check.applied.get(i, (term, d)) != (term, d):
                    self.check.fail(f"snapshot on {node.id} differs at {i}")
            self.stats["snapshots"] += 1
        if rd.entries_to_persist:
            self.check.on_persist(node, rd.entries_to_persist)
            first = rd.entries_to_persist[0].index
            del disk.entries[first - disk.snapshot.index - 1:]
            disk.entries.extend(rd.entries_to_persist)
        if rd.hard_state is not None:
            hs, old = rd.hard_state, disk.synced_hard_state
            disk.hard_state = hs
            if rd.entries_to_persist or rd.snapshot_to_install or (hs.term, hs.vote) != (
                    old.term, old.vote):
                disk.synced_hard_state = hs
        self.check.on_commit(node)
        for rs in rd.read_states:
            began = self.reads.pop((node.id, rs.context), None)
            if began is not None:
                self.check.on_read(node, rs, *began)
            self.stats["reads"] += 1
        if not early:
            for m in rd.messages:
                self._send(node, m)
        for e in rd.committed_entries:
            check_index = len(disk.app) + 1
            if e.index != check_index:
                self.check.fail(f"{node.id} applied {e.index} after {check_index - 1}: gap/dup")
            self.check.on_apply(node, e.term, e.data)
            disk.app.append((e.term, e.data))
        r.advance(rd)

    def _send(self, node: SimNode, m: Message) -> None:
        if m.type == MessageType.SNAPSHOT:
            # Like the driver: send the application's current state with matching metadata.
            applied = len(node.disk.app)
            meta = node.raft.snapshot_meta_at(applied)
            self.snap_data[applied] = list(node.disk.app)
            m = Message(m.type, m.to, m.frm, m.term, snapshot=meta)
            # The driver reports when its stream ends; the sender cannot know about a drop.
            node.raft.report_snapshot(m.to, ok=True)
        if (m.frm, m.to) in self.blocked or self.rng.random() < self.drop_p:
            self.stats["dropped"] += 1
            return
        copies = 2 if self.rng.random() < self.dup_p else 1
        for _ in range(copies):
            self.seq += 1
            delay = self.rng.randint(1, MAX_DELAY_UNITS)
            if self.late_p and self.rng.random() < self.late_p:
                delay = self.rng.randint(MAX_DELAY_UNITS, LATE_DELAY_UNITS)
            at = self.now + delay
            heapq.heappush(self.net, (at, self.seq, m))

    # ---- faults ------------------------------------------------------------------------------

    def _faults(self) -> None:
        rng = self.rng
        roll = rng.random()
        alive = [n for n in self.nodes.values() if n.alive]
        dead = [n for n in self.nodes.values() if not n.alive]
        if not alive:
            rng.choice(dead).restart()
            return
        if roll < 0.004 and len(alive) > 1:
            victim = rng.choice(alive)
            victim.alive = False  # loses everything not yet handled: the core's memory
            self.stats["crashes"] += 1
        elif roll < 0.010 and dead:
            rng.choice(dead).restart()
        elif roll < 0.013:
            self._partition()
        elif roll < 0.016:
            self.blocked = set()
        elif roll < 0.018:
            self.drop_p = rng.choice((0.0, 0.02, 0.1, 0.3))
            self.dup_p = rng.choice((0.0, 0.05, 0.2))
        elif roll < 0.020:
            node = rng.choice(list(self.nodes.values()))
            node.period = rng.choice((3, 4, 5, 6))
        if self.membership and rng.random() < 0.01:
            self._change_membership()
        if rng.random() < self.churn_p:
            self._strike_leader()
        if dead and rng.random() < self.churn_p:
            rng.choice(dead).restart()
        if rng.random() < self.read_p:
            # Half the reads go to a node that believes it leads (clients ask the leader they
            # know), which may be a deposed leader that has not noticed yet.
            leading = [n for n in alive if n.raft.role == Role.LEADER]
            self._read(rng.choice(leading if leading and rng.random() < 0.5 else alive))
        if roll > 0.9:
            self._propose()
        elif roll > 0.888:
            self._transfer()
        elif roll > 0.88:
            self._compact(rng.choice(alive))

    def _strike_leader(self) -> None:
        """Crash or isolate the leader: leader churn with entries in flight is where
        the subtle rules (figure 8, truncation) matter."""
        leader = self._leader()
        if leader is None:
            return
        if self.rng.random() < 0.5 and sum(n.alive for n in self.nodes.values()) > 1:
            leader.alive = False
            self.stats["crashes"] += 1
        else:
            self.blocked = {(a, b) for a in self.ids for b in self.ids
                            if (a == leader.id) != (b == leader.id)}
            if self.late_p:
                self._hold_in_flight_to(leader.id)

    def _hold_in_flight_to(self, node_id: str) -> None:
        """What is already on the wire to a node being cut off arrives late, as a transport
        queue delivers it after a reconnect: answers the node asked for before the cut can
        reach it after a newer leader was elected."""
        held = [(self.now + self.rng.randint(MAX_DELAY_UNITS, LATE_DELAY_UNITS), seq, m)
                for at, seq, m in self.net if m.to == node_id]
        self.net = [item for item in self.net if item[2].to != node_id] + held
        heapq.heapify(self.net)

    def _partition(self) -> None:
        rng = self.rng
        if rng.random() < 0.5:
            group = set(rng.sample(self.ids, rng.randint(1, len(self.ids) // 2)))
            self.blocked = {(a, b) for a in self.ids for b in self.ids
                            if (a in group) != (b in group)}
        else:
            pairs = [(a, b) for a in self.ids for b in self.ids if a != b]
            self.blocked = set(rng.sample(pairs, rng.randint(1, len(pairs) // 2)))

    def _leader(self) -> SimNode | None:
        leaders = [n for n in self.nodes.values() if n.alive and n.raft.role == Role.LEADER]
        return max(leaders, key=lambda n: n.raft.term) if leaders else None

    def _propose(self) -> int | None:
        node = self._leader() if self.rng.random() < 0.8 else self.rng.choice(
            list(self.nodes.values()))
        if node is None or not node.alive:
            return None
        index = None
        for _ in range(self.rng.choice((1, 1, 2, 12))):  # bursts outgrow one APPEND
            self.proposed += 1
            try:
                index = node.raft.propose(f"s{self.seed}-c{self.proposed}".encode())
            except ProposalRefused:
                return None
        self._process(node)
        return index

    def _read(self, node: SimNode) -> None:
        node.read_ids += 1
        # Unique on this node only: nodes' contexts collide, as the driver's once did, so a core
        # that matched heartbeat answers to reads by caller context would be caught here.
        ctx = node.read_ids.to_bytes(8, "big")
        acknowledged = max(n.raft.log.committed for n in self.nodes.values())
        # Durable terms: an unsynced term is lost in a torn crash and was never seen by a peer.
        terms = {n.id: n.disk.synced_hard_state.term for n in self.nodes.values()}
        try:
            node.raft.read_index(ctx)
        except ProposalRefused:
            return
        self.reads[(node.id, ctx)] = (acknowledged, terms)
        self._process(node)

    def _transfer(self) -> None:
        leader = self._leader()
        if leader is None:
            return
        others = [v for v in leader.raft.conf.voters if v != leader.id]
        if others:
            leader.raft.transfer_leader(self.rng.choice(others))
            self.stats["transfers"] += 1
            self._process(leader)

    def _compact(self, node: SimNode) -> None:
        r = node.raft
        target = min(len(node.disk.app), r.log.stable_index) - COMPACT_KEEP_ENTRIES
        if target > r.log.snapshot.index:
            node.disk.snapshot = r.compact(target)
            del node.disk.entries[: target - (node.disk.entries[0].index - 1)]

    def _change_membership(self) -> None:
        leader = self._leader()
        if leader is None:
            return
        conf = leader.raft.conf
        missing = [i for i in self.ids if i not in conf.members()]
        if missing:
            cc = ConfChange(ConfChangeType.ADD_LEARNER, missing[0])
        elif conf.learners:
            cc = ConfChange(ConfChangeType.ADD_NODE, conf.learners[0])
        elif len(conf.voters) >= 3:
            # Sometimes the leader removes itself: it must step down once that applies.
            others = [v for v in conf.voters if v != leader.id]
            victim = leader.id if self.rng.random() < 0.2 else self.rng.choice(others)
            cc = ConfChange(ConfChangeType.REMOVE_NODE, victim)
        else:
            return
        try:
            leader.raft.propose_conf_change(cc)
            self.stats["conf_changes"] += 1
        except ProposalRefused:
            return
        self._process(leader)

    # ---- healing and liveness ---------------------------------------------------------------

    def _heal(self) -> None:
        self.blocked = set()
        self.drop_p = self.dup_p = self.late_p = 0.0
        for node in self.nodes.values():
            node.period = 4
            if not node.alive:
                node.restart()

    def _await_liveness(self) -> None:
        deadline = self.now + HEAL_BOUND_UNITS
        marker_index: int | None = None
        marker_term = 0
        while self.now < deadline:
            self._unit()
            leader = self._leader()
            if leader is None:
                continue
            if marker_index is None or leader.raft.term != marker_term:
                try:
                    marker_index = leader.raft.propose(b"liveness-marker")
                    marker_term = leader.raft.term
                except ProposalRefused:
                    continue
                self._process(leader)
            members = [n for n in self.nodes.values()
                       if n.id in leader.raft.conf.members()]
            if all(len(n.disk.app) >= marker_index for n in members):
                return
        raise LivenessViolation(f"no commit on every member within {HEAL_BOUND_UNITS} units "
                                f"after healing (now={self.now})")


def seeds_to_run(default: range) -> list[int]:
    """KEIRETSU_SIM_SEED=<n> replays exactly one seed instead of a sweep."""
    env = os.environ.get("KEIRETSU_SIM_SEED")
    return [int(env)] if env else list(default)



class LockstepNet:
    """A lossless, instant network for scripted unit tests (etcd raft's newNetwork)."""

    MAX_ROUNDS = 1000

    def __init__(self, *rafts: Raft) -> None:
        self.peers = {r.id: r for r in rafts}
        self.cut: set[tuple[str, str]] = set()  # (from, to) pairs whose messages vanish
        self.log: list[Message] = []  # every message delivered, for assertions
        self.applied: dict[str, list[Entry]] = {r.id: [] for r in rafts}
        self.read_states: dict[str, list[ReadState]] = {r.id: [] for r in rafts}

    def isolate(self, node_id: str) -> None:
        for other in self.peers:
            if other != node_id:
                self.cut |= {(node_id, other), (other, node_id)}

    def heal(self) -> None:
        self.cut = set()

    def drain(self, node_id: str) -> list[Message]:
        """Run node's Readies (in-memory 'disk'); returns the messages it emitted."""
        r = self.peers[node_id]
        out: list[Message] = []
        for _ in range(self.MAX_ROUNDS):
            if not r.has_ready():
                break
            rd = r.ready()
            out.extend(rd.messages)
            self.applied[node_id].extend(rd.committed_entries)
            self.read_states[node_id].extend(rd.read_states)
            r.advance(rd)
        return out

    def stabilize(self) -> None:
        pending: list[Message] = []
        for nid in self.peers:
            pending.extend(self.drain(nid))
        for _ in range(self.MAX_ROUNDS):
            if not pending:
                return
            m = pending.pop(0)
            if (m.frm, m.to) in self.cut or m.to not in self.peers:
                continue
            self.log.append(m)
            self.peers[m.to].step(m)
            pending.extend(self.drain(m.to))
        raise AssertionError("network did not settle")

    def elect(self, node_id: str) -> None:
        r = self.peers[node_id]
        for _ in range(2 * r.randomized_timeout):
            if r.role == Role.LEADER:
                break
            r.tick()
            self.stabilize()
