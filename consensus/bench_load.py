"""Client-side bookkeeping shared by the Raft benchmark's replica processes (ours and PySyncObj):
how many 100-byte commands are due, when each was submitted, and what came back when.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMMAND_BYTES = 100
_PAD = b"k" * (COMMAND_BYTES - 8)
MAX_LATENCY_SAMPLES = 1_000_000  # per process: bounds memory on very long runs
WARMUP_S = 1.0  # load starts this long before the measured window


@dataclass(frozen=True)
class LoadPlan:
    mode: str  # "closed" (a window of commands in flight) or "open" (fixed rate)
    per_node_rate_per_s: int  # open loop
    per_node_window: int  # closed loop
    start_at: float  # time.time() when load begins; every process uses the same instant
    duration_s: float  # measured window length, after WARMUP_S

    @property
    def window_start(self) -> float:
        return self.start_at + WARMUP_S

    @property
    def window_end(self) -> float:
        return self.window_start + self.duration_s


def command(seq: int) -> bytes:
    return seq.to_bytes(8, "big") + _PAD


@dataclass
class LoadTracker:
    plan: LoadPlan
    next_seq: int = 0
    submitted_at: dict[int, float] = field(default_factory=dict)  # outstanding commands
    acked_in_window: int = 0
    acked_total: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0

    def due(self, now: float) -> int:
        """How many new commands to submit now (0 outside the load period)."""
        plan = self.plan
        if now < plan.start_at or now >= plan.window_end:
            return 0
        if plan.mode == "closed":
            return max(0, plan.per_node_window - len(self.submitted_at))
        target = int((now - plan.start_at) * plan.per_node_rate_per_s)
        return max(0, target - self.next_seq)

    def submit(self, n: int, now: float) -> int:
        """Record n new commands; returns the first sequence number."""
        first = self.next_seq
        for seq in range(first, first + n):
            self.submitted_at[seq] = now
        self.next_seq += n
        return first

    def ack(self, seq: int, now: float) -> None:
        sent = self.submitted_at.pop(seq, None)
        if sent is None:
            return  # a duplicate acknowledgement would be a bug; the lost count shows it
        self.acked_total += 1
        if self.plan.window_start <= now <= self.plan.window_end:
            self.acked_in_window += 1
        if self.plan.window_start <= sent <= self.plan.window_end:
            if len(self.latencies_ms) < MAX_LATENCY_SAMPLES:
                self.latencies_ms.append((now - sent) * 1000)

    def fail(self, seq: int) -> None:
        """The system answered "not done" (e.g. not leader, queue full): an answer, not a loss."""
        if self.submitted_at.pop(seq, None) is not None:
            self.failed += 1

    def result(self) -> dict[str, object]:
        return {
            "submitted": self.next_seq,
            "acked": self.acked_total,
            "acked_in_window": self.acked_in_window,
            "lost": len(self.submitted_at),
            "failed": self.failed,
            "latencies_ms": [round(v, 2) for v in self.latencies_ms],
        }
