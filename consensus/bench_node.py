"""One replica process of `keiretsu bench raft`: our Raft driver over the p2p TLS transport,
a LevelDB log with fsync, and a load client inside the process that submits through this node.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack

from consensus.bench_load import LoadPlan, LoadTracker, command
from consensus.driver import DriverConfig, RaftDriver
from consensus.messages import Entry
from consensus.storage import LevelDBLogStore

BENCH_CHANNEL = "bench"
FLUSH_INTERVAL_S = 0.002  # the client cuts a batch of commands this often
DRAIN_S = 3.0  # after the load stops, wait this long for outstanding acknowledgements
MAX_RUNS_PER_ENTRY = 4096  # forwarded batches merged into one log entry
RESUBMIT_AFTER_S = 2.0  # an unacknowledged run is sent again after this long
RESUBMIT_SCAN_S = 0.1


class BenchApp:
    """The replicated state machine: it only routes each command back to its origin's tracker."""

    def __init__(self, me: str, tracker: LoadTracker) -> None:
        self.me = me
        self.tracker = tracker
        self.applied = 0
        self.commands_applied = 0

    def apply(self, entries: list[Entry]) -> None:
        now = time.time()
        for e in entries:
            for origin, first, n, _blob in msgpack.unpackb(e.data):
                self.commands_applied += n
                if origin == self.me:
                    for seq in range(first, first + n):
                        self.tracker.ack(seq, now)
            self.applied = e.index

    def applied_index(self) -> int:
        return self.applied

    def snapshot(self) -> tuple[int, int, Iterator[bytes]]:
        return self.applied, 0, iter([self.commands_applied.to_bytes(8, "big")])

    def install_snapshot(self, index: int, term: int, chunks: Iterator[bytes]) -> None:
        self.commands_applied = int.from_bytes(b"".join(chunks), "big")
        self.applied = index


class BenchClient:
    """Cuts the due commands into runs; the leader merges runs into entries, others forward."""

    def __init__(self, me: str, driver: RaftDriver, transport: Any, tracker: LoadTracker) -> None:
        self.me = me
        self.driver = driver
        self.transport = transport
        self.tracker = tracker
        self.unsent: list[list[Any]] = []  # runs [origin, first_seq, n, blob] not yet handed on
        self.to_propose: list[list[Any]] = []  # runs this node proposes as leader
        # Our runs not yet acknowledged, by first sequence number, with when we last sent them:
        # a client resubmits after a leader change (the app ignores duplicates by sequence).
        self.outstanding: dict[int, tuple[float, list[Any]]] = {}
        self.last_leader = ""
        self.last_scan = 0.0

    def on_forward(self, peer_id: str, payload: bytes) -> None:
        self.to_propose.append(msgpack.unpackb(payload))

    async def run(self) -> None:
        plan = self.tracker.plan
        while time.time() < plan.window_end + DRAIN_S:
            now = time.time()
            n = self.tracker.due(now)
            if n:
                first = self.tracker.submit(n, now)
                blob = b"".join(command(s) for s in range(first, first + n))
                run = [self.me, first, n, blob]
                self.unsent.append(run)
                self.outstanding[first] = (now, run)
            self._resubmit_if_needed(now)
            self._hand_on()
            await asyncio.sleep(FLUSH_INTERVAL_S)

    def _resubmit_if_needed(self, now: float) -> None:
        leader = self.driver.status().leader_id
        changed = leader != self.last_leader
        self.last_leader = leader
        if not changed and now - self.last_scan < RESUBMIT_SCAN_S:
            return
        self.last_scan = now
        for first, (sent, run) in list(self.outstanding.items()):
            if first not in self.tracker.submitted_at:
                del self.outstanding[first]  # acknowledged (or refused)
            elif changed or now - sent > RESUBMIT_AFTER_S:
                self.outstanding[first] = (now, run)
                self.unsent.append(run)

    def _hand_on(self) -> None:
        leader = self.driver.status().leader_id
        if not leader:
            return
        if leader == self.me:
            self.to_propose.extend(self.unsent)
            self.unsent = []
            while self.to_propose:
                runs = self.to_propose[:MAX_RUNS_PER_ENTRY]
                self.to_propose = self.to_propose[MAX_RUNS_PER_ENTRY:]
                fut = asyncio.ensure_future(self.driver.propose(msgpack.packb(runs)))
                fut.add_done_callback(functools.partial(self._proposal_done, runs=runs))
            return
        for run in self.unsent:
            self.transport.send(leader, BENCH_CHANNEL, msgpack.packb(run))
        self.unsent = []

    def _proposal_done(self, fut: asyncio.Future[int], runs: list[list[Any]]) -> None:
        if fut.cancelled() or fut.exception() is None:
            return
        self.tracker.failed += 1  # a refused proposal; its commands are resubmitted
        for run in runs:
            if run[0] == self.me and run[1] in self.outstanding:
                self.outstanding[run[1]] = (0.0, run)  # due for resubmission at the next scan


async def run_replica(cfg: dict[str, Any]) -> dict[str, Any]:
    from p2p.identity import NodeIdentity, PeerInfo
    from p2p.transport import Transport

    me = cfg["node_id"]
    plan = LoadPlan(**cfg["plan"])
    tracker = LoadTracker(plan)
    identity = NodeIdentity.load(cfg["identity_dir"])
    peers = [PeerInfo(**p) for p in cfg["peers"]]
    transport = Transport(identity, peers, "127.0.0.1", cfg["port"], chain_id="bench")
    data_dir = Path(cfg["data_dir"])
    app = BenchApp(me, tracker)
    driver = RaftDriver(
        DriverConfig(node_id=me, voters=tuple(cfg["voters"]), snapshot_dir=data_dir / "snap",
                     tick_ms=cfg["tick_ms"], election_ticks=cfg["election_ticks"],
                     compact_after_entries=50_000,
                     compact_keep_entries=5_000, seed=cfg["seed"]),
        LevelDBLogStore(data_dir / "raftlog"), transport, app)
    client = BenchClient(me, driver, transport, tracker)
    transport.register("raft", driver.on_message)
    transport.register(BENCH_CHANNEL, client.on_forward)
    await transport.start()
    await driver.start()
    # Long-lived startup objects leave the collector's view: full collections otherwise
    # rescan them and show up as tail latency (a tuning any Python server would apply).
    gc.freeze()
    try:
        await client.run()
    finally:
        await driver.stop()
        await transport.stop()
    out = tracker.result()
    out["node_id"] = me
    out["commands_applied"] = app.commands_applied
    return out


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    result = asyncio.run(run_replica(cfg))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
