"""Bounded per-peer queue of encoded frames waiting for that peer's link.

Sans-IO: a slow or dead peer costs at most max_frames frames and max_bytes bytes, because
pushing past either bound evicts the OLDEST frames (Raft retransmits, and a newer message
supersedes an older one far more often than the reverse). Evictions are counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_PEER_QUEUE_FRAMES = 4096
MAX_PEER_QUEUE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class PushResult:
    accepted: bool  # False only when the frame alone exceeds max_bytes
    evicted_frames: int


class SendQueue:
    def __init__(
        self,
        max_frames: int = MAX_PEER_QUEUE_FRAMES,
        max_bytes: int = MAX_PEER_QUEUE_BYTES,
    ) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError("send queue bounds must be positive")
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self._bytes = 0
        self.dropped_frames = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def push(self, encoded: bytes) -> PushResult:
        if len(encoded) > self.max_bytes:
            self.dropped_frames += 1
            return PushResult(accepted=False, evicted_frames=0)
        evicted = 0
        while self._frames and (
            len(self._frames) >= self.max_frames or self._bytes + len(encoded) > self.max_bytes
        ):
            self._bytes -= len(self._frames.popleft())
            evicted += 1
        self._frames.append(encoded)
        self._bytes += len(encoded)
        self.dropped_frames += evicted
        assert len(self._frames) <= self.max_frames and self._bytes <= self.max_bytes
        return PushResult(accepted=True, evicted_frames=evicted)

    def pop_batch(self, max_batch_bytes: int) -> list[bytes]:
        """Oldest frames totalling at most max_batch_bytes (at least one frame if any queued)."""
        batch: list[bytes] = []
        total = 0
        while self._frames and (not batch or total + len(self._frames[0]) <= max_batch_bytes):
            frame = self._frames.popleft()
            self._bytes -= len(frame)
            total += len(frame)
            batch.append(frame)
        return batch

    def clear(self) -> int:
        """Drop everything (the transport is stopping); returns how many frames were dropped."""
        count = len(self._frames)
        self._frames.clear()
        self._bytes = 0
        self.dropped_frames += count
        return count
