"""The opt-in block trace: off it writes nothing; on it writes timed lines, garbage collections included."""

from __future__ import annotations

import gc

from keiretsu_node.blocktrace import BLOCKTRACE_ENV, BlockTrace


def test_a_trace_that_was_not_asked_for_records_nothing(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(BLOCKTRACE_ENV, raising=False)
    trace = BlockTrace()
    trace.start("n1")
    trace.event("cut", txs=3)
    trace.stop()
    assert not trace.on and trace._on_gc not in gc.callbacks  # no file, no collector hook: no cost


def test_a_trace_writes_one_timed_line_per_event_and_each_collection(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(BLOCKTRACE_ENV, str(tmp_path / "trace"))
    trace = BlockTrace()
    trace.start("n1")
    try:
        trace.event("cut", txs=3, inflight=0)
        gc.collect(0)
    finally:
        trace.stop()
    lines = (tmp_path / "trace-n1").read_text().splitlines()
    assert lines[0].split()[1:] == ["cut", "txs=3", "inflight=0"]
    assert float(lines[0].split()[0]) > 0
    assert any(line.split()[1] == "gc" and "gen=0" in line for line in lines[1:])
    assert gc.callbacks.count(trace._on_gc) == 0  # stop() took its callback away


def test_a_timed_call_returns_its_result_and_writes_its_duration(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(BLOCKTRACE_ENV, str(tmp_path / "trace"))
    trace = BlockTrace()
    trace.start("n1")
    try:
        assert trace.timed("ledgercommit", lambda a, *, b: a + b)(2, b=3) == 5
    finally:
        trace.stop()
    kinds = [line.split()[1] for line in (tmp_path / "trace-n1").read_text().splitlines()]
    assert "ledgercommit" in kinds
