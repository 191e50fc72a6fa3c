"""The ledger benchmark runs end to end on a small load (its numbers are not asserted)."""

from __future__ import annotations

from ledger import bench


def test_bench_applies_every_transfer_and_reports_a_rate():
    result = bench.run_ledger_bench(300, batch_size=100, verify=True, accounts=20, runs=1)
    assert result["transfers"] == 300 and result["verify_signatures"] is True
    assert result["transfers_per_s"] > 0 and len(result["seconds"]) == 1


def test_bench_command_prints_both_modes(capsys):
    assert bench.main(["--transfers", "200", "--batch-size", "100", "--accounts", "10", "--runs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "without signature checks" in lines[0] and "with signature checks" in lines[1]
