"""Scripted tests of the Raft core, each tied to the paper section it checks (etcd's
raft_paper_test.go): Ongaro & Ousterhout 2014 (§5.x) and Ongaro's thesis (§4, §6, §9.6).
"""

from __future__ import annotations

import random

import pytest

from consensus.config import ConfigError, RaftConfig
from consensus.errors import ProposalRefused, RefusalCode
from consensus.messages import (
    ConfChange,
    ConfChangeType,
    Entry,
    HardState,
    Message,
    SnapshotMeta,
)
from consensus.messages import (
    MessageType as MT,
)
from consensus.progress import FlowState
from consensus.raft import PersistentState, Raft
from consensus.ready import Role
from tests.raft_sim import LockstepNet

IDS = ("1", "2", "3")


def new_raft(node_id: str, voters: tuple[str, ...] = IDS, *, pre_vote: bool = False,
             check_quorum: bool = False, entries: tuple[Entry, ...] = (), term: int = 0,
             learners: tuple[str, ...] = (), inflight: int = 64, seed: int = 0,
             heartbeat_ticks: int = 1) -> Raft:
    cfg = RaftConfig(node_id=node_id, rng=random.Random(seed + int(node_id)),
                     pre_vote=pre_vote, check_quorum=check_quorum, max_inflight_appends=inflight,
                     heartbeat_ticks=heartbeat_ticks)
    boot = PersistentState.bootstrap(voters, learners)
    state = PersistentState(HardState(term=term), boot.snapshot, entries)
    return Raft(cfg, state)


def cluster(n: int = 3, **kw: object) -> LockstepNet:
    ids = tuple(str(i + 1) for i in range(n))
    return LockstepNet(*(new_raft(i, ids, **kw) for i in ids))  # type: ignore[arg-type]


def msgs_of(r: Raft) -> list[Message]:
    rd = r.ready()
    r.advance(rd)
    return list(rd.messages)


def ents(*terms: int) -> tuple[Entry, ...]:
    return tuple(Entry(t, i + 1, data=b"e%d" % (i + 1)) for i, t in enumerate(terms))


# ---- §5.1: terms ---------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_5_1_higher_term_makes_any_role_a_follower(role: str) -> None:
    """'If a server receives a request with a higher term, it updates its term and reverts
    to follower state.'"""
    net = cluster()
    r = net.peers["1"]
    if role == "leader":
        net.elect("1")
    elif role == "candidate":
        for _ in range(r.randomized_timeout):
            r.tick()
    r.step(Message(MT.APPEND, "1", "2", term=r.term + 5, index=0, log_term=0))
    assert r.role == Role.FOLLOWER and r.lead == "2"
    assert r.term == r.hard_state().term


def test_5_1_stale_term_request_is_rejected_with_current_term() -> None:
    """'If a server receives a request with a stale term number, it rejects the request.'"""
    r = new_raft("1", term=5, check_quorum=True)
    r.step(Message(MT.APPEND, "1", "2", term=3, index=0, log_term=0, entries=ents(3)))
    assert r.log.last_index() == 0
    out = msgs_of(r)
    assert [(m.type, m.term) for m in out] == [(MT.APPEND_RESP, 5)]


# ---- §5.2: leader election -----------------------------------------------------------------

def test_5_2_follower_times_out_and_campaigns_voting_for_itself() -> None:
    r = new_raft("1")
    for _ in range(r.randomized_timeout):
        r.tick()
    assert r.role == Role.CANDIDATE and r.term == 1 and r.vote == "1"
    out = msgs_of(r)
    assert sorted(m.to for m in out if m.type == MT.VOTE) == ["2", "3"]
    assert r.hard_state() == HardState(1, "1", 0)  # vote is persisted before requests leave


def test_5_2_randomized_timeouts_spread_over_one_election_period() -> None:
    """'Election timeouts are chosen randomly from a fixed interval (e.g., 150–300ms).'"""
    seen = set()
    for seed in range(50):
        r = new_raft("1", seed=seed)
        seen.add(r.randomized_timeout)
    et = r.cfg.election_ticks
    assert seen <= set(range(et, 2 * et)) and len(seen) > et // 2


def test_5_2_candidate_with_majority_becomes_leader() -> None:
    net = cluster(5)
    net.elect("1")
    assert net.peers["1"].role == Role.LEADER
    assert all(net.peers[i].lead == "1" for i in net.peers)


def test_5_2_at_most_one_vote_per_term_first_come_first_served() -> None:
    r = new_raft("1")
    r.step(Message(MT.VOTE, "1", "2", term=1, index=0, log_term=0))
    r.step(Message(MT.VOTE, "1", "3", term=1, index=0, log_term=0))
    votes = [(m.to, m.reject) for m in msgs_of(r) if m.type == MT.VOTE_RESP]
    assert votes == [("2", False), ("3", True)]
    assert r.vote == "2"


def test_5_2_candidate_steps_down_for_a_leader_of_its_term() -> None:
    r = new_raft("1")
    for _ in range(r.randomized_timeout):
        r.tick()
    r.step(Message(MT.APPEND, "1", "2", term=r.term, index=0, log_term=0))
    assert r.role == Role.FOLLOWER and r.lead == "2"


def test_5_2_candidate_that_loses_returns_to_follower() -> None:
    r = new_raft("1")
    for _ in range(r.randomized_timeout):
        r.tick()
    for voter in ("2", "3"):
        r.step(Message(MT.VOTE_RESP, "1", voter, term=r.term, reject=True))
    assert r.role == Role.FOLLOWER


# ---- §5.3: log replication -----------------------------------------------------------------

def test_5_3_leader_commits_once_a_majority_stores_the_entry() -> None:
    net = cluster()
    net.elect("1")
    leader = net.peers["1"]
    net.isolate("3")
    index = leader.propose(b"x")
    net.stabilize()
    assert leader.log.committed == index  # 2 of 3 is a majority
    assert [e.data for e in net.applied["2"] if e.data] == [b"x"]
    assert net.peers["3"].log.last_index() < index


def test_5_3_follower_rejects_append_that_does_not_match_with_a_backtracking_hint() -> None:
    r = new_raft("2", entries=ents(1, 1, 2, 2))
    r.step(Message(MT.APPEND, "2", "1", term=4, index=6, log_term=4))
    (resp,) = msgs_of(r)
    assert resp.reject and resp.index == 6
    assert (resp.reject_hint, resp.log_term) == (4, 2)  # our last entry of term <= 4


def test_5_3_conflicting_entries_are_replaced() -> None:
    """'If an existing entry conflicts with a new one (same index but different terms), delete
    the existing entry and all that follow it.'"""
    r = new_raft("2", entries=ents(1, 1, 2, 2))
    r.step(Message(MT.APPEND, "2", "1", term=3, index=2, log_term=1,
                   entries=(Entry(3, 3, data=b"n3"),)))
    assert [e.term for e in r.log.entries] == [1, 1, 3]
    assert r.log.unstable_entries()[0].index == 3  # the replacement must be persisted


def test_5_3_follower_truncates_only_at_a_real_conflict() -> None:
    """A delayed, shorter append that matches must not cut entries past it (the bug PySyncObj
    and others had): the leader may already count those entries toward a commit."""
    r = new_raft("2", entries=ents(1, 1, 1, 1))
    r.step(Message(MT.APPEND, "2", "1", term=1, index=1, log_term=1, entries=ents(1, 1)[1:]))
    assert r.log.last_index() == 4
    (resp,) = msgs_of(r)
    assert not resp.reject and resp.index == 2


def test_5_3_leader_backtracks_to_a_diverged_follower_and_repairs_it() -> None:
    a = new_raft("1", entries=ents(1, 1, 3), term=3)
    b = new_raft("2", entries=ents(1, 1, 2, 2, 2, 2), term=2)
    c = new_raft("3", entries=ents(1, 1, 3), term=3)
    net = LockstepNet(a, b, c)
    net.elect("1")
    a.propose(b"new")
    net.stabilize()
    assert [e.term for e in b.log.entries] == [e.term for e in a.log.entries]
    rejects = [m for m in net.log if m.type == MT.APPEND_RESP and m.reject]
    assert len(rejects) <= 2  # the term hint skips the whole term-2 run at once


# ---- §5.4: safety --------------------------------------------------------------------------

def test_5_4_1_vote_refused_to_a_less_up_to_date_log() -> None:
    r = new_raft("1", entries=ents(1, 2), term=2)
    r.step(Message(MT.VOTE, "1", "2", term=3, index=5, log_term=1))
    (resp,) = msgs_of(r)
    assert resp.reject and r.vote == ""


def test_5_4_2_leader_does_not_commit_an_older_term_entry_by_counting() -> None:
    """Figure 8: an entry from an earlier term is committed only through one of the current
    term. Node 1 leads term 3 holding an uncommitted term-1 entry at index 2."""
    a = new_raft("1", entries=ents(1, 1), term=2)
    b = new_raft("2", entries=ents(1), term=2)
    c = new_raft("3", entries=ents(1), term=2)
    net = LockstepNet(a, b, c)
    for _ in range(a.randomized_timeout):
        a.tick()
    for v in ("2", "3"):
        a.step(Message(MT.VOTE_RESP, "1", v, term=a.term))
    assert a.role == Role.LEADER
    msgs_of(a)
    # Follower 2 acknowledges index 2 (the old entry) but not yet the new no-op at 3.
    a.step(Message(MT.APPEND_RESP, "1", "2", term=a.term, index=2))
    assert a.log.committed < 2
    a.step(Message(MT.APPEND_RESP, "1", "2", term=a.term, index=3))
    assert a.log.committed == 3
    del net


# ---- §9.6 PreVote and CheckQuorum (thesis) -------------------------------------------------

def test_9_6_prevote_keeps_a_rejoining_partitioned_node_from_deposing_the_leader() -> None:
    net = cluster(pre_vote=True, check_quorum=True)
    net.elect("1")
    term = net.peers["1"].term
    net.isolate("3")
    for _ in range(50):
        net.peers["3"].tick()
        net.stabilize()
    assert net.peers["3"].term == term  # pre-votes failed: no term inflation
    net.heal()
    for _ in range(3):
        for r in net.peers.values():
            r.tick()
        net.stabilize()
    assert net.peers["1"].role == Role.LEADER and net.peers["1"].term == term


def test_check_quorum_leader_steps_down_without_a_majority() -> None:
    net = cluster(check_quorum=True)
    net.elect("1")
    leader = net.peers["1"]
    net.isolate("1")
    for _ in range(2 * leader.cfg.election_ticks + 1):
        leader.tick()
        net.stabilize()
    assert leader.role == Role.FOLLOWER


def test_check_quorum_follower_ignores_votes_while_it_hears_a_leader() -> None:
    net = cluster(check_quorum=True)
    net.elect("1")
    follower = net.peers["2"]
    follower.step(Message(MT.VOTE, "2", "3", term=follower.term + 1, index=99, log_term=99))
    assert follower.vote == "1" and not msgs_of(follower)


def test_5_2_a_follower_is_sent_a_heartbeat_only_after_heartbeat_ticks_of_silence() -> None:
    """'Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries) to all
    followers in order to maintain their authority': an APPEND does that too, so a follower is
    sent a heartbeat only once heartbeat_ticks pass with no message to it, and never hears
    nothing for longer than that, whenever the last APPEND went."""
    hb = 3
    net = cluster(check_quorum=True, heartbeat_ticks=hb)
    net.elect("1")
    leader = net.peers["1"]
    leader.tick()  # between heartbeat ticks: a fixed interval would now be out of step
    msgs_of(leader)
    leader.propose(b"x")
    net.stabilize()  # both followers were sent the entry and then the commit, at this tick
    sent: list[list[str]] = []
    for _ in range(3 * hb):
        leader.tick()
        sent.append(sorted(m.to for m in msgs_of(leader) if m.type == MT.HEARTBEAT))
    # silent for hb - 1 ticks after the APPEND, a heartbeat at the hb-th, and so on
    assert sent == ([[]] * (hb - 1) + [["2", "3"]]) * 3
    net.cut.add(("3", "1"))  # "3" hears the leader, but its answers are lost: its appends pause
    leader.propose(b"y")
    net.stabilize()
    heard_by_3 = []
    for _ in range(2 * leader.cfg.election_ticks):
        leader.tick()
        delivered = len(net.log)
        net.stabilize()
        heard_by_3.append(any(m.frm == "1" and m.to == "3" for m in net.log[delivered:]))
    silences = "".join("x" if heard else "." for heard in heard_by_3).split("x")[:-1]
    assert len(silences) >= 2 and max(map(len, silences)) == hb - 1  # heartbeats, no longer gaps
    net.heal()
    for _ in range(3 * leader.cfg.election_ticks):  # appends alone keep the leader in office
        leader.propose(b"z")
        leader.tick()
        net.stabilize()
    assert leader.role == Role.LEADER and all(net.peers[i].lead == "1" for i in IDS)
    assert net.peers["3"].log.committed == leader.log.committed


# ---- thesis §3.10 leadership transfer -------------------------------------------------------

def test_leadership_transfer_hands_over_to_an_up_to_date_follower() -> None:
    net = cluster(pre_vote=True, check_quorum=True)
    net.elect("1")
    net.peers["1"].propose(b"x")
    net.stabilize()
    net.peers["1"].transfer_leader("3")
    net.stabilize()
    assert net.peers["3"].role == Role.LEADER
    assert net.peers["1"].role == Role.FOLLOWER


def test_proposals_are_refused_during_a_transfer() -> None:
    net = cluster()
    net.elect("1")
    net.isolate("3")
    net.peers["1"].propose(b"x")
    net.stabilize()
    net.peers["1"].transfer_leader("3")
    with pytest.raises(ProposalRefused) as info:
        net.peers["1"].propose(b"y")
    assert info.value.code == RefusalCode.LEADER_TRANSFER_IN_PROGRESS


# ---- thesis §6.4 read index -----------------------------------------------------------------

def test_6_4_read_index_waits_for_a_heartbeat_quorum() -> None:
    net = cluster()
    net.elect("1")
    leader = net.peers["1"]
    net.isolate("1")
    leader.read_index(b"r1")
    net.stabilize()
    assert not net.read_states["1"]  # no quorum has confirmed our leadership yet
    net.heal()
    leader.read_index(b"r2")
    net.stabilize()
    got = net.read_states["1"]
    assert [rs.context for rs in got] == [b"r1", b"r2"]  # r2's quorum also confirms r1
    assert all(rs.index == leader.log.committed for rs in got)


def test_6_4_follower_read_index_is_served_by_the_leader() -> None:
    net = cluster()
    net.elect("1")
    idx = net.peers["1"].propose(b"w")
    net.stabilize()
    follower = net.peers["2"]
    follower.read_index(b"f")
    net.stabilize()
    states = [m for m in net.log if m.type == MT.READ_INDEX_RESP]
    assert states and states[0].index >= idx and states[0].context == b"f"


def _elected_leader_with_committed_entry() -> LockstepNet:
    net = cluster(pre_vote=True, check_quorum=True)
    net.elect("1")
    net.peers["1"].propose(b"w")
    net.stabilize()
    return net


def test_6_4_an_answer_to_an_earlier_round_never_releases_a_later_read() -> None:
    """ReadIndex needs a quorum of answers to heartbeats sent after the read was registered.
    Callers' contexts may repeat across nodes (every driver once counted from 1): follower 2's
    read and the leader's own later read both use context 1, and follower 3's late answer to
    the heartbeat for follower 2's read must not release the leader's read. (With matching by
    context it did; a deposed leader then served a stale read.)"""
    net = _elected_leader_with_committed_entry()
    leader, ctx = net.peers["1"], (1).to_bytes(8, "big")
    net.peers["2"].read_index(ctx)
    net.stabilize()  # the forwarded read is confirmed by leader + 2 and answered ...
    assert [m.context for m in net.log if m.type == MT.READ_INDEX_RESP] == [ctx]
    late = [m for m in net.log if m.type == MT.HEARTBEAT_RESP and m.frm == "3" and m.context]
    assert late  # ... and 3's answer to that round exists: we hold a copy back as "late"
    net.isolate("1")  # the leader's next heartbeats and their answers are lost
    leader.read_index(ctx)
    net.stabilize()
    assert not net.read_states["1"]
    leader.step(late[-1])  # the late answer to the round before the read arrives
    net.drain("1")
    assert not net.read_states["1"]  # one old answer proves nothing about now
    net.heal()
    for _ in range(leader.cfg.heartbeat_ticks):
        leader.tick()  # a heartbeat sent after the read: its answers confirm it
    net.stabilize()
    assert [rs.context for rs in net.read_states["1"]] == [ctx]
    assert net.read_states["1"][0].index == leader.log.committed


def test_6_4_a_read_whose_round_heartbeats_are_lost_is_confirmed_while_writes_keep_flowing() -> None:
    """APPENDs carry no read round and keep every follower from falling silent, so the silence
    heartbeat never goes out under a steady write load: the round is sent again to the voters
    that have not answered it, every heartbeat_ticks while the read waits."""
    net = cluster(heartbeat_ticks=3, pre_vote=True, check_quorum=True)
    net.elect("1")
    leader = net.peers["1"]
    leader.propose(b"w")
    net.stabilize()
    leader.read_index(b"r")
    assert [m.type for m in msgs_of(leader)] == [MT.HEARTBEAT, MT.HEARTBEAT]  # taken: lost on the wire
    for tick in range(3 * leader.cfg.heartbeat_ticks):
        leader.propose(b"x%d" % tick)  # one APPEND to each follower every tick
        net.stabilize()
        leader.tick()
        net.stabilize()
    assert [rs.context for rs in net.read_states["1"]] == [b"r"] and not leader.pending_reads


def test_6_4_reads_with_the_same_context_from_different_nodes_are_each_answered() -> None:
    net = _elected_leader_with_committed_entry()
    ctx = (1).to_bytes(8, "big")
    for node in ("1", "2", "3"):
        net.peers[node].read_index(ctx)
    net.stabilize()
    assert [rs.context for rs in net.read_states["1"]] == [ctx]
    answered = sorted(m.to for m in net.log if m.type == MT.READ_INDEX_RESP)
    assert answered == ["2", "3"]


def test_6_4_heartbeats_carry_the_leaders_read_round_not_the_callers_context() -> None:
    net = _elected_leader_with_committed_entry()
    leader = net.peers["1"]
    before = leader.read_round
    leader.read_index(b"caller-context")
    sent = [m for m in msgs_of(leader) if m.type == MT.HEARTBEAT]
    assert {m.context for m in sent} == {(before + 1).to_bytes(8, "big")}
    # A forged or garbled answer naming a round never sent is ignored, never trusted.
    for frm in ("2", "3"):
        leader.step(Message(MT.HEARTBEAT_RESP, "1", frm, leader.term,
                            context=(before + 9).to_bytes(8, "big")))
    assert not leader.ready().read_states


# ---- thesis §4: membership, one server at a time, via learners -------------------------------

def test_4_learner_catches_up_without_voting_then_is_promoted() -> None:
    voters = ("1", "2", "3")
    rafts = [new_raft(i, voters) for i in voters]
    learner = new_raft("4", voters, learners=("4",))
    net = LockstepNet(*rafts, learner)
    net.elect("1")
    leader = net.peers["1"]
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "4"))
    net.stabilize()
    assert "4" in leader.conf.learners and leader.prs["4"].is_learner
    for _ in range(3 * learner.cfg.election_ticks):
        learner.tick()
        net.stabilize()
    assert learner.role == Role.FOLLOWER  # a learner never campaigns
    assert learner.log.last_index() == leader.log.last_index()
    with pytest.raises(ProposalRefused):
        leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, "4"))
    leader.propose_conf_change(ConfChange(ConfChangeType.ADD_NODE, "4"))
    net.stabilize()
    assert leader.conf.voters == ("1", "2", "3", "4") and learner.conf.voters == leader.conf.voters


def test_4_only_one_conf_change_may_be_pending() -> None:
    net = cluster()
    net.elect("1")
    leader = net.peers["1"]
    net.isolate("2")
    net.isolate("3")
    leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, "3"))
    with pytest.raises(ProposalRefused) as info:
        leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, "2"))
    assert info.value.code == RefusalCode.CONF_CHANGE_PENDING


def test_4_removed_node_gets_no_more_appends_and_quorum_shrinks() -> None:
    net = cluster()
    net.elect("1")
    leader = net.peers["1"]
    leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, "3"))
    net.stabilize()
    assert "3" not in leader.prs
    net.isolate("3")
    idx = leader.propose(b"after")
    net.stabilize()
    assert leader.log.committed == idx


# ---- replication flow control and snapshots ------------------------------------------------

def test_inflight_appends_per_follower_are_bounded() -> None:
    net = cluster(inflight=3)
    net.elect("1")
    leader = net.peers["1"]
    net.isolate("2")
    net.isolate("3")
    sent_before = len(net.log)
    for i in range(10):
        leader.propose(b"p%d" % i)
        msgs = net.drain("1")
        assert sum(1 for m in msgs if m.type == MT.APPEND and m.to == "2") <= 1
    assert len(leader.prs["2"].inflights) == 3 and leader.prs["2"].is_paused()
    del sent_before


def test_follower_behind_the_compaction_point_is_sent_a_snapshot() -> None:
    net = cluster()
    net.elect("1")
    leader = net.peers["1"]
    net.isolate("3")
    for i in range(10):
        leader.propose(b"p%d" % i)
    net.stabilize()
    meta = leader.compact(leader.log.applied)
    net.heal()
    for _ in range(2):  # a heartbeat round marks 3 active; then the snapshot goes out
        leader.tick()
        net.stabilize()
    snaps = [m for m in net.log if m.type == MT.SNAPSHOT]
    assert snaps and snaps[0].snapshot == meta
    follower = net.peers["3"]
    assert follower.log.snapshot.index == meta.index and follower.log.committed >= meta.index
    assert leader.prs["3"].state == FlowState.REPLICATE


def test_snapshot_restore_is_refused_when_not_newer_than_commit() -> None:
    r = new_raft("2", entries=ents(1, 1, 1))
    r.log.commit_to(3)
    conf = r.conf
    r.step(Message(MT.SNAPSHOT, "2", "1", term=1, snapshot=SnapshotMeta(2, 1, conf)))
    assert r.log.snapshot.index == 0 and r.log.pending_snapshot is None


def test_config_is_validated_at_the_door() -> None:
    with pytest.raises(ConfigError, match="election_ticks"):
        RaftConfig(node_id="1", rng=random.Random(0), election_ticks=1).validate()


def test_10_2_1_leader_counts_its_own_entries_only_once_persisted() -> None:
    """Thesis §10.2.1: the leader may send APPENDs in parallel with its own disk write, so it
    must not count itself for an entry it has not yet persisted."""
    net = cluster()
    net.elect("1")
    leader = net.peers["1"]
    index = leader.propose(b"x")
    rd = leader.ready()  # carries the entry to persist and the APPENDs; not yet advanced
    assert rd.entries_to_persist[-1].index == index
    leader.step(Message(MT.APPEND_RESP, "1", "2", term=leader.term, index=index))
    assert leader.log.committed < index  # follower 2 alone is not a majority of disks
    leader.advance(rd)
    assert leader.log.committed == index


def test_single_node_commits_after_its_own_write() -> None:
    r = new_raft("1", voters=("1",))
    for _ in range(2 * r.randomized_timeout):
        r.tick()
    assert r.role == Role.LEADER
    for _ in range(3):
        r.advance(r.ready())
    index = r.propose(b"solo")
    rd = r.ready()
    assert not rd.committed_entries
    r.advance(rd)
    rd = r.ready()
    assert [e.data for e in rd.committed_entries] == [b"solo"] and rd.committed_entries[0].index == index
