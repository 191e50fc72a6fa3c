"""The apply stage between the Raft loop and the application, and the driver around it: what the
node relies on when a block executes while Raft goes on replicating. Entries are applied once,
in log order; whoever waits on an entry (a proposal, a linearizable read) is answered only once
it is applied; a snapshot install never overlaps an apply and drops the queued runs it covers;
stop never abandons an apply half-way, and a restart replays what was queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consensus.apply_stage import MAX_QUEUED_RUNS, ApplyStage
from consensus.driver import RaftDriver
from consensus.messages import Entry, EntryType
from tests.test_raft_driver import IDS, LoopbackNet, MemoryApp, leader_of, make_driver, wait_for

GATE_TIMEOUT_S = 10  # a gated apply waits at most this long for the test to open the gate


class GatedApp(MemoryApp):
    """A MemoryApp whose apply() blocks (in its worker thread) while the gate is closed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.inside = threading.Event()
        self.calls: list[list[int]] = []

    def apply(self, entries: list[Entry]) -> None:
        self.inside.set()
        assert self.gate.wait(GATE_TIMEOUT_S), "the test never opened the gate"
        self.calls.append([e.index for e in entries])
        super().apply(entries)


def run(*indexes: int, data: bytes = b"d") -> tuple[Entry, ...]:
    return tuple(Entry(1, i, data=data) for i in indexes)


async def until(event: threading.Event) -> None:
    for _ in range(GATE_TIMEOUT_S * 100):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the app was never called")


@pytest.fixture
async def stage():
    app = GatedApp()
    reported: list[list[int]] = []
    st = ApplyStage(app, 0, lambda es: reported.append([e.index for e in es]))
    task = asyncio.create_task(st.run())
    yield app, st, reported, task
    app.gate.set()
    st.stop_soon()
    await asyncio.wait_for(task, GATE_TIMEOUT_S)


async def test_runs_apply_once_in_order_and_are_reported_only_when_done(stage) -> None:
    app, st, reported, _ = stage
    app.gate.clear()
    for r in (run(1, 2), run(3), run(2, 3, 4)):  # 2 and 3 again: applied once only
        await st.put(r)
    await until(app.inside)
    assert st.applied == 0 and reported == []  # the app is still inside its first call
    app.gate.set()
    await wait_for(lambda: st.applied == 4, "apply")
    assert app.calls == [[1, 2], [3], [4]] and reported == app.calls


async def test_entries_the_app_never_sees_still_advance_the_applied_index(stage) -> None:
    app, st, reported, _ = stage
    await st.put((Entry(1, 1, data=b""), Entry(1, 2, EntryType.CONF_CHANGE, b"cc"),
                  Entry(1, 3, data=b"x")))
    await wait_for(lambda: st.applied == 3, "apply")
    assert app.calls == [[3]] and reported == [[1, 2, 3]]


async def test_an_install_waits_for_the_apply_in_progress_and_drops_what_it_covers(stage) -> None:
    app, st, reported, _ = stage
    app.gate.clear()
    await st.put(run(1))
    await until(app.inside)
    await st.put(run(2))
    await st.put(run(3, 4))
    installed: list[int] = []
    install = asyncio.create_task(st.install(lambda: installed.append(app.applied), 10))
    await asyncio.sleep(0.05)
    assert installed == [] and not install.done()  # never beside an apply
    app.gate.set()
    await asyncio.wait_for(install, GATE_TIMEOUT_S)
    assert installed == [1] and st.applied == 10 and app.calls == [[1]]
    await st.put(run(9, 10, 11))
    await wait_for(lambda: st.applied == 11, "apply after the install")
    assert app.calls == [[1], [11]]


async def test_a_full_queue_holds_the_producer_back(stage) -> None:
    app, st, _, _ = stage
    app.gate.clear()
    await st.put(run(1))
    await until(app.inside)
    for i in range(MAX_QUEUED_RUNS):
        await st.put(run(2 + i))
    blocked = asyncio.create_task(st.put(run(2 + MAX_QUEUED_RUNS)))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    app.gate.set()
    await asyncio.wait_for(blocked, GATE_TIMEOUT_S)
    await wait_for(lambda: st.applied == 2 + MAX_QUEUED_RUNS, "drain")


async def test_stop_ends_after_the_apply_in_progress_never_inside_it(stage) -> None:
    app, st, reported, task = stage
    app.gate.clear()
    await st.put(run(1))
    await until(app.inside)
    await st.put(run(2))
    st.stop_soon()
    await asyncio.sleep(0.05)
    assert not task.done()
    app.gate.set()
    await asyncio.wait_for(task, GATE_TIMEOUT_S)
    assert st.applied == 1 and app.calls == [[1]]  # 2 was dropped: a restart replays it


async def test_a_failing_app_stops_the_stage_without_stranding_the_producer() -> None:
    class Broken(MemoryApp):
        def apply(self, entries: list[Entry]) -> None:
            raise OSError("disk gone")

    st = ApplyStage(Broken(), 0, lambda es: None)
    task = asyncio.create_task(st.run())
    await st.put(run(1))
    with pytest.raises(OSError):
        await asyncio.wait_for(task, GATE_TIMEOUT_S)
    for i in range(MAX_QUEUED_RUNS + 1):  # would wait for room for ever if the stage forgot
        await asyncio.wait_for(st.put(run(2 + i)), GATE_TIMEOUT_S)
    assert st.applied == 0

@contextlib.asynccontextmanager
async def gated_cluster(
    tmp_path: Path,
) -> AsyncIterator[tuple[LoopbackNet, dict[str, RaftDriver], dict[str, GatedApp]]]:
    """Three drivers on a loopback net, each over an app the test can hold inside apply();
    afterwards every gate is opened and every driver still running is stopped."""
    net = LoopbackNet()
    apps = {i: GatedApp() for i in IDS}
    drivers = {i: make_driver(net, tmp_path, i, apps[i], seed=n) for n, i in enumerate(IDS)}
    for d in drivers.values():
        await d.start()
    try:
        yield net, drivers, apps
    finally:
        for a in apps.values():
            a.gate.set()
        for d in drivers.values():
            if d._running:
                await d.stop()


async def test_the_leader_keeps_committing_while_its_app_is_busy(tmp_path: Path) -> None:
    async with gated_cluster(tmp_path) as (net, drivers, apps):
        leader = await leader_of(drivers)
        first = await leader.propose(b"warm")
        app = apps[leader.config.node_id]
        app.gate.clear()
        app.inside.clear()
        busy = asyncio.create_task(leader.propose(b"one"))
        await until(app.inside)  # the leader's app is now stuck applying "one"
        later = [asyncio.create_task(leader.propose(b"two%d" % i)) for i in range(5)]
        read = asyncio.create_task(leader.read_index())
        await wait_for(lambda: leader.status().commit_index >= first + 6, "commit while busy")
        await asyncio.sleep(0.05)
        assert not busy.done() and not any(t.done() for t in later) and not read.done()
        assert leader.applied_index() == first
        app.gate.set()
        indexes = [await busy] + [await t for t in later]
        assert indexes == list(range(first + 1, first + 7))
        assert await read >= first + 1  # the commit index when the read arrived: "one"
        for other in apps.values():
            await wait_for(lambda o=other: o.applied >= first + 6, "followers apply")
            assert [d for _, d in other.entries] == [b"warm", b"one"] + [
                b"two%d" % i for i in range(5)]


async def test_stop_during_an_apply_then_restart_replays_the_rest(tmp_path: Path) -> None:
    async with gated_cluster(tmp_path) as (net, drivers, apps):
        leader = await leader_of(drivers)
        await leader.propose(b"warm")
        victim = next(i for i in IDS if i != leader.config.node_id)
        apps[victim].gate.clear()
        apps[victim].inside.clear()
        last = 0
        for i in range(8):
            last = await leader.propose(b"p%d" % i)
        await until(apps[victim].inside)
        stopping = asyncio.create_task(drivers[victim].stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # never closes its store under a running apply
        apps[victim].gate.set()
        await asyncio.wait_for(stopping, GATE_TIMEOUT_S)
        assert apps[victim].applied < last
        restarted = make_driver(net, tmp_path, victim, apps[victim], seed=7)
        await restarted.start()
        drivers[victim] = restarted
        await wait_for(lambda: apps[victim].applied >= last, "replay after restart")
        want = [b"warm"] + [b"p%d" % i for i in range(8)]
        assert [d for _, d in apps[victim].entries] == want  # each once, in order
