"""`keiretsu bench network`: throughput, latency and scale of a real local network, measured.

Part of keiretsu_node/. Starts N node processes (real TCP, disk, fsync) or targets running ones,
runs the load generator (keiretsu_node/loadgen.py) as a separate process, then prints a table,
writes JSON and draws a PNG. Method and figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from keiretsu_node.bootstrap import KEYS_DIR, init_network
from keiretsu_node.config import BatchingConfig, ConsensusConfig, NetworkSpec, NodeSpec
from keiretsu_node.localnet import LocalNetworkError, NodeProcesses, free_ports, network_layout
from ledger.keys import KeyPair

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
LOADGEN_TIMEOUT_S = 6 * 3600.0
MIN_ACCOUNTS = 2
MAX_ACCOUNTS = 1_000_000
MAX_NODES = 15
BENCH_CHAIN_ID = "keiretsu-bench-1"
PROFILE_TOP_FUNCTIONS = 60
PROFILE_PRINTED_FUNCTIONS = 25
# Frames every stack passes through (interpreter, thread and event-loop entry): not findings.
SCAFFOLDING_FRAMES = frozenset({
    "<module>", "_run_module_as_main", "_run_code", "main", "run", "Runner.run", "cmd_node_start", "run_node",
    "BaseEventLoop.run_until_complete", "BaseEventLoop.run_forever", "BaseEventLoop._run_once", "Handle._run",
    "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "_worker", "_WorkItem.run",
})
CONSOLE_WIDTH = 200  # the table is wide; a narrow terminal would fold every cell


class BenchError(RuntimeError):
    """The benchmark cannot run as asked; the message says why."""


@dataclass(frozen=True)
class BenchPlan:
    """One benchmark run: the network, the accounts, the mix and the phases of load."""

    nodes: int = 3
    api_urls: tuple[str, ...] = ()
    operator_key: Path | None = None
    accounts: int = 1_000
    mix: dict[str, int] = field(default_factory=lambda: {"transfer": 1})
    modes: tuple[str, ...] = ("closed", "open")
    closed_txs: int = 40_000
    closed_s: float = 20.0
    concurrency: int = 8
    request_txs: int = 100
    open_rate_tps: float = 0.0  # 0: half of the closed loop's committed rate
    open_s: float = 15.0
    warmup_s: float = 2.0
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    fsync: bool = True
    profile_dir: Path | None = None
    work_dir: Path | None = None
    keep: bool = False

    def phases(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if "closed" in self.modes:
            out.append({"name": "closed", "mode": "closed", "txs": self.closed_txs, "duration_s": self.closed_s,
                        "concurrency": self.concurrency, "request_txs": self.request_txs, "warmup_s": self.warmup_s})
        if "open" in self.modes:
            phase: dict[str, Any] = {"name": "open", "mode": "open", "duration_s": self.open_s,
                                     "request_txs": self.request_txs, "warmup_s": self.warmup_s}
            if self.open_rate_tps > 0:
                phase["rate_tps"] = self.open_rate_tps
            elif "closed" in self.modes:
                phase["rate_fraction"] = 0.5
            else:
                raise BenchError("an open loop alone needs --rate")
            out.append(phase)
        return out


# ---------------------------------------------------------------- a local network of processes


def local_network(root: Path, plan: BenchPlan) -> tuple[NodeProcesses, KeyPair]:
    """A fresh network of plan.nodes on loopback under root, and its operator's key."""
    ports = free_ports(2 * plan.nodes)
    nodes = tuple(NodeSpec(f"node{i + 1}", "127.0.0.1", ports[2 * i], ports[2 * i + 1]) for i in range(plan.nodes))
    spec = NetworkSpec(BENCH_CHAIN_ID, nodes, ("operator",), batching=plan.batching, consensus=plan.consensus)
    init_network(spec, root)
    _, configs, urls = network_layout(root)
    if not plan.fsync:
        for path in configs.values():
            path.write_text(path.read_text().replace("fsync = true", "fsync = false"))
    return NodeProcesses(configs, urls), KeyPair.load(root / KEYS_DIR / "operator.key")


# ---------------------------------------------------------------- one run


def _loadgen_spec(plan: BenchPlan, urls: list[str], operator: KeyPair, pids: dict[str, int]) -> dict[str, Any]:
    return {"urls": urls, "label": f"run-{os.getpid()}-{time.time_ns()}", "operator_seed": operator.seed.hex(),
            "accounts": plan.accounts, "mix": plan.mix, "pids": pids, "phases": plan.phases(),
            "profile_dir": str(plan.profile_dir.resolve()) if plan.profile_dir else None}


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte (a key file's rule)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a file left by an earlier run keeps its mode through O_TRUNC
        handle.write(text)


def run_loadgen(spec: dict[str, Any], work: Path) -> dict[str, Any]:
    """The load generator in its own process; its progress goes to our stderr."""
    spec_path, out_path = work / "loadgen-spec.json", work / "loadgen-result.json"
    _write_private(spec_path, json.dumps(spec))  # it holds the operator's seed
    proc = subprocess.Popen([sys.executable, "-m", "keiretsu_node.loadgen", "--spec", str(spec_path),
                             "--out", str(out_path)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        code = proc.wait(LOADGEN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        raise BenchError(f"the load generator failed (exit {code})")
    return json.loads(out_path.read_text())


def run_once(plan: BenchPlan) -> dict[str, Any]:
    """Start (or reach) the network, seed, drive every phase, stop what we started."""
    if plan.api_urls:
        if plan.operator_key is None:
            raise BenchError("--api needs --operator-key (seeding admits accounts)")
        work = Path(tempfile.mkdtemp(prefix="keiretsu-bench-"))
        try:
            result = run_loadgen(_loadgen_spec(plan, list(plan.api_urls), KeyPair.load(plan.operator_key), {}), work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {"network": {"nodes": len(plan.api_urls), "started_by_bench": False}, **result}
    root = Path(tempfile.mkdtemp(prefix="keiretsu-bench-", dir=plan.work_dir))
    network, operator = local_network(root / "network", plan)
    try:
        network.start_all()
        try:
            asyncio.run(network.wait_ready(timeout_s=READY_TIMEOUT_S))
        except LocalNetworkError as exc:
            raise BenchError(str(exc)) from exc
        result = run_loadgen(_loadgen_spec(plan, list(network.urls.values()), operator, network.pids()), root)
        data = _du_mib(root / "network")
    finally:
        network.stop_all(STOP_TIMEOUT_S)
        if not plan.keep:
            shutil.rmtree(root, ignore_errors=True)
    return {"network": {"nodes": plan.nodes, "started_by_bench": True, "fsync": plan.fsync,
                        "batching": vars(plan.batching), "consensus": vars(plan.consensus),
                        "data_mib": data}, **result}


def _du_mib(path: Path) -> float:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                continue
    return round(total / 2**20, 1)


# ---------------------------------------------------------------- reporting


def phase_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for p in result["phases"]:
        lat, trade = p["submit_to_commit_ms"], p["trade_to_settlement_ms"]
        usage = p["usage"]
        nodes = [n for n in usage if n not in ("loadgen", "machine")]
        cpu = " ".join(f"{usage[n]['cpu_cores']:.2f}" if usage[n]["cpu_cores"] is not None else "-" for n in nodes)
        rate = f"{p['rate_tps']:.0f}/s" if p["mode"] == "open" else f"c={p['concurrency']}"
        rows.append([p["name"], rate, f"{p['committed_tps']:,.0f}",
                     f"{lat['p50']:.0f}/{lat['p95']:.0f}/{lat['p99']:.0f}/{lat['max']:.0f}",
                     f"{trade['p50']:.0f}/{trade['p99']:.0f}" if trade["samples"] else "-",
                     f"{p['blocks_per_s']:.1f}", f"{p['mean_block_txs']:.0f}", cpu,
                     f"{usage['loadgen']['cpu_cores']:.2f}", f"{usage['machine']['other_processes_cores']:.2f}",
                     f"{p['cpu_cost'].get('nodes_cpu_ms_per_tx', 0):.2f}",
                     f"{p['counts']['busy']}/{p['counts']['rejected']}/{p['counts']['invalid']}",
                     f"{p.get('not_committed_txs', 0):,}"])
    return rows


PHASE_HEADERS = ["phase", "load", "committed tx/s", "latency ms p50/p95/p99/max", "trade ms p50/p99",
                 "blocks/s", "txs/block", "node CPU (cores)", "loadgen CPU", "others' CPU",
                 "node CPU-ms/tx", "busy/rejected/invalid", "not committed"]


def print_report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=CONSOLE_WIDTH)
    seed = result["seed"]
    console.print(f"[bold]Keiretsu network bench[/bold]: {result['network']['nodes']} nodes, "
                  f"{seed['accounts']:,} accounts seeded in {seed['seconds']} s "
                  f"({seed['accounts_per_s']:,} accounts/s)")
    cpu = seed.get("nodes_cpu_s") or {}
    if cpu.get("admit") is not None:
        console.print(f"  seeding: admissions {seed['admit_s']} s, funding {seed['fund_s']} s; the nodes' CPU "
                      f"{cpu['admit']} + {cpu['fund']} CPU-s (summed over the nodes)")
    settled = seed.get("settle") or {}
    if settled.get("idle") is not None:
        state = "idle" if settled["idle"] else "still busy (gave up waiting)"
        console.print(f"  after seeding: {settled['seconds']} s until the nodes were {state}, "
                      f"{settled['nodes_cpu_s']} CPU-s of seeding's after-work (LevelDB compaction, mostly); "
                      f"last window {settled['last_window_cores']} cores")
    table = Table()
    for header in PHASE_HEADERS:
        table.add_column(header, justify="left" if header == "phase" else "right")
    for row in phase_rows(result):
        table.add_row(*row)
    console.print(table)
    for p in result["phases"]:
        s = p["signing"]
        console.print(f"  {p['name']}: signing {s['signatures']:,} signatures took {s['cpu_s']} CPU-s "
                      f"({s['signatures_per_cpu_s']:,} signatures per CPU-s), outside the measured window")
    peaks = ", ".join(f"{n} {mib} MiB" for n, mib in result["peak_rss_mib"].items())
    if peaks:
        console.print(f"  peak RSS: {peaks}")


def draw_png(result: dict[str, Any], path: Path) -> None:
    """Committed tx/s and latency p50/p99 per second, one column per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = result["phases"]
    fig, axes = plt.subplots(2, max(1, len(phases)), figsize=(6 * max(1, len(phases)), 6), squeeze=False)
    for col, p in enumerate(phases):
        t = [row["t_s"] for row in p["timeline"]]
        top, bottom = axes[0][col], axes[1][col]
        top.plot(t, [row["committed"] for row in p["timeline"]], color="tab:blue")
        top.set_title(f"{p['name']} ({p['mode']} loop): committed tx/s")
        top.set_ylabel("tx/s")
        gap = float("nan")  # a second with no commit: a gap in the line, not a 0 ms dip
        bottom.plot(t, [gap if row["p50_ms"] is None else row["p50_ms"] for row in p["timeline"]], label="p50")
        bottom.plot(t, [gap if row["p99_ms"] is None else row["p99_ms"] for row in p["timeline"]], label="p99")
        bottom.set_ylabel("submit-to-commit ms")
        bottom.set_xlabel("seconds into phase")
        bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def draw_sweep_png(sweep: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["value"] for p in sweep["points"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [p["committed_tps"] for p in sweep["points"]], marker="o")
    if sweep["axis"] == "accounts":
        ax.set_xscale("log")
    ax.set_xlabel(sweep["axis"])
    ax.set_ylabel("committed tx/s (closed loop)")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def profile_summary(folder: Path, phase: dict[str, Any], top: int = PROFILE_TOP_FUNCTIONS) -> list[dict[str, Any]]:
    """Functions by inclusive share of every node's py-spy samples in a phase, converted to
    cluster CPU-ms per committed transaction with the phase's measured node CPU."""
    counts: dict[str, int] = {}
    total = 0
    for path in sorted(folder.glob(f"{phase['name']}-*.txt")):
        for line in path.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not stack or not n.isdigit():
                continue
            total += int(n)
            for name in {frame.split(" (")[0] for frame in stack.split(";")} - SCAFFOLDING_FRAMES:
                counts[name] = counts.get(name, 0) + int(n)
    per_tx_ms = phase["cpu_cost"].get("nodes_cpu_ms_per_tx", 0.0)
    ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return [{"function": name, "share": round(n / total, 4), "cpu_ms_per_tx": round(per_tx_ms * n / total, 4)}
            for name, n in ranked] if total else []


# ---------------------------------------------------------------- sweep


def run_sweep(plan: BenchPlan, axis: str, values: list[int]) -> dict[str, Any]:
    """Closed-loop throughput against state size (accounts) or cluster size (nodes)."""
    points = []
    for value in values:
        point_plan = replace(plan, modes=("closed",))
        point_plan = replace(point_plan, accounts=value) if axis == "accounts" else replace(point_plan, nodes=value)
        print(f"[bench] sweep {axis}={value}", file=sys.stderr, flush=True)
        result = run_once(point_plan)
        closed = result["phases"][0]
        points.append({"value": value, "committed_tps": closed["committed_tps"],
                       "p99_ms": closed["submit_to_commit_ms"]["p99"], "seed_s": result["seed"]["seconds"],
                       "peak_rss_mib": result["peak_rss_mib"], "run": result})
    return {"axis": axis, "points": points}


def print_sweep(sweep: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"closed-loop throughput vs {sweep['axis']}")
    for header in (sweep["axis"], "committed tx/s", "p99 ms", "seeding s", "max peak RSS MiB"):
        table.add_column(header, justify="right")
    for p in sweep["points"]:
        peak = max(p["peak_rss_mib"].values(), default=0)
        table.add_row(f"{p['value']:,}", f"{p['committed_tps']:,.0f}", f"{p['p99_ms']:.0f}", f"{p['seed_s']}",
                      f"{peak}")
    Console(width=CONSOLE_WIDTH).print(table)


# ---------------------------------------------------------------- command line


def parse_mix(text: str) -> dict[str, int]:
    """`transfer=3,dvp=1,order=1`: integer weights of each workload (orders count as crossing pairs)."""
    mix: dict[str, int] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in ("transfer", "dvp", "order"):
            raise BenchError(f"unknown workload {name!r}: transfer, dvp or order")
        try:
            mix[name] = int(weight) if weight else 1
        except ValueError as exc:
            raise BenchError(f"the weight of {name} must be an integer") from exc
        if mix[name] < 0:
            raise BenchError(f"the weight of {name} must not be negative")
    if sum(mix.values()) == 0:
        raise BenchError("the mix has no workload")
    return mix


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="keiretsu bench network", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3, help="local network size (default 3)")
    p.add_argument("--api", action="append", default=[], help="target a running network instead (repeat per node)")
    p.add_argument("--operator-key", type=Path, help="operator key file (with --api)")
    p.add_argument("--accounts", type=int, default=1_000, help="funded accounts to seed (2..1,000,000)")
    p.add_argument("--mix", default="transfer", help="workload weights, e.g. transfer=3,dvp=1,order=1")
    p.add_argument("--mode", choices=("closed", "open", "both"), default="both")
    p.add_argument("--txs", type=int, default=40_000, help="closed loop: transactions pre-signed (upper bound)")
    p.add_argument("--duration", type=float, default=20.0, help="closed loop: seconds (upper bound)")
    p.add_argument("--concurrency", type=int, default=8, help="closed loop: clients each with one batch in flight")
    p.add_argument("--request-txs", type=int, default=100, help="transactions per HTTP batch request")
    p.add_argument("--rate", type=float, default=0.0, help="open loop tx/s (default: half the closed-loop rate)")
    p.add_argument("--open-duration", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=2.0, help="seconds excluded from each phase's figures")
    p.add_argument("--batch-max-txs", type=int, default=BatchingConfig.max_txs)
    p.add_argument("--batch-timeout-ms", type=int, default=BatchingConfig.timeout_ms)
    p.add_argument("--compact-after-entries", type=int, default=ConsensusConfig.compact_after_entries,
                   help="nodes compact their in-memory Raft log past this many applied entries")
    p.add_argument("--no-fsync", action="store_true", help="for comparison only: targets are with fsync")
    p.add_argument("--sweep", help="accounts=1000,100000,1000000 or nodes=3,5 (closed loop per point)")
    p.add_argument("--out", type=Path, default=Path("bench-out"), help="folder for bench.json and bench.png")
    p.add_argument("--work-dir", type=Path, help="where node data goes (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep node data and logs")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="py-spy every node during each phase; raw stacks to DIR/<phase>-<node>.txt")
    return p


def plan_from_args(args: argparse.Namespace) -> BenchPlan:
    if not MIN_ACCOUNTS <= args.accounts <= MAX_ACCOUNTS:
        raise BenchError(f"--accounts must be {MIN_ACCOUNTS:,}..{MAX_ACCOUNTS:,}")
    if not 1 <= args.nodes <= MAX_NODES:
        raise BenchError(f"--nodes must be 1..{MAX_NODES}")
    if args.concurrency < 1 or args.request_txs < 2 or args.txs < 2:
        raise BenchError("--concurrency ≥ 1, --request-txs ≥ 2, --txs ≥ 2")
    if args.work_dir is not None and not args.work_dir.is_dir():
        raise BenchError(f"--work-dir {args.work_dir} is not a directory")
    modes = ("closed", "open") if args.mode == "both" else (args.mode,)
    return BenchPlan(
        nodes=args.nodes, api_urls=tuple(args.api), operator_key=args.operator_key, accounts=args.accounts,
        mix=parse_mix(args.mix), modes=modes, closed_txs=args.txs, closed_s=args.duration,
        concurrency=args.concurrency, request_txs=args.request_txs, open_rate_tps=args.rate,
        open_s=args.open_duration, warmup_s=args.warmup,
        batching=replace(BatchingConfig(), max_txs=args.batch_max_txs, timeout_ms=args.batch_timeout_ms),
        consensus=_consensus(args.compact_after_entries), fsync=not args.no_fsync, profile_dir=args.profile,
        work_dir=args.work_dir, keep=args.keep)


def _consensus(compact_after_entries: int) -> ConsensusConfig:
    """Raft settings; a low compaction threshold shows the rest of a node's memory (see PERFORMANCE.md)."""
    default = ConsensusConfig()
    if compact_after_entries < 1:
        raise BenchError("--compact-after-entries must be ≥ 1")
    keep = min(default.compact_keep_entries, max(1, compact_after_entries // 5))
    return replace(default, compact_after_entries=compact_after_entries, compact_keep_entries=keep)


def _sweep_axis(text: str) -> tuple[str, list[int]]:
    axis, _, values = text.partition("=")
    if axis not in ("accounts", "nodes") or not values:
        raise BenchError("--sweep is accounts=N,N,... or nodes=N,N,...")
    try:
        return axis, [int(v) for v in values.split(",")]
    except ValueError as exc:
        raise BenchError("--sweep values are integers") from exc


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plan = plan_from_args(args)
        args.out.mkdir(parents=True, exist_ok=True)
        if args.sweep:
            axis, values = _sweep_axis(args.sweep)
            sweep = run_sweep(plan, axis, values)
            print_sweep(sweep)
            (args.out / f"sweep-{axis}.json").write_text(json.dumps(sweep, indent=1))
            print(f"wrote {args.out / f'sweep-{axis}.json'}")
            _plot(draw_sweep_png, sweep, args.out / f"sweep-{axis}.png")
            return 0
        result = run_once(plan)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    result["command"] = ["keiretsu", "bench", "network", *(argv if argv is not None else sys.argv[1:])]
    print_report(result)
    if plan.profile_dir is not None:
        result["profiles"] = {p["name"]: profile_summary(plan.profile_dir, p) for p in result["phases"]}
        for name, rows in result["profiles"].items():
            print(f"  profile {name} (cluster CPU-ms per committed tx, inclusive):")
            for row in rows[:PROFILE_PRINTED_FUNCTIONS]:
                print(f"    {row['cpu_ms_per_tx']:8.3f}  {row['function']}")
    (args.out / "bench.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'bench.json'}")
    _plot(draw_png, result, args.out / "bench.png")
    return 0


def _plot(draw: Any, data: dict[str, Any], path: Path) -> None:
    """Draw if matplotlib is there (the optional extra `bench`); the JSON holds every figure anyway."""
    try:
        draw(data, path)
    except ImportError:
        print("no plot: matplotlib is not installed (pip install 'keiretsu[bench]')", file=sys.stderr)
        return
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
