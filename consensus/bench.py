"""`keiretsu bench raft`: a 3-process cluster on 127.0.0.1 (real TCP, fsync on), clients in every
replica submitting 100-byte commands, closed and open loop, side by side with PySyncObj.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NODES = 3
STARTUP_S = 4.0  # processes start, connect and elect before the load begins
EXTRA_WAIT_S = 30.0  # grace on top of the planned run before a replica is killed
DEFAULT_RATES = (5_000, 15_000, 30_000, 60_000)
DEFAULT_WINDOW = 6_000  # closed loop: commands in flight across the cluster
ELECTION_TICKS = 20  # x tick_ms: 1-2 s at 50 ms, so a CPU-starved replica is not deposed


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _keiretsu_configs(workdir: Path, plan: dict[str, Any], tick_ms: int) -> list[dict[str, Any]]:
    from p2p.identity import NodeIdentity

    ids = [f"n{i + 1}" for i in range(NODES)]
    ports = _free_ports(NODES)
    peers = []
    for node_id, port in zip(ids, ports, strict=False):
        identity = NodeIdentity.generate(node_id)
        identity.save(workdir / node_id / "identity")
        peers.append(dataclasses.asdict(identity.peer_info("127.0.0.1", port)))
    return [{"node_id": node_id, "port": port, "identity_dir": str(workdir / node_id / "identity"),
             "peers": peers, "voters": ids, "data_dir": str(workdir / node_id / "data"),
             "plan": plan, "tick_ms": tick_ms, "election_ticks": ELECTION_TICKS, "seed": i}
            for i, (node_id, port) in enumerate(zip(ids, ports, strict=False))]


def _pysyncobj_configs(plan: dict[str, Any]) -> list[dict[str, Any]]:
    addrs = [f"127.0.0.1:{p}" for p in _free_ports(NODES)]
    return [{"addr": a, "partners": [b for b in addrs if b != a], "plan": plan} for a in addrs]


def _run_cluster(system: str, workdir: Path, plan: dict[str, Any], tick_ms: int) -> dict[str, Any]:
    if system == "keiretsu":
        configs, module = _keiretsu_configs(workdir, plan, tick_ms), "consensus.bench_node"
    else:
        configs, module = _pysyncobj_configs(plan), "consensus.bench_pysyncobj"
    procs = []
    for i, cfg in enumerate(configs):
        path = workdir / f"replica{i}.json"
        path.write_text(json.dumps(cfg))
        procs.append(subprocess.Popen([sys.executable, "-m", module, str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    deadline = plan["start_at"] + 1.0 + plan["duration_s"] + EXTRA_WAIT_S
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=max(1.0, deadline - time.time()))
            lines = out.decode().strip().splitlines()
            outputs.append(json.loads(lines[-1]) if lines else None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            outputs.append(None)
    return _aggregate(outputs, plan)


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _aggregate(outputs: list[dict[str, Any] | None], plan: dict[str, Any]) -> dict[str, Any]:
    alive = [o for o in outputs if o is not None]
    lat = sorted(v for o in alive for v in o["latencies_ms"])
    p50, p99 = _percentile(lat, 0.50), _percentile(lat, 0.99)
    return {
        "mode": plan["mode"],
        "offered_per_s": plan["per_node_rate_per_s"] * NODES if plan["mode"] == "open" else None,
        "window": plan["per_node_window"] * NODES if plan["mode"] == "closed" else None,
        "acked_ops_per_s": round(sum(o["acked_in_window"] for o in alive) / plan["duration_s"]),
        "p50_ms": None if p50 is None else round(p50, 1),
        "p99_ms": None if p99 is None else round(p99, 1),
        "submitted": sum(o["submitted"] for o in alive),
        "acked": sum(o["acked"] for o in alive),
        "failed": sum(o["failed"] for o in alive),
        "lost_acks": sum(o["lost"] for o in alive),
        "replicas_wedged": len(outputs) - len(alive),
    }


def run_raft_bench(args: argparse.Namespace) -> dict[str, Any]:
    """Run every configured load against each system; returns {system: [run results]}."""
    compare = not args.skip_pysyncobj
    if compare and importlib.util.find_spec("pysyncobj") is None:
        print("pysyncobj is not installed (pip install 'keiretsu[bench]'): measuring ours only",
              file=sys.stderr)
        compare = False
    systems = ["keiretsu"] + (["pysyncobj"] if compare else [])
    loads: list[tuple[str, int, int]] = [("closed", 0, args.window // NODES)]
    loads += [("open", rate // NODES, 0) for rate in args.rates]
    root = Path(tempfile.mkdtemp(prefix="keiretsu-bench-"))
    results: dict[str, Any] = {s: [] for s in systems}
    try:
        for mode, rate, window in loads:
            for system in systems:
                workdir = root / f"{system}-{mode}-{rate}-{window}"
                workdir.mkdir()
                plan = {"mode": mode, "per_node_rate_per_s": rate, "per_node_window": window,
                        "start_at": time.time() + STARTUP_S, "duration_s": args.duration_s}
                results[system].append(_run_cluster(system, workdir, plan, args.tick_ms))
                if not args.json:
                    print(_format_row(system, results[system][-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # keys and logs generated here are throwaway
    return results


def _format_row(system: str, r: dict[str, Any]) -> str:
    load = f"window {r['window']}" if r["mode"] == "closed" else f"{r['offered_per_s']}/s"
    return (f"{system:10} {r['mode']:6} {load:>12}  acked {r['acked_ops_per_s']:>7}/s  "
            f"p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  lost {r['lost_acks']}  "
            f"failed {r['failed']}  wedged {r['replicas_wedged']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="keiretsu bench raft", description=__doc__)
    p.add_argument("--duration-s", type=float, default=5.0, help="measured seconds per run")
    p.add_argument("--rates", type=lambda s: [int(x) for x in s.split(",")],
                   default=list(DEFAULT_RATES), help="open-loop offered ops/s, comma separated")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                   help="closed loop: commands in flight across the cluster")
    p.add_argument("--tick-ms", type=int, default=50, help="Raft tick for our cluster")
    p.add_argument("--skip-pysyncobj", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON document at the end")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run_raft_bench(args)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
