"""Bounded per-peer queue of encoded frames waiting for that peer's link.

Sans-IO: a slow or dead peer costs at most max_frames frames and max_bytes bytes. When full,
the NEWEST frame is refused (drop-newest) and counted, so the sender learns it at once from
Transport.send's False — the Raft driver marks the peer unreachable and stops pipelining to it,
and a snapshot stream retries its chunk instead of silently evicting an earlier one.
"""

from __future__ import annotations

from collections import deque

MAX_PEER_QUEUE_FRAMES = 4096
MAX_PEER_QUEUE_BYTES = 64 * 1024 * 1024


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

    def push(self, encoded: bytes) -> bool:
        """Queue one frame, or refuse it (and count the drop) if either bound would be exceeded."""
        if len(self._frames) >= self.max_frames or self._bytes + len(encoded) > self.max_bytes:
            self.dropped_frames += 1
            return False
        self._frames.append(encoded)
        self._bytes += len(encoded)
        return True

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
