"""A node started by NodeProcesses stops when the process that started it dies, even by SIGKILL:
a test run or bench killed outright leaves no node behind using a core and its ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from keiretsu_node.localnet import SOURCE_ROOT

STARTER = """
import sys, time
from pathlib import Path
from tests.cluster import LocalCluster
cluster = LocalCluster(Path(sys.argv[1]), size=1)
cluster.start_all()
print(cluster.procs["node1"].pid, flush=True)
time.sleep(60)  # killed long before this
"""
STOP_BOUND_S = 20.0  # the node's clean stop after SIGTERM is well under STOP_GRACE_S


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_node_whose_starter_is_killed_stops_by_itself(tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)], stdout=subprocess.PIPE,
                               cwd=SOURCE_ROOT, env={**os.environ, "PYTHONPATH": str(SOURCE_ROOT)})
    node_pid = 0
    try:
        assert starter.stdout is not None
        node_pid = int(starter.stdout.readline())
        time.sleep(1.0)  # the node is up to its start-up (its stop request is made first thing)
        assert _alive(node_pid)
        starter.kill()
        starter.wait()
        deadline = time.monotonic() + STOP_BOUND_S
        while _alive(node_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(node_pid), "the node outlived the process that started it"
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        if node_pid and _alive(node_pid):
            os.kill(node_pid, signal.SIGKILL)
