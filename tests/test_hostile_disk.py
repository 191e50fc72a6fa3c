"""A damaged or full data directory: the node refuses to start with one clear line, never runs on it.

Hostile input, disk side (issue 9). One node commits a little history and stops; each test damages
a copy of its folder the way a bad disk, a careless operator or a full volume would, and starts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import plyvel
import pytest

from keiretsu_node.client import ApiError, Client, KeyPair, build, call
from keiretsu_node.config import load_node
from tests.cluster import REPO, LocalCluster

START_TIMEOUT_S = 30  # bounds the wait for "started" or an exit; either comes in about a second
COMMITTED_TXS = 40
FLIPPED_BYTES = 16
POLL_S = 0.05
TINY_FS_BYTES = 1024 * 1024  # holds the pristine data with room to spare, fills in seconds


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped one-node network with COMMITTED_TXS transactions on disk."""
    root = tmp_path_factory.mktemp("pristine")
    cluster = LocalCluster(root, size=1)

    async def fill() -> None:
        await cluster.wait_ready()
        async with cluster.client("node1") as c:
            for _ in range(COMMITTED_TXS):
                key = KeyPair.generate()
                tx = build(cluster.chain_id, call("participants", "admit", address=key.address, name="x",
                                                  roles=["investor"], kyc_hash=bytes(32)), [cluster.operator])
                assert (await c.submit(tx, wait=True))["status"] == "committed"

    cluster.start_all()
    try:
        asyncio.run(fill())
    finally:
        cluster.stop_all()
    return root / "network"


def _start(network: Path) -> tuple[int | None, str]:
    """Run the node until it exits or says it started; its exit status (None: it started, and
    was then stopped) and what it printed."""
    log = network / "node1" / "start.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "node", "start", "--config",
                                 str(network / "node1" / "node.toml")], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        for _ in range(int(START_TIMEOUT_S / POLL_S)):
            if proc.poll() is not None:
                return proc.returncode, log.read_text(errors="replace")
            if "started: api" in log.read_text(errors="replace"):
                return None, log.read_text(errors="replace")
            time.sleep(POLL_S)
        return None, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


def _flip(path: Path, at_fraction: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    start = min(int(len(data) * at_fraction), len(data) - FLIPPED_BYTES)
    for i in range(start, start + FLIPPED_BYTES):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert found, f"no {pattern} in {folder}: {[p.name for p in folder.iterdir()]}"
    return found[-1]


def _flip_table(db_dir: Path) -> None:
    """Compact the write-ahead log into a table file (as LevelDB does with time), then damage it."""
    db = plyvel.DB(str(db_dir))
    db.compact_range()
    db.close()
    _flip(_only(db_dir, "*.ldb"))


def _other_genesis(network: Path) -> None:
    genesis = json.loads((network / "genesis.json").read_text())
    genesis["genesis_time_ms"] += 1  # same nodes and keys: only the ledger's stored genesis hash can tell
    (network / "genesis.json").write_text(json.dumps(genesis))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "ledger-log-bytes-flipped": lambda n: _flip(_only(n / "node1/data/ledger", "*.log")),
    "ledger-table-bytes-flipped": lambda n: _flip_table(n / "node1/data/ledger"),
    "ledger-manifest-deleted": lambda n: _only(n / "node1/data/ledger", "MANIFEST-*").unlink(),
    "ledger-blocks-bytes-flipped": lambda n: _flip(n / "node1/data/ledger/blocks.seg", at_fraction=0.3),
    "ledger-blocks-truncated": lambda n: os.truncate(n / "node1/data/ledger/blocks.seg", 100),
    "ledger-blocks-deleted": lambda n: (n / "node1/data/ledger/blocks.seg").unlink(),
    "raft-log-bytes-flipped": lambda n: _flip(_only(n / "node1/data/raft", "*.log")),
    "raft-table-bytes-flipped": lambda n: _flip_table(n / "node1/data/raft"),
    "raft-manifest-deleted": lambda n: _only(n / "node1/data/raft", "MANIFEST-*").unlink(),
    "raft-log-deleted": lambda n: shutil.rmtree(n / "node1/data/raft"),
    "genesis-of-another-network": _other_genesis,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_data_directory_is_refused_with_one_clear_line(pristine: Path, tmp_path: Path,
                                                                 damage: str) -> None:
    network = tmp_path / "network"
    shutil.copytree(pristine, network)
    DAMAGE[damage](network)
    status, output = _start(network)
    assert status is not None, f"the node started on a damaged data directory ({damage}):\n{output[-2000:]}"
    assert status != 0
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(network / "node1") in errors[0], output


def test_the_undamaged_copy_starts(pristine: Path, tmp_path: Path) -> None:
    """The control: the same copy, undamaged, runs (so the refusals above are about the damage)."""
    network = tmp_path / "network"
    shutil.copytree(pristine, network)
    status, output = _start(network)
    assert status is None, output[-2000:]
    assert "started" in output


@pytest.fixture
def full_disk(tmp_path: Path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a tiny tmpfs needs root and mount")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TINY_FS_BYTES}", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)  # busy: detach it anyway


def test_a_full_disk_is_refused_with_one_clear_line(pristine: Path, tmp_path: Path, full_disk: Path) -> None:
    network = tmp_path / "network"
    shutil.copytree(pristine, network)
    shutil.rmtree(network / "node1" / "data")
    (full_disk / "filler").write_bytes(b"\0" * (TINY_FS_BYTES - 4096))
    (network / "node1" / "data").symlink_to(full_disk)
    status, output = _start(network)
    assert status not in (None, 0), output[-2000:]
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], output


FILLING_TXS = 5_000
FILL_DEADLINE_S = 60  # a 1 MiB disk fills in a few seconds; this only bounds a failing run
FILL_NAME_CHARS = 256  # the longest text an argument may hold


def test_a_disk_that_fills_while_running_stops_the_node_with_one_clear_line(pristine: Path, tmp_path: Path,
                                                                          full_disk: Path) -> None:
    """Found by this test: the raft loop died on ENOSPC, the process lived on answering 500s."""
    network = tmp_path / "network"
    shutil.copytree(pristine, network)
    shutil.copytree(network / "node1" / "data", full_disk / "data")
    shutil.rmtree(network / "node1" / "data")
    (network / "node1" / "data").symlink_to(full_disk / "data")
    cluster_root = network / "node1"
    log = cluster_root / "run.log"
    config = load_node(cluster_root / "node.toml")
    operator = KeyPair.load(network / "keys" / "operator.key")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "node", "start", "--config",
                                 str(cluster_root / "node.toml")], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(REPO)})

    async def fill() -> None:
        async with Client(f"http://{config.api_host}:{config.api_port}", timeout_s=5) as c:
            for _ in range(int(START_TIMEOUT_S / POLL_S)):
                if await c.ready():
                    break
                await asyncio.sleep(POLL_S)
            deadline = time.monotonic() + FILL_DEADLINE_S
            for _ in range(FILLING_TXS):
                if proc.poll() is not None or time.monotonic() > deadline:
                    return
                key = KeyPair.generate()
                tx = build(config.chain_id, call("participants", "admit", address=key.address,
                                                 name="x" * FILL_NAME_CHARS, roles=["investor"],
                                                 kyc_hash=bytes(32)), [operator])
                try:
                    await c.submit(tx, wait=True, timeout_ms=2_000)
                except ApiError:
                    await asyncio.sleep(POLL_S)

    try:
        asyncio.run(fill())
        try:
            proc.wait(START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass  # reported below: a node that outlives its disk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text(errors="replace")
    assert "No space left on device" in output, "the disk never filled: the test proved nothing"
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "stopped" in errors[0], f"the node outlived its full disk:\n{output[-3000:]}"
    assert proc.returncode != 0
