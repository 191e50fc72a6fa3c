"""`keiretsu bench <kind>`: dispatch to each room's benchmark, which prints its own figures.

Part of cli/. The benchmarks live beside what they measure (ledger/bench.py, consensus/bench.py,
contracts/market_bench.py, keiretsu_node/loadgen.py); this only routes the arguments.
"""

from __future__ import annotations

import importlib

from cli.errors import CliError

MODULES = {
    "ledger": "ledger.bench",
    "raft": "consensus.bench",
    "market": "contracts.market_bench",
    "network": "keiretsu_node.bench",
}


def run(kind: str, rest: list[str]) -> None:
    try:
        module = importlib.import_module(MODULES[kind])
    except ImportError as exc:
        raise CliError(f"benchmark {kind!r} is not available: {exc}") from exc
    status = module.main(rest)
    if status:
        raise CliError(f"benchmark {kind} failed (status {status})")
