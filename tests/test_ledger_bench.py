"""The ledger benchmark runs end to end on a small load (its numbers are not asserted)."""

from __future__ import annotations

import gc

import pytest

from ledger import bench, gc_policy


@pytest.fixture
def restore_gc():
    """bench.main tunes the collector as a node process does; give the test process its own back."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_bench_applies_every_transfer_and_reports_a_rate():
    result = bench.run_ledger_bench(300, batch_size=100, verify=True, accounts=20, runs=1)
    assert result["transfers"] == 300 and result["verify_signatures"] is True
    assert result["transfers_per_s"] > 0 and len(result["seconds"]) == 1


def test_bench_command_prints_both_modes(capsys, restore_gc):
    assert bench.main(["--transfers", "200", "--batch-size", "100", "--accounts", "10", "--runs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "without signature checks" in lines[0] and "with signature checks" in lines[1]


def test_block_gc_policy_collects_cycles_less_often_but_still_collects_them(restore_gc):
    gc_policy.tune_for_blocks()
    assert gc.get_threshold()[0] == gc_policy.YOUNG_COLLECTION_ALLOCATIONS
    assert gc.get_freeze_count() > 0  # what was loaded before is out of the collector's sight

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle that refcounting alone never frees
    del a, b
    assert gc.collect() >= 2
