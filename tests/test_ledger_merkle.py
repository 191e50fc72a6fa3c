"""Merkle proofs: a client can check that its transaction is in a block, and nothing else is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledger.merkle import EMPTY_ROOT, leaf_hash, merkle_proof, merkle_root, verify_proof

leaf_lists = st.lists(st.binary(min_size=0, max_size=16), min_size=1, max_size=40)


@given(leaf_lists, st.data())
def test_every_leaf_has_a_proof_that_verifies(leaves, data):
    index = data.draw(st.integers(0, len(leaves) - 1))
    root = merkle_root(leaves)
    assert verify_proof(leaves[index], merkle_proof(leaves, index), root)


@given(leaf_lists, st.data())
def test_a_proof_does_not_verify_another_leaf_or_root(leaves, data):
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle_proof(leaves, index)
    root = merkle_root(leaves)
    assert not verify_proof(leaves[index] + b"x", proof, root)
    assert not verify_proof(leaves[index], proof, merkle_root(leaves + [b"extra"]))


@given(leaf_lists)
def test_the_root_depends_on_order_and_content(leaves):
    if len(set(leaves)) > 1:
        assert merkle_root(list(reversed(leaves))) != merkle_root(leaves) or leaves == leaves[::-1]
    assert merkle_root(leaves + [b"z"]) != merkle_root(leaves)


def test_a_leaf_cannot_pose_as_an_inner_node():
    left, right = b"a", b"b"
    root = merkle_root([left, right])
    forged_leaf = leaf_hash(left) + leaf_hash(right)
    assert merkle_root([forged_leaf]) != root
    assert not verify_proof(forged_leaf, [], root)


def test_empty_and_single_trees():
    assert merkle_root([]) == EMPTY_ROOT
    assert merkle_root([b"x"]) == leaf_hash(b"x")
    assert merkle_proof([b"x"], 0) == []
