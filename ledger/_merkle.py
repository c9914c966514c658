"""RFC 6962 / RFC 9162 Merkle trees: tree hash, inclusion and consistency proofs.

A leaf hash is SHA-256(0x00 || data), an interior node SHA-256(0x01 || left ||
right), and the hash of the empty tree SHA-256(""). The tree over n leaves
splits at the largest power of two below n (RFC 6962 section 2.1).

`MerkleTree` builds the tree once, level by level: level 0 holds the leaf
hashes and each higher level pairs neighbours, promoting a last odd node
unchanged. That gives exactly the RFC tree, and every node the proofs need is
a lookup: the node at level L and index j covers leaves [j * 2^L, min((j + 1) *
2^L, n)). Building costs n - 1 hashes; each proof then costs O(log n) lookups.

The verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2. Every proof hash
must be 32 bytes. Policies, matching the transparency-dev test vectors:
an inclusion proof needs 0 <= index < size, so nothing is included in the
empty tree; a consistency proof needs 0 < size1 <= size2, since consistency
with the empty tree proves nothing; for size1 == size2 the proof must be
empty and the two roots equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ._errors import LedgerError

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(LedgerError, ValueError):
    """A Merkle proof does not verify against the given root, index and sizes."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one leaf."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _next_level(level: Sequence[bytes]) -> list[bytes]:
    """Hash neighbours pairwise; a last odd node moves up unchanged (RFC 6962 shape)."""
    sha256 = hashlib.sha256
    upper = [
        sha256(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
    ]
    if len(level) % 2:
        upper.append(level[-1])
    return upper


class MerkleTree:
    """All levels of the tree over given leaf hashes, answering root and proofs."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            levels.append(_next_level(levels[-1]))
        self._levels = levels

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes]) -> MerkleTree:
        """The tree over raw leaf data (each leaf hashed with `leaf_hash`)."""
        return cls([leaf_hash(leaf) for leaf in leaves])

    @property
    def size(self) -> int:
        """The number of leaves."""
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        """The tree head hash (SHA-256 of nothing for the empty tree)."""
        return self._levels[-1][0] if self.size else EMPTY_ROOT

    def leaf_hash(self, index: int) -> bytes:
        """The hash of leaf `index`."""
        self._check_index(index)
        return self._levels[0][index]

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The audit path of leaf `index` (RFC 6962 PATH), bottom up."""
        self._check_index(index)
        proof = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            index >>= 1
        return proof

    def consistency_proof(self, old_size: int) -> list[bytes]:
        """The proof that the first `old_size` leaves form a prefix (RFC 6962 SUBPROOF)."""
        if not 0 < old_size <= self.size:
            raise ValueError(f"old size {old_size} is outside 1..{self.size}")
        # RFC 6962 SUBPROOF(m, D[lo:hi], b), unrolled: the recursion appends after
        # descending, so the nodes are collected top-down and reversed at the end.
        proof: list[bytes] = []
        lo, hi, whole = 0, self.size, True
        while old_size - lo != hi - lo:
            split = _largest_power_of_two_below(hi - lo)
            if old_size - lo <= split:
                proof.append(self._subtree(lo + split, hi))
                hi = lo + split
            else:
                proof.append(self._subtree(lo, lo + split))
                lo, whole = lo + split, False
        if not whole:
            proof.append(self._subtree(lo, hi))
        proof.reverse()
        return proof

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a range the RFC recursion reaches (aligned, full or right edge)."""
        height = (hi - lo - 1).bit_length()
        return self._levels[height][lo >> height]

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.size:
            raise ValueError(f"leaf index {index} is outside a tree of {self.size} leaves")


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree head hash over raw leaf data."""
    return MerkleTree.from_leaves(leaves).root


def root_from_hashes(leaf_hashes: Sequence[bytes]) -> bytes:
    """The tree head hash over leaf hashes."""
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of one leaf; build a `MerkleTree` once to prove many."""
    return MerkleTree(leaf_hashes).inclusion_proof(index)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of `old_size` leaves is a prefix of the tree over all of them."""
    return MerkleTree(leaf_hashes).consistency_proof(old_size)


def _check_proof_hashes(proof: Sequence[bytes]) -> None:
    for position, item in enumerate(proof):
        if len(item) != HASH_BYTES:
            raise ProofError(f"proof hash {position} has {len(item)} bytes, not {HASH_BYTES}")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `index` of the tree of `size` leaves with `root`."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    if len(leaf_hash) != HASH_BYTES:
        raise ProofError(f"leaf hash has {len(leaf_hash)} bytes, not {HASH_BYTES}")
    _check_proof_hashes(proof)
    computed = _root_from_inclusion(leaf_hash, index, size - 1, proof)
    if computed != root:
        raise ProofError(f"inclusion proof for leaf {index} of {size} does not lead to the root")


def _root_from_inclusion(hashed: bytes, index: int, last: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: fold the path into a root, checking its length."""
    for sibling in proof:
        if last == 0:
            raise ProofError(f"inclusion proof is too long ({len(proof)} hashes)")
        if index & 1 or index == last:
            hashed = node_hash(sibling, hashed)
            while not index & 1 and index != 0:
                index >>= 1
                last >>= 1
        else:
            hashed = node_hash(hashed, sibling)
        index >>= 1
        last >>= 1
    if last != 0:
        raise ProofError(f"inclusion proof is too short ({len(proof)} hashes)")
    return hashed


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `size1` leaves with `root1` is a prefix of the `size2` tree."""
    if size1 <= 0 or size2 < size1:
        raise ProofError(f"no consistency proof exists from size {size1} to size {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("the sizes are equal, so the proof must be empty")
        if root1 != root2:
            raise ProofError(f"the sizes are equal ({size1}) but the roots differ")
        return
    if not proof:
        raise ProofError(f"empty consistency proof from size {size1} to size {size2}")
    _check_proof_hashes(proof)
    old, new = _roots_from_consistency(size1, size2, root1, proof)
    if old != root1:
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if new != root2:
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")


def _roots_from_consistency(
    size1: int, size2: int, root1: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    """RFC 9162 section 2.1.4.2: fold the proof into both roots, checking its length."""
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        # The old tree is a complete subtree: its root is the proof's implicit first node.
        path.insert(0, root1)
    index, last = size1 - 1, size2 - 1
    while index & 1:
        index >>= 1
        last >>= 1
    old = new = path[0]
    for node in path[1:]:
        if last == 0:
            raise ProofError(f"consistency proof is too long ({len(proof)} hashes)")
        if index & 1 or index == last:
            old = node_hash(node, old)
            new = node_hash(node, new)
            while not index & 1 and index != 0:
                index >>= 1
                last >>= 1
        else:
            new = node_hash(new, node)
        index >>= 1
        last >>= 1
    if last != 0:
        raise ProofError(f"consistency proof is too short ({len(proof)} hashes)")
    return old, new
