"""The asyncio driver with three nodes on one event loop: in-memory transport, LevelDB logs.
Checks what the node relies on: election, propose->apply in order everywhere, restart from disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.driver import DriverConfig, NotLeader, ProposalCovered, RaftDriver
from consensus.messages import ConfState, Entry, SnapshotMeta
from consensus.storage import LevelDBLogStore

IDS = ("a", "b", "c")
WAIT_STEPS = 1000  # bounded polling: at most 1000 x 10 ms, generous for a loaded CI box
POLL_S = 0.01


class MemoryApp:
    """An application whose applied state survives a driver restart (as the ledger's does)."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, bytes]] = []  # (index, data) in apply order
        self.applied = 0
        self.installs = 0

    def apply(self, entries: list[Entry]) -> None:
        for e in entries:
            assert e.index > self.applied, "applied twice or out of order"
            self.entries.append((e.index, e.data))
            self.applied = e.index

    def applied_index(self) -> int:
        return self.applied

    def snapshot(self) -> tuple[int, int, Iterator[bytes]]:
        blob = b"\n".join(d for _, d in self.entries)
        return self.applied, 0, iter([blob])

    def install_snapshot(self, index: int, term: int, chunks: Iterator[bytes]) -> None:
        blob = b"".join(chunks)
        self.entries = [(0, d) for d in blob.split(b"\n") if d]
        self.applied = index
        self.installs += 1


class LoopbackNet:
    """Delivers on the next loop iteration; a node can be cut off to simulate a crash."""

    def __init__(self) -> None:
        self.drivers: dict[str, RaftDriver] = {}
        self.down: set[str] = set()

    def transport_for(self, node_id: str) -> LoopbackTransport:
        return LoopbackTransport(self, node_id)


class LoopbackTransport:
    def __init__(self, net: LoopbackNet, me: str) -> None:
        self.net, self.me = net, me

    def send(self, peer_id: str, channel: str, payload: bytes) -> bool:
        assert channel == "raft"
        target = self.net.drivers.get(peer_id)
        if target is None or peer_id in self.net.down or self.me in self.net.down:
            return False
        asyncio.get_running_loop().call_soon(target.on_message, self.me, payload)
        return True


def make_driver(net: LoopbackNet, tmp: Path, node_id: str, app: MemoryApp,
                seed: int) -> RaftDriver:
    cfg = DriverConfig(node_id=node_id, voters=IDS, snapshot_dir=tmp / node_id / "snap",
                       tick_ms=10, election_ticks=10, seed=seed,
                       compact_after_entries=20, compact_keep_entries=5)
    store = LevelDBLogStore(tmp / node_id / "raftlog")
    driver = RaftDriver(cfg, store, net.transport_for(node_id), app)
    net.drivers[node_id] = driver
    return driver


async def wait_for(predicate, what: str) -> None:
    for _ in range(WAIT_STEPS):
        if predicate():
            return
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


async def leader_of(drivers: dict[str, RaftDriver]) -> RaftDriver:
    def one_leader() -> bool:
        return any(d.status().role == "leader" for d in drivers.values())
    await wait_for(one_leader, "a leader")
    return next(d for d in drivers.values() if d.status().role == "leader")


@pytest.fixture
async def cluster(tmp_path: Path):
    net = LoopbackNet()
    apps = {i: MemoryApp() for i in IDS}
    drivers = {i: make_driver(net, tmp_path, i, apps[i], seed=n) for n, i in enumerate(IDS)}
    for d in drivers.values():
        await d.start()
    yield net, apps, drivers
    for d in net.drivers.values():
        if d._running:
            await d.stop()


async def test_elects_one_leader_and_applies_in_order_everywhere(cluster) -> None:
    _, apps, drivers = cluster
    leader = await leader_of(drivers)
    indexes = await asyncio.gather(*(leader.propose(f"cmd{i}".encode()) for i in range(50)))
    assert indexes == sorted(indexes) and len(set(indexes)) == 50
    await wait_for(lambda: all(a.applied >= indexes[-1] for a in apps.values()), "apply")
    want = [f"cmd{i}".encode() for i in range(50)]
    for app in apps.values():
        assert [d for _, d in app.entries] == want
    status = leader.status()
    assert status.commit_index >= indexes[-1]
    assert set(status.progress) == set(IDS)


async def test_follower_refuses_proposals_with_a_leader_hint(cluster) -> None:
    _, _, drivers = cluster
    leader = await leader_of(drivers)
    await leader.propose(b"x")
    follower = next(d for d in drivers.values() if d is not leader)
    await wait_for(lambda: follower.status().leader_id == leader.config.node_id, "hint")
    with pytest.raises(NotLeader) as info:
        await follower.propose(b"y")
    assert info.value.leader_hint == leader.config.node_id


async def test_read_index_reflects_acknowledged_writes(cluster) -> None:
    _, apps, drivers = cluster
    leader = await leader_of(drivers)
    written = await leader.propose(b"w")
    follower = next(d for d in drivers.values() if d is not leader)
    read_at = await follower.read_index()
    assert read_at >= written
    assert apps[follower.config.node_id].applied >= written


async def test_restart_from_disk_then_catch_up_by_snapshot(cluster, tmp_path) -> None:
    net, apps, drivers = cluster
    leader = await leader_of(drivers)
    for i in range(30):  # enough to trigger compaction (threshold 20)
        await leader.propose(f"before{i}".encode())
    victim_id = next(i for i in IDS if i != leader.config.node_id)
    await drivers[victim_id].stop()
    net.down.add(victim_id)
    for i in range(30):
        await leader.propose(f"during{i}".encode())
    net.down.discard(victim_id)
    restarted = make_driver(net, tmp_path, victim_id, apps[victim_id], seed=99)
    await restarted.start()
    last = await leader.propose(b"after")
    await wait_for(lambda: apps[victim_id].applied >= last, "restarted node catches up")
    datas = [d for _, d in apps[victim_id].entries]
    assert apps[victim_id].installs == 1  # the leader compacted past it: caught up by snapshot
    assert datas == [d for _, d in apps[leader.config.node_id].entries]
    assert len(datas) == len(set(datas))  # nothing applied twice


async def test_a_proposal_a_snapshot_covers_is_answered_when_it_is_installed(cluster) -> None:
    """A deposed leader's pending proposal whose index a snapshot then covers is answered at
    the install, not left to its caller's timeout (the stage never applies that index here)."""
    net, apps, drivers = cluster
    old = await leader_of(drivers)
    await old.propose(b"x")
    net.down.add(old.config.node_id)  # cut off: its next proposal can never commit
    pending = asyncio.ensure_future(old.propose(b"lost"))
    others = {i: d for i, d in drivers.items() if d is not old}
    await wait_for(lambda: any(d.status().role == "leader" and d.status().term > old.status().term
                               for d in others.values()), "a new leader")
    new = next(d for d in others.values() if d.status().role == "leader")
    for i in range(30):  # past the compaction threshold (20): the old leader needs a snapshot
        await new.propose(f"after{i}".encode())
    assert not pending.done()
    net.down.clear()
    await wait_for(lambda: apps[old.config.node_id].installs == 1, "the snapshot install")
    await wait_for(pending.done, "the covered proposal's answer")
    with pytest.raises(ProposalCovered):
        pending.result()  # its term is not the snapshot's: which entry committed is not known
    assert b"lost" not in [d for _, d in apps[new.config.node_id].entries]


async def test_a_covered_proposal_of_the_snapshots_own_term_is_known_to_have_committed(tmp_path) -> None:
    """Only the term's leader (the proposer) made entries of that term, so a snapshot ending in
    one holds the proposal (Log Matching); one of another term does not say."""
    driver = make_driver(LoopbackNet(), tmp_path, "a", MemoryApp(), seed=0)
    loop = asyncio.get_running_loop()
    ours, other, beyond = loop.create_future(), loop.create_future(), loop.create_future()
    driver._proposals = {4: (3, ours), 5: (2, other), 9: (3, beyond)}
    driver._settle_covered_proposals(SnapshotMeta(7, 3, ConfState(IDS)))
    assert ours.result() == 4
    with pytest.raises(ProposalCovered):
        other.result()
    assert not beyond.done() and list(driver._proposals) == [9]  # not covered: still waits
    driver.store.close()


async def test_leadership_transfer_moves_the_leader(cluster) -> None:
    _, _, drivers = cluster
    leader = await leader_of(drivers)
    await leader.propose(b"x")
    target = next(i for i in IDS if i != leader.config.node_id)
    await wait_for(lambda: leader.status().progress[target].match
                   == leader.status().commit_index, "target caught up")
    leader.transfer_leadership(target)
    await wait_for(lambda: drivers[target].status().role == "leader", "transfer")
    assert await drivers[target].propose(b"y") > 0


async def test_bad_frames_from_a_peer_are_counted_and_dropped(cluster) -> None:
    _, _, drivers = cluster
    leader = await leader_of(drivers)
    follower = next(d for d in drivers.values() if d is not leader)
    follower.on_message(leader.config.node_id, b"\xc1garbage")
    follower.on_message("b" if follower.config.node_id != "b" else "c",
                        b"\x93\x01\x01\x05")  # wrong shape
    assert follower.decode_errors == 2
    assert await leader.propose(b"still fine") > 0
