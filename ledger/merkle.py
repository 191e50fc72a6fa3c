"""Merkle root and inclusion proofs over a block's transactions.

Part of ledger/. Leaves and inner nodes are hashed with different prefixes (as RFC 6962 does)
so a leaf can never be passed off as a node; an odd node is promoted, not duplicated.
"""

from __future__ import annotations

import hashlib

EMPTY_ROOT = hashlib.sha256(b"keiretsu/merkle-empty/v1").digest()
_LEAF = b"\x00"
_NODE = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    # _node inlined: a block's two roots hash ~4,000 nodes and leaves, and the calls cost as
    # much as the hashing.
    sha256, node = hashlib.sha256, _NODE
    paired = [sha256(node + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])
    return paired


def merkle_root(leaves: list[bytes]) -> bytes:
    """Root over the leaf data (each hashed as a leaf)."""
    if not leaves:
        return EMPTY_ROOT
    sha256, leaf = hashlib.sha256, _LEAF
    level = [sha256(leaf + item).digest() for item in leaves]  # leaf_hash, inlined
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def merkle_proof(leaves: list[bytes], index: int) -> list[tuple[bool, bytes]]:
    """Sibling hashes from leaf to root; each is (sibling_is_left, hash)."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    level = [leaf_hash(item) for item in leaves]
    proof: list[tuple[bool, bytes]] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append((sibling < index, level[sibling]))
        level = _next_level(level)
        index //= 2
    return proof


def verify_proof(leaf: bytes, proof: list[tuple[bool, bytes]], root: bytes) -> bool:
    current = leaf_hash(leaf)
    for sibling_is_left, sibling in proof:
        current = _node(sibling, current) if sibling_is_left else _node(current, sibling)
    return current == root
