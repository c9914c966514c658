"""RFC 6962 / RFC 9162 Merkle trees: the golden vectors and a recursive reference."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger._merkle import (
    EMPTY_ROOT,
    MerkleTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    root_from_hashes,
    verify_consistency,
    verify_inclusion,
)
from tests.shared_data import SHARED_DATA

VECTORS = SHARED_DATA / "merkle"


def vector_files(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    return [pytest.param(path, id=str(path.relative_to(VECTORS / kind))) for path in files]


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    case["proof"] = [b64(item) for item in case["proof"] or []]
    return case


INCLUSION = vector_files("inclusion")
CONSISTENCY = vector_files("consistency")


def test_every_vector_file_is_collected() -> None:
    """Both vector sets are found, including the wantErr=false happy paths."""
    assert len(INCLUSION) > 80 and len(CONSISTENCY) > 80
    happy = [p for p in INCLUSION + CONSISTENCY if not load(p.values[0])["wantErr"]]
    assert len(happy) >= 10


@pytest.mark.parametrize("path", INCLUSION)
def test_inclusion_vector(path: Path) -> None:
    """Each inclusion vector is accepted exactly when wantErr is false."""
    case = load(path)
    args = (b64(case["leafHash"]), case["leafIdx"], case["treeSize"], case["proof"])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args, b64(case["root"]))
    else:
        verify_inclusion(*args, b64(case["root"]))


@pytest.mark.parametrize("path", CONSISTENCY)
def test_consistency_vector(path: Path) -> None:
    """Each consistency vector is accepted exactly when wantErr is false."""
    case = load(path)
    args = (case["size1"], case["size2"], b64(case["root1"]), b64(case["root2"]), case["proof"])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- a plain recursive reference: RFC 6962 section 2.1 ------------------------------------------


def ref_k(n: int) -> int:
    """The largest power of two smaller than n."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = ref_k(n)
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_mth(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_mth(leaves[:k])]


def ref_sides(m: int, n: int) -> list[bool]:
    """Which side each audit-path sibling is on (True: left): the shape of PATH(m, D[n])."""
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return ref_sides(m, k) + [False]
    return ref_sides(m - k, n - k) + [True]


def ref_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [ref_mth(leaves)]
    k = ref_k(n)
    if m <= k:
        return ref_subproof(m, leaves[:k], whole) + [ref_mth(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return ref_subproof(m, leaves, True)


def flip_bit(proof: list[bytes], item: int, bit: int) -> list[bytes]:
    changed = bytearray(proof[item])
    changed[bit // 8] ^= 1 << (bit % 8)
    return proof[:item] + [bytes(changed)] + proof[item + 1 :]


# Distinct leaves: with repeated leaves, swapping two equal ones is not tampering.
leaf_lists = st.lists(st.binary(max_size=12), unique=True, max_size=70)
nonempty_leaf_lists = st.lists(st.binary(max_size=12), unique=True, min_size=1, max_size=70)


@given(leaf_lists)
def test_roots_match_the_reference(leaves: list[bytes]) -> None:
    """root, root_from_hashes and MerkleTree.root all equal the recursive MTH."""
    expected = ref_mth(leaves)
    hashes = [leaf_hash(leaf) for leaf in leaves]
    assert root(leaves) == expected
    assert root_from_hashes(hashes) == expected
    assert MerkleTree(hashes).root == expected
    assert MerkleTree.from_leaves(leaves).root == expected


@given(nonempty_leaf_lists, st.data())
def test_inclusion_proofs_match_the_reference_and_verify(leaves: list[bytes], data: st.DataObject) -> None:
    """Every generated audit path equals the RFC PATH and verifies against the root."""
    tree = MerkleTree.from_leaves(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = tree.inclusion_proof(index)
    assert proof == ref_path(index, leaves)
    assert proof == inclusion_proof([leaf_hash(leaf) for leaf in leaves], index)
    verify_inclusion(leaf_hash(leaves[index]), index, len(leaves), proof, tree.root)


@given(nonempty_leaf_lists, st.data())
def test_altered_inclusion_proofs_fail(leaves: list[bytes], data: st.DataObject) -> None:
    """Any flipped proof bit, wrong leaf, wrong root, or cut/extended proof fails."""
    tree = MerkleTree.from_leaves(leaves)
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = tree.inclusion_proof(index)
    leaf = leaf_hash(leaves[index])
    attempts = [
        (leaf_hash(leaves[index] + b"x"), index, n, proof, tree.root),
        (leaf, index, n, proof, node_hash(tree.root, tree.root)),
        (leaf, index, n, proof + [tree.root], tree.root),
    ]
    if proof:
        item = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        attempts.append((leaf, index, n, flip_bit(proof, item, bit), tree.root))
        attempts.append((leaf, index, n, proof[:-1], tree.root))
    for attempt in attempts:
        with pytest.raises(ProofError):
            verify_inclusion(*attempt)


@given(nonempty_leaf_lists, st.data())
def test_inclusion_with_a_wrong_index_or_size_fails(leaves: list[bytes], data: st.DataObject) -> None:
    """A proof checked at another index, or for another size with the same root, fails.

    The one exception is RFC-inherent: a size whose audit path has the same shape
    folds the same way, which is why a tree head signs its size with its root.
    """
    tree = MerkleTree.from_leaves(leaves)
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = tree.inclusion_proof(index)
    leaf = leaf_hash(leaves[index])
    other_index = data.draw(st.integers(-1, n))
    if other_index != index:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, other_index, n, proof, tree.root)
    other_size = data.draw(st.integers(0, 2 * n + 1))
    same_shape = index < other_size and ref_sides(index, other_size) == ref_sides(index, n)
    if same_shape:
        verify_inclusion(leaf, index, other_size, proof, tree.root)
    else:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, other_size, proof, tree.root)


@given(nonempty_leaf_lists, st.data())
def test_consistency_proofs_match_the_reference_and_verify(leaves: list[bytes], data: st.DataObject) -> None:
    """Every generated consistency proof equals the RFC PROOF and verifies."""
    hashes = [leaf_hash(leaf) for leaf in leaves]
    tree = MerkleTree(hashes)
    old = data.draw(st.integers(1, len(leaves)))
    proof = tree.consistency_proof(old)
    assert proof == ref_proof(old, leaves)
    assert proof == consistency_proof(hashes, old)
    verify_consistency(old, len(leaves), ref_mth(leaves[:old]), tree.root, proof)


@given(nonempty_leaf_lists, st.data())
def test_altered_consistency_proofs_fail(leaves: list[bytes], data: st.DataObject) -> None:
    """Any flipped proof bit, swapped or wrong root, or cut/extended proof fails."""
    tree = MerkleTree.from_leaves(leaves)
    n = len(leaves)
    old = data.draw(st.integers(1, n))
    proof = tree.consistency_proof(old)
    root1, root2 = ref_mth(leaves[:old]), tree.root
    attempts = [
        (old, n, node_hash(root1, root1), root2, proof),
        (old, n, root1, node_hash(root2, root2), proof),
        (old, n, root1, root2, proof + [root1]),
    ]
    if old < n:
        attempts.append((old, n, root2, root1, proof))
    if proof:
        item = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        attempts.append((old, n, root1, root2, flip_bit(proof, item, bit)))
        attempts.append((old, n, root1, root2, proof[:-1]))
    for attempt in attempts:
        with pytest.raises(ProofError):
            verify_consistency(*attempt)


@given(nonempty_leaf_lists, st.data())
def test_consistency_for_other_sizes_fails(leaves: list[bytes], data: st.DataObject) -> None:
    """A proof presented for other sizes, with those sizes' true roots, fails (unless it is theirs)."""
    n = len(leaves)
    old = data.draw(st.integers(1, n))
    proof = MerkleTree.from_leaves(leaves).consistency_proof(old)
    other_old = data.draw(st.integers(0, n))
    other_new = data.draw(st.integers(0, n))
    genuine = 0 < other_old <= other_new and proof == ref_proof(other_old, leaves[:other_new])
    args = (other_old, other_new, ref_mth(leaves[:other_old]), ref_mth(leaves[:other_new]), proof)
    if genuine:
        verify_consistency(*args)
    else:
        with pytest.raises(ProofError):
            verify_consistency(*args)


# --- edges and speed ---------------------------------------------------------------------------


def test_hash_definitions() -> None:
    """Leaf, node and empty-tree hashes are the RFC 6962 ones."""
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root_from_hashes([]) == EMPTY_ROOT
    assert MerkleTree([]).size == 0 and MerkleTree([]).root == EMPTY_ROOT


def test_misuse_of_the_tree_is_a_value_error() -> None:
    """Asking for a proof outside the tree is the caller's mistake, not a failed proof."""
    tree = MerkleTree.from_leaves([b"a", b"b", b"c"])
    for bad_index in (-1, 3):
        with pytest.raises(ValueError, match="outside"):
            tree.inclusion_proof(bad_index)
    for bad_size in (0, 4):
        with pytest.raises(ValueError, match="outside"):
            tree.consistency_proof(bad_size)
    assert tree.consistency_proof(3) == []
    assert tree.leaf_hash(2) == leaf_hash(b"c")


def test_proof_hashes_must_be_32_bytes() -> None:
    """A proof element of the wrong length is refused before any hashing."""
    tree = MerkleTree.from_leaves([b"a", b"b"])
    with pytest.raises(ProofError, match="33 bytes"):
        verify_inclusion(leaf_hash(b"a"), 0, 2, [tree.inclusion_proof(0)[0] + b"x"], tree.root)


class _CountingHashlib:
    """Stands in for ledger._merkle's `hashlib`: counts SHA-256 computations."""

    def __init__(self) -> None:
        self.calls = 0

    def sha256(self, data: bytes = b"") -> Any:
        self.calls += 1
        return hashlib.sha256(data)


def test_a_block_of_ten_thousand_leaves_is_built_in_linear_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root and all 10,000 inclusion proofs take about one hash per tree node, and every
    proof verifies. Counting hashes, not seconds: a timing bound fails on a loaded
    machine, and what it was for (catching an accidental quadratic rebuild, ~n^2/2 =
    50 million hashes here) shows in the count whatever the load."""
    import ledger._merkle as merkle

    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(10_000)]
    counting = _CountingHashlib()
    monkeypatch.setattr(merkle, "hashlib", counting)
    tree = MerkleTree(hashes)
    proofs = [tree.inclusion_proof(i) for i in range(len(hashes))]
    built = counting.calls
    monkeypatch.undo()
    for i in range(0, len(hashes), 97):
        verify_inclusion(hashes[i], i, len(hashes), proofs[i], tree.root)
    for old in range(1, len(hashes) + 1, 100):
        verify_consistency(
            old, len(hashes), root_from_hashes(hashes[:old]), tree.root, tree.consistency_proof(old)
        )
    assert tree.root == root_from_hashes(hashes)
    # A tree of n leaves has n - 1 inner nodes; proofs read them, they do not rehash.
    assert built <= 2 * len(hashes), f"{built} hashes for 10,000 leaves and their proofs"
