"""The node's memory tools: allocator tuning is safe to call and rate-limited; memtrace is opt-in."""

from __future__ import annotations

import tracemalloc

import pytest

from keiretsu_node import memtrace
from keiretsu_node.allocator import TRIM_INTERVAL_S, Allocator


def test_trimming_happens_at_most_once_per_interval() -> None:
    allocator = Allocator()
    allocator.configure()
    allocator.maybe_trim(1_000.0)
    allocator.maybe_trim(1_000.0 + TRIM_INTERVAL_S / 2)
    allocator.maybe_trim(1_000.0 + TRIM_INTERVAL_S)
    assert allocator.trims == (2 if allocator.available else 0)


def test_memtrace_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(memtrace.MEMTRACE_ENV, raising=False)
    assert memtrace.requested_path() is None
    monkeypatch.setenv(memtrace.MEMTRACE_ENV, "/tmp/trace")
    assert str(memtrace.requested_path()) == "/tmp/trace"


def test_a_report_names_rss_and_the_python_total() -> None:
    tracemalloc.start()
    try:
        text = memtrace.report()
    finally:
        tracemalloc.stop()
    assert "VmRSS" in text and "traced python" in text
