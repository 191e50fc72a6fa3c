"""One PySyncObj replica process for `keiretsu bench raft`: the same 100-byte workload, the
client inside the replica as in PySyncObj's own benchmark, for a side-by-side comparison.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from consensus.bench_load import LoadPlan, LoadTracker, command

SUBMIT_INTERVAL_S = 0.002
DRAIN_S = 3.0
READY_TIMEOUT_S = 20.0


def run_replica(cfg: dict[str, Any]) -> dict[str, Any]:
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self, addr: str, partners: list[str]) -> None:
            super().__init__(addr, partners, SyncObjConf(dynamicMembershipChange=False))
            self.applied = 0

        @replicated  # type: ignore[untyped-decorator]
        def cmd(self, data: bytes) -> int:
            self.applied += 1
            return self.applied

    plan = LoadPlan(**cfg["plan"])
    tracker = LoadTracker(plan)
    lock = threading.Lock()
    obj = Counter(cfg["addr"], cfg["partners"])
    deadline = time.time() + READY_TIMEOUT_S
    while obj._getLeader() is None and time.time() < deadline:
        time.sleep(0.05)

    def done(seq: int) -> Any:
        def callback(result: Any, error: Any) -> None:
            with lock:
                if error == FAIL_REASON.SUCCESS:
                    tracker.ack(seq, time.time())
                else:
                    tracker.fail(seq)
        return callback

    while time.time() < plan.window_end + DRAIN_S:
        now = time.time()
        with lock:
            n = tracker.due(now)
            first = tracker.submit(n, now) if n else 0
        for seq in range(first, first + n):
            obj.cmd(command(seq), callback=done(seq))
        time.sleep(SUBMIT_INTERVAL_S)
    with lock:
        out = tracker.result()
    out["node_id"] = cfg["addr"]
    out["commands_applied"] = obj.applied
    obj.destroy()
    return out


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    sys.stdout.write(json.dumps(run_replica(cfg)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
