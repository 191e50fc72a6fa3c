"""Smoke test of `keiretsu bench raft`: three real processes over TLS on 127.0.0.1 with fsync;
every acknowledged-or-refused command is accounted for (no lost acknowledgements).
"""

from __future__ import annotations

import pytest

from consensus.bench import parse_args, run_raft_bench


@pytest.mark.slow
def test_bench_runs_a_three_process_cluster_without_lost_acks() -> None:
    args = parse_args(["--duration-s", "2", "--rates", "2000", "--window", "600",
                       "--skip-pysyncobj", "--json"])
    results = run_raft_bench(args)
    runs = results["keiretsu"]
    assert [r["mode"] for r in runs] == ["closed", "open"]
    for r in runs:
        assert r["replicas_wedged"] == 0 and r["lost_acks"] == 0
        assert r["acked_ops_per_s"] > 0 and r["p99_ms"] is not None
