"""The log-wide Merkle tree (RFC 9162): the incremental frontier gives the recursive root, and
inclusion and consistency proofs verify for every leaf and prefix, and fail when anything in
them or in the tree is changed."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from domain.merkle import (
    Frontier,
    consistency_proof,
    inclusion_proof,
    inclusion_proofs,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

leaves_st = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=70)


def test_known_roots_follow_the_rfcs_shape() -> None:
    """Three leaves split 2 + 1: MTH = H(1 || H(1 || H(0||a) || H(0||b)) || H(0||c))."""
    a, b, c = b"a", b"b", b"c"
    expected = node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))
    assert root([a, b, c]) == expected
    assert root([]) == hashlib.sha256(b"").digest()
    assert leaf_hash(a) == hashlib.sha256(b"\x00a").digest()


@given(leaves_st)
def test_the_frontier_gives_the_recursive_root_at_every_size(leaves: list[bytes]) -> None:
    f = Frontier()
    for i, leaf in enumerate(leaves):
        f.append(leaf)
        assert f.size == i + 1
        assert f.root() == root(leaves[:i + 1])
        assert len(f.peaks) == bin(f.size).count("1")


@given(leaves_st, st.data())
def test_every_leaf_has_an_inclusion_proof_and_a_changed_one_fails(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(leaves, index)
    r = root(leaves)
    assert verify_inclusion(leaf_hash(leaves[index]), index, n, proof, r)
    assert not verify_inclusion(leaf_hash(leaves[index] + b"!"), index, n, proof, r)
    if n > 1:
        assert not verify_inclusion(leaf_hash(leaves[index]), (index + 1) % n, n, proof, r) or \
            leaves[(index + 1) % n] == leaves[index]
        bad = [bytes(32)] + proof[1:] if proof else proof
        assert not verify_inclusion(leaf_hash(leaves[index]), index, n, bad, r) or bad == proof


@given(leaves_st, st.data())
def test_the_batch_proofs_are_each_leafs_own_proof(leaves: list[bytes], data: st.DataObject) -> None:
    indices = data.draw(st.lists(st.integers(0, len(leaves) - 1), max_size=len(leaves)))
    top, paths = inclusion_proofs(leaves, indices)
    assert top == root(leaves) and sorted(paths) == sorted(set(indices))
    for i in indices:
        assert paths[i] == inclusion_proof(leaves, i)
        assert verify_inclusion(leaf_hash(leaves[i]), i, len(leaves), paths[i], top)


@given(leaves_st, st.data())
def test_every_prefix_is_consistent_and_a_rewritten_prefix_is_not(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(leaves, m)
    assert verify_consistency(m, n, root(leaves[:m]), root(leaves), proof)
    changed = [*leaves[:m - 1], leaves[m - 1] + b"!", *leaves[m:]]
    assert not verify_consistency(m, n, root(changed[:m]), root(leaves), proof)
    if m < n:  # a tree that lost its newest leaves is not the one checkpointed
        assert not verify_consistency(m, n, root(leaves[:m]), root(leaves[:-1] + [leaves[-1] + b"!"]), proof)
