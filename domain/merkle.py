"""A Merkle tree over the whole event log, as Certificate Transparency builds one (RFC 9162,
section 2.1): leaves are hashed with a 0x00 prefix, interior nodes with 0x01, and a tree of
``n`` leaves splits at the largest power of two below ``n``. The leaf is each stored event's
hash, the one its stream's chain carries, in the order the log recorded them.

``Frontier`` keeps only the roots of the perfect subtrees of the leaves so far (at most
log2(n) hashes), so the log's root follows each append in O(log n). ``inclusion_proof`` /
``verify_inclusion`` and ``consistency_proof`` / ``verify_consistency`` are the RFC's
algorithms (2.1.3 and 2.1.4).

>>> leaves = [bytes([i]) * 32 for i in range(5)]
>>> f = Frontier()
>>> for leaf in leaves:
...     f.append(leaf)
>>> f.root() == root(leaves)
True
>>> proof = inclusion_proof(leaves, 3)
>>> verify_inclusion(leaf_hash(leaves[3]), 3, 5, proof, root(leaves))
True
>>> verify_consistency(3, 5, root(leaves[:3]), root(leaves), consistency_proof(leaves, 3))
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 (recursive; ``Frontier`` gives the same incrementally)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hash(leaves[0])
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


class Frontier:
    """The roots of the perfect subtrees covering the leaves appended so far, largest first:
    the log's root in O(log n) per append, and a few hundred bytes for any size."""

    __slots__ = ("size", "peaks")

    def __init__(self) -> None:
        self.size = 0
        self.peaks: list[bytes] = []  # hashes of perfect subtrees, largest first

    def append(self, data: bytes) -> None:
        node = leaf_hash(data)
        size = self.size
        while size & 1:  # merge equal-height subtrees, as a binary counter carries
            node = node_hash(self.peaks.pop(), node)
            size >>= 1
        self.peaks.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.peaks:
            return EMPTY_ROOT
        node = self.peaks[-1]
        for peak in reversed(self.peaks[:-1]):
            node = node_hash(peak, node)
        return node


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf ``index`` in the tree of ``leaves``."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} is not in a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(leaves[:k], index), root(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), root(leaves[:k])]


def inclusion_proofs(leaves: Sequence[bytes], indices: Sequence[int]) -> tuple[bytes, dict[int, list[bytes]]]:
    """The root and the audit paths of many leaves at once (each as ``inclusion_proof``
    gives it), hashing every node once: O(n + k·log n) for ``k`` of ``n`` leaves, where ``k``
    calls of ``inclusion_proof`` take O(k·n).

    >>> leaves = [bytes([i]) * 32 for i in range(7)]
    >>> top, paths = inclusion_proofs(leaves, [0, 4, 6])
    >>> top == root(leaves) and all(paths[i] == inclusion_proof(leaves, i) for i in (0, 4, 6))
    True
    """
    wanted = sorted(set(indices))
    if wanted and not 0 <= wanted[0] <= wanted[-1] < len(leaves):
        raise IndexError(f"leaves {wanted[0]}..{wanted[-1]} are not all in a tree of {len(leaves)}")
    paths: dict[int, list[bytes]] = {i: [] for i in wanted}

    def walk(lo: int, hi: int, inside: list[int]) -> bytes:
        if not inside:  # no wanted leaf below: only the subtree's hash is needed
            return root(leaves[lo:hi])
        if hi - lo == 1:
            return leaf_hash(leaves[lo])
        k = _split(hi - lo)
        left = [i for i in inside if i < lo + k]
        right = inside[len(left):]
        a, b = walk(lo, lo + k, left), walk(lo + k, hi, right)
        for i in left:
            paths[i].append(b)
        for i in right:
            paths[i].append(a)
        return node_hash(a, b)

    return walk(0, len(leaves), wanted), paths


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> bool:
    """RFC 9162 2.1.3.2: whether ``leaf`` (a leaf hash) is leaf ``index`` of the tree of
    ``size`` leaves whose root is ``expected_root``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """PROOF(m, D[n]): that the tree of the first ``m`` leaves is a prefix of the tree of all."""
    n = len(leaves)
    if not 0 < m <= n:
        raise ValueError(f"no consistency proof from {m} to {n} leaves")

    def subproof(m: int, d: Sequence[bytes], whole: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if whole else [root(d)]
        k = _split(n)
        if m <= k:
            return [*subproof(m, d[:k], whole), root(d[k:])]
        return [*subproof(m - k, d[k:], False), root(d[:k])]

    return subproof(m, leaves, True)


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2: whether the tree of ``second`` leaves with ``second_root`` extends the
    tree of ``first`` leaves with ``first_root``."""
    if first == second:
        return not proof and first_root == second_root
    if not 0 < first < second or not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # a power of two: the first tree's root is a node of the path
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


__all__ = ["EMPTY_ROOT", "Frontier", "consistency_proof", "inclusion_proof", "leaf_hash", "node_hash", "root",
           "verify_consistency", "verify_inclusion"]
