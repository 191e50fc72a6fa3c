"""Blocks: a hash-linked header, the transactions in order and each one's receipt.

Part of ledger/. The header commits to the previous block, the transactions (Merkle root), the
receipts and the state after the block, so two nodes that diverge see it at the first block.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ledger import codec
from ledger.merkle import merkle_root
from ledger.reasons import Reason

BLOCK_FORMAT_VERSION = 1
BLOCK_HASH_DOMAIN = b"keiretsu/block/v1\x00"
GENESIS_PREV_HASH = bytes(32)
MAX_BLOCK_BYTES = 256 * 1024 * 1024

Computed = TypeVar("Computed")


class _computed_once(Generic[Computed]):  # lower case: a decorator, like cached_property
    """functools.cached_property without its lock: Python 3.11 takes an RLock on every first
    access, and a block's receipts are each encoded once, on the executor's thread alone.

    A non-data descriptor: the value stored in the instance's __dict__ shadows it afterwards
    (written there directly, as cached_property does, so a frozen dataclass can hold it).
    """

    def __init__(self, compute: Callable[[Any], Computed]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> Computed:
        if instance is None:
            return self  # type: ignore[return-value]
        value = self._compute(instance)
        instance.__dict__[self._name] = value
        return value

    def compute_into(self, instance: Any) -> Computed:
        """What __get__ does for an instance, called directly: this spares the descriptor
        protocol's call from C into Python."""
        value = self._compute(instance)
        instance.__dict__[self._name] = value
        return value



@dataclass(frozen=True)
class Event:
    """Something a contract reports happened: a transfer, a trade, a payment."""

    kind: str
    attrs: dict[str, Any]

    def to_wire(self) -> list[Any]:
        return [self.kind, self.attrs]

    def encode(self) -> bytes:
        """codec.encode(self.to_wire()), with only the attributes walked by the general codec."""
        return codec.encode_array([codec.encode(self.kind), codec.encode(self.attrs)])

    @classmethod
    def from_wire(cls, wire: list[Any]) -> Event:
        return cls(wire[0], wire[1])


@dataclass(frozen=True)
class Receipt:
    """The result of one transaction in a block: valid, or invalid with a stable reason."""

    tx_id: bytes
    reason: Reason
    detail: str
    events: tuple[Event, ...]

    @property
    def valid(self) -> bool:
        return self.reason == Reason.OK

    def to_wire(self) -> list[Any]:
        return [self.tx_id, str(self.reason), self.detail, [e.to_wire() for e in self.events]]

    @_computed_once
    def encoded(self) -> bytes:
        """Canonical bytes, computed once: the results root and the stored block both need them.

        Equal to codec.encode(self.to_wire()). Every block encodes one receipt per transaction:
        when each event's attributes are leaves (a transfer's, an order's), the receipt is put in
        normal form here and packed in one call; otherwise it is assembled from encoded parts.
        """
        # A Reason's text is its _value_ (an attribute read), where str() costs ~2,000 instructions
        # through the enum's __str__ slot.
        reason = self.reason._value_ if type(self.reason) is Reason else str(self.reason)
        if type(self.tx_id) is bytes and type(self.detail) is str and len(self.events) <= codec.MAX_CONTAINER_ITEMS:
            events: list[Any] = []
            for event in self.events:
                attrs = event.attrs
                if type(attrs) is not dict or type(event.kind) is not str:
                    break
                if not codec.is_leaf_map_sorted(attrs):  # emitted in key order: packed as it is
                    attrs = codec.leaf_map_normal(attrs)
                    if attrs is None:
                        break
                events.append([event.kind, attrs])
            else:
                packed = codec.pack_normal([self.tx_id, reason, self.detail, events])
                if packed is not None:
                    return packed
        return self._encoded_from_parts(reason)

    def _encoded_from_parts(self, reason: str) -> bytes:
        return codec.encode_array([
            codec.encode(self.tx_id), codec.encode(reason), codec.encode(self.detail),
            codec.encode_array([event.encode() for event in self.events]),
        ])

    @classmethod
    def from_wire(cls, wire: list[Any]) -> Receipt:
        return cls(wire[0], Reason(wire[1]), wire[2], tuple(Event.from_wire(e) for e in wire[3]))


@dataclass(frozen=True)
class BlockHeader:
    chain_id: str
    height: int
    prev_hash: bytes
    time_ms: int
    tx_root: bytes
    results_root: bytes
    state_hash: bytes
    raft_index: int
    raft_term: int

    def to_wire(self) -> list[Any]:
        return [
            BLOCK_FORMAT_VERSION,
            self.chain_id,
            self.height,
            self.prev_hash,
            self.time_ms,
            self.tx_root,
            self.results_root,
            self.state_hash,
            self.raft_index,
            self.raft_term,
        ]

    @classmethod
    def from_wire(cls, wire: list[Any]) -> BlockHeader:
        if wire[0] != BLOCK_FORMAT_VERSION:
            raise ValueError(f"unknown block format {wire[0]!r}")
        return cls(*wire[1:])

    def hash(self) -> bytes:
        return hashlib.sha256(BLOCK_HASH_DOMAIN + codec.encode(self.to_wire())).digest()


@dataclass(frozen=True)
class Block:
    header: BlockHeader
    txs: tuple[bytes, ...]
    receipts: tuple[Receipt, ...]
    system_events: tuple[Event, ...]

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        return self.header.hash()

    def encode(self) -> bytes:
        """Canonical [header, txs, receipts, system events], assembled from encoded parts."""
        return codec.encode_array([
            codec.encode(self.header.to_wire()),
            _encode_txs(list(self.txs)),
            codec.encode_array([r.encoded for r in self.receipts]),
            codec.encode([e.to_wire() for e in self.system_events]),
        ])

    @classmethod
    def decode(cls, data: bytes) -> Block:
        wire = codec.decode(data, max_bytes=MAX_BLOCK_BYTES)
        return cls(
            BlockHeader.from_wire(wire[0]),
            tuple(wire[1]),
            tuple(Receipt.from_wire(r) for r in wire[2]),
            tuple(Event.from_wire(e) for e in wire[3]),
        )


def _encode_txs(txs: list[bytes]) -> bytes:
    """codec.encode(txs): a block's transactions are byte strings, found so in C (a set of their
    types), then packed in one call without the codec's walk of a thousand items."""
    if len(txs) <= codec.MAX_CONTAINER_ITEMS and set(map(type, txs)) <= _BYTES_ONLY:
        packed = codec.pack_normal(txs)
        if packed is not None:
            return packed
    return codec.encode(txs)


_BYTES_ONLY = frozenset({bytes})


def results_root(receipts: tuple[Receipt, ...] | list[Receipt],
                 system_events: list[Event] | tuple[Event, ...]) -> bytes:
    leaves = [r.encoded for r in receipts]  # computed and kept (the executor has done so for most)
    leaves.append(codec.encode([e.to_wire() for e in system_events]))
    return merkle_root(leaves)


RECEIPT_ENCODED: _computed_once[bytes] = Receipt.__dict__["encoded"]  # .compute_into(receipt)
