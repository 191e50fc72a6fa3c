"""A batch: what the leader proposes as one consensus log entry (its time and raw transactions).

Part of ledger/. Consensus carries these bytes without reading them; every node decodes the
same bytes into the same block, so the batch is the unit of agreement.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import codec

BATCH_FORMAT_VERSION = 1
MAX_BATCH_TXS = 10_000
MAX_BATCH_BYTES = 32 * 1024 * 1024


class BatchError(ValueError):
    """Bytes that are not a batch (a bug or corruption upstream: consensus never makes them)."""


@dataclass(frozen=True)
class Batch:
    proposed_time_ms: int
    txs: tuple[bytes, ...]

    def encode(self) -> bytes:
        if len(self.txs) > MAX_BATCH_TXS:
            raise BatchError(f"a batch holds at most {MAX_BATCH_TXS} transactions")
        return codec.encode([BATCH_FORMAT_VERSION, self.proposed_time_ms, list(self.txs)])

    @classmethod
    def decode(cls, data: bytes) -> Batch:
        try:
            wire = codec.decode(data, max_bytes=MAX_BATCH_BYTES)
        except codec.CodecError as exc:
            raise BatchError(str(exc)) from exc
        if (
            not isinstance(wire, list)
            or len(wire) != 3
            or wire[0] != BATCH_FORMAT_VERSION
            or not isinstance(wire[1], int)
            or not isinstance(wire[2], list)
            or len(wire[2]) > MAX_BATCH_TXS
            or not all(isinstance(tx, bytes) for tx in wire[2])
        ):
            raise BatchError("not a batch")
        return cls(wire[1], tuple(wire[2]))
