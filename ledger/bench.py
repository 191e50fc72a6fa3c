"""The ledger benchmark: pre-signed cash transfers applied in batches on a temporary store.

Part of ledger/. `keiretsu bench ledger` and `python -m ledger.bench` run it; it measures the
executor alone (decode, replay checks, signatures, contracts, one synced write per batch).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from contracts.registry import default_registry
from ledger import gc_policy
from ledger.batch import MAX_BATCH_TXS
from ledger.executor import Executor
from ledger.sandbox import MAX_SANDBOX_HOLDERS, SANDBOX_CURRENCY, Sandbox, make_sandbox
from ledger.sigpool import SignaturePool
from ledger.store import LedgerStore

DEFAULT_TRANSFERS = 20_000
DEFAULT_BATCH_SIZE = 1_000
DEFAULT_ACCOUNTS = 1_000
DEFAULT_RUNS = 3
MAX_BENCH_TRANSFERS = 1_000_000
MAX_BENCH_RUNS = 20
OPENING_BALANCE_MINOR = 10**12
VERIFY_IN_PROCESSES = "processes"
VERIFY_IN_THREADS = "threads"
VERIFY_IN = (VERIFY_IN_PROCESSES, VERIFY_IN_THREADS)
_SIGNED_CACHE: dict[tuple[int, int, int], tuple[Sandbox, list[bytes], list[bytes]]] = {}


def _mint_batches(sandbox: Sandbox, batch_size: int) -> list[bytes]:
    mints = [
        sandbox.call(sandbox.agent, "cash", "mint",
                     {"currency": SANDBOX_CURRENCY, "to": holder.address, "amount": OPENING_BALANCE_MINOR,
                      "deposit_ref": f"opening {i}"}, nonce=i)
        for i, holder in enumerate(sandbox.holders)
    ]
    return [sandbox.batch(mints[i:i + batch_size]) for i in range(0, len(mints), batch_size)]


def _transfer_batches(sandbox: Sandbox, transfers: int, batch_size: int) -> list[bytes]:
    """Transfers between many accounts; receivers are spread so no account dominates."""
    holders = sandbox.holders
    count = len(holders)
    txs = []
    for n in range(transfers):
        source = holders[n % count]
        target = holders[(n * 7 + 1 + n // count) % count]
        if target is source:
            target = holders[(n + 1) % count]
        txs.append(sandbox.call(source, "cash", "transfer",
                                {"currency": SANDBOX_CURRENCY, "to": target.address, "amount": 1 + n % 97},
                                nonce=n).raw)
    return [sandbox.batch(txs[i:i + batch_size]) for i in range(0, len(txs), batch_size)]


def prepare(transfers: int, batch_size: int, accounts: int) -> tuple[Sandbox, list[bytes], list[bytes]]:
    """The network and its signed batches, built once per shape (signing is not what we time)."""
    shape = (transfers, batch_size, accounts)
    if shape not in _SIGNED_CACHE:
        sandbox = make_sandbox(accounts, label="bench")
        _SIGNED_CACHE.clear()
        _SIGNED_CACHE[shape] = (sandbox, _mint_batches(sandbox, batch_size),
                                _transfer_batches(sandbox, transfers, batch_size))
    return _SIGNED_CACHE[shape]


def _one_run(sandbox: Sandbox, mints: list[bytes], batches: list[bytes], verify: bool,
             sync: bool, pool: SignaturePool | None) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of this process, CPU seconds of the pool's workers) applying
    the transfer batches on a fresh store."""
    with tempfile.TemporaryDirectory(prefix="keiretsu-bench-") as data_dir:
        store = LedgerStore(data_dir)
        try:
            executor = Executor(store, default_registry(), sandbox.genesis, verify_signatures=verify, sync=sync,
                                signature_pool=pool)
            executor.init_genesis()
            raft_index = 0
            for batch in mints:
                raft_index += 1
                executor.apply(batch, raft_index, 1)
            workers_started = pool.worker_cpu_seconds() if pool is not None else 0.0
            started, cpu_started = time.perf_counter(), time.process_time()
            for batch in batches:
                raft_index += 1
                applied = executor.apply(batch, raft_index, 1)
                if applied is None or applied.dropped or not all(r.valid for r in applied.block.receipts):
                    raise RuntimeError("a benchmark transfer failed: the benchmark is broken")
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            workers = pool.worker_cpu_seconds() - workers_started if pool is not None else 0.0
            return wall, cpu, workers
        finally:
            store.close()


def run_ledger_bench(transfers: int = DEFAULT_TRANSFERS, batch_size: int = DEFAULT_BATCH_SIZE,
                     verify: bool = False, *, accounts: int = DEFAULT_ACCOUNTS, runs: int = DEFAULT_RUNS,
                     sync: bool = True, verify_in: str = VERIFY_IN_PROCESSES) -> dict[str, Any]:
    """Median transfers/s applied over `runs` fresh stores; every block is committed (synced).

    Also reports CPU seconds (all threads of this process, and the signature workers' processes
    if any): on a shared, busy machine the wall-clock rate understates what the code does, and
    the CPU rate shows it. `verify_in`: where signature checks run, worker processes (falling
    back to threads if they cannot start) or this process's thread pool.
    """
    if not 0 < transfers <= MAX_BENCH_TRANSFERS or not 0 < runs <= MAX_BENCH_RUNS:
        raise ValueError(f"transfers 1..{MAX_BENCH_TRANSFERS}, runs 1..{MAX_BENCH_RUNS}")
    if verify_in not in VERIFY_IN:
        raise ValueError(f"verify_in is one of {VERIFY_IN}")
    sandbox, mints, batches = prepare(transfers, batch_size, accounts)
    pool = SignaturePool() if verify and verify_in == VERIFY_IN_PROCESSES else None
    try:
        if pool is not None and not pool.start():
            pool = None
        timings = [_one_run(sandbox, mints, batches, verify, sync, pool) for _ in range(runs)]
    finally:
        if pool is not None:
            pool.close()
    seconds = [wall for wall, _, _ in timings]
    median_s = statistics.median(seconds)
    median_cpu_s = statistics.median(cpu for _, cpu, _ in timings)
    median_total_cpu_s = statistics.median(cpu + workers for _, cpu, workers in timings)
    return {
        "transfers": transfers,
        "batch_size": batch_size,
        "accounts": accounts,
        "verify_signatures": verify,
        "verify_in": (VERIFY_IN_PROCESSES if pool is not None else VERIFY_IN_THREADS) if verify else None,
        "synced_commits": sync,
        "runs": runs,
        "seconds": [round(s, 4) for s in seconds],
        "median_seconds": round(median_s, 4),
        "transfers_per_s": int(transfers / median_s),
        "median_cpu_seconds": round(median_cpu_s, 4),
        "transfers_per_cpu_s": int(transfers / median_cpu_s) if median_cpu_s > 0 else 0,
        # With worker processes: this process's CPU plus theirs (the same as above without).
        "median_total_cpu_seconds": round(median_total_cpu_s, 4),
        "transfers_per_total_cpu_s": int(transfers / median_total_cpu_s) if median_total_cpu_s > 0 else 0,
        "cores_busy": round(statistics.median((cpu + workers) / wall for wall, cpu, workers in timings), 2),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keiretsu bench ledger", description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=DEFAULT_TRANSFERS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--verify-in", choices=VERIFY_IN, default=VERIFY_IN_PROCESSES,
                        help="where signature checks run: worker processes (default) or a thread pool")
    parser.add_argument("--json", action="store_true", help="print one JSON object per mode")
    args = parser.parse_args(argv)
    for name, value, low, high in (("--transfers", args.transfers, 1, MAX_BENCH_TRANSFERS),
                                   ("--runs", args.runs, 1, MAX_BENCH_RUNS),
                                   ("--batch-size", args.batch_size, 1, MAX_BATCH_TXS),
                                   ("--accounts", args.accounts, 2, MAX_SANDBOX_HOLDERS)):
        if not low <= value <= high:
            parser.error(f"{name} must be {low:,}..{high:,}")  # a usage line, not a traceback
    gc_policy.tune_for_blocks()  # as a node runs (keiretsu_node/node.py)
    for verify in (False, True):
        result = run_ledger_bench(args.transfers, args.batch_size, verify, accounts=args.accounts, runs=args.runs,
                                  verify_in=args.verify_in)
        if args.json:
            print(json.dumps(result))
            continue
        label = f"with signature checks ({result['verify_in']})" if verify else "without signature checks"
        print(f"{label}: {result['transfers_per_s']:>8,} transfers/s "
              f"({result['transfers_per_total_cpu_s']:,} per CPU-second, {result['cores_busy']} cores busy; "
              f"median of {result['runs']} runs, {result['transfers']:,} transfers, "
              f"batches of {result['batch_size']:,}, {result['accounts']:,} accounts, synced commits)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
