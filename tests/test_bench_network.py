"""`keiretsu bench network` end to end on tiny numbers, and the statistics it reports.

Nothing here is timed: the smoke test checks that the bench starts a real 3-node network, seeds,
drives every workload in both loops, stops what it started and writes its JSON and PNG.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keiretsu_node import bench, loadgen
from keiretsu_node.loadgen import plan_load, weighted_percentiles


def test_bench_runs_end_to_end_and_writes_json_and_png(tmp_path) -> None:
    out = tmp_path / "out"
    status = bench.main(["--accounts", "20", "--mix", "transfer=1,dvp=1,order=1", "--txs", "120",
                         "--duration", "5", "--open-duration", "1", "--rate", "60", "--warmup", "0",
                         "--request-txs", "10", "--concurrency", "2", "--out", str(out),
                         "--work-dir", str(tmp_path)])
    assert status == 0
    result = json.loads((out / "bench.json").read_text())
    assert result["seed"]["accounts"] == 20
    assert [p["mode"] for p in result["phases"]] == ["closed", "open"]
    for phase in result["phases"]:
        counts = phase["counts"]
        assert counts["valid"] > 0 and counts["invalid"] == 0, phase["reasons"]
        assert phase["blocks"] > 0
        assert set(phase["submit_to_commit_ms"]) >= {"p50", "p95", "p99", "max"}
    assert result["phases"][0]["counts"]["trades"] > 0  # the order flow matched
    assert all(mib > 0 for mib in result["peak_rss_mib"].values())
    if importlib.util.find_spec("matplotlib") is not None:  # the optional extra `bench`
        assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p for p in tmp_path.iterdir() if p.name.startswith("keiretsu-bench-")] == []  # node data removed


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 50)), max_size=40))
def test_weighted_percentiles_equal_the_nearest_rank_of_the_expanded_list(pairs) -> None:
    expanded = sorted(v for v, w in pairs for _ in range(w))
    got = weighted_percentiles([(float(v), w) for v, w in pairs], (0.5, 0.99, 1.0))
    if not expanded:
        assert got == [0.0, 0.0, 0.0]
        return
    for q, value in zip(("0.5", "0.99", "1"), got, strict=False):
        rank = max(1, math.ceil(Fraction(q) * len(expanded)))
        assert value == expanded[rank - 1]


def test_order_flow_is_planned_as_crossing_pairs_of_distinct_accounts() -> None:
    plans = plan_load({"order": 1}, 10, 5, [f"a{i}" for i in range(5)], "BNC", "ISIN", random.Random(1), 0)
    assert [p.args["side"] for p in plans] == ["sell", "buy"] * 5
    for sell, buy in zip(plans[::2], plans[1::2], strict=False):
        assert sell.signers != buy.signers and sell.args["price"] == buy.args["price"]


def test_a_mixed_workload_runs_the_mix_asked_for_and_keeps_each_order_pair_together() -> None:
    plans = plan_load({"transfer": 3, "dvp": 1, "order": 1}, 6_000, 10, [f"a{i}" for i in range(10)], "BNC", "ISIN",
                      random.Random(2), 0)
    methods = [p.method for p in plans]
    assert (methods.count("transfer"), methods.count("dvp"), methods.count("place_order")) == (3_000, 1_000, 2_000)
    sides = [p.args["side"] for p in plans if p.method == "place_order"]
    assert sides == ["sell", "buy"] * 1_000
    for i, plan in enumerate(plans):  # a sell is always followed by its buy: no request splits a pair
        if plan.method == "place_order" and plan.args["side"] == "sell":
            assert plans[i + 1].method == "place_order" and plans[i + 1].args["side"] == "buy"


def _record(intended: float, done: float, txs: int, **outcome: object) -> loadgen.RequestRecord:
    return loadgen.RequestRecord(intended, intended, done, txs, **outcome)  # type: ignore[arg-type]


def test_requests_that_never_committed_stay_in_the_latency_tail_and_out_of_the_rate() -> None:
    """A batch still pending after the commit wait, one lost with its request and one never sent
    are the slowest of the phase: dropped from the percentiles, they hid the tail (and stretched
    the committed rate's window to their return)."""
    records = [_record(i * 0.01, i * 0.01 + 0.05, 10, valid=10) for i in range(98)]
    records.append(_record(0.5, 30.5, 10, pending=10))  # the wait ended after 30 s
    records.append(_record(0.6, 120.6, 10, failed=True))  # the request timed out
    records.append(_record(0.7, 0.7, 10, failed=True, reasons={loadgen.NOT_SENT: 10}))
    summary = loadgen.summarize(records, started=0.0, warmup_s=0.0)
    latency = summary["submit_to_commit_ms"]
    assert latency["p50"] == 50.0 and latency["p99"] >= 30_000 and latency["max"] >= 120_000
    assert summary["not_committed_txs"] == 30
    assert summary["window_s"] == pytest.approx(1.02, abs=0.01)  # the last commit, not the stuck requests
    assert summary["committed_tps"] == pytest.approx(980 / 1.02, rel=0.01)


def test_a_second_with_no_commit_has_no_latency_rather_than_zero() -> None:
    records = [_record(0.1, 1.5, 5, valid=5), _record(1.9, 4.2, 5, valid=5)]
    rows = loadgen.timeline(records, started=0.0)
    assert [(r["t_s"], r["committed"], r["p99_ms"]) for r in rows] == [
        (0, 0, None), (1, 5, 1400.0), (2, 0, None), (3, 0, None), (4, 5, 2300.0)]


def test_a_dvp_settlement_counts_as_a_trade_settled() -> None:
    record = _record(0.0, 0.1, 2)
    loadgen._tally(record, [{"accepted": True, "status": "committed",
                             "receipt": {"result": "valid", "events": [{"kind": "dvp_settled"}]}},
                            {"accepted": True, "status": "committed",
                             "receipt": {"result": "valid", "events": [{"kind": "trade"}, {"kind": "order_filled"}]}}])
    assert record.trades == 2


def test_mix_is_parsed_and_checked() -> None:
    assert bench.parse_mix("transfer=3,dvp=1,order") == {"transfer": 3, "dvp": 1, "order": 1}
    with pytest.raises(bench.BenchError):
        bench.parse_mix("swap=1")
    with pytest.raises(bench.BenchError):
        bench.parse_mix("transfer=0")


def test_profile_summary_turns_samples_into_cpu_per_transaction(tmp_path) -> None:
    (tmp_path / "closed-node1.txt").write_text(
        "_worker (t.py:1);Executor.apply (e.py:2);verify (k.py:3) 30\n"
        "_worker (t.py:1);Executor.apply (e.py:2) 10\n"
        "BaseEventLoop._run_once (b.py:1);Node.submit (n.py:9) 60\n")
    phase = {"name": "closed", "cpu_cost": {"nodes_cpu_ms_per_tx": 2.0}}
    rows = {r["function"]: r["cpu_ms_per_tx"] for r in bench.profile_summary(tmp_path, phase)}
    assert rows == {"Node.submit": 1.2, "Executor.apply": 0.8, "verify": 0.6}  # scaffolding frames left out


def test_after_seeding_the_phases_wait_for_busy_nodes_to_go_idle_within_a_bound(tmp_path) -> None:
    """Work the nodes still do after seeding (LevelDB compaction) is not charged to the first
    phase: settle waits while they are busy, gives up at its bound, and waits for nothing
    against a network the bench did not start."""
    import asyncio
    import subprocess
    import sys

    from keiretsu_node.loadgen import settle

    script = "import time\nend = time.monotonic() + {}\nwhile time.monotonic() < end:\n    pass\n"
    busy = subprocess.Popen([sys.executable, "-c", script.format(10)])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(10)"])
    try:
        # a low idle bound, so a busy loop counts as busy even on a box loaded by other tests
        gave_up = asyncio.run(settle({"pids": {"n1": busy.pid}}, idle_cores=0.02, window_s=0.3, max_s=1.0))
        assert gave_up["idle"] is False and gave_up["seconds"] >= 1.0
        assert gave_up["last_window_cores"] >= 0.02 and gave_up["nodes_cpu_s"] > 0
        settled = asyncio.run(settle({"pids": {"n1": idle.pid}}, window_s=0.3, max_s=5.0))
        assert settled["idle"] is True and settled["seconds"] < 1.0
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()
    assert asyncio.run(settle({}, window_s=0.3, max_s=1.0)) == {
        "seconds": 0.0, "idle": None, "nodes_cpu_s": None, "last_window_cores": None}


def test_the_load_generators_spec_holding_the_operator_seed_is_readable_by_its_owner_only(tmp_path,
                                                                                         monkeypatch) -> None:
    seen = {}

    class Loadgen:  # stands in for the load generator's process: nothing is benchmarked
        def __init__(self, argv: list[str], **_: object) -> None:
            spec = argv[argv.index("--spec") + 1]
            seen["mode"] = os.stat(spec).st_mode & 0o777
            seen["seed"] = json.loads(open(spec).read())["operator_seed"]
            with open(argv[argv.index("--out") + 1], "w") as out:
                out.write("{}")

        def wait(self, timeout: float | None = None) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(bench.subprocess, "Popen", Loadgen)
    (tmp_path / "loadgen-spec.json").write_text("{}")  # an earlier run's, world-readable
    (tmp_path / "loadgen-spec.json").chmod(0o644)
    bench.run_loadgen({"operator_seed": "ab" * 32}, tmp_path)
    assert seen == {"mode": 0o600, "seed": "ab" * 32}
