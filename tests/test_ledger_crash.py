"""Crash safety: a node killed at any moment, even inside the block write, resumes exactly.

A child process applies batches to a LevelDB store and is SIGKILLed at seeded random points,
some chosen just as it starts the one write batch of a block. After every kill the store must
sit at a block boundary that an uncrashed replay also reached (no gap, no double application,
same hashes), and the final state must equal the replay's byte for byte.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.registry import default_registry
from ledger import codec
from ledger.executor import Executor
from ledger.sandbox import SANDBOX_CURRENCY as EUR
from ledger.sandbox import make_sandbox
from ledger.store import STATE_PREFIX, AppliedPosition, LedgerStore

SEED = int(os.environ.get("KEIRETSU_CRASH_SEED", "20261126"))  # a failure names its seed
KILLS = 10
BATCHES = 12
TXS_PER_BATCH = 150
CHILD_TIMEOUT_S = 60
MAX_KILL_DELAY_S = 0.02
ROOT = Path(__file__).resolve().parent.parent
SANDBOX = make_sandbox(6, label="crash")


def build_batches() -> list[bytes]:
    """One batch of opening mints, then batches of transfers around the holders."""
    holders, agent = SANDBOX.holders, SANDBOX.agent
    mints = [SANDBOX.call(agent, "cash", "mint", {"currency": EUR, "to": h.address, "amount": 10**9,
                                                  "deposit_ref": "open"}, nonce=i) for i, h in enumerate(holders)]
    batches = [SANDBOX.batch(mints)]
    nonce = 1_000
    for b in range(1, BATCHES):
        txs = []
        for i in range(TXS_PER_BATCH):
            nonce += 1
            source, target = holders[(b + i) % len(holders)], holders[(b + 2 * i + 1) % len(holders)]
            if source is target:
                target = holders[(i + 1) % len(holders)] if holders[(i + 1) % len(holders)] is not source \
                    else holders[(i + 2) % len(holders)]
            txs.append(SANDBOX.call(source, "cash", "transfer",
                                    {"currency": EUR, "to": target.address, "amount": 1 + nonce % 500}, nonce=nonce))
        batches.append(SANDBOX.batch(txs, SANDBOX.genesis.genesis_time_ms + b))
    return batches


# ---------------------------------------------------------------- the child


class AnnouncingStore(LedgerStore):
    """Says "write" just before each block's write batch, so the parent can kill inside it."""

    def commit(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        os.write(1, b"write\n")
        super().commit(*args, **kwargs)


def child(data_dir: str, batches_file: str) -> None:
    batches = codec.decode(Path(batches_file).read_bytes(), max_bytes=1 << 30)
    store = AnnouncingStore(data_dir)
    executor = Executor(store, default_registry(), SANDBOX.genesis, sync=True)
    executor.init_genesis()
    for raft_index in range(store.position.raft_index + 1, len(batches) + 1):
        os.write(1, b"apply\n")
        executor.apply(batches[raft_index - 1], raft_index, 1)
    os.write(1, b"done\n")
    store.close()


# ---------------------------------------------------------------- the parent


def reference(tmp_path: Path, batches: list[bytes]) -> tuple[list[AppliedPosition], dict[bytes, bytes]]:
    """Positions after genesis and after each batch, and the final state, without crashes."""
    store = LedgerStore(tmp_path / "reference")
    try:
        executor = Executor(store, default_registry(), SANDBOX.genesis, sync=False)
        executor.init_genesis()
        positions = [store.position]
        for raft_index, batch in enumerate(batches, start=1):
            executor.apply(batch, raft_index, 1)
            positions.append(store.position)
        return positions, state_of(store)
    finally:
        store.close()


def state_of(store: LedgerStore) -> dict[bytes, bytes]:
    with store.db.iterator(prefix=STATE_PREFIX) as it:
        return dict(it)


def run_child(data_dir: Path, batches_file: Path, kill_after: tuple[str, int] | None, delay_s: float) -> str:
    """Run the child; SIGKILL it `delay_s` after its n-th line of the given kind. Returns its last line."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.test_ledger_crash", str(data_dir), str(batches_file)],
                            cwd=ROOT, stdout=subprocess.PIPE)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    seen = {"apply": 0, "write": 0, "done": 0}
    last, pending = "", b""
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                last = line.decode()
                seen[last] += 1
                if kill_after and seen.get(kill_after[0]) == kill_after[1]:
                    time.sleep(delay_s)
                    proc.send_signal(signal.SIGKILL)
                    return "killed"
        return last
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=CHILD_TIMEOUT_S)
        proc.stdout.close()


def check_resumable(data_dir: Path, positions: list[AppliedPosition]) -> int:
    """The store is at a block boundary of the replay, every block below it is there, none above."""
    store = LedgerStore(data_dir)
    try:
        store.verify_blocks()  # every record whole, in order, and none past the last block
        position = store.position
        if position.height < 0:
            return -1  # killed before genesis was written: nothing committed yet
        replay = f"(KEIRETSU_CRASH_SEED={SEED} replays this)"
        assert position == positions[position.height], replay  # same block and state hash as the replay
        assert position.raft_index == position.height, replay  # one block per batch: no gap, no double
        for height in range(position.height + 1):
            assert store.block(height).hash() == positions[height].block_hash, replay
        assert store.block(position.height + 1) is None, replay
        return position.height
    finally:
        store.close()


@pytest.mark.slow
def test_killed_at_random_points_the_store_resumes_with_no_gap_and_no_double_application(tmp_path):
    rng = random.Random(SEED)
    batches = build_batches()
    positions, final_state = reference(tmp_path, batches)
    batches_file = tmp_path / "batches.bin"
    batches_file.write_bytes(codec.encode(batches))
    data_dir = tmp_path / "node"
    heights = []
    for kill in range(KILLS):
        kind = "write" if kill % 2 else "apply"  # half the kills aim at the write batch itself
        nth = rng.randint(1, 2)
        delay_s = rng.uniform(0, 0.003 if kind == "write" else MAX_KILL_DELAY_S)
        outcome = run_child(data_dir, batches_file, (kind, nth), delay_s)
        heights.append(check_resumable(data_dir, positions))
        if outcome == "done":
            break
    assert heights == sorted(heights), f"a restart went backwards: {heights} (KEIRETSU_CRASH_SEED={SEED})"
    assert run_child(data_dir, batches_file, None, 0) == "done"
    assert check_resumable(data_dir, positions) == BATCHES
    store = LedgerStore(data_dir)
    try:
        assert state_of(store) == final_state
    finally:
        store.close()


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2])
